#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace chime {

/// A user as the API, the journal and the shards see it. Dates are kept
/// as "YYYY-MM-DD" keyed by occasion name (the occasion's JSON field), so a
/// new occasion kind needs no new field here or column in the database.
struct user_record {
  std::string id;
  std::string first_name;
  std::string last_name;
  std::string email;
  std::string timezone;
  std::map<std::string, std::string> dates;
  int64_t created_at_ms = 0; ///< on Chime's clock; nothing is owed before it
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, user_record& x) {
  return f(x.id, x.first_name, x.last_name, x.email, x.timezone, x.dates,
           x.created_at_ms);
}

} // namespace chime
