#include "net/delivery_message.hpp"

#include "actors/protocol.hpp"

#include <nlohmann/json.hpp>

#include <limits>

namespace chime {

using json = nlohmann::json;

std::string to_message_body(const delivery_record& d) {
  return json{{"key", d.key},           {"user_id", d.user_id},
              {"occasion", d.occasion}, {"local_date", d.local_date},
              {"due_at_ms", d.due_at_ms}, {"email", d.email},
              {"message", d.message}}
    .dump();
}

std::optional<delivery_record> from_message_body(const std::string& body) {
  try {
    auto j = json::parse(body);
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
    d.email = j.at("email").get<std::string>();
    d.message = j.at("message").get<std::string>();
    d.status = "handed_off";
    return d;
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

} // namespace chime
