#include "net/delivery_message.hpp"

#include "actors/protocol.hpp"
#include "runtime/json_text.hpp"

#include <nlohmann/json.hpp>

#include <limits>

namespace chime {

namespace {

using json = nlohmann::json;

std::string to_text(const delivery_record& d) {
  return json_object_text{}
    .field("key", d.key)
    .field("user_id", d.user_id)
    .field("occasion", d.occasion)
    .field("local_date", d.local_date)
    .field("due_at_ms", d.due_at_ms)
    .take();
}

/// Reads a body straight into its deliveries, event by event: a document
/// of it first (nlohmann's, a std::map an object) was most of the AMQP
/// consumer's time in a burst. The same rules as reading one: the five
/// fields present, the strings strings, the instant an integer in int64's
/// range; an address and text (a message queued by an older node) read
/// when there; other fields passed over, whatever they hold.
enum class body_field { none, key, user_id, occasion, local_date, due_at_ms,
                        email, message, other };

constexpr unsigned bit(body_field f) {
  return 1u << static_cast<unsigned>(f);
}

class body_reader final : public nlohmann::json_sax<json> {
public:
  std::vector<delivery_record> read;

  bool null() override { return other_value(); }
  bool boolean(bool) override { return other_value(); }
  bool number_integer(number_integer_t n) override { return instant(n); }
  bool number_unsigned(number_unsigned_t n) override {
    // Past int64's range its conversion would be undefined: no instant.
    if (n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return other_value();
    return instant(static_cast<int64_t>(n));
  }
  bool number_float(number_float_t, const string_t&) override {
    return other_value();
  }
  bool binary(binary_t&) override { return other_value(); }

  bool string(string_t& s) override {
    if (skipping_ > 0)
      return true;
    if (!in_record_)
      return false;
    std::string* to = nullptr;
    switch (field_) {
      case field::key: to = &d_.key; break;
      case field::user_id: to = &d_.user_id; break;
      case field::occasion: to = &d_.occasion; break;
      case field::local_date: to = &d_.local_date; break;
      case field::email: to = &d_.email; break;
      case field::message: to = &d_.message; break;
      case field::other: break;
      default: return false;
    }
    if (to) {
      *to = std::move(s);
      seen_ |= bit(field_);
    }
    field_ = field::none;
    return true;
  }

  bool key(string_t& k) override {
    if (skipping_ > 0)
      return true;
    static const std::pair<const char*, field> names[] = {
      {"key", field::key},           {"user_id", field::user_id},
      {"occasion", field::occasion}, {"local_date", field::local_date},
      {"due_at_ms", field::due_at_ms}, {"email", field::email},
      {"message", field::message}};
    field_ = field::other;
    for (auto& [name, f] : names)
      if (k == name)
        field_ = f;
    return true;
  }

  bool start_object(std::size_t) override {
    if (enter_other())
      return true;
    if (in_record_ || (depth_ == 1 && !array_) || depth_ > 1)
      return false; // an object where a field's value belongs
    if (depth_ == 0)
      depth_ = 1; // one delivery
    in_record_ = true;
    d_ = delivery_record{};
    seen_ = 0;
    return true;
  }

  bool end_object() override {
    if (skipping_ > 0)
      return leave_other();
    if ((seen_ & required) != required)
      return false;
    in_record_ = false;
    d_.status = delivery_status::handed_off;
    read.push_back(std::move(d_));
    return true;
  }

  bool start_array(std::size_t) override {
    if (enter_other())
      return true;
    if (depth_ != 0)
      return false;
    depth_ = 1;
    array_ = true;
    return true;
  }

  bool end_array() override {
    if (skipping_ > 0)
      return leave_other();
    return !read.empty(); // an empty bundle carries nothing
  }

  bool parse_error(std::size_t, const std::string&,
                   const nlohmann::detail::exception&) override {
    return false;
  }

private:
  using field = body_field;
  static constexpr unsigned required = bit(field::key) | bit(field::user_id)
                                       | bit(field::occasion)
                                       | bit(field::local_date)
                                       | bit(field::due_at_ms);

  bool instant(int64_t n) {
    if (skipping_ > 0)
      return true;
    if (in_record_ && field_ == field::due_at_ms) {
      d_.due_at_ms = n;
      seen_ |= bit(field::due_at_ms);
      field_ = field::none;
      return true;
    }
    return other_value();
  }

  /// A scalar: fine as the value of a field passed over, else a wrong type.
  bool other_value() {
    if (skipping_ > 0)
      return true;
    if (in_record_ && field_ == field::other) {
      field_ = field::none;
      return true;
    }
    return false;
  }

  /// An object or array as the value of a field passed over (or inside one).
  bool enter_other() {
    if (skipping_ > 0 || (in_record_ && field_ == field::other)) {
      ++skipping_;
      return true;
    }
    return false;
  }

  bool leave_other() {
    if (--skipping_ == 0)
      field_ = field::none;
    return true;
  }

  int depth_ = 0; ///< 1 once the body's delivery or bundle began
  bool array_ = false;
  bool in_record_ = false;
  int skipping_ = 0; ///< depth inside a field passed over
  field field_ = field::none;
  unsigned seen_ = 0;
  delivery_record d_;
};

} // namespace

std::string to_message_body(const delivery_record& d) {
  return to_text(d);
}

std::string to_message_body(const std::vector<delivery_record>& ds) {
  if (ds.size() == 1)
    return to_message_body(ds.front());
  std::string out = "[";
  for (auto& d : ds) {
    if (out.size() > 1)
      out += ',';
    out += to_text(d);
  }
  out += ']';
  return out;
}

std::optional<std::vector<delivery_record>>
from_message_body(const std::string& body) {
  body_reader r;
  try {
    if (!json::sax_parse(body, &r) || r.read.empty())
      return std::nullopt;
  } catch (const json::exception&) {
    return std::nullopt;
  }
  return std::move(r.read);
}

} // namespace chime
