#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace chime {

/// A flat JSON object written straight into text, for the documents the
/// send path writes once per message (the email request's body, a journal
/// event's entry, a broker message's delivery): building an nlohmann::json
/// object for each (a map node and a string copy per field, then a walk to
/// dump it) was a few percent of the node's CPU in a burst. Anything nested
/// or read back goes through nlohmann::json.
class json_object_text {
public:
  json_object_text& field(std::string_view name, std::string_view value);
  json_object_text& field(std::string_view name, int64_t value);

  /// The object's text; the writer is empty afterwards.
  std::string take();

private:
  void name(std::string_view n);
  std::string out_;
};

/// Appends `s` as a JSON string: quoted, with quotes, backslashes and
/// control characters escaped (RFC 8259, section 7).
void append_json_string(std::string& out, std::string_view s);

} // namespace chime
