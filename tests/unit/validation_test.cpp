// Proves that parse_user (net/user_json.hpp) accepts a valid POST/PUT body and
// rejects each kind of bad input with a 400 problem whose `field` and `detail`
// name the offending field: malformed JSON (with its byte position), missing,
// unknown or mistyped fields, bad emails, unreal or future dates, unknown time
// zones and names that are empty or over 200 characters. Bodies are built
// with nlohmann::json from a valid one with one change each; "today" is fixed
// by passing `now`.

#include "actors/delivery_status.hpp"
#include "net/user_json.hpp"

#include "runtime/clock.hpp"

#include <catch2/catch.hpp>
#include <date/date.h>
#include <nlohmann/json.hpp>

#include <string>

namespace {

using json = nlohmann::json;

/// 2027-03-15T12:00:00Z.
const chime::instant now_instant
  = chime::from_sys(date::sys_days{date::year{2027} / 3 / 15})
    + std::chrono::hours{12};

json valid_body() {
  return json{{"first_name", "Ada"},
              {"last_name", "Lovelace"},
              {"email", "ada@example.com"},
              {"birthday", "1990-03-15"},
              {"anniversary", "2015-06-01"},
              {"timezone", "Asia/Kathmandu"}};
}

chime::parsed_user parse(const json& body,
                         chime::instant now = now_instant) {
  return chime::parse_user(body.dump(), now);
}

/// Checks that `r` was rejected with a 400 naming `field`.
void require_rejected(const chime::parsed_user& r, const std::string& field) {
  REQUIRE(r.error.has_value());
  CHECK(r.error->status == 400);
  CHECK(r.error->field == field);
  CHECK_THAT(r.error->detail, Catch::Contains(field));
}

std::string repeat(const std::string& unit, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i)
    out += unit;
  return out;
}

} // namespace

TEST_CASE("a valid body is accepted with every field", "[net][validation]") {
  auto r = parse(valid_body());
  REQUIRE_FALSE(r.error.has_value());
  CHECK(r.user.first_name == "Ada");
  CHECK(r.user.last_name == "Lovelace");
  CHECK(r.user.email == "ada@example.com");
  CHECK(r.user.timezone == "Asia/Kathmandu");
  CHECK(r.user.dates.at("birthday") == "1990-03-15");
  CHECK(r.user.dates.at("anniversary") == "2015-06-01");
  CHECK(r.user.dates.size() == 2);
}

TEST_CASE("malformed JSON is a 400 that gives the byte position",
          "[net][validation]") {
  // The parser stops at the '}' that should have been a value: byte 16
  // (1-based) of {"first_name": }.
  auto r = chime::parse_user(R"({"first_name": })", now_instant);
  REQUIRE(r.error.has_value());
  CHECK(r.error->status == 400);
  CHECK_THAT(r.error->detail, Catch::Contains("byte 16"));
  auto empty = chime::parse_user("", now_instant);
  REQUIRE(empty.error.has_value());
  CHECK(empty.error->status == 400);
  CHECK_THAT(empty.error->detail, Catch::Contains("byte"));
}

TEST_CASE("a body that is not a JSON object is rejected", "[net][validation]") {
  for (auto text : {"[1, 2]", "\"Ada\"", "42", "null"}) {
    auto r = chime::parse_user(text, now_instant);
    REQUIRE(r.error.has_value());
    CHECK(r.error->status == 400);
  }
}

TEST_CASE("each required field must be present", "[net][validation]") {
  for (auto field :
       {"first_name", "last_name", "email", "birthday", "timezone"}) {
    INFO(field);
    auto body = valid_body();
    body.erase(field);
    require_rejected(parse(body), field);
  }
}

TEST_CASE("an unknown field is rejected and named", "[net][validation]") {
  auto body = valid_body();
  body["nickname"] = "Countess";
  auto r = parse(body);
  require_rejected(r, "nickname");
}

TEST_CASE("a malformed email is rejected", "[net][validation]") {
  auto label_too_long = "ada@" + std::string(64, 'a') + ".com";
  for (auto email : {"", "not-an-email", "ada@", "@example.com",
                     "ada @example.com", "ada@exa mple.com", "ada@@example.com",
                     "ada@example..com", "ada@example", "ada@-example.com",
                     "ada@example-.com", "ada(x)@example.com",
                     "ada@exa_mple.com", "ada@example.com.",
                     label_too_long.c_str()}) {
    INFO(email);
    auto body = valid_body();
    body["email"] = email;
    require_rejected(parse(body), "email");
  }
}

TEST_CASE("an ordinary email address with dots, plus and subdomains is accepted",
          "[net][validation]") {
  auto body = valid_body();
  body["email"] = "ada.lovelace+chime@mail.example.co.uk";
  auto r = parse(body);
  REQUIRE_FALSE(r.error.has_value());
  CHECK(r.user.email == "ada.lovelace+chime@mail.example.co.uk");
}

TEST_CASE("a date that is not on the calendar is rejected", "[net][validation]") {
  for (auto text : {"2023-02-30", "2023-02-29", "1990-13-01", "1990-3-15",
                    "15/03/1990", "19900315", ""}) {
    INFO(text);
    auto body = valid_body();
    body["birthday"] = text;
    require_rejected(parse(body), "birthday");
  }
  auto body = valid_body();
  body["anniversary"] = "2023-02-30";
  require_rejected(parse(body), "anniversary");
}

TEST_CASE("a leap day in a leap year is a real date", "[net][validation]") {
  auto body = valid_body();
  body["birthday"] = "2024-02-29";
  auto r = parse(body);
  REQUIRE_FALSE(r.error.has_value());
  CHECK(r.user.dates.at("birthday") == "2024-02-29");
}

TEST_CASE("a date after today is rejected and today is accepted",
          "[net][validation]") {
  auto body = valid_body();
  body["timezone"] = "Etc/UTC";
  body["birthday"] = "2027-03-16";
  auto future = parse(body);
  require_rejected(future, "birthday");
  CHECK_THAT(future.error->detail, Catch::Contains("future"));

  body["birthday"] = "2027-03-15";
  CHECK_FALSE(parse(body).error.has_value());

  body["anniversary"] = "2030-01-01";
  require_rejected(parse(body), "anniversary");
}

TEST_CASE("today is the user's local date", "[net][validation]") {
  // At 2027-03-14T19:00Z it is already 2027-03-15 09:00 in Kiritimati but
  // still 2027-03-14 09:00 in Honolulu.
  auto at = chime::from_sys(date::sys_days{date::year{2027} / 3 / 14})
            + std::chrono::hours{19};
  auto body = valid_body();
  body["birthday"] = "2027-03-15";
  body["timezone"] = "Pacific/Kiritimati";
  CHECK_FALSE(parse(body, at).error.has_value());
  body["timezone"] = "Pacific/Honolulu";
  require_rejected(parse(body, at), "birthday");
}

TEST_CASE("an unknown time zone is rejected and named", "[net][validation]") {
  auto body = valid_body();
  body["timezone"] = "Mars/Olympus";
  auto r = parse(body);
  require_rejected(r, "timezone");
  CHECK_THAT(r.error->detail, Catch::Contains("Mars/Olympus"));
}

TEST_CASE("a name may have 200 characters but not 201", "[net][validation]") {
  for (auto field : {"first_name", "last_name"}) {
    INFO(field);
    auto body = valid_body();
    body[field] = std::string(200, 'a');
    auto ok = parse(body);
    REQUIRE_FALSE(ok.error.has_value());
    auto& kept = std::string{field} == "first_name" ? ok.user.first_name
                                                    : ok.user.last_name;
    CHECK(kept == std::string(200, 'a'));

    body[field] = std::string(201, 'a');
    auto r = parse(body);
    require_rejected(r, field);
    CHECK_THAT(r.error->detail, Catch::Contains("200"));
  }
}

TEST_CASE("name length counts characters, not bytes", "[net][validation]") {
  auto body = valid_body();
  body["first_name"] = repeat("\xC3\xA9", 200); // 200 x U+00E9, 400 bytes
  auto ok = parse(body);
  REQUIRE_FALSE(ok.error.has_value());
  CHECK(ok.user.first_name.size() == 400);

  body["first_name"] = repeat("\xC3\xA9", 201);
  require_rejected(parse(body), "first_name");

  body["first_name"] = repeat("\xF0\x9F\x8E\x82", 200); // 200 x U+1F382
  CHECK_FALSE(parse(body).error.has_value());
}

TEST_CASE("an empty or blank name is rejected", "[net][validation]") {
  for (auto field : {"first_name", "last_name"}) {
    for (auto blank : {"", " ", "   ", "\t", " \n "}) {
      INFO(field << " = '" << blank << "'");
      auto body = valid_body();
      body[field] = blank;
      require_rejected(parse(body), field);
    }
  }
}

TEST_CASE("a field of the wrong JSON type is rejected", "[net][validation]") {
  struct wrong {
    const char* field;
    json value;
  };
  for (auto& [field, value] :
       {wrong{"first_name", 42}, wrong{"last_name", json::array({"Love"})},
        wrong{"email", nullptr}, wrong{"timezone", json::object()},
        wrong{"birthday", 19900315}, wrong{"anniversary", true},
        wrong{"first_name", nullptr}}) {
    INFO(field << " = " << value.dump());
    auto body = valid_body();
    body[field] = value;
    require_rejected(parse(body), field);
  }
}

TEST_CASE("the anniversary is optional: absent or null", "[net][validation]") {
  auto body = valid_body();
  body.erase("anniversary");
  auto absent = parse(body);
  REQUIRE_FALSE(absent.error.has_value());
  CHECK(absent.user.dates.count("anniversary") == 0);
  CHECK(absent.user.dates.at("birthday") == "1990-03-15");

  body["anniversary"] = nullptr;
  auto null = parse(body);
  REQUIRE_FALSE(null.error.has_value());
  CHECK(null.user.dates.count("anniversary") == 0);
}

TEST_CASE("the birthday may not be null", "[net][validation]") {
  auto body = valid_body();
  body["birthday"] = nullptr;
  require_rejected(parse(body), "birthday");
}

TEST_CASE("a problem renders as RFC 7807 JSON with its field",
          "[net][validation]") {
  auto body = valid_body();
  body["nickname"] = "Countess";
  auto r = parse(body);
  REQUIRE(r.error.has_value());
  auto out = json::parse(chime::problem_json(*r.error));
  CHECK(out.at("status") == 400);
  CHECK(out.at("field") == "nickname");
  CHECK(out.at("detail").get<std::string>().find("nickname")
        != std::string::npos);
  CHECK(out.contains("title"));
  CHECK(out.contains("type"));
}

TEST_CASE("a name with a control character is rejected naming the field",
          "[net][validation]") {
  for (auto bad : {std::string{"Ada\0x", 5}, std::string{"Ada\n"},
                   std::string{"A\x7f"}}) {
    auto body = valid_body();
    body["last_name"] = bad;
    require_rejected(parse(body), "last_name");
  }
}

TEST_CASE("a body that is not UTF-8 is a 400 giving the byte, never a throw",
          "[net][validation]") {
  auto text = valid_body().dump();
  auto at = text.find("Ada");
  for (auto bad : {"\xff", "\xc0\xaf", "\xed\xa0\x80", "\xe2\x82", "\xf4\x90\x80\x80"}) {
    auto broken = text;
    broken.insert(at, bad);
    auto r = chime::parse_user(broken, now_instant);
    REQUIRE(r.error.has_value());
    CHECK(r.error->status == 400);
    CHECK_THAT(r.error->detail, Catch::Contains("UTF-8")
                                  && Catch::Contains(std::to_string(at)));
  }
  CHECK_FALSE(chime::invalid_utf8_at("Ad\xc3\xa1 \xe2\x82\xac \xf0\x9f\x8e\x82"));
  // A problem quoting bytes that are not UTF-8 is still a document.
  auto doc = chime::problem_json({400, "Bad", "quoted '\xff'", "x"});
  CHECK(json::parse(doc)["status"] == 400);
}

TEST_CASE("only ids and keys Chime makes name a user or a delivery",
          "[net][validation]") {
  auto id = std::string{"0f8b9c1e-3a2d-4e5f-8a9b-0c1d2e3f4a5b"};
  CHECK(chime::is_user_id(id));
  for (auto bad : {"", "\xff", "0f8b9c1e", "0f8b9c1e-3a2d-4e5f-8a9b-0c1d2e3f4a5bx",
                   "0f8b9c1e_3a2d-4e5f-8a9b-0c1d2e3f4a5b", "0f8b9c1e-3a2d-4e5f-8a9b-0c1d2e3f4a5g"})
    CHECK_FALSE(chime::is_user_id(bad));
  CHECK(chime::is_delivery_key(id + ":birthday:2027-03-15"));
  CHECK_FALSE(chime::is_delivery_key(id));
  CHECK_FALSE(chime::is_delivery_key(id + ":birthday:\xff"));
}

TEST_CASE("each delivery status reads back from its name, and only scheduled, "
          "handed_off and failed are open",
          "[unit][status]") {
  using chime::delivery_status;
  for (auto s : chime::all_delivery_statuses)
    CHECK(chime::parse_delivery_status(chime::to_string(s)) == s);
  CHECK_FALSE(chime::parse_delivery_status("pending"));
  CHECK(chime::is_open(delivery_status::scheduled));
  CHECK(chime::is_open(delivery_status::handed_off));
  CHECK(chime::is_open(delivery_status::failed));
  for (auto s : {delivery_status::sent, delivery_status::dead,
                 delivery_status::expired, delivery_status::cancelled})
    CHECK_FALSE(chime::is_open(s));
  CHECK(chime::status_name(delivery_status::handed_off) == "handed_off");
  CHECK_THROWS_AS(chime::status_named("pending"), std::invalid_argument);
  CHECK(chime::open_statuses_sql() == "('scheduled', 'handed_off', 'failed')");
}
