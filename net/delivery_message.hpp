#pragma once

#include <optional>
#include <string>
#include <vector>

namespace chime {

struct delivery_record;

/// The body of a broker message carrying deliveries: one is a JSON object
/// with the fields a consumer needs to re-check it (not its journal status,
/// nor its address and text: the re-check reads the user they are rendered
/// from, as the user is when it is sent, and the body is a third smaller);
/// several (a bundle) are a JSON array of such objects. A bundle costs the
/// broker one message, one confirm and one ack for all of them: per delivery,
/// those were the burst's largest cost outside PostgreSQL.
std::string to_message_body(const delivery_record& d);
std::string to_message_body(const std::vector<delivery_record>& ds);

/// The deliveries a broker message carries (at least one), or nothing when
/// the body is not a delivery or a non-empty bundle of them (the consumer
/// dead-letters it). Their status is `handed_off`: a message exists only
/// once the journal recorded the fire.
std::optional<std::vector<delivery_record>>
from_message_body(const std::string& body);

} // namespace chime
