#include "cluster/node.hpp"

#include "actors/cluster_view.hpp"
#include "actors/delivery.hpp"
#include "actors/mailer_front.hpp"
#include "cluster/membership.hpp"

#include "actors/node_children.hpp"
#include "actors/occasion.hpp"
#include "actors/protocol.hpp"
#include "config/settings.hpp"
#include "net/amqp_handoff.hpp"
#include "net/email_client.hpp"
#include "net/http_api.hpp"
#include "persistence/pg_coordination.hpp"
#include "persistence/pg_deadline.hpp"
#include "persistence/pg_journal.hpp"
#include "runtime/log.hpp"
#include "runtime/signals.hpp"
#include "runtime/supervisor.hpp"

#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <random>
#include <sstream>
#include <thread>

#include <sched.h>

namespace chime {

namespace {

clock_ptr make_clock(const settings& cfg) {
  if (cfg.clock_start_ms) {
    // Several nodes share one virtual clock: it read clock_start at the
    // anchor, however late this node starts.
    auto start = *cfg.clock_start_ms;
    if (cfg.clock_anchor_ms) {
      auto wall = to_ms(make_wall_clock()->now());
      start += static_cast<int64_t>(
        static_cast<double>(wall - *cfg.clock_anchor_ms) * cfg.clock_rate);
    }
    return make_virtual_clock(from_ms(start), cfg.clock_rate);
  }
  if (cfg.clock_rate != 1.0)
    return make_virtual_clock(make_wall_clock()->now(), cfg.clock_rate);
  return make_wall_clock();
}

} // namespace

void configure_occasions(const settings& cfg) {
  for (auto& kind : occasion_registry()) {
    auto i = cfg.send_times.find(std::string{kind->name()});
    if (i == cfg.send_times.end())
      continue;
    auto h = std::stoi(i->second.substr(0, 2));
    auto m = std::stoi(i->second.substr(3, 2));
    kind->set_send_time(std::chrono::minutes{h * 60 + m});
  }
}

std::shared_ptr<node_context> make_context(const settings& cfg) {
  auto ctx = std::make_shared<node_context>();
  ctx->clock = make_clock(cfg);
  ctx->dir = std::make_shared<directory>();
  ctx->rules.feb29 = cfg.feb29_rule == "mar1" ? feb29_rule::mar1
                                              : feb29_rule::feb28;
  ctx->rules.catch_up = std::chrono::seconds{cfg.catch_up_s};
  // Polls run at least every 100 ms of real time; the horizon must cover
  // several polls of Chime time, or a fast clock would skip past due users.
  auto real_poll = std::max<std::chrono::microseconds>(
    ctx->clock->real_delay(std::chrono::seconds{cfg.due_poll_s}),
    std::chrono::milliseconds{100});
  auto poll = millis{static_cast<int64_t>(
    static_cast<double>(real_poll.count()) / 1000.0 * cfg.clock_rate)};
  ctx->poll_interval = poll;
  ctx->resident_users_max = cfg.resident_users_max;
  ctx->fire_lead = millis{cfg.fire_lead_ms};
  ctx->horizon = std::max<millis>(std::chrono::seconds{cfg.horizon_s}, 3 * poll);
  ctx->shard_count = cfg.shard_count;
  // A node is always a cluster, of one without --cluster-port: its shards
  // come with leases.
  ctx->cluster = std::make_shared<cluster_view>(cfg.node_name, cfg.shard_count);
  ctx->cluster->set_rate_share(cfg.email_rate_per_s);
  ctx->reroute_max = std::max<millis>(std::chrono::seconds{cfg.lease_s} / 6,
                                      millis{500});
  ctx->delivery_concurrency_max = cfg.delivery_concurrency_max;
  ctx->delivery_queue_max = cfg.delivery_queue_max;
  ctx->delivery_attempts_max = cfg.delivery_attempts_max;
  ctx->backoff_base = millis{cfg.backoff_base_ms};
  ctx->backoff_cap = millis{cfg.backoff_cap_ms};
  ctx->email_timeout = millis{cfg.email_timeout_ms};
  ctx->make_mail_transport = [url = cfg.email_url, max = cfg.delivery_concurrency_max,
                               connections = cfg.email_connections_max](
                               const caf::actor_addr& driver) {
    return make_email_transport(url, max, connections, driver);
  };
  ctx->seed = std::random_device{}();
  // The cluster's rate; the membership actor gives this node its share.
  ctx->email_rate_per_s = cfg.email_rate_per_s;
  ctx->email_burst = cfg.email_burst;
  ctx->breaker_failures_max = cfg.breaker_failures_max;
  ctx->breaker_cooldown = millis{cfg.breaker_cooldown_ms};
  ctx->outbox_grace = std::chrono::seconds{cfg.outbox_grace_s};
  ctx->clock_rate = cfg.clock_rate;
  ctx->restart_max = cfg.restart_max;
  ctx->restart_window = std::chrono::seconds{cfg.restart_window_s};
  return ctx;
}

namespace {

membership_options membership_of(const settings& cfg, const node_context& ctx) {
  membership_options m;
  m.name = cfg.node_name;
  m.http_url = "http://" + cfg.http_bind + ":" + std::to_string(cfg.http_port);
  if (cfg.cluster_port != 0)
    m.cluster_address = cfg.cluster_host + ":" + std::to_string(cfg.cluster_port);
  std::stringstream seeds{cfg.seed};
  for (std::string seed; std::getline(seeds, seed, ',');)
    if (!seed.empty())
      m.seeds.push_back(seed);
  m.secret = cfg.cluster_secret;
  m.lease = std::chrono::seconds{cfg.lease_s};
  m.email_rate_total = ctx.email_rate_per_s;
  return m;
}

std::vector<child_spec> node_children(const settings& cfg, context_ptr ctx) {
  node_seams seams;
  pg_journal_options jopts{pg_url_with_timeouts(cfg.database_url), cfg.shard_count,
                           cfg.journal_batch_max, ctx->cluster};
  std::vector<const char*> journals{journal_name};
  journals.insert(journals.end(), std::begin(send_journal_names),
                  std::end(send_journal_names));
  journals.insert(journals.end(), std::begin(import_journal_names),
                  std::end(import_journal_names));
  for (auto name : journals)
    seams.journals.push_back(registered(name, ctx, [jopts, name](auto& sys) {
      auto opts = jopts;
      opts.name = name;
      return caf::actor_cast<caf::actor>(spawn_pg_journal(sys, std::move(opts)));
    }));
  amqp_options aopts;
  aopts.url = cfg.amqp_url;
  aopts.prefetch = static_cast<uint16_t>(cfg.amqp_prefetch);
  aopts.topology.delivery_limit = cfg.amqp_delivery_limit;
  aopts.topology.retry_delay_max = std::max<millis>(ctx->backoff_cap, hold_max);
  aopts.publish_buffer_max = cfg.publish_buffer_max;
  seams.handoff = registered(handoff_name, ctx, [ctx, aopts](auto& sys) {
    return spawn_amqp_publisher(sys, ctx, aopts);
  });
  seams.consumer = registered("consumer", ctx, [ctx, aopts](auto& sys) {
    return spawn_amqp_consumer(sys, ctx, aopts, aopts.topology.queue,
                               delivery_name);
  });
  seams.dead_consumer = registered("dead_consumer", ctx, [ctx, aopts](auto& sys) {
    return spawn_amqp_consumer(sys, ctx, aopts, aopts.topology.dead_audit_queue,
                               dead_letters_name);
  });
  seams.cluster.push_back(registered(coordination_name, ctx, [cfg](auto& sys) {
    return spawn_pg_coordination(sys, pg_url_with_timeouts(cfg.database_url),
                                 cfg.shard_count);
  }));
  if (cfg.cluster_port != 0)
    seams.cluster.push_back(registered(transport_name, ctx, [](auto& sys) {
      return spawn_middleman_transport(sys);
    }));
  seams.cluster.push_back(registered(membership_name, ctx, [ctx, cfg](auto& sys) {
    return spawn_membership(sys, ctx, membership_of(cfg, *ctx));
  }));
  http_api_options hopts{cfg.http_bind, cfg.http_port, cfg.http_threads,
                         cfg.api_token};
  hopts.import_lines_max = cfg.import_lines_max;
  hopts.test_hooks = cfg.test_hooks != 0;
  seams.http = registered(http_name, ctx, [ctx, hopts](auto& sys) {
    return spawn_http_server(sys, ctx, hopts);
  });
  return node_tree(ctx, std::move(seams));
}

/// A graceful stop: leave the cluster (every shard given away once its sends
/// in flight have journaled their outcomes, the leases released so the new
/// owners take them at once), then let the last sends end. Broker messages
/// not yet started stay unacked and go back to the queue when the consumers
/// close.
void drain(caf::actor_system& sys, const node_context& ctx,
           const settings& cfg) {
  auto budget = std::chrono::milliseconds{cfg.email_timeout_ms}
                + std::chrono::seconds{cfg.lease_s} + std::chrono::seconds{10};
  caf::scoped_actor self{sys};
  if (!ctx.cluster->left()) {
    if (auto membership = ctx.dir->get(membership_name)) {
      self->request(membership, budget, leave_atom::value)
        .receive([](caf::ok_atom) {},
                 [](caf::error& err) {
                   log(log_level::warn, "node", "leaving did not finish",
                       {{"error", to_string(err)}});
                 });
    }
  }
  if (auto delivery = delivery_at(*ctx.dir)) {
    self->request(delivery, budget, drain_atom::value, std::vector<uint32_t>{})
      .receive([](caf::ok_atom) {},
               [](caf::error& err) {
                 log(log_level::warn, "node", "sends in flight did not end",
                     {{"error", to_string(err)}});
               });
  }
}

/// The calling thread's scheduling policy, which every thread it starts
/// after inherits. Under SCHED_BATCH a woken thread does not preempt the
/// one running on its CPU: a node's threads hand work to each other, to
/// PostgreSQL and to the email service thousands of times a second, and
/// each preemption is a context switch of its own on a busy machine. In
/// four alternating pairs of 100,000 bursts on 2 cores the node's CPU a
/// message over the fake email service's fell from 0.96-1.03 to 0.73-0.79
/// (2026-12-07; actors/README.md has the counts).
void apply_cpu_policy(const std::string& policy) {
  sched_param none{};
  int rc = sched_setscheduler(0, policy == "batch" ? SCHED_BATCH : SCHED_OTHER,
                              &none);
  if (rc != 0)
    log(log_level::warn, "node", "cpu-policy not applied",
        {{"cpu_policy", policy}, {"error", std::strerror(errno)}});
}

} // namespace

int run_node(const settings& cfg) {
  set_log_level(parse_log_level(cfg.log_level));
  // First, before any of the node's threads is started.
  apply_cpu_policy(cfg.cpu_policy);
  configure_occasions(cfg);
  auto signals = block_stop_signals();

  caf::actor_system_config sys_cfg;
  add_chime_types(sys_cfg);
  // An idle CAF worker otherwise polls its queue 500 times with 50 us
  // sleeps before it waits on its condition variable: under a burst's
  // stop-and-go load those sleeps were most of the node's context switches
  // (about a fifth of its CPU). Waiting at once costs one wake-up per job.
  sys_cfg.set("work-stealing.moderate-poll-attempts", 0);
  // CAF's default of 4 workers on 2 cores moved actors between threads
  // and woke more of them than run at once: one worker per core (the
  // blocking work has threads of its own) took a 30,000 burst from 4,250
  // to about 4,700 messages/s.
  sys_cfg.set("scheduler.max-threads",
              static_cast<size_t>(std::max(2u, std::thread::hardware_concurrency())));
  if (cfg.cluster_port != 0) {
    sys_cfg.load<caf::io::middleman>();
    // Heartbeats are off by default: a frozen peer would never be noticed.
    sys_cfg.set("middleman.heartbeat-interval",
                caf::timespan{std::chrono::milliseconds{500}});
    sys_cfg.set("middleman.connection-timeout",
                caf::timespan{std::chrono::seconds{2}});
  }
  caf::actor_system sys{sys_cfg};
  auto ctx = make_context(cfg);
  auto root = spawn_supervisor(sys, "node",
                               group_options(*ctx, restart_strategy::one_for_one),
                               node_children(cfg, ctx));
  std::atomic<bool> root_down{false};
  root->attach_functor([&root_down] { root_down = true; });
  log(log_level::info, "node", "serving",
      {{"node", cfg.node_name},
       {"http", "http://" + cfg.http_bind + ":" + std::to_string(cfg.http_port)},
       {"clock", format_instant(ctx->clock->now())},
       {"clock_rate", cfg.clock_rate}});

  int exit_code = 0;
  timespec poll{0, 200 * 1000 * 1000};
  for (;;) {
    int sig = sigtimedwait(&signals, nullptr, &poll);
    if (sig == SIGTERM || sig == SIGINT) {
      log(log_level::info, "node", "draining", {{"signal", int64_t{sig}}});
      break;
    }
    if (ctx->cluster->left()) {
      log(log_level::info, "node", "draining", {{"after", "leaving"}});
      break;
    }
    if (root_down) {
      log(log_level::error, "node", "supervision tree gave up");
      exit_code = 1;
      break;
    }
  }
  if (exit_code == 0)
    drain(sys, *ctx, cfg);
  caf::anon_send_exit(root, caf::exit_reason::user_shutdown);
  {
    caf::scoped_actor self{sys};
    self->wait_for(root);
  }
  // The mailer front is no actor's: it outlives a crash of the delivery actor.
  ctx->mail_front->stop();
  // Detached actors' threads end only when their last handle is gone.
  ctx->dir->clear();
  log(log_level::info, "node", "stopped");
  return exit_code;
}

} // namespace chime
