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

TEST_CASE("a control character is written as a \\u escape", "[unit][json]") {
  std::string out;
  append_json_string(out, std::string{"a\x01z", 3});
  CHECK(out == "\"a\\u0001z\"");
}

} // namespace
} // namespace chime
