#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace chime {

/// A JSON object written straight into text, for the documents written once
/// per message or per user (the email request's body, a journal event, a
/// broker message's delivery, a created user's event): building an
/// nlohmann::json object for each (a map node and a string copy per field,
/// then a walk to dump it) was a few percent of the node's CPU in a burst,
/// and a quarter of the journal thread's in an import. Nested values are
/// written by their own writer and added with raw_field. Anything read back
/// goes through nlohmann::json.
class json_object_text {
public:
  json_object_text& field(std::string_view name, std::string_view value);
  json_object_text& field(std::string_view name, int64_t value);
  /// A field whose value is JSON text already (an object or array nested
  /// in this one, written by another writer).
  json_object_text& raw_field(std::string_view name, std::string_view json);

  /// The object's text; the writer is empty afterwards.
  std::string take();

private:
  void name(std::string_view n);
  std::string out_;
};

/// A JSON array of values that are JSON text already.
class json_array_text {
public:
  json_array_text& raw(std::string_view json);

  /// The array's text; the writer is empty afterwards.
  std::string take();

private:
  std::string out_;
};

/// Appends `s` as a JSON string: quoted, with quotes, backslashes and
/// control characters escaped (RFC 8259, section 7).
void append_json_string(std::string& out, std::string_view s);

} // namespace chime
