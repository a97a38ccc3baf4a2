#pragma once

// Every atom and message type that crosses an actor boundary in Chime. Which
// requests each seam answers, with which replies, is its typed interface:
// journal.hpp, mailer.hpp, handoff.hpp, delivery.hpp.

#include "actors/delivery_status.hpp"
#include "actors/user_record.hpp"

#include <caf/actor.hpp>
#include <caf/atom.hpp>
#include <caf/fwd.hpp>
#include <caf/meta/type_name.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace chime {

// -- journal seam -------------------------------------------------------------
using create_atom = caf::atom_constant<caf::atom("create")>;     // (user_view) -> ok
using replace_atom = caf::atom_constant<caf::atom("replace")>;   // (user_view) -> ok
using remove_atom = caf::atom_constant<caf::atom("remove")>;     // (id, at_ms) -> ok
using read_atom = caf::atom_constant<caf::atom("read")>;         // (id) -> user_view
using list_atom = caf::atom_constant<caf::atom("list")>;         // (cursor, limit) -> users_page
using load_due_atom = caf::atom_constant<caf::atom("load_due")>; // (until_ms, shards, after_due_ms, after_user, limit) -> due_page
using fire_atom = caf::atom_constant<caf::atom("fire")>;         // (fire_request) -> bool recorded
using attempt_atom = caf::atom_constant<caf::atom("attempt")>;   // (key, now_ms, catch_up_ms) -> attempt_verdict; counts the attempt as begun
using outcome_atom = caf::atom_constant<caf::atom("outcome")>;   // (delivery_outcome) -> ok
using deliveries_atom = caf::atom_constant<caf::atom("deliveries")>; // (user, status, limit) -> vector<delivery_record>
using ping_atom = caf::atom_constant<caf::atom("ping")>;         // () -> ok
using stats_atom = caf::atom_constant<caf::atom("stats")>;       // (now_ms) -> journal_stats
using outbox_atom = caf::atom_constant<caf::atom("outbox")>;     // (scheduled_before_ms, open_before_ms, limit, now_ms) -> vector<delivery_record>, each touched at now_ms
using redrive_atom = caf::atom_constant<caf::atom("redrive")>;   // (key, at_ms) -> delivery_record: dead -> scheduled
using import_atom = caf::atom_constant<caf::atom("import")>;     // (vector<user_view>) -> vector<error>: each created as by create, or its refusal (conflict: email taken)

// -- node-internal ------------------------------------------------------------
using flush_atom = caf::atom_constant<caf::atom("flush")>;
using tick_atom = caf::atom_constant<caf::atom("tick")>;
using wake_atom = caf::atom_constant<caf::atom("wake")>;
using submit_atom = caf::atom_constant<caf::atom("submit")>; // handoff seam: (delivery_record)
using pending_atom = caf::atom_constant<caf::atom("pending")>; // handoff: () -> int64_t, when the oldest delivery not yet confirmed was taken (Chime ms; INT64_MAX: none)
using probe_atom = caf::atom_constant<caf::atom("probe")>;     // delivery: () -> int64_t, when the newest outbox probe that came back through the broker was sent (Chime ms; INT64_MIN: none)
using send_atom = caf::atom_constant<caf::atom("send")>;     // mailer seam: (email, message, key, timeout_ms) -> send_result
using mail_done_atom = caf::atom_constant<caf::atom("mail_done")>; // mail transport -> its driver: answers wait in the transport
using retry_atom = caf::atom_constant<caf::atom("retry")>;
using dead_letter_atom = caf::atom_constant<caf::atom("deadletter")>; // handoff: (delivery_record) -> ok once the dead-letter queue has it
using upsert_atom = caf::atom_constant<caf::atom("upsert")>; // shard: (user_view)
using evict_atom = caf::atom_constant<caf::atom("evict")>;   // shard: (user id)
using drain_atom = caf::atom_constant<caf::atom("drain")>;   // delivery: (user id) -> ok once idle; (shards) -> ok once none in flight
using take_atom = caf::atom_constant<caf::atom("take")>;     // shard host: (shard) starts it here
using give_atom = caf::atom_constant<caf::atom("give")>;     // shard host: (shard) -> ok, stopped here
using route_atom = caf::atom_constant<caf::atom("route")>;   // delivery: (record, receipt) to the shard's owner
// -- cluster membership (cluster/membership.hpp) ----------------------------------
using hello_atom = caf::atom_constant<caf::atom("hello")>;   // (name) -> nonce: a joiner's challenge
using join_atom = caf::atom_constant<caf::atom("join")>;     // (name, http, addr, nonce, client nonce, mac) -> proof ("" refused); (seed) from the API
using leave_atom = caf::atom_constant<caf::atom("leave")>;   // () -> ok once every lease is released
using release_atom = caf::atom_constant<caf::atom("release")>; // (shards): their sends ended, release the leases
using connect_atom = caf::atom_constant<caf::atom("connect")>; // transport: (address) -> caf::actor, the peer's membership actor
// -- coordination seam (membership and leases; PostgreSQL or in memory) ----------
// Every request names the requesting node (a partition refuses it). Times
// (heartbeats, lease expiries) are the store's own.
using member_atom = caf::atom_constant<caf::atom("member")>;   // (member_info) -> ok: insert or update, heartbeat now
using beat_atom = caf::atom_constant<caf::atom("beat")>;       // (name, state) -> bool: heartbeat, false when no row
using members_atom = caf::atom_constant<caf::atom("members")>; // (name, lease_ms) -> vector<member_info>, stale ones marked down first
using renew_atom = caf::atom_constant<caf::atom("renew")>;     // (name, vector<shard_lease>, lease_ms) -> vector<shard_lease> renewed
using acquire_atom = caf::atom_constant<caf::atom("acquire")>; // (name, shards, lease_ms) -> vector<shard_lease> taken (epoch + 1)
using leases_atom = caf::atom_constant<caf::atom("leases")>;   // (name, shard_count) -> vector<shard_owner> (owner empty: free or expired)
// (release_atom, name, vector<shard_lease>) -> ok: owner cleared where the epoch still matches

/// One member of the cluster as the membership table shows it.
struct member_info {
  std::string name;
  std::string state; ///< joining | up | leaving | down
  std::string http_url;
  std::string cluster_address; ///< host:port of its middleman
  uint32_t shards = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, member_info& x) {
  return f(caf::meta::type_name("member_info"), x.name, x.state, x.http_url,
           x.cluster_address, x.shards);
}

/// One shard's lease as the lease table shows it.
struct shard_owner {
  std::string owner; ///< empty: free
  uint64_t epoch = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, shard_owner& x) {
  return f(caf::meta::type_name("shard_owner"), x.owner, x.epoch);
}

/// A lease a node holds: the shard and its epoch.
struct shard_lease {
  uint32_t shard = 0;
  uint64_t epoch = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, shard_lease& x) {
  return f(caf::meta::type_name("shard_lease"), x.shard, x.epoch);
}
// Broker receipts: a consumer sends (deliver_atom, record, receipt) and gets
// (ack_atom, std::vector<receipt>) or (nack_atom, receipt, requeue) back:
// acks in bundles, since each message woke a consumer waiting at its
// prefetch limit.
using deliver_atom = caf::atom_constant<caf::atom("deliver")>;
using ack_atom = caf::atom_constant<caf::atom("ack")>;
using nack_atom = caf::atom_constant<caf::atom("nack")>;

/// The next send of one occasion of a user.
struct due_entry {
  std::string occasion;
  int64_t due_at_ms = 0;
  std::string local_date; ///< "YYYY-MM-DD"
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, due_entry& x) {
  return f(caf::meta::type_name("due_entry"), x.occasion, x.due_at_ms,
           x.local_date);
}

/// One message's delivery as the journal records it.
struct delivery_record {
  std::string key;
  std::string user_id;
  std::string occasion;
  std::string local_date;
  int64_t due_at_ms = 0;
  delivery_status status = delivery_status::scheduled;
  uint32_t attempts = 0;
  std::string last_error; ///< empty: none
  int64_t sent_at_ms = 0; ///< 0: not sent
  std::string email;
  std::string message;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, delivery_record& x) {
  return f(caf::meta::type_name("delivery_record"), x.key, x.user_id,
           x.occasion, x.local_date, x.due_at_ms, x.status, x.attempts,
           x.last_error, x.sent_at_ms, x.email, x.message);
}

/// A user with its next due sends, and (when read) its recent deliveries.
/// `due` replaces the user's whole due index on create and replace.
struct user_view {
  user_record user;
  std::vector<due_entry> due;
  std::vector<delivery_record> deliveries;
  int64_t at_ms = 0; ///< when the change happened, on Chime's clock
  /// The user's deliveries as read ("rows/closed"): an update computed from
  /// that read is written only if they are still so, so that a message
  /// recorded or sent in between is never missed.
  std::string deliveries_version;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, user_view& x) {
  return f(caf::meta::type_name("user_view"), x.user, x.due, x.deliveries,
           x.at_ms, x.deliveries_version);
}

struct users_page {
  std::vector<user_view> users;
  std::string next_cursor; ///< empty: no more
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, users_page& x) {
  return f(caf::meta::type_name("users_page"), x.users, x.next_cursor);
}

/// One page of the users due by some instant, in the order of their due
/// rows (due_at_ms, user_id), each user with all its due rows by then. The
/// next page starts after the last row this one read; a user with rows on
/// two pages comes on both.
struct due_page {
  std::vector<user_view> users;
  int64_t last_due_ms = 0;
  std::string last_user;
  bool more = false; ///< the page was full: there may be more
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, due_page& x) {
  return f(caf::meta::type_name("due_page"), x.users, x.last_due_ms,
           x.last_user, x.more);
}

/// A shard's report that an occasion fell due: the journal records the
/// delivery and moves the due index to `next` in one transaction, but only
/// if the index still holds `due` (otherwise the report is stale).
struct fire_request {
  std::string user_id;
  due_entry due;
  due_entry next;
  delivery_record delivery;
  int64_t at_ms = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, fire_request& x) {
  return f(caf::meta::type_name("fire_request"), x.user_id, x.due, x.next,
           x.delivery, x.at_ms);
}

/// Whether a delivery may be attempted now; `attempts` counts this one (the
/// outcome records it).
struct attempt_verdict {
  bool proceed = false;
  uint32_t attempts = 0;
  delivery_status status = delivery_status::scheduled;
  bool missing = false; ///< no such delivery (status says nothing)
  /// Its shard's lease moved on: the new owner decides (nothing was counted).
  bool fenced = false;
  /// An earlier attempt began and its outcome was never recorded (its node
  /// stopped mid-send): this send may be a duplicate.
  bool unsettled = false;
  /// When proceeding: whether the user was replaced or deleted since the
  /// message was rendered at its fire. If so, `user` is them as they are
  /// now, and what is sent is rendered from them; if not, `email` and
  /// `message` are the record's, rendered from the same user (reading the
  /// user at every re-check cost each message a users lookup, 8 us of the
  /// database's time, for the rare message whose user changed).
  bool user_changed = false;
  user_record user;
  std::string email;
  std::string message;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, attempt_verdict& x) {
  return f(caf::meta::type_name("attempt_verdict"), x.proceed, x.attempts,
           x.status, x.missing, x.fenced, x.unsettled, x.user_changed, x.user,
           x.email, x.message);
}

/// "fenced", "missing" or the delivery's status: for logs and traces.
inline std::string_view verdict_text(const attempt_verdict& v) {
  return v.fenced ? "fenced" : v.missing ? "missing" : to_string(v.status);
}

/// What came of an attempt (or of the broker's dead-lettering). The attempt
/// counts itself as begun; its outcome settles that count here.
struct delivery_outcome {
  std::string key;
  delivery_status status = delivery_status::sent; ///< sent | failed | dead
  std::string error;
  int64_t at_ms = 0;
  uint32_t attempts = 0; ///< the attempt this is the outcome of; 0: none
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, delivery_outcome& x) {
  return f(caf::meta::type_name("delivery_outcome"), x.key, x.status, x.error,
           x.at_ms, x.attempts);
}

/// Identifies one consumed broker message, so that it can be acked later.
/// Tags are per connection: `connection` tells a stale receipt (from before
/// a reconnect, whose message the broker redelivers anyway) from a live one.
/// A message carrying a bundle (`parts` > 1) is acked once each of its
/// deliveries is; one of them that goes dead is dead-lettered on its own
/// (`dead_letter_atom` to the handoff) before its part is acked, since the
/// broker can dead-letter only whole messages.
struct receipt {
  uint64_t tag = 0;
  uint64_t connection = 0;
  caf::actor consumer;
  uint32_t parts = 1;

  bool is_part() const {
    return parts > 1;
  }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, receipt& x) {
  return f(caf::meta::type_name("receipt"), x.tag, x.connection, x.consumer,
           x.parts);
}

/// The email service's answer to one request.
struct send_result {
  int http_status = 0;       ///< 0: no answer (connect error, time-out)
  int64_t retry_after_ms = -1; ///< from Retry-After; -1: none
  std::string error;
  /// The request went out and its answer never came: the service may have
  /// accepted it, and a retry may be a duplicate.
  bool ambiguous = false;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, send_result& x) {
  return f(caf::meta::type_name("send_result"), x.http_status,
           x.retry_after_ms, x.error, x.ambiguous);
}

struct journal_stats {
  int64_t users = 0;
  int64_t due_next_hour = 0;
  int64_t pending_deliveries = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, journal_stats& x) {
  return f(caf::meta::type_name("journal_stats"), x.users, x.due_next_hour,
           x.pending_deliveries);
}

/// Registers every type above with the actor system (and the error
/// categories of every subsystem).
void add_chime_types(caf::actor_system_config& cfg);

} // namespace chime
