#include "actors/occasion.hpp"

#include "actors/occasions/kinds.hpp"
#include "actors/user_record.hpp"

#include <charconv>

namespace chime {

const std::vector<occasion_ptr>& occasion_registry() {
  // Adding a kind: one file in occasions/, its factory in kinds.hpp and one
  // line here. Its date travels in user_record::dates under its name.
  static const std::vector<occasion_ptr> kinds = {
    make_birthday(),
    make_anniversary(),
  };
  return kinds;
}

const occasion* find_occasion(std::string_view name) {
  for (auto& kind : occasion_registry())
    if (kind->name() == name)
      return kind.get();
  return nullptr;
}

std::optional<date::year_month_day> parse_date(std::string_view text) {
  if (text.size() != 10 || text[4] != '-' || text[7] != '-')
    return std::nullopt;
  for (size_t i : {0, 1, 2, 3, 5, 6, 8, 9})
    if (text[i] < '0' || text[i] > '9')
      return std::nullopt;
  auto number = [&](size_t pos, size_t len) -> std::optional<int> {
    int n = 0;
    auto first = text.data() + pos;
    auto [end, ec] = std::from_chars(first, first + len, n);
    if (ec != std::errc{} || end != first + len)
      return std::nullopt;
    return n;
  };
  auto y = number(0, 4);
  auto m = number(5, 2);
  auto d = number(8, 2);
  if (!y || !m || !d)
    return std::nullopt;
  date::year_month_day ymd{date::year{*y}, date::month{static_cast<unsigned>(*m)},
                           date::day{static_cast<unsigned>(*d)}};
  if (!ymd.ok())
    return std::nullopt;
  return ymd;
}

std::optional<date::year_month_day>
occasion::date_of(const user_record& user) const {
  auto i = user.dates.find(std::string{name()});
  if (i == user.dates.end())
    return std::nullopt;
  return parse_date(i->second);
}

} // namespace chime
