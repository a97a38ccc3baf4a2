#include "runtime/metrics.hpp"

#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>

namespace chime {

namespace {

std::string family(const std::string& name) {
  return name.substr(0, name.find('{'));
}

struct family_def {
  const char* type;
  const char* help;
};

/// Every metric family a node exposes: each is in /metrics with its HELP
/// and TYPE from start-up, before anything is counted.
const std::map<std::string, family_def>& families() {
  static const std::map<std::string, family_def> all = {
    {"chime_actor_restarts_total",
     {"counter", "restarts of a supervised actor after it failed, by actor"}},
    {"chime_amqp_connected", {"gauge", "consumers connected to the broker"}},
    {"chime_breaker_state",
     {"gauge", "the email circuit breaker: 0 closed, 1 open, 2 half-open"}},
    {"chime_dead_bundle_parts_retried_total",
     {"counter", "deliveries of a bundle the broker dead-lettered whole, each sent"
                 " back alone through a retry queue"}},
    {"chime_dead_letters_total",
     {"counter", "deliveries the broker dead-lettered, journaled as dead"}},
    {"chime_deliveries_expired_total",
     {"counter", "occurrences past the catch-up window when they fell due"}},
    {"chime_deliveries_fenced_total",
     {"counter", "outcomes refused because this node lost the shard's lease"}},
    {"chime_deliveries_open",
     {"gauge", "deliveries recorded and not yet finished"}},
    {"chime_deliveries_total", {"counter", "delivery outcomes journaled, by status"}},
    {"chime_delivery_lateness_seconds",
     {"histogram", "time from a message's due instant to its sent outcome"}},
    {"chime_delivery_queue", {"gauge", "deliveries waiting to be sent"}},
    {"chime_due_next_hour", {"gauge", "occasions due within the next hour"}},
    {"chime_email_ambiguous_total",
     {"counter", "email requests whose answer never came (a time-out after the"
                 " request went out): the service may have accepted them, so"
                 " their retry may be a duplicate"}},
    {"chime_email_requests_total",
     {"counter", "email requests, by HTTP status or no_answer"}},
    {"chime_email_unsettled_resends_total",
     {"counter", "sends of a delivery whose earlier attempt has no recorded"
                 " outcome (its node stopped mid-send): each a possible"
                 " duplicate"}},
    {"chime_handoffs_total", {"counter", "deliveries confirmed by the broker"}},
    {"chime_email_concurrency_limit",
     {"gauge", "email requests allowed in flight (adapts to the service's latency)"}},
    {"chime_email_timeout_ms", {"gauge", "time-out of the next email request"}},
    {"chime_http_requests_total", {"counter", "HTTP requests answered, by status code"}},
    {"chime_import_lines_limit_hits_total",
     {"counter", "imports stopped at --import-lines-max lines (answered 413)"}},
    {"chime_journal_commits_total",
     {"counter", "journal transactions committed, each with a batch of writes"}},
    {"chime_journal_busy_microseconds_total",
     {"counter", "time a journal's connection spent on its batches and reads,"
                 " by journal: near a second a second, it sets the pace"}},
    {"chime_journal_up",
     {"gauge", "1 when the journal answered its last read of the gauges"
               " (read at most once a second)"}},
    {"chime_delivery_queue_full_total",
     {"counter", "deliveries sent back to wait in the broker: the delivery"
                 " actor's queue was full (--delivery-queue-max)"}},
    {"chime_outbox_republished_total",
     {"counter", "deliveries the outbox sweeper published again"}},
    {"chime_publish_buffer_full_total",
     {"counter", "hand-offs left to the outbox sweeper: the publisher's buffer was full"}},
    {"chime_queue_depth", {"gauge", "messages ready in a queue, by queue"}},
    {"chime_retries_via_broker_total",
     {"counter", "retries that wait in the broker's retry queues, not in the node"}},
    {"chime_rate_limit_tokens",
     {"gauge", "sends the rate limiter allows at once now (its bucket's tokens)"}},
    {"chime_rate_limiter_waits_total",
     {"counter", "times the rate limiter held sending back"}},
    {"chime_resident_limit_hits_total",
     {"counter", "users left in the due index for a later poll: --resident-users-max reached"}},
    {"chime_shards_owned", {"gauge", "shards whose lease this node holds"}},
    {"chime_users", {"gauge", "live users (PostgreSQL's running count: it may lag a second)"}},
    {"chime_users_created_total", {"counter", "users created (made durable)"}},
    {"chime_users_resident",
     {"gauge", "users resident in memory (due within the horizon); the rest"
               " wait, passivated, in the due index"}},
  };
  return all;
}

std::mutex registry_mtx;

std::map<std::string, std::unique_ptr<metric>>& registry() {
  static std::map<std::string, std::unique_ptr<metric>> metrics;
  return metrics;
}

std::map<std::string, std::unique_ptr<histogram>>& histograms() {
  static std::map<std::string, std::unique_ptr<histogram>> all;
  return all;
}

void check_family(const std::string& name, bool is_histogram) {
  auto i = families().find(family(name));
  if (i == families().end())
    throw std::logic_error{"metric family " + family(name)
                           + " is not in runtime/metrics.cpp's list"};
  if ((std::string{i->second.type} == "histogram") != is_histogram)
    throw std::logic_error{"metric family " + family(name) + " is a "
                           + i->second.type};
}

std::string seconds(int64_t us) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", static_cast<double>(us) / 1e6);
  return buf;
}

} // namespace

void histogram::observe_us(int64_t us) {
  for (size_t i = 0; i < bounds_us.size(); ++i)
    if (us <= bounds_us[i])
      counts_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_us_.fetch_add(us, std::memory_order_relaxed);
}

histogram& get_histogram(const std::string& name) {
  check_family(name, true);
  std::lock_guard<std::mutex> guard{registry_mtx};
  auto& h = histograms()[name];
  if (!h)
    h = std::make_unique<histogram>();
  return *h;
}

metric& get_metric(const std::string& name) {
  check_family(name, false);
  std::lock_guard<std::mutex> guard{registry_mtx};
  auto& m = registry()[name];
  if (!m)
    m = std::make_unique<metric>();
  return *m;
}

std::map<std::string, int64_t> metric_values() {
  std::lock_guard<std::mutex> guard{registry_mtx};
  std::map<std::string, int64_t> out;
  for (auto& [name, m] : registry())
    out.emplace(name, m->value());
  return out;
}

std::string render_metrics() {
  std::lock_guard<std::mutex> guard{registry_mtx};
  std::map<std::string, std::string> samples; // family -> its sample lines
  for (auto& [name, m] : registry())
    samples[family(name)] += name + " " + std::to_string(m->value()) + "\n";
  for (auto& [name, h] : histograms()) {
    auto& out = samples[family(name)];
    for (size_t i = 0; i < histogram::bounds_us.size(); ++i)
      out += name + "_bucket{le=\"" + seconds(histogram::bounds_us[i]) + "\"} "
             + std::to_string(h->bucket(i)) + "\n";
    out += name + "_bucket{le=\"+Inf\"} " + std::to_string(h->count()) + "\n"
           + name + "_sum " + seconds(h->sum_us()) + "\n" + name + "_count "
           + std::to_string(h->count()) + "\n";
  }
  std::string out;
  for (auto& [fam, def] : families())
    out += "# HELP " + fam + " " + def.help + "\n# TYPE " + fam + " " + def.type
           + "\n" + samples[fam];
  return out;
}

} // namespace chime
