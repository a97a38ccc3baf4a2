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

std::optional<delivery_record> from_json(const json& j) {
  delivery_record d;
  d.key = j.at("key").get<std::string>();
  d.user_id = j.at("user_id").get<std::string>();
  d.occasion = j.at("occasion").get<std::string>();
  d.local_date = j.at("local_date").get<std::string>();
  // nlohmann_json keeps an integer past int64's range as a double, whose
  // conversion would be undefined: only an int64 is an instant.
  auto& due = j.at("due_at_ms");
  if (!due.is_number_integer()
      || (due.is_number_unsigned()
          && due.get<uint64_t>() > std::numeric_limits<int64_t>::max()))
    return std::nullopt;
  d.due_at_ms = due.get<int64_t>();
  // What is sent is rendered from the user the re-check reads, so a
  // message carries no address nor text; one queued by an older node may.
  d.email = j.value("email", std::string{});
  d.message = j.value("message", std::string{});
  d.status = delivery_status::handed_off;
  return d;
}

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
  try {
    auto j = json::parse(body);
    std::vector<delivery_record> out;
    if (!j.is_array()) {
      auto d = from_json(j);
      if (!d)
        return std::nullopt;
      out.push_back(std::move(*d));
      return out;
    }
    if (j.empty())
      return std::nullopt;
    for (auto& item : j) {
      auto d = from_json(item);
      if (!d)
        return std::nullopt;
      out.push_back(std::move(*d));
    }
    return out;
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

} // namespace chime
