// Proves runtime/metrics: every family is rendered with HELP and TYPE from
// the start, before anything is counted; samples appear under their family
// with their labels; a family missing from the list is refused at once.

#include "runtime/metrics.hpp"

#include <catch2/catch.hpp>

#include <sstream>
#include <stdexcept>
#include <string>

TEST_CASE("every family has HELP and TYPE before anything is counted",
          "[metrics]") {
  auto text = chime::render_metrics();
  for (auto fam : {"chime_email_ambiguous_total", "chime_deliveries_total",
                   "chime_queue_depth", "chime_shards_owned"}) {
    INFO(fam);
    CHECK_THAT(text, Catch::Contains(std::string{"# HELP "} + fam + " "));
    CHECK_THAT(text, Catch::Contains(std::string{"# TYPE "} + fam + " "));
  }
  // Every TYPE line follows its HELP line.
  std::istringstream lines{text};
  std::string line, last;
  while (std::getline(lines, line)) {
    if (line.rfind("# TYPE ", 0) == 0)
      CHECK(last.rfind("# HELP " + line.substr(7, line.find(' ', 7) - 7) + " ", 0) == 0);
    last = line;
  }
}

TEST_CASE("a sample is rendered under its family, labels and all", "[metrics]") {
  chime::get_metric("chime_deliveries_total{status=\"sent\"}").add(3);
  auto text = chime::render_metrics();
  auto type = text.find("# TYPE chime_deliveries_total counter\n");
  auto sample = text.find("chime_deliveries_total{status=\"sent\"} 3\n");
  REQUIRE(type != std::string::npos);
  REQUIRE(sample != std::string::npos);
  CHECK(sample > type);
  CHECK(text.find("# HELP", type) > sample);
}

TEST_CASE("a metric of a family nobody listed is refused", "[metrics]") {
  CHECK_THROWS_AS(chime::get_metric("chime_made_up_total"), std::logic_error);
}
