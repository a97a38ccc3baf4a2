#pragma once

#include <optional>
#include <string>

namespace chime {

struct delivery_record;

/// The body of a broker message carrying one delivery: a JSON object with
/// the fields a consumer needs to send it (not its journal status).
std::string to_message_body(const delivery_record& d);

/// The delivery a broker message carries, or nothing when the body is not
/// one (the consumer dead-letters it). The status is `handed_off`: a message
/// exists only once the journal recorded the handoff.
std::optional<delivery_record> from_message_body(const std::string& body);

} // namespace chime
