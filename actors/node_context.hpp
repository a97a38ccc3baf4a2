#pragma once

#include "actors/mailer.hpp"
#include "actors/schedule.hpp"
#include "actors/sharding.hpp"
#include "runtime/clock.hpp"
#include "runtime/directory.hpp"
#include "runtime/supervision_board.hpp"

#include <caf/fwd.hpp>

#include <cstdint>
#include <functional>
#include <iterator>
#include <string_view>
#include <memory>
#include <vector>

namespace chime {

class cluster_view;
class mailer_front;

/// A new mailer front (actors/mailer_front.hpp), with no transport yet.
std::shared_ptr<mailer_front> make_mailer_front();

/// What a node's actors share: the clock, where to find each other, and the
/// settings they act on. Built once by the node before any actor starts and
/// never changed afterwards; actors hold it by shared pointer.
struct node_context {
  clock_ptr clock;
  directory_ptr dir;
  /// Restart intensity of the node's supervisors, the shard host's too.
  uint32_t restart_max = 5;
  millis restart_window{10000};
  /// The node's supervisors and recent failures, as reported (never null).
  std::shared_ptr<supervision_board> supervision
    = std::make_shared<supervision_board>();
  schedule_rules rules;
  millis horizon{std::chrono::hours{1}}; ///< users due within stay resident
  millis poll_interval{std::chrono::minutes{1}}; ///< Chime time between loads
  /// User actors resident in this node at most (all shards); past it a
  /// user waits in the due index for a later poll, as those due first fire
  /// and passivate.
  uint32_t resident_users_max = 50000; ///< config/settings.hpp says why
  std::shared_ptr<std::atomic<int64_t>> resident_users =
    std::make_shared<std::atomic<int64_t>>(0);
  uint32_t shard_count = 256;
  /// The shards of a node outside a cluster (the simulator): all of them,
  /// or a fixed part, unfenced.
  std::vector<uint32_t> owned_shards;
  /// In a cluster: the leases this node holds, the members, its peers and
  /// its share of the email rate (mutable, thread-safe). Null outside one.
  std::shared_ptr<cluster_view> cluster;
  /// The shards this node acts for now: its leases in a cluster, else
  /// owned_shards.
  std::vector<uint32_t> shards_here() const;
  /// How long before its instant an occasion is fired: recorded and handed
  /// to the broker then, and held by the delivery actor until the instant.
  /// The outbox is written ahead, so that at the instant (when a popular
  /// date brings everyone at once) only the re-check, the send and the
  /// outcome remain: in a 100,000 burst that took the node's and
  /// PostgreSQL's CPU a message over the fake's from 2.7 to 2.2 at a lead
  /// of 2 s, and to 2.0 at 10 s (the whole burst fired ahead: PostgreSQL's
  /// CPU a message 64-72 us -> 49-55). Well under `hold_max`, so that a held
  /// delivery never goes back to the broker.
  millis fire_lead{10000};
  uint32_t delivery_concurrency_max = 1024;
  /// Deliveries queued in the delivery actor at most (what the consumers'
  /// prefetch lets in: 1,000 deliveries, in messages of up to 200, plus
  /// peers' forwards).
  uint32_t delivery_queue_max = 60000;
  uint32_t delivery_attempts_max = 25;
  millis backoff_base{200};
  millis backoff_cap{30000};
  millis email_timeout{5000};
  /// The email seam: a mailer actor behind the node's mailer front,
  /// answering (send_atom, email, message, idempotency key) with a
  /// send_result (the simulator's, a test's), or when there is none the
  /// transport the front drives itself (a node's email client). The actor
  /// wins, so that a simulator or test that sets it on a node's context
  /// never sends real email.
  mailer_factory make_mailer;
  mail_transport_factory make_mail_transport;
  /// The node's mailer front: it outlives a crash of the delivery actor
  /// (its successor drives it on), not the node.
  std::shared_ptr<mailer_front> mail_front = make_mailer_front();
  uint64_t seed = 0; ///< for jitter; fixed in simulations
  double clock_rate = 1.0; ///< Chime seconds per real second
  /// Real monotonic time for rate limiting and the circuit breaker, which
  /// pace requests to the email service in its time, not Chime's.
  std::function<std::chrono::steady_clock::time_point()> monotonic
    = [] { return std::chrono::steady_clock::now(); };
  double email_rate_per_s = 0; ///< this node's share; 0: unlimited
  uint32_t email_burst = 1;
  uint32_t breaker_failures_max = 10;
  millis breaker_cooldown{5000};
  /// A delivery recorded but not handed off for this long (Chime time) is
  /// republished by the outbox sweeper, which runs every sweep interval.
  millis outbox_grace{10000};
  std::chrono::milliseconds outbox_sweep_interval{2000}; ///< real time
  /// The longest wait before a delivery with no owner to go to (a takeover
  /// in progress) is looked at again: about a membership round.
  std::chrono::milliseconds reroute_max{1000};
  /// Test-only: each switch breaks one guarantee on purpose, so that the
  /// simulator's checker can be shown to catch it. Never set by a node.
  struct {
    bool no_outbox_sweeper = false; ///< lost handoffs are never republished
    bool no_recheck = false; ///< send without asking the journal if owed
    bool no_fencing = false; ///< send for any shard held, whatever its lease
    /// An update that changes an occasion's date or zone plans it from next
    /// year: a corrected date still ahead this year is never sent.
    bool next_year_on_update = false;
  } broken;
};

using context_ptr = std::shared_ptr<const node_context>;

/// Directory names of a node's actors.
inline constexpr const char* shard_host_name = "shards";
inline constexpr const char* due_poller_name = "due_poller";
inline constexpr const char* http_name = "http";
inline constexpr const char* membership_name = "membership";
inline constexpr const char* journal_name = "journal";
/// The send path's journal connections (hand-offs, attempts, outcomes),
/// apart from the due records' so that a burst's sends do not queue behind
/// them. A delivery's writes after its fire all go to the one of its shard,
/// so that no two of them update the same row. Two, so that one runs its
/// statements while the other waits for its commit to be flushed: 100,000
/// burst in six alternating pairs (2026-12-06), 12,775 -> 13,505
/// messages/s on average, five pairs of six faster. (Three, tried the
/// same day: 10,363 -> 10,147 in six pairs, no faster. Four, tried on
/// 2026-12-02 when the send path wrote more: no faster, and after a
/// statement time-out the abandoned server session of one still held rows
/// the next wanted: deadlocks, one run at 372 messages/s.)
inline constexpr const char* send_journal_names[] = {"journal/send/1",
                                                     "journal/send/2"};
/// The send journal of a user's deliveries.
inline const char* send_journal_of(std::string_view user_id,
                                   uint32_t shard_count) {
  constexpr auto n = std::size(send_journal_names);
  return send_journal_names[shard_of(user_id, shard_count) % n];
}
/// Two more for bulk imports, whose large batches would otherwise hold up
/// the creates and due records queued behind them. An import keeps two
/// batches in flight on each (one committing, the next queued behind it),
/// so that the connections' statements run while more batches are built.
/// (A third connection, tried: +3.5 % in six alternating pairs, noise.)
inline constexpr const char* import_journal_names[] = {"journal/import/1",
                                                       "journal/import/2"};
inline constexpr const char* delivery_name = "delivery";
inline constexpr const char* handoff_name = "handoff";
inline constexpr const char* dead_letters_name = "dead_letters";
std::string shard_name(uint32_t shard);

/// How long actors wait for the journal before treating it as unavailable.
inline constexpr std::chrono::seconds journal_timeout{15};

/// How long a delivery may wait in a node while its broker message is
/// unacked before it goes back to the broker as a retry: well under
/// RabbitMQ's consumer_timeout (30 min by default, often set lower), past
/// which the broker closes the channel.
inline constexpr std::chrono::seconds hold_max{20};

} // namespace chime
