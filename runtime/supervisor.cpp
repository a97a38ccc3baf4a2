#include "runtime/supervisor.hpp"

#include "runtime/log.hpp"

#include <caf/all.hpp>

#include <optional>
#include <set>

namespace chime {

bool restart_intensity::admit() {
  auto now = now_();
  restarts_.push_back(now);
  while (!restarts_.empty() && now - restarts_.front() > window_)
    restarts_.pop_front();
  return restarts_.size() <= max_;
}

namespace {

using stop_timeout_atom = caf::atom_constant<caf::atom("sv_stopto")>;

struct child_slot {
  child_spec spec;
  caf::actor handle;
};

struct supervisor_state {
  std::string label;
  supervisor_options opts;
  std::vector<child_slot> children;
  std::optional<restart_intensity> intensity;
  uint64_t restart_count = 0;
  /// Children told to stop whose exit has not come yet.
  std::set<caf::actor_addr> stopping;
  /// Children (by place) to start once `stopping` is empty.
  std::set<size_t> to_start;
  /// Set when the supervisor itself is ending: it exits with this once its
  /// children are gone.
  std::optional<caf::error> ending;
  /// Counts stop rounds, so that a late time-out of an old one is ignored.
  uint64_t stop_round = 0;
  static inline const char* name = "chime.supervisor";
};

using supervisor_actor = caf::stateful_actor<supervisor_state>;

void report_entry(supervisor_actor* self) {
  auto& st = self->state;
  if (!st.opts.board)
    return;
  supervisor_entry e;
  e.name = st.label;
  e.strategy = st.opts.strategy;
  e.restart_max = st.opts.restart_max;
  e.restart_window_ms = st.opts.restart_window.count();
  for (auto& slot : st.children)
    e.children.push_back(
      supervised_child{slot.spec.name, slot.spec.supervisor, false, 0, {}, 0});
  st.opts.board->put(std::move(e));
}

void set_running(supervisor_actor* self, const child_slot& slot, bool running) {
  if (auto& board = self->state.opts.board)
    board->set_running(self->state.label, slot.spec.name, running);
}

void start_child(supervisor_actor* self, child_slot& slot) {
  slot.handle = slot.spec.start(self->system());
  self->link_to(slot.handle);
  set_running(self, slot, true);
}

/// Tells a running child to stop; its exit arrives as a down message.
void stop_child(supervisor_actor* self, child_slot& slot) {
  if (!slot.handle)
    return;
  self->unlink_from(slot.handle);
  self->monitor(slot.handle);
  self->state.stopping.insert(slot.handle.address());
  self->send_exit(slot.handle, caf::exit_reason::user_shutdown);
  set_running(self, slot, false);
  slot.handle = caf::actor{};
}

/// Goes on once every stopped child is gone: starts the successors in
/// order, or ends the supervisor.
void after_stops(supervisor_actor* self) {
  auto& st = self->state;
  if (!st.stopping.empty())
    return;
  if (st.ending) {
    self->quit(*st.ending);
    return;
  }
  auto starts = std::move(st.to_start);
  st.to_start.clear();
  for (auto i : starts)
    if (!st.children[i].handle)
      start_child(self, st.children[i]);
}

void arm_stop_timeout(supervisor_actor* self) {
  auto& st = self->state;
  if (st.stopping.empty())
    return;
  self->delayed_send(self, st.opts.stop_timeout, stop_timeout_atom::value,
                     ++st.stop_round);
}

/// Stops every child, then exits with `reason`.
void end(supervisor_actor* self, caf::error reason) {
  auto& st = self->state;
  st.ending = std::move(reason);
  for (auto i = st.children.rbegin(); i != st.children.rend(); ++i)
    stop_child(self, *i);
  arm_stop_timeout(self);
  after_stops(self);
}

void on_child_exit(supervisor_actor* self, size_t index, const caf::error& why) {
  auto& st = self->state;
  auto& failed = st.children[index];
  failed.handle = caf::actor{};
  set_running(self, failed, false);
  if (!why || st.ending)
    return;
  auto reason = self->system().render(why);
  if (!st.intensity->admit()) {
    log(log_level::error, "supervisor", "restart intensity exceeded",
        {{"supervisor", st.label}, {"child", failed.spec.name},
         {"reason", reason}});
    if (st.opts.board)
      st.opts.board->exited(st.label, failed.spec.name, reason);
    end(self, why);
    return;
  }
  ++st.restart_count;
  if (st.opts.board)
    st.opts.board->restarted(st.label, failed.spec.name, reason);
  log(log_level::warn, "supervisor", "restarting child",
      {{"supervisor", st.label}, {"child", failed.spec.name},
       {"reason", reason}});
  size_t first = index;
  size_t last = index + 1;
  switch (st.opts.strategy) {
    case restart_strategy::one_for_all:
      first = 0;
      last = st.children.size();
      break;
    case restart_strategy::rest_for_one:
      last = st.children.size();
      break;
    default:
      break;
  }
  // Stopped newest first, as they depend on the older ones.
  for (auto i = last; i-- > first;)
    stop_child(self, st.children[i]);
  for (auto i = first; i < last; ++i)
    st.to_start.insert(i);
  arm_stop_timeout(self);
  after_stops(self);
}

caf::behavior supervisor(supervisor_actor* self, std::string name,
                         supervisor_options opts,
                         std::vector<child_spec> specs) {
  auto& st = self->state;
  st.label = std::move(name);
  st.opts = std::move(opts);
  st.intensity.emplace(st.opts.restart_max, st.opts.restart_window,
                       st.opts.now);
  for (auto& spec : specs)
    st.children.push_back(child_slot{std::move(spec), {}});
  report_entry(self);
  for (auto& slot : st.children)
    start_child(self, slot);
  self->set_exit_handler([self](caf::exit_msg& msg) {
    auto& st = self->state;
    for (size_t i = 0; i < st.children.size(); ++i)
      if (st.children[i].handle
          && st.children[i].handle.address() == msg.source)
        return on_child_exit(self, i, msg.reason);
    // A child told to stop that ended on its own first: its down message
    // follows.
    if (st.stopping.count(msg.source) > 0)
      return;
    // Not one of ours: an exit from whoever supervises us.
    if (msg.reason && !st.ending)
      end(self, msg.reason);
  });
  self->set_down_handler([self](caf::down_msg& msg) {
    self->state.stopping.erase(msg.source);
    after_stops(self);
  });
  return {
    [self](caf::get_atom) -> uint64_t { return self->state.restart_count; },
    [self](stop_timeout_atom, uint64_t round) {
      auto& st = self->state;
      if (round != st.stop_round || st.stopping.empty())
        return;
      log(log_level::error, "supervisor", "children did not stop in time",
          {{"supervisor", st.label},
           {"still_running", static_cast<int64_t>(st.stopping.size())}});
      st.stopping.clear();
      after_stops(self);
    },
  };
}

} // namespace

caf::actor spawn_supervisor(caf::actor_system& sys, std::string name,
                            supervisor_options opts,
                            std::vector<child_spec> children) {
  return sys.spawn(supervisor, std::move(name), std::move(opts),
                   std::move(children));
}

child_spec supervisor_child(std::string name, supervisor_options opts,
                            std::vector<child_spec> children) {
  return child_spec{name,
                    [name, opts, children](caf::actor_system& sys) {
                      return spawn_supervisor(sys, name, opts, children);
                    },
                    true};
}

} // namespace chime
