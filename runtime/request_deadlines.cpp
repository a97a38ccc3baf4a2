#include "runtime/request_deadlines.hpp"

namespace chime {

uint64_t request_deadlines::open(time_point deadline, on_error fail) {
  auto id = ++next_id_;
  auto at = by_deadline_.emplace(deadline, id);
  open_.emplace(id, wait{at, std::move(fail)});
  return id;
}

bool request_deadlines::close(uint64_t id) {
  auto i = open_.find(id);
  if (i == open_.end())
    return false;
  by_deadline_.erase(i->second.at);
  open_.erase(i);
  return true;
}

void request_deadlines::fail(uint64_t id, caf::error& err) {
  auto i = open_.find(id);
  if (i == open_.end())
    return;
  auto fn = std::move(i->second.fail);
  by_deadline_.erase(i->second.at);
  open_.erase(i);
  // Last: the handler may open new waits.
  fn(err);
}

void request_deadlines::expire(time_point now) {
  while (!by_deadline_.empty() && by_deadline_.begin()->first <= now) {
    auto err = caf::make_error(caf::sec::request_timeout);
    fail(by_deadline_.begin()->second, err);
  }
}

} // namespace chime
