#include "runtime/supervisor.hpp"

#include "runtime/log.hpp"

#include <caf/all.hpp>

#include <deque>

namespace chime {

namespace {

struct child_slot {
  child_spec spec;
  caf::actor handle;
};

struct supervisor_state {
  std::string label;
  supervisor_options opts;
  std::vector<child_slot> children;
  std::deque<std::chrono::steady_clock::time_point> restarts;
  uint64_t restart_count = 0;
  static inline const char* name = "chime.supervisor";
};

using supervisor_actor = caf::stateful_actor<supervisor_state>;

void start_child(supervisor_actor* self, child_slot& slot) {
  slot.handle = slot.spec.start(self->system());
  self->link_to(slot.handle);
}

void stop_child(supervisor_actor* self, child_slot& slot) {
  if (!slot.handle)
    return;
  self->unlink_from(slot.handle);
  self->send_exit(slot.handle, caf::exit_reason::user_shutdown);
  slot.handle = caf::actor{};
}

/// True while the restart intensity is within bounds after recording one more.
bool admit_restart(supervisor_actor* self) {
  auto& st = self->state;
  auto now = st.opts.now();
  st.restarts.push_back(now);
  while (!st.restarts.empty() && now - st.restarts.front() > st.opts.restart_window)
    st.restarts.pop_front();
  return st.restarts.size() <= st.opts.restart_max;
}

caf::behavior supervisor(supervisor_actor* self, std::string name,
                         supervisor_options opts,
                         std::vector<child_spec> specs) {
  auto& st = self->state;
  st.label = std::move(name);
  st.opts = std::move(opts);
  for (auto& spec : specs)
    st.children.push_back(child_slot{std::move(spec), {}});
  for (auto& slot : st.children)
    start_child(self, slot);
  // Children are linked: when this supervisor exits, for whatever reason
  // other than normal (it never exits normally), they exit with it.
  self->set_exit_handler([self](caf::exit_msg& msg) {
    auto& st = self->state;
    auto failed = std::find_if(st.children.begin(), st.children.end(),
                               [&](const child_slot& s) {
                                 return s.handle
                                        && s.handle.address() == msg.source;
                               });
    if (failed == st.children.end()) {
      // Not one of ours: an exit from whoever supervises us.
      if (msg.reason)
        self->quit(msg.reason);
      return;
    }
    if (!msg.reason) {
      failed->handle = caf::actor{};
      return;
    }
    auto reason = self->system().render(msg.reason);
    if (!admit_restart(self)) {
      log(log_level::error, "supervisor", "restart intensity exceeded",
          {{"supervisor", st.label}, {"child", failed->spec.name},
           {"reason", reason}});
      self->quit(msg.reason);
      return;
    }
    ++st.restart_count;
    log(log_level::warn, "supervisor", "restarting child",
        {{"supervisor", st.label}, {"child", failed->spec.name},
         {"reason", reason}});
    failed->handle = caf::actor{};
    auto first = failed;
    auto last = std::next(failed);
    switch (st.opts.strategy) {
      case restart_strategy::one_for_all:
        first = st.children.begin();
        last = st.children.end();
        break;
      case restart_strategy::rest_for_one:
        last = st.children.end();
        break;
      default:
        break;
    }
    for (auto i = first; i != last; ++i)
      stop_child(self, *i);
    for (auto i = first; i != last; ++i)
      start_child(self, *i);
  });
  return {
    [self](caf::get_atom) -> uint64_t { return self->state.restart_count; },
  };
}

} // namespace

caf::actor spawn_supervisor(caf::actor_system& sys, std::string name,
                            supervisor_options opts,
                            std::vector<child_spec> children) {
  return sys.spawn(supervisor, std::move(name), std::move(opts),
                   std::move(children));
}

} // namespace chime
