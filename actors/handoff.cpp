#include "actors/handoff.hpp"

#include "actors/journal.hpp"
#include "actors/node_context.hpp"
#include "actors/sharding.hpp"
#include "runtime/directory.hpp"

#include <caf/all.hpp>

#include <map>
#include <memory>

namespace chime {

handoff_actor handoff_at(const directory& dir) {
  return caf::actor_cast<handoff_actor>(dir.get(handoff_name));
}

void report_handed(handoff_impl_actor::pointer self, const node_context& ctx,
                   const std::vector<std::string>& keys, int64_t at_ms,
                   std::function<void()> done) {
  std::map<const char*, std::vector<std::string>> by_journal;
  for (auto& key : keys)
    by_journal[send_journal_of(user_of_key(key), ctx.shard_count)].push_back(key);
  if (by_journal.empty()) {
    done();
    return;
  }
  auto left = std::make_shared<size_t>(by_journal.size());
  auto answered = [left, done] {
    if (--*left == 0)
      done();
  };
  for (auto& [name, part] : by_journal)
    self->request(journal_at(*ctx.dir, name), journal_timeout, handed_atom::value,
                  std::move(part), at_ms)
      .then([answered](caf::ok_atom) { answered(); },
            [answered](caf::error&) { answered(); });
}

} // namespace chime
