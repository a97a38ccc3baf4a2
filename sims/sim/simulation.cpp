#include "sims/sim/simulation.hpp"

#include "actors/mailer_front.hpp"
#include "actors/node_children.hpp"
#include "actors/occasion.hpp"
#include "actors/protocol.hpp"
#include "actors/user_commands.hpp"
#include "actors/cluster_view.hpp"
#include "actors/sharding.hpp"
#include "cluster/membership.hpp"
#include "cluster/node.hpp"
#include "config/settings.hpp"
#include "runtime/log.hpp"
#include "sims/sim/env.hpp"
#include "sims/sim/memory_broker.hpp"
#include "sims/sim/memory_coordination.hpp"
#include "sims/sim/memory_email.hpp"
#include "sims/sim/memory_journal.hpp"
#include "sims/sim/oracle.hpp"

#include <caf/all.hpp>
#include <caf/scheduler/test_coordinator.hpp>
#include <date/tz.h>

#include <limits>
#include <map>
#include <set>
#include <unordered_map>

namespace chime::sim {

namespace {

using namespace std::chrono_literals;

constexpr int64_t day_ms = 86400000;
constexpr int64_t never = std::numeric_limits<int64_t>::max();

/// Chime's clock in the simulator: the test coordinator's virtual time.
class sim_clock final : public clock {
public:
  explicit sim_clock(const env* e) : e_(e) {
  }
  instant now() const override {
    return e_->now();
  }
  std::chrono::microseconds real_delay(millis span) const override {
    return std::max(std::chrono::microseconds{0},
                    std::chrono::duration_cast<std::chrono::microseconds>(span));
  }

private:
  const env* e_;
};

/// What the checker knows of one user from its side of the API (what the
/// journal committed is in its history).
struct user_track {
  user_record created;
  int64_t delete_acked_ms = never;
};

struct node_slot {
  std::shared_ptr<node_context> ctx;
  caf::actor root;
  caf::actor journal; ///< its own journal connection, in a cluster
  uint32_t incarnation = 0;
  std::string owner;
  std::string name; ///< its name in the cluster, "n0"
  int64_t down_since_ms = -1;
};

/// The lease of the simulated cluster: long against the simulator's step,
/// so that rounds (a sixth of it) stay few over a simulated year.
constexpr auto sim_lease = std::chrono::minutes{10};

class simulation {
public:
  explicit simulation(const sim_options& opts)
    : opts_(opts), e_(opts.seed), sys_(sys_cfg_),
      sched_(dynamic_cast<caf::scheduler::test_coordinator&>(sys_.scheduler())) {
  }

  sim_report run();

private:

  void start_node(uint32_t i);
  void crash_node(uint32_t i);
  void schedule(int64_t at_ms, std::function<void()> fn) {
    events_.emplace(at_ms, std::move(fn));
  }
  void plan_workload();
  void plan_faults();
  void run_loop(int64_t end_ms);
  user_record random_user(const std::string& id);
  void issue_create(const std::string& id);
  void issue_update();
  void issue_delete();
  caf::actor live_commands(const std::string& user_id);
  void check(sim_report& r);
  void check_owed(sim_report& r, const std::map<std::string, owed_occurrence>& owed,
                  const std::unordered_map<std::string, std::vector<size_t>>& copies);
  void check_duplicates(sim_report& r,
                        const std::map<std::string, owed_occurrence>& owed,
                        const std::unordered_map<std::string, std::vector<size_t>>& copies);
  void add_fault(int64_t until_ms, bool costs_a_lease);
  lateness_bound bound() const;
  oracle_rules rules() const;
  void violation(sim_report& r, std::string what) {
    ++r.violations;
    if (r.violation_samples.size() < 8)
      r.violation_samples.push_back(std::move(what));
  }

  sim_options opts_;
  env e_;
  /// Deterministic scheduling: one thread, a job queue, virtual time.
  struct testing_config : caf::actor_system_config {
    testing_config() {
      set("scheduler.policy", caf::atom("testing"));
      add_chime_types(*this);
    }
  };

  testing_config sys_cfg_;
  caf::actor_system sys_;
  caf::scheduler::test_coordinator& sched_;
  settings base_;
  std::shared_ptr<journal_store> store_ = std::make_shared<journal_store>();
  std::shared_ptr<email_ledger> ledger_ = std::make_shared<email_ledger>();
  std::shared_ptr<lease_store> leases_;
  std::shared_ptr<address_book> book_ = std::make_shared<address_book>();
  caf::actor coordination_;
  /// Sends a node made for a shard it did not hold in the lease table.
  std::vector<std::string> fenced_sends_;
  /// Sends under a newer lease of a key whose first sender lost its lease
  /// before journaling the outcome: each excuses one copy (the fence's
  /// window).
  std::map<std::string, uint32_t> fence_window_;
  std::map<std::string, std::pair<std::string, uint64_t>> first_send_;
  std::map<std::pair<uint32_t, uint64_t>, std::string> epoch_sender_;
  int64_t disrupted_until_ms_ = 0; ///< the last partition or outage ends
  uint64_t takeover_checks_ = 0;
  bool cluster_mode() const { return opts_.nodes > 1; }
  void on_send(uint32_t i, const std::string& key);
  void check_takeover(uint32_t i, int64_t crashed_ms);
  caf::actor journal_;
  caf::actor broker_;
  caf::actor email_;
  caf::actor client_;
  std::vector<node_slot> nodes_;
  std::multimap<int64_t, std::function<void()>> events_;
  std::map<std::string, user_track> users_;
  std::vector<std::string> live_; ///< acknowledged, not being deleted
  std::vector<std::string> zones_;
  uint64_t next_user_ = 0;
  uint64_t commands_ = 0;
  uint64_t faults_ = 0;
  uint64_t crashes_ = 0;
  uint64_t actor_crashes_ = 0;
  uint64_t give_ups_ = 0;
  /// Copies (ledger indices) a crashed incarnation had delivered without
  /// journaling the outcome: each excuses one later copy, the measured
  /// crash window.
  std::set<size_t> crash_window_;
  /// When each crashed incarnation died: a copy of its reaching the
  /// service later was in flight at the crash.
  std::map<std::string, int64_t> crashed_at_ms_;
  size_t ledger_scanned_ = 0;
  std::map<std::string, std::vector<size_t>> delivered_by_owner_;
  std::vector<fault_window> fault_windows_;
};

void simulation::start_node(uint32_t i) {
  auto& slot = nodes_[i];
  ++slot.incarnation;
  slot.owner = "n" + std::to_string(i) + "." + std::to_string(slot.incarnation);
  auto ctx = make_context(base_);
  ctx->clock = std::make_shared<sim_clock>(&e_);
  ctx->dir = std::make_shared<directory>();
  ctx->monotonic = [e = &e_] { return e->monotonic(); };
  ctx->seed = e_.rng();
  ctx->owned_shards.clear();
  slot.name = "n" + std::to_string(i);
  slot.down_since_ms = -1;
  if (cluster_mode()) {
    // The real membership, leases and fencing, over in-memory seams.
    ctx->cluster = std::make_shared<cluster_view>(slot.name, ctx->shard_count);
    ctx->cluster->set_link(
      [this, from = slot.name](const std::string& to, caf::actor target) {
        return spawn_link(sys_, &e_, from, to, std::move(target));
      });
    ctx->email_rate_per_s = opts_.email_rate_per_s;
    ctx->cluster->set_rate_share(-1);
    ctx->reroute_max = std::chrono::seconds{30};
  } else {
    // One node: every shard, unfenced.
    ctx->cluster = nullptr;
    for (uint32_t s = 0; s < ctx->shard_count; ++s)
      ctx->owned_shards.push_back(s);
    ctx->email_rate_per_s = opts_.email_rate_per_s;
  }
  ctx->make_mailer = [this, i, email = email_, owner = slot.owner](caf::actor_system& sys) {
    return spawn_memory_mailer(sys, email, owner, [this, i](const std::string& key) {
      on_send(i, key);
    });
  };
  // Sweeping once per grace period instead of every 2 s delays a lost
  // handoff's republish by at most one more grace period and cuts a third of
  // the simulator's fixed cost per simulated day.
  ctx->outbox_sweep_interval = ctx->outbox_grace;
  ctx->broken.no_outbox_sweeper = opts_.broken == "no-outbox-sweeper";
  ctx->broken.no_recheck = opts_.broken == "no-recheck";
  ctx->broken.no_fencing = opts_.broken == "no-fencing";
  ctx->broken.next_year_on_update = opts_.broken == "next-year-on-update";
  // The journal and the broker outlive nodes: they are not the node's
  // children. In a cluster each node has its own journal connection, fenced
  // by its leases.
  auto journal = journal_;
  if (cluster_mode()) {
    slot.journal = caf::actor_cast<caf::actor>(spawn_memory_journal(
      sys_, store_, &e_,
      journal_fence{ctx->cluster, ctx->broken.no_fencing ? nullptr : leases_}));
    journal = slot.journal;
    ctx->dir->put(coordination_name, coordination_);
  }
  ctx->dir->put(journal_name, journal);
  for (auto name : send_journal_names)
    ctx->dir->put(name, journal);
  node_seams seams;
  auto broker = broker_;
  seams.handoff = registered(handoff_name, ctx, [ctx, broker](auto& sys) {
    return spawn_memory_publisher(sys, ctx, broker);
  });
  seams.consumer = registered("consumer", ctx, [ctx, broker](auto& sys) {
    return spawn_memory_consumer(sys, ctx, broker, main_queue, delivery_name);
  });
  seams.dead_consumer = registered("dead_consumer", ctx, [ctx, broker](auto& sys) {
    return spawn_memory_consumer(sys, ctx, broker, dead_audit_queue,
                                 dead_letters_name);
  });
  if (cluster_mode()) {
    membership_options m;
    m.name = slot.name;
    m.cluster_address = slot.name;
    for (uint32_t k = 0; k < opts_.nodes; ++k)
      if (k != i && i != 0)
        m.seeds.push_back("n" + std::to_string(k));
    m.secret = "sim";
    m.lease = sim_lease;
    m.email_rate_total = opts_.email_rate_per_s;
    auto book = book_;
    auto env = &e_;
    auto name = slot.name;
    seams.cluster.push_back(registered(transport_name, ctx, [book, env, name](auto& sys) {
      return spawn_memory_transport(sys, book, env, name);
    }));
    seams.cluster.push_back(registered(membership_name, ctx, [ctx, m](auto& sys) {
      return spawn_membership(sys, ctx, m);
    }));
  }
  auto children = node_tree(ctx, std::move(seams));
  auto sopts = group_options(*ctx, restart_strategy::one_for_one);
  slot.root = spawn_supervisor(sys_, "node", sopts, std::move(children));
  slot.ctx = std::move(ctx);
  // A root that exits while its slot still holds it gave up (crash_node
  // lets go of the root before killing it).
  slot.root->attach_functor([this, i, incarnation = slot.incarnation] {
    schedule(e_.now_ms(), [this, i, incarnation] {
      auto& slot = nodes_[i];
      if (slot.incarnation != incarnation || !slot.root)
        return;
      ++give_ups_;
      e_.trace.add(e_.now_ms(), "node.gave_up", slot.owner);
      crash_node(i);
      add_fault(e_.now_ms() + 60'000, true);
      schedule(e_.now_ms() + 60'000, [this, i] { start_node(i); });
    });
  });
  e_.trace.add(e_.now_ms(), "node.start", slot.owner);
}

void simulation::crash_node(uint32_t i) {
  auto& slot = nodes_[i];
  if (!slot.root)
    return;
  ++crashes_;
  e_.trace.add(e_.now_ms(), "node.crash", slot.owner);
  caf::anon_send_exit(slot.root, caf::exit_reason::kill);
  if (slot.journal)
    caf::anon_send_exit(slot.journal, caf::exit_reason::kill);
  slot.journal = nullptr;
  slot.root = nullptr;
  slot.down_since_ms = e_.now_ms();
  if (cluster_mode()) {
    auto crashed = e_.now_ms();
    auto window = to_ms(instant{} + sim_lease) + 4 * to_ms(instant{} + sim_lease) / 6;
    auto incarnation = slot.incarnation;
    schedule(crashed + window, [this, i, crashed, incarnation] {
      // Restarted meanwhile: it took its own shards back; nothing to see.
      if (nodes_[i].incarnation == incarnation)
        check_takeover(i, crashed);
    });
  }
  // The mailer front outlives the delivery actor, not the node.
  slot.ctx->mail_front->stop();
  slot.ctx->dir->clear();
  slot.ctx = nullptr;
  // What this incarnation sent and had not journaled as sent is the crash
  // window: a second send of it after the restart is expected, and counted.
  auto& reqs = ledger_->requests;
  for (; ledger_scanned_ < reqs.size(); ++ledger_scanned_)
    if (reqs[ledger_scanned_].delivered())
      delivered_by_owner_[reqs[ledger_scanned_].owner].push_back(
        ledger_scanned_);
  for (auto i : delivered_by_owner_[slot.owner]) {
    auto d = store_->deliveries.find(reqs[i].key);
    if (d == store_->deliveries.end() || d->second.rec.status != delivery_status::sent)
      crash_window_.insert(i);
  }
  delivered_by_owner_.erase(slot.owner);
  crashed_at_ms_[slot.owner] = e_.now_ms();
}

caf::actor simulation::live_commands(const std::string& user_id) {
  if (cluster_mode()) {
    // As the HTTP API: to the owner of the user's shard, as a live node sees
    // it; nobody (a 503) when no live node knows an owner.
    auto shard = shard_of(user_id, base_.shard_count);
    for (auto& slot : nodes_) {
      if (!slot.root)
        continue;
      auto owner = slot.ctx->cluster->owner_of(shard);
      for (auto& target : nodes_)
        if (target.root && target.name == owner)
          return target.ctx->dir->get(user_commands_name);
    }
    return {};
  }
  std::vector<uint32_t> up;
  for (uint32_t i = 0; i < nodes_.size(); ++i)
    if (nodes_[i].root)
      up.push_back(i);
  if (up.empty())
    return {};
  auto i = up[static_cast<size_t>(
    e_.between(0, static_cast<int64_t>(up.size()) - 1))];
  return nodes_[i].ctx->dir->get(user_commands_name);
}

user_record simulation::random_user(const std::string& id) {
  static const char* firsts[] = {"Ada", "Bea", "Chen", "Dara", "Emeka", "Farah"};
  static const char* lasts[] = {"Ito", "Kowalski", "Nguyen", "Okafor", "Silva"};
  user_record u;
  u.id = id;
  u.first_name = firsts[e_.between(0, 5)];
  u.last_name = lasts[e_.between(0, 4)];
  u.email = id + "@example.com";
  u.timezone = zones_[static_cast<size_t>(
    e_.between(0, static_cast<int64_t>(zones_.size()) - 1))];
  for (auto& kind : occasion_registry()) {
    if (!kind->required() && !e_.chance(0.7))
      continue;
    auto y = static_cast<int>(e_.between(1940, 2008));
    if (cluster_mode()) {
      // A cluster's faults (partitions, pauses, leaves) only prove
      // something while sends happen: every date falls inside the run.
      auto day = date::year_month_day{date::floor<date::days>(to_sys(
        e_.now() + millis{e_.between(0, int64_t{opts_.days} * day_ms)}))};
      auto birth_year = date::year{y};
      if (day.month() == date::February && day.day() == date::day{29})
        birth_year = date::year{2000}; // a leap year, to keep the date real
      u.dates[std::string{kind->name()}]
        = format_date(birth_year / day.month() / day.day());
      continue;
    }
    auto m = static_cast<unsigned>(e_.between(1, 12));
    // Feb 29 comes up often enough to exercise its rule.
    auto ym = date::year{y} / date::month{m};
    auto last = static_cast<unsigned>((ym / date::last).day());
    auto d = static_cast<unsigned>(e_.between(1, last));
    u.dates[std::string{kind->name()}]
      = format_date(date::year_month_day{ym / date::day{d}});
  }
  return u;
}

void simulation::issue_create(const std::string& id) {
  ++commands_;
  auto u = random_user(id);
  users_[id].created = u;
  caf::anon_send(client_, create_atom::value, live_commands(id), std::move(u));
}

void simulation::issue_update() {
  if (live_.empty())
    return;
  ++commands_;
  auto& id = live_[static_cast<size_t>(
    e_.between(0, static_cast<int64_t>(live_.size()) - 1))];
  auto& track = users_[id];
  auto u = random_user(id);
  u.email = track.created.email;
  caf::anon_send(client_, replace_atom::value, live_commands(id), std::move(u));
}

void simulation::issue_delete() {
  if (live_.empty())
    return;
  ++commands_;
  auto pick = static_cast<size_t>(
    e_.between(0, static_cast<int64_t>(live_.size()) - 1));
  auto id = live_[pick];
  live_[pick] = live_.back();
  live_.pop_back();
  caf::anon_send(client_, remove_atom::value, live_commands(id), id);
}

void simulation::on_send(uint32_t i, const std::string& key) {
  if (!cluster_mode())
    return;
  auto& slot = nodes_[i];
  auto shard = shard_of(user_of_key(key), base_.shard_count);
  auto& row = leases_->leases.at(shard);
  auto now = e_.now_ms();
  if (row.owner != slot.name || row.expires_ms <= now) {
    fenced_sends_.push_back(key + " sent by " + slot.name + " at "
                            + format_instant(from_ms(now)) + ", lease of shard "
                            + std::to_string(shard) + " held by '" + row.owner
                            + "' until " + format_instant(from_ms(row.expires_ms)));
    return;
  }
  auto [sender, fresh] = epoch_sender_.emplace(std::pair{shard, row.epoch}, slot.name);
  if (!fresh && sender->second != slot.name)
    fenced_sends_.push_back("shard " + std::to_string(shard) + " epoch "
                            + std::to_string(row.epoch) + " sent by "
                            + sender->second + " and " + slot.name);
  auto [first, was_first] = first_send_.emplace(key, std::pair{slot.name, row.epoch});
  if (!was_first && first->second.second != row.epoch) {
    auto d = store_->deliveries.find(key);
    if (d != store_->deliveries.end() && d->second.rec.status != delivery_status::sent)
      ++fence_window_[key];
  }
}

void simulation::check_takeover(uint32_t i, int64_t crashed_ms) {
  // Only a clean window says anything: a node alive, and no partition or
  // outage since a lease before the crash.
  if (nodes_[i].root || disrupted_until_ms_ >= crashed_ms - to_ms(instant{} + sim_lease))
    return;
  bool any_live = false;
  for (auto& slot : nodes_)
    any_live = any_live || slot.root;
  if (!any_live || e_.now_ms() < e_.journal_down_until_ms)
    return;
  ++takeover_checks_;
  for (uint32_t s = 0; s < leases_->leases.size(); ++s) {
    auto& row = leases_->leases[s];
    bool live_owner = false;
    for (auto& slot : nodes_)
      live_owner = live_owner || (slot.root && slot.name == row.owner);
    if (!live_owner || row.expires_ms <= e_.now_ms()) {
      fenced_sends_.push_back("shard " + std::to_string(s) + " not owned again "
                              + std::to_string((e_.now_ms() - crashed_ms) / 1000)
                              + " s after n" + std::to_string(i) + " died at "
                              + format_instant(from_ms(crashed_ms)) + " (owner '"
                              + row.owner + "')");
      return;
    }
  }
}

void simulation::plan_workload() {
  auto start = e_.now_ms();
  auto end = start + int64_t{opts_.days} * day_ms;
  auto id_of = [this] {
    char buf[16];
    std::snprintf(buf, sizeof buf, "u%07llu",
                  static_cast<unsigned long long>(next_user_++));
    return std::string{buf};
  };
  for (uint32_t i = 0; i < opts_.users; ++i)
    schedule(start, [this, id = id_of()] { issue_create(id); });
  auto traffic = static_cast<uint64_t>(opts_.traffic_per_user_day
                                       * opts_.users * opts_.days);
  for (uint64_t i = 0; i < traffic; ++i) {
    auto at = e_.between(start + 3600000, end);
    auto roll = e_.between(0, 9);
    if (roll < 3)
      schedule(at, [this, id = id_of()] { issue_create(id); });
    else if (roll < 7)
      schedule(at, [this] { issue_update(); });
    else
      schedule(at, [this] { issue_delete(); });
  }
}

void simulation::plan_faults() {
  auto& f = e_.faults;
  auto start = e_.now_ms();
  auto end = start + int64_t{opts_.days} * day_ms;
  // Each fault strikes at uniformly random instants, `rate` per day on
  // average.
  auto plan = [&](double per_day, std::function<void()> strike) {
    auto expected = per_day * opts_.days;
    auto n = static_cast<uint64_t>(expected);
    if (e_.chance(expected - static_cast<double>(n)))
      ++n;
    for (uint64_t i = 0; i < n; ++i)
      schedule(e_.between(start, end), [this, strike] {
        ++faults_;
        strike();
      });
  };
  plan(f.node_crashes_per_day, [this] {
    auto i = static_cast<uint32_t>(e_.between(0, opts_.nodes - 1));
    if (!nodes_[i].root)
      return;
    crash_node(i);
    auto down = e_.up_to(e_.faults.node_down_max);
    add_fault(e_.now_ms() + down.count(), true);
    schedule(e_.now_ms() + down.count(), [this, i] { start_node(i); });
  });
  if (f.actor_crashes_per_day > 0) // else the other faults' draws stay as they were
  plan(f.actor_crashes_per_day, [this] {
    auto i = static_cast<uint32_t>(e_.between(0, opts_.nodes - 1));
    auto& slot = nodes_[i];
    if (!slot.root)
      return;
    // Every long-lived actor of the node's tree, and one of its shards. Not
    // the mailer: a send it had in flight is the email service's to know
    // about, and its retry a possible duplicate (as for a node crash).
    std::vector<std::string> names{delivery_name,   "consumer",     "dead_consumer",
                                   dead_letters_name, user_commands_name,
                                   shard_host_name, due_poller_name, "outbox_sweeper",
                                   handoff_name,    membership_name, transport_name};
    names.push_back(shard_name(static_cast<uint32_t>(
      e_.between(0, slot.ctx->shard_count - 1))));
    auto name = names[static_cast<size_t>(
      e_.between(0, static_cast<int64_t>(names.size()) - 1))];
    auto actor = slot.ctx->dir->get(name);
    if (!actor)
      return;
    ++actor_crashes_;
    e_.trace.add(e_.now_ms(), "fault.actor_crash", slot.owner + " " + name);
    caf::anon_send_exit(actor, caf::exit_reason::unhandled_exception);
    // A restart reloads from the journal and the broker at once; a
    // membership restart may cost the node its leases for a while.
    add_fault(e_.now_ms() + 60'000, true);
  });
  plan(f.journal_outages_per_day, [this] {
    e_.journal_down_until_ms = e_.now_ms() + e_.up_to(e_.faults.journal_outage_max).count();
    disrupted_until_ms_ = std::max(disrupted_until_ms_, e_.journal_down_until_ms);
    add_fault(e_.journal_down_until_ms, true);
    e_.trace.add(e_.now_ms(), "fault.journal_down",
                 format_instant(from_ms(e_.journal_down_until_ms)));
  });
  plan(f.journal_slow_spells_per_day, [this] {
    e_.journal_slow_until_ms = e_.now_ms() + e_.up_to(10min).count();
    add_fault(e_.journal_slow_until_ms + e_.faults.journal_slow_max.count(), true);
    e_.trace.add(e_.now_ms(), "fault.journal_slow");
  });
  plan(f.broker_outages_per_day, [this] {
    e_.broker_down_until_ms = e_.now_ms() + e_.up_to(e_.faults.broker_outage_max).count();
    add_fault(e_.broker_down_until_ms, false);
    e_.trace.add(e_.now_ms(), "fault.broker_down");
    caf::anon_send(broker_, sim_reset_atom::value, true);
  });
  plan(f.redeliveries_per_day, [this] {
    caf::anon_send(broker_, sim_reset_atom::value, false);
  });
  if (cluster_mode()) {
    auto lease_ms = to_ms(instant{} + sim_lease);
    auto disrupt = [this](int64_t until) {
      disrupted_until_ms_ = std::max(disrupted_until_ms_, until);
      add_fault(until, true);
    };
    auto pick = [this] { return "n" + std::to_string(e_.between(0, opts_.nodes - 1)); };
    // A node cut off from the database (and the lease table) for up to three
    // leases: it must stop sending before its leases can expire.
    plan(f.node_crashes_per_day, [this, lease_ms, disrupt, pick] {
      auto node = pick();
      auto until = e_.now_ms() + e_.between(1, 3 * lease_ms);
      e_.db_cut_until_ms[node] = until;
      disrupt(until);
      e_.trace.add(e_.now_ms(), "fault.db_partition", node);
    });
    // Two nodes cut off from each other.
    plan(f.node_crashes_per_day, [this, lease_ms, disrupt, pick] {
      auto a = pick(), b = pick();
      if (a == b)
        return;
      auto until = e_.now_ms() + e_.between(1, 3 * lease_ms);
      e_.link_cut_until_ms[std::minmax(a, b)] = until;
      for (auto& slot : nodes_)
        if (slot.root && (slot.name == a || slot.name == b))
          slot.ctx->cluster->forget_peer(slot.name == a ? b : a);
      disrupt(until);
      e_.trace.add(e_.now_ms(), "fault.link_partition", a + "|" + b);
    });
    // A pause longer than a lease: the node reaches nothing and nobody.
    plan(f.node_crashes_per_day / 2, [this, lease_ms, disrupt, pick] {
      auto node = pick();
      auto until = e_.now_ms() + lease_ms + e_.between(1, lease_ms);
      e_.db_cut_until_ms[node] = until;
      for (auto& slot : nodes_)
        if (slot.name != node) {
          e_.link_cut_until_ms[std::minmax(node, slot.name)] = until;
          if (slot.root)
            slot.ctx->cluster->forget_peer(node);
        }
      disrupt(until);
      e_.trace.add(e_.now_ms(), "fault.pause", node);
    });
    // A graceful leave, and a join again later.
    plan(f.node_crashes_per_day / 2, [this, lease_ms] {
      auto i = static_cast<uint32_t>(e_.between(0, opts_.nodes - 1));
      if (!nodes_[i].root)
        return;
      e_.trace.add(e_.now_ms(), "fault.leave", nodes_[i].name);
      // It leaves, stops a lease later and is down for a while after.
      add_fault(e_.now_ms() + lease_ms + e_.faults.node_down_max.count(), true);
      caf::anon_send(nodes_[i].ctx->dir->get(membership_name), leave_atom::value);
      schedule(e_.now_ms() + lease_ms, [this, i] {
        if (nodes_[i].root && nodes_[i].ctx->cluster->left()) {
          crash_node(i); // it has left: stopping it now loses nothing
          schedule(e_.now_ms() + e_.up_to(e_.faults.node_down_max).count(),
                   [this, i] { start_node(i); });
        }
      });
    });
  }
  plan(f.email_day_outages_per_day, [this] {
    auto days = e_.between(1, e_.faults.email_outage_days_max);
    e_.email_down_until_ms = e_.now_ms() + days * day_ms;
    add_fault(e_.email_down_until_ms, false);
    e_.trace.add(e_.now_ms(), "fault.email_down");
  });
}

void simulation::run_loop(int64_t end_ms) {
  auto& clk = sched_.clock();
  auto to_point = [&](int64_t ms) {
    return e_.origin + millis{ms - to_ms(e_.start)};
  };
  auto end = to_point(end_ms);
  for (;;) {
    while (sched_.has_job()) {
      // The seed decides which ready actor runs next.
      auto& jobs = sched_.jobs;
      if (jobs.size() > 1)
        std::swap(jobs.front(),
                  jobs[static_cast<size_t>(
                    e_.between(0, static_cast<int64_t>(jobs.size()) - 1))]);
      sched_.run_once();
    }
    auto timer = clk.schedule().empty() ? end + 1ms
                                        : clk.schedule().begin()->first;
    auto event = events_.empty() ? end + 1ms : to_point(events_.begin()->first);
    if (std::min(timer, event) > end)
      break;
    if (event <= timer) {
      clk.current_time = std::max(clk.current_time, event);
      auto fn = std::move(events_.begin()->second);
      events_.erase(events_.begin());
      fn();
    } else {
      clk.advance_time(std::max(timer - clk.current_time,
                                caf::actor_clock::duration_type{0}));
    }
  }
  clk.current_time = std::max(clk.current_time, end);
}

void simulation::add_fault(int64_t until_ms, bool costs_a_lease) {
  // In a cluster a node that loses its database, its peers or its life
  // loses its leases: its shards are sent for again only once a lease has
  // expired and a few membership rounds have passed.
  auto lease_ms = to_ms(instant{} + sim_lease);
  auto recovery = cluster_mode() && costs_a_lease ? lease_ms + 4 * lease_ms / 6
                                                  : 0;
  fault_windows_.push_back({e_.now_ms(), until_ms, recovery});
}

lateness_bound simulation::bound() const {
  // Once the faults are over, what a send may still wait for: a lost
  // handoff's republish (the sweeper's stale age, then its next sweep), the
  // due poller's next load, the longest back-off, a time-out, a slow
  // journal's answer and the breaker's cool-down.
  auto ctx = make_context(base_);
  auto stale = std::max<millis>(60 * ctx->outbox_grace, 4 * ctx->backoff_cap);
  auto recovery = stale + ctx->outbox_grace + ctx->poll_interval
                  + ctx->backoff_cap + ctx->email_timeout
                  + e_.faults.journal_slow_max + ctx->breaker_cooldown;
  return lateness_bound{fault_windows_, recovery.count()};
}

oracle_rules simulation::rules() const {
  oracle_rules r;
  r.feb29_to_mar1 = base_.feb29_rule == "mar1";
  r.catch_up_ms = base_.catch_up_s * 1000;
  r.end_ms = to_ms(e_.start) + int64_t{opts_.days} * day_ms;
  // A send whose journal check came before a change may reach the service
  // after it: a slow journal's answer, the mailer's time-out, a slow link.
  r.in_flight_ms = (e_.faults.journal_slow_max + e_.email_timeout
                    + std::chrono::seconds{5} + e_.faults.link_delay_max)
                     .count();
  return r;
}

void simulation::check(sim_report& r) {
  auto& reqs = ledger_->requests;
  r.requests = reqs.size();
  // Delivered copies of each key, in the order they reached the service.
  std::unordered_map<std::string, std::vector<size_t>> copies;
  for (size_t i = 0; i < reqs.size(); ++i)
    if (reqs[i].delivered()) {
      copies[reqs[i].key].push_back(i);
      ++r.delivered;
    }
  // No second above the limit.
  std::map<int64_t, uint32_t> per_second;
  for (auto& q : reqs)
    ++per_second[q.at_ms / 1000];
  for (auto& [sec, n] : per_second)
    if (n > opts_.email_rate_per_s)
      violation(r, "rate limit exceeded: " + std::to_string(n)
                     + " requests in the second from "
                     + format_instant(from_ms(sec * 1000)));
  // Nothing reaches the email service for a user after its delete was
  // acknowledged.
  for (auto& q : reqs) {
    auto user = q.key.substr(0, q.key.find(':'));
    auto t = users_.find(user);
    if (t != users_.end() && q.at_ms > t->second.delete_acked_ms)
      violation(r, "request for deleted user: " + q.key + " at "
                     + format_instant(from_ms(q.at_ms)) + ", delete acked at "
                     + format_instant(from_ms(t->second.delete_acked_ms)));
  }
  // Nothing sent by a node that did not hold the shard's lease; one sender
  // per shard and epoch; every shard owned again after its owner died.
  for (auto& what : fenced_sends_)
    violation(r, "fencing: " + what);
  r.takeover_checks = takeover_checks_;
  key_facts facts;
  facts.first_delivered_ms = [&](const std::string& key) {
    auto i = copies.find(key);
    return i == copies.end() ? never_ms : reqs[i->second.front()].at_ms;
  };
  facts.closed_ms = [&](const std::string& key) {
    auto d = store_->deliveries.find(key);
    return d == store_->deliveries.end() ? never_ms : d->second.closed_ms;
  };
  auto limits = bound();
  // Ordered, so that the first violations reported do not depend on
  // hashing.
  std::map<std::string, owed_occurrence> owed;
  std::map<std::string, const std::vector<user_change>*> histories;
  for (auto& [id, history] : store_->history)
    histories.emplace(id, &history);
  for (auto& [id, history] : histories)
    for (auto& o : owed_for_user(id, *history, rules(), limits, facts))
      owed.emplace(o.key, std::move(o));
  check_owed(r, owed, copies);
  check_duplicates(r, owed, copies);
}

namespace {

std::string at(int64_t ms) {
  return format_instant(from_ms(ms));
}

} // namespace

void simulation::check_owed(
  sim_report& r, const std::map<std::string, owed_occurrence>& owed,
  const std::unordered_map<std::string, std::vector<size_t>>& copies) {
  auto& reqs = ledger_->requests;
  auto rules = this->rules();
  auto limits = bound();
  for (auto& [key, o] : owed) {
    auto limit = send_limit_ms(o.due_ms, rules, limits);
    auto c = copies.find(key);
    if (c != copies.end()) {
      ++r.occurrences_checked;
      auto first = reqs[c->second.front()].at_ms;
      if (first < o.earliest_ms)
        violation(r, "sent early: " + key + " at " + at(first) + ", due "
                       + at(o.earliest_ms));
      else if (first > limit + rules.in_flight_ms)
        violation(r, "late: " + key + " due " + at(o.due_ms) + " sent at "
                       + at(first) + ", the faults allowed until "
                       + at(limit));
      if (o.withdrawn_ms != never_ms && !o.withdrawn_by_delete
          && first > o.withdrawn_ms + rules.in_flight_ms)
        violation(r, "sent after its occasion was moved: " + key + " at "
                       + at(first) + ", update committed at "
                       + at(o.withdrawn_ms));
      continue;
    }
    // Taken back before it had to be sent, or left to a race.
    if (!o.required || o.withdrawn_ms <= limit)
      continue;
    // The run ended while it could still be on its way.
    if (limit > rules.end_ms)
      continue;
    ++r.occurrences_checked;
    auto d = store_->deliveries.find(key);
    auto status = d == store_->deliveries.end() ? std::string{"absent"}
                                                : status_name(d->second.rec.status);
    auto disrupted = limits.disrupted_until_ms(o.due_ms);
    if (status == "expired"
        && limits.deadline_ms(o.due_ms) > o.due_ms + rules.catch_up_ms) {
      ++r.expired;
      continue;
    }
    violation(r, (status == "expired" ? "expired though the faults ended: "
                                      : "missed: ")
                   + key + " due " + at(o.due_ms) + " (" + o.zone
                   + "), faults until "
                   + at(disrupted) + ", journal status " + status);
  }
  for (auto& [key, list] : copies)
    if (owed.count(key) == 0)
      violation(r, "sent but never owed: " + key + " at "
                     + at(reqs[list.front()].at_ms) + " by "
                     + reqs[list.front()].owner);
}

void simulation::check_duplicates(
  sim_report& r, const std::map<std::string, owed_occurrence>& owed,
  const std::unordered_map<std::string, std::vector<size_t>>& copies) {
  auto& reqs = ledger_->requests;
  auto rules = this->rules();
  auto limits = bound();
  for (auto& [key, list] : copies) {
    // Each copy whose answer was lost, or that a node died or lost its
    // lease with in flight, excuses one more copy, in its own class.
    uint32_t ambiguous = 0, crashed = 0, fenced = 0;
    if (auto f = fence_window_.find(key); f != fence_window_.end())
      fenced = f->second;
    auto o = owed.find(key);
    for (size_t n = 0; n < list.size(); ++n) {
      auto& q = reqs[list[n]];
      if (n > 0) {
        auto& first = reqs[list.front()];
        if (ambiguous > 0) {
          --ambiguous;
          ++r.duplicates_ambiguous;
        } else if (crashed > 0) {
          --crashed;
          ++r.duplicates_in_crash_window;
        } else if (fenced > 0) {
          --fenced;
          ++r.duplicates_in_fence_window;
        } else {
          violation(r, "duplicate: " + key + " delivered by " + first.owner
                         + " at " + at(first.at_ms) + " and by " + q.owner
                         + " at " + at(q.at_ms));
        }
        // An excused copy is sent again while it is still owed, not after.
        if (o != owed.end()
            && q.at_ms > send_limit_ms(o->second.due_ms, rules, limits)
                           + rules.in_flight_ms)
          violation(r, "late copy: " + key + " again by " + q.owner + " at "
                         + at(q.at_ms));
      }
      auto died = crashed_at_ms_.find(q.owner);
      if (q.answer_lost)
        ++ambiguous;
      else if (crash_window_.count(list[n]) > 0
               || (died != crashed_at_ms_.end() && q.at_ms >= died->second))
        ++crashed;
    }
  }
}

sim_report simulation::run() {
  auto wall_start = std::chrono::steady_clock::now();
  auto errors_before = error_log_count();
  auto profile = find_profile(opts_.faults);
  e_.faults = *profile;
  e_.trace.echo = opts_.echo_trace;
  e_.clock = &sched_.clock();
  e_.origin = sched_.clock().current_time;
  // A start anywhere in 2027, at a random millisecond.
  e_.start = from_ms(to_ms(from_sys(date::sys_days{date::year{2027} / 1 / 1}))
                     + e_.between(0, 365 * day_ms));
  e_.email_timeout = millis{base_.email_timeout_ms};
  for (auto& z : date::get_tzdb().zones)
    zones_.push_back(z.name());
  store_->shard_count = base_.shard_count;
  journal_ = caf::actor_cast<caf::actor>(spawn_memory_journal(sys_, store_, &e_));
  leases_ = std::make_shared<lease_store>(base_.shard_count);
  coordination_ = spawn_memory_coordination(sys_, leases_, &e_);
  broker_options bopts;
  bopts.prefetch = base_.amqp_prefetch;
  bopts.delivery_limit = base_.amqp_delivery_limit;
  broker_ = spawn_memory_broker(sys_, bopts, &e_);
  email_ = spawn_email_service(sys_, ledger_, &e_);
  client_ = sys_.spawn([this](caf::event_based_actor* self) -> caf::behavior {
    auto timeout = 3 * journal_timeout;
    return {
      [=, this](create_atom op, caf::actor& dest, user_record& u) {
        if (!dest)
          return;
        self->request(dest, timeout, op, u).then(
          [=, this](user_view& v) { live_.push_back(v.user.id); },
          [](caf::error&) {});
      },
      [=](replace_atom op, caf::actor& dest, user_record& u) {
        if (dest)
          self->request(dest, timeout, op, u).then([](user_view&) {},
                                                   [](caf::error&) {});
      },
      [=, this](remove_atom op, caf::actor& dest, std::string& id) {
        if (!dest)
          return;
        self->request(dest, timeout, op, id).then(
          [=, this](caf::ok_atom) { users_[id].delete_acked_ms = e_.now_ms(); },
          [](caf::error&) {});
      },
    };
  });
  nodes_.resize(opts_.nodes);
  for (uint32_t i = 0; i < opts_.nodes; ++i)
    start_node(i);
  plan_workload();
  plan_faults();
  auto end_ms = to_ms(e_.start) + int64_t{opts_.days} * day_ms;
  run_loop(end_ms);
  sim_report r;
  check(r);
  if (auto errors = error_log_count() - errors_before; errors > 0)
    violation(r, std::to_string(errors) + " error lines logged");
  for (auto& slot : nodes_) {
    if (slot.root)
      caf::anon_send_exit(slot.root, caf::exit_reason::kill);
    // A node's own journal in a cluster (else the actor system waits for it
    // forever, once a message in flight holds it).
    if (slot.journal)
      caf::anon_send_exit(slot.journal, caf::exit_reason::kill);
    if (!slot.ctx)
      continue;
    slot.ctx->mail_front->stop();
    slot.ctx->dir->clear();
  }
  for (auto& h : {journal_, broker_, email_, client_})
    caf::anon_send_exit(h, caf::exit_reason::kill);
  sched_.run();
  r.trace_hash = e_.trace.hash();
  r.trace_events = e_.trace.events();
  r.commands = commands_;
  r.faults = faults_;
  r.crashes = crashes_;
  r.actor_crashes = actor_crashes_;
  r.give_ups = give_ups_;
  r.elapsed_s = std::chrono::duration<double>(std::chrono::steady_clock::now()
                                              - wall_start)
                  .count();
  return r;
}

} // namespace

sim_report run_simulation(const sim_options& opts) {
  set_log_level(log_level::error);
  simulation s{opts};
  return s.run();
}

} // namespace chime::sim
