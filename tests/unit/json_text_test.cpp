// Proves the JSON written straight into text (runtime/json_text.hpp) reads
// back, through nlohmann::json, as the values written: quotes, backslashes,
// control characters and non-ASCII text included.

#include "runtime/json_text.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <string>

namespace chime {
namespace {

TEST_CASE("an object written as text reads back field for field",
          "[unit][json]") {
  const std::string awkward = "say \"hi\"\\ \n\t\r\b\f\x01\x1f zoë ✓";
  auto text = json_object_text{}
                .field("plain", "ada@example.com")
                .field("awkward", awkward)
                .field("empty", "")
                .field("n", int64_t{-1'800'003'600'000})
                .take();
  auto j = nlohmann::json::parse(text);
  CHECK(j.at("plain") == "ada@example.com");
  CHECK(j.at("awkward") == awkward);
  CHECK(j.at("empty") == "");
  CHECK(j.at("n") == -1'800'003'600'000);
  CHECK(j.size() == 4);
  CHECK(json_object_text{}.take() == "{}");
}

TEST_CASE("objects and arrays nest through raw fields and read back whole",
          "[unit][json]") {
  json_array_text list;
  for (int64_t n : {1, 2})
    list.raw(json_object_text{}.field("n", n).take());
  auto text = json_object_text{}
                .raw_field("inner", json_object_text{}.field("a", "b").take())
                .raw_field("list", list.take())
                .raw_field("none", json_array_text{}.take())
                .take();
  auto j = nlohmann::json::parse(text);
  CHECK(j.at("inner") == nlohmann::json{{"a", "b"}});
  CHECK(j.at("list") == nlohmann::json::parse(R"([{"n":1},{"n":2}])"));
  CHECK(j.at("none") == nlohmann::json::array());
  CHECK(list.take() == "[]"); // emptied by the take before
}

TEST_CASE("a control character is written as a \\u escape", "[unit][json]") {
  std::string out;
  append_json_string(out, std::string{"a\x01z", 3});
  CHECK(out == "\"a\\u0001z\"");
}

} // namespace
} // namespace chime
