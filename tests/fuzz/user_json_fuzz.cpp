// Fuzzes the API's request decoding (net/user_json.hpp): the create and
// update bodies, the join body, and the id, key and cursor validators, all on
// the same input. Properties: a body that parses also parses back from the
// API's own representation of the user to the same user (a GET's body can be
// PUT back), and the UTF-8 check agrees with nlohmann_json's own.

#include "actors/protocol.hpp"
#include "net/user_json.hpp"
#include "tests/fuzz/fuzz_check.hpp"

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <string>

namespace {

using namespace chime;

constexpr uint32_t shard_count = 256;
const std::string some_id = "0b7e6a52-3c1d-4f7e-9a40-2f5d9c3e8b11";

// A fixed "today": the validator refuses dates after it.
instant fuzz_now() {
  return from_ms(1805068800000); // 2027-03-15T00:00:00Z
}

void check_get_put_round_trip(const user_record& parsed) {
  user_view v;
  v.user = parsed;
  v.user.id = some_id;
  auto body = user_view_json(v, shard_count);
  auto again = parse_user_update(body, fuzz_now(), some_id, shard_count);
  CHIME_FUZZ_CHECK(!again.error);
  auto& u = again.user;
  CHIME_FUZZ_CHECK(u.first_name == parsed.first_name);
  CHIME_FUZZ_CHECK(u.last_name == parsed.last_name);
  CHIME_FUZZ_CHECK(u.email == parsed.email);
  CHIME_FUZZ_CHECK(u.timezone == parsed.timezone);
  CHIME_FUZZ_CHECK(u.dates == parsed.dates);
}

void check_utf8_agrees_with_json(const std::string& text) {
  bool valid_json_string = true;
  try {
    (void) nlohmann::json(text).dump();
  } catch (const nlohmann::json::type_error&) {
    valid_json_string = false;
  }
  CHIME_FUZZ_CHECK(invalid_utf8_at(text).has_value() != valid_json_string);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  check_utf8_agrees_with_json(text);
  if (auto created = parse_user(text, fuzz_now()); !created.error)
    check_get_put_round_trip(created.user);
  if (auto updated = parse_user_update(text, fuzz_now(), some_id, shard_count);
      !updated.error)
    check_get_put_round_trip(updated.user);
  auto seed = parse_seed(text);
  CHIME_FUZZ_CHECK(seed.error || !seed.value.empty());
  // A cursor is a user id; a delivery key starts with one.
  if (is_delivery_key(text))
    CHIME_FUZZ_CHECK(is_user_id(text.substr(0, 36)));
  if (is_user_id(text))
    CHIME_FUZZ_CHECK(!is_delivery_key(text));
  return 0;
}
