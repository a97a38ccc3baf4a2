#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <date/date.h>

namespace chime {

struct user_record;

/// One kind of yearly message (birthday, anniversary, ...). Each kind is one
/// file under actors/occasions/ plus its line in `occasion_registry()`:
/// nothing else in Chime names a kind. Instances are shared and live for the
/// whole process; their send time is set once at start-up.
class occasion {
public:
  virtual ~occasion() = default;

  /// Stable name used in the API (it is also the JSON field that holds the
  /// user's date), idempotency keys and the database.
  virtual std::string_view name() const = 0;

  /// Whether every user must have a date for this occasion.
  virtual bool required() const {
    return false;
  }

  /// The message text sent to the user.
  virtual std::string message(const user_record& user) const = 0;

  /// The user's date for this occasion, if the user has a valid one.
  std::optional<date::year_month_day> date_of(const user_record& user) const;

  /// Local time of day the message is sent (default 09:00).
  std::chrono::minutes send_time() const {
    return send_time_;
  }
  void set_send_time(std::chrono::minutes t) {
    send_time_ = t;
  }

private:
  std::chrono::minutes send_time_{9 * 60};
};

using occasion_ptr = std::shared_ptr<occasion>;

/// Every registered occasion kind, in registration order.
const std::vector<occasion_ptr>& occasion_registry();

/// The kind registered under `name`, or null.
const occasion* find_occasion(std::string_view name);

/// Parses a real calendar date "YYYY-MM-DD".
std::optional<date::year_month_day> parse_date(std::string_view text);

} // namespace chime
