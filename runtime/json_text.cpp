#include "runtime/json_text.hpp"

namespace chime {

void append_json_string(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  out += '"';
  size_t from = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\')
      continue;
    out.append(s.substr(from, i - from));
    from = i + 1;
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        out += "\\u00";
        out += hex[c >> 4];
        out += hex[c & 0xf];
    }
  }
  out.append(s.substr(from));
  out += '"';
}

void json_object_text::name(std::string_view n) {
  out_ += out_.empty() ? '{' : ',';
  append_json_string(out_, n);
  out_ += ':';
}

json_object_text& json_object_text::field(std::string_view n, std::string_view value) {
  name(n);
  append_json_string(out_, value);
  return *this;
}

json_object_text& json_object_text::field(std::string_view n, int64_t value) {
  name(n);
  out_ += std::to_string(value);
  return *this;
}

json_object_text& json_object_text::raw_field(std::string_view n,
                                              std::string_view json) {
  name(n);
  out_ += json;
  return *this;
}

namespace {

/// Closes the container that `out` holds (or writes an empty one) and hands
/// the text over, leaving `out` empty for the next.
std::string close(std::string& out, char open, char close) {
  if (out.empty())
    out += open;
  out += close;
  std::string done;
  done.swap(out);
  return done;
}

} // namespace

std::string json_object_text::take() {
  return close(out_, '{', '}');
}

json_array_text& json_array_text::raw(std::string_view json) {
  out_ += out_.empty() ? '[' : ',';
  out_ += json;
  return *this;
}

std::string json_array_text::take() {
  return close(out_, '[', ']');
}

} // namespace chime
