// Proves the broker message format (net/delivery_message.hpp): one delivery
// is an object, a bundle an array, both read back field for field (but the
// address and text, rendered after the re-check); an empty
// bundle, or one with a single bad delivery, is refused whole (the consumer
// dead-letters it) rather than half read.

#include "actors/protocol.hpp"
#include "net/delivery_message.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

namespace chime {
namespace {

delivery_record numbered(int n) {
  auto id = "u" + std::to_string(n);
  return delivery_record{id + ":birthday:2027-01-15", id, "birthday",
                         "2027-01-15", 1'800'003'600'000 + n, delivery_status::scheduled,
                         0, "", 0, id + "@example.com",
                         "Hey, " + id + " it's your birthday"};
}

TEST_CASE("a bundle of deliveries reads back as the deliveries it carries",
          "[unit][message]") {
  std::vector<delivery_record> ds{numbered(1), numbered(2), numbered(3)};
  auto body = to_message_body(ds);
  CHECK(body.front() == '[');
  auto back = from_message_body(body);
  REQUIRE(back.has_value());
  REQUIRE(back->size() == 3);
  for (size_t i = 0; i < ds.size(); ++i) {
    CHECK((*back)[i].key == ds[i].key);
    CHECK((*back)[i].user_id == ds[i].user_id);
    CHECK((*back)[i].occasion == ds[i].occasion);
    CHECK((*back)[i].local_date == ds[i].local_date);
    // Rendered after the re-check, from the user as they are then.
    CHECK((*back)[i].email.empty());
    CHECK((*back)[i].message.empty());
    CHECK((*back)[i].due_at_ms == ds[i].due_at_ms);
    CHECK((*back)[i].status == delivery_status::handed_off);
  }
  // One delivery travels as before bundles: an object.
  auto single = to_message_body(std::vector<delivery_record>{numbered(4)});
  CHECK(single == to_message_body(numbered(4)));
  CHECK(single.front() == '{');
  REQUIRE(from_message_body(single).has_value());
  CHECK(from_message_body(single)->size() == 1);
}

TEST_CASE("a delivery queued with its address and text still reads",
          "[unit][message]") {
  auto back = from_message_body(
    R"({"key":"u1:birthday:2027-01-15","user_id":"u1","occasion":"birthday",)"
    R"("local_date":"2027-01-15","due_at_ms":1800003600001,)"
    R"("email":"u1@example.com","message":"Hey"})");
  REQUIRE(back.has_value());
  CHECK(back->front().email == "u1@example.com");
  CHECK(back->front().message == "Hey");
}

TEST_CASE("an empty bundle or one with a bad delivery is refused whole",
          "[unit][message]") {
  CHECK_FALSE(from_message_body("[]").has_value());
  auto body = to_message_body(std::vector<delivery_record>{numbered(1), numbered(2)});
  auto broken = body.substr(0, body.rfind("\"due_at_ms\"")) + "\"due_at_ms\":\"x\"}]";
  CHECK_FALSE(from_message_body(broken).has_value());
  CHECK_FALSE(from_message_body("[1, 2]").has_value());
}

TEST_CASE("a delivery's other fields are passed over, and a field of the "
          "wrong kind refuses the message",
          "[unit][message]") {
  auto with = [](const std::string& more) {
    return R"({"key":"u1:birthday:2027-01-15","user_id":"u1",)"
           R"("occasion":"birthday","local_date":"2027-01-15",)" + more + "}";
  };
  auto back = from_message_body(
    with(R"("trace":{"a":[1,{"b":null}],"c":"d"},"due_at_ms":7,"x":[[]])"));
  REQUIRE(back.has_value());
  CHECK(back->front().due_at_ms == 7);
  CHECK(back->front().key == "u1:birthday:2027-01-15");
  // Each of these alone refuses it.
  for (auto bad : {R"("due_at_ms":9223372036854775808)", R"("due_at_ms":1.5)",
                   R"("due_at_ms":"7")", R"("due_at_ms":7,"email":3)",
                   R"("due_at_ms":7,"key":null)", R"("due_at_ms":[7])",
                   R"("other":1)"})
    CHECK_FALSE(from_message_body(with(bad)).has_value());
  CHECK(from_message_body(with(R"("due_at_ms":9223372036854775807)")).has_value());
  CHECK(from_message_body(with(R"("due_at_ms":-5)"))->front().due_at_ms == -5);
  for (auto bad : {"7", "\"x\"", "null", "[[]]", "[{}]", "{}", "", "[",
                   "{\"key\":"})
    CHECK_FALSE(from_message_body(bad).has_value());
  auto good = with(R"("due_at_ms":7)");
  CHECK(from_message_body("[" + good + "," + good + "]")->size() == 2);
  CHECK_FALSE(from_message_body("[" + good + ",7]").has_value());
  CHECK_FALSE(from_message_body("[" + good + ",[" + good + "]]").has_value());
  CHECK_FALSE(from_message_body(good + good).has_value());
}

} // namespace
} // namespace chime
