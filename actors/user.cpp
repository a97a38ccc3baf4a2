#include "actors/user.hpp"

#include "actors/occasion.hpp"
#include "actors/protocol.hpp"
#include "runtime/log.hpp"

namespace chime {

std::optional<fire_request> plan_fire(const node_context& ctx,
                                      const user_view& v,
                                      const due_entry& entry) {
  auto kind = find_occasion(entry.occasion);
  auto zone = find_zone(v.user.timezone);
  auto date = kind ? kind->date_of(v.user) : std::nullopt;
  if (kind == nullptr || zone == nullptr || !date) {
    log(log_level::warn, "user", "due entry without a valid occasion",
        {{"user_id", v.user.id}, {"occasion", entry.occasion}});
    return std::nullopt;
  }
  auto now = ctx.clock->now();
  auto due_at = from_ms(entry.due_at_ms);
  auto next = next_due(*date, zone, kind->send_time(), ctx.rules.feb29,
                       due_at + millis{1});
  auto local = parse_date(entry.local_date).value_or(next.local_date);
  fire_request req;
  req.user_id = v.user.id;
  req.due = entry;
  req.next = due_entry{entry.occasion, to_ms(next.at),
                       format_date(next.local_date)};
  req.at_ms = to_ms(now);
  auto& d = req.delivery;
  d.key = idempotency_key(v.user.id, entry.occasion, local);
  d.user_id = v.user.id;
  d.occasion = entry.occasion;
  d.local_date = entry.local_date;
  d.due_at_ms = entry.due_at_ms;
  d.status = is_expired(due_at, now, ctx.rules) ? delivery_status::expired
                                                   : delivery_status::scheduled;
  d.email = v.user.email;
  d.message = kind->message(v.user);
  return req;
}

} // namespace chime
