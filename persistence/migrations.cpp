#include "persistence/migrations.hpp"

#include "runtime/log.hpp"

#include <pqxx/pqxx>

#include <string>
#include <vector>

namespace chime {

namespace {

struct migration {
  int version;
  const char* sql;
};

// Append only: a released migration is never edited, a change is a new one.
const std::vector<migration>& migrations() {
  static const std::vector<migration> list = {
    {1, R"sql(
CREATE TABLE journal (
  seq bigserial PRIMARY KEY,
  recorded_at timestamptz NOT NULL DEFAULT now(),
  at_ms bigint NOT NULL,
  kind text NOT NULL,
  user_id text,
  data jsonb NOT NULL
);
CREATE TABLE users (
  id text PRIMARY KEY,
  first_name text NOT NULL,
  last_name text NOT NULL,
  email text NOT NULL,
  timezone text NOT NULL,
  dates jsonb NOT NULL,
  created_at_ms bigint NOT NULL,
  updated_at_ms bigint NOT NULL
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
CREATE TABLE due_index (
  user_id text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  occasion text NOT NULL,
  shard integer NOT NULL,
  due_at_ms bigint NOT NULL,
  local_date date NOT NULL,
  PRIMARY KEY (user_id, occasion)
);
CREATE INDEX due_index_due_at ON due_index (due_at_ms, shard);
CREATE TABLE deliveries (
  key text PRIMARY KEY,
  user_id text NOT NULL,
  occasion text NOT NULL,
  local_date date NOT NULL,
  due_at_ms bigint NOT NULL,
  status text NOT NULL CHECK (status IN ('scheduled', 'handed_off', 'sent',
    'failed', 'dead', 'expired', 'cancelled')),
  attempts integer NOT NULL DEFAULT 0,
  last_error text,
  sent_at_ms bigint,
  email text NOT NULL,
  message text NOT NULL,
  created_at_ms bigint NOT NULL,
  updated_at_ms bigint NOT NULL
);
CREATE INDEX deliveries_user ON deliveries (user_id, due_at_ms);
CREATE INDEX deliveries_open ON deliveries (due_at_ms)
  WHERE status IN ('scheduled', 'handed_off', 'failed');
CREATE INDEX deliveries_status ON deliveries (status, due_at_ms);
)sql"},
    // The cluster's coordination, as Orleans' SQL membership table and
    // Temporal's shard range ids: times are the database's, so that nodes'
    // clocks never decide who owns what.
    {2, R"sql(
CREATE TABLE cluster_members (
  name text PRIMARY KEY,
  state text NOT NULL CHECK (state IN ('joining', 'up', 'leaving', 'down')),
  http_url text NOT NULL,
  cluster_address text NOT NULL,
  heartbeat_at timestamptz NOT NULL DEFAULT now(),
  joined_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE shard_leases (
  shard integer PRIMARY KEY,
  owner text,
  epoch bigint NOT NULL DEFAULT 0 CHECK (epoch >= 0),
  expires_at timestamptz NOT NULL DEFAULT '-infinity'
);
CREATE FUNCTION shard_epoch_never_back() RETURNS trigger AS $$
BEGIN
  IF NEW.epoch < OLD.epoch THEN
    RAISE EXCEPTION 'shard % epoch went back from % to %', OLD.shard,
      OLD.epoch, NEW.epoch;
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER shard_epoch_never_back BEFORE UPDATE ON shard_leases
  FOR EACH ROW EXECUTE FUNCTION shard_epoch_never_back();
)sql"},
    // An attempt is counted when it begins, its outcome when it is known: a
    // node that dies between the two leaves begun > attempts behind, and
    // whoever sends next knows it may be sending a duplicate.
    {3, R"sql(
ALTER TABLE deliveries ADD COLUMN begun_attempts integer NOT NULL DEFAULT 0;
)sql"},
    // The due poll reads pages by (due_at_ms, user_id), so that a million
    // users due at one instant are read a page at a time, each page costing
    // its size. The shard stays in the index so a page is filtered there.
    {4, R"sql(
CREATE INDEX due_index_due_user ON due_index (due_at_ms, user_id) INCLUDE (shard);
DROP INDEX due_index_due_at;
)sql"},
    // The outbox sweep reads the deliveries untouched longest, of each
    // kind, through these: its cost stays that of what it claims while a
    // burst holds a million deliveries open.
    {5, R"sql(
CREATE INDEX deliveries_scheduled_touched ON deliveries (updated_at_ms)
  WHERE status = 'scheduled';
CREATE INDEX deliveries_unsettled_touched ON deliveries (updated_at_ms)
  WHERE status IN ('handed_off', 'failed');
)sql"},
    // Room on each page for a row's next version: the re-check before an
    // attempt changes no indexed column, so with room it is a HOT update
    // (no entry in any of the six indexes) instead of a new row version
    // indexed six times (131 us a row in a 30,000 burst, the send path's
    // dearest statement).
    {6, R"sql(
ALTER TABLE deliveries SET (fillfactor = 50);
)sql"},
    // Every open delivery is in one of migration 5's partial indexes, which
    // a count of the open ones combines: this one only cost each fire and
    // each change of status one more index entry.
    {7, R"sql(
DROP INDEX deliveries_open;
)sql"},
    // The foreign key checked each due row against users with a query of
    // its own (27 us a due row in an import, half its database time). The
    // journal's statements keep the two tables in step instead: a user's due
    // rows are written only after its row, and deleted with it.
    {8, R"sql(
ALTER TABLE due_index DROP CONSTRAINT due_index_user_id_fkey;
)sql"},
    // A delivery's key begins with its user's id ("user:occasion:date"), so
    // the primary key finds a user's deliveries as one range, in byte order
    // whatever the database's locale. The index on (user_id, due_at_ms) cost
    // each of a delivery's three row versions one more index entry.
    {9, R"sql(
ALTER TABLE deliveries ALTER COLUMN key TYPE text COLLATE "C";
DROP INDEX deliveries_user;
)sql"},
    // Deliveries listed by status: the ones in flight (scheduled, handed
    // off) are few but in a burst, and migration 5's indexes find them when
    // asked for. Outside this index they cost no entry at their insert nor
    // at the re-check before their send.
    {10, R"sql(
CREATE INDEX deliveries_settled_status ON deliveries (status, due_at_ms)
  WHERE status NOT IN ('scheduled', 'handed_off');
DROP INDEX deliveries_status;
)sql"},
    // The keys every index here compares are ids, dates' names and statuses:
    // ASCII, compared byte by byte in the "C" collation, where PostgreSQL 15
    // runs the locale's strcoll (C.UTF-8 included) for each comparison of
    // a default-collated column. Equality is byte equality either way; only
    // an order of non-ASCII emails, which nothing lists, would differ.
    {11, R"sql(
ALTER TABLE users ALTER COLUMN id TYPE text COLLATE "C",
                  ALTER COLUMN email TYPE text COLLATE "C";
ALTER TABLE due_index ALTER COLUMN user_id TYPE text COLLATE "C",
                      ALTER COLUMN occasion TYPE text COLLATE "C";
ALTER TABLE deliveries ALTER COLUMN user_id TYPE text COLLATE "C",
                       ALTER COLUMN status TYPE text COLLATE "C";
)sql"},
    // The journal is written at every change and read rarely, and whole:
    // as json its documents are checked and kept as written, where jsonb
    // took each apart into its binary form (measured: a COPY of 300,000
    // created users' events 2.5-3.1 s as jsonb, 1.8 s as json; the events
    // were the dearest table of an import).
    {12, R"sql(
ALTER TABLE journal ALTER COLUMN data TYPE json USING data::json;
)sql"},
    // A fire moves an occasion on in place: the instant after the one its
    // row is filed under goes into columns no index names (a HOT update,
    // no index entry; the room on the page for it is the fillfactor's). The
    // due poll's next pass over the row files it anew (load_due).
    {13, R"sql(
ALTER TABLE due_index ADD COLUMN next_due_at_ms bigint,
                      ADD COLUMN next_local_date date;
ALTER TABLE due_index SET (fillfactor = 70);
)sql"},
    // Whether a delivery's user was replaced or deleted since its message
    // was rendered at its fire: only then does the re-check before a send
    // read the user (a users lookup for every message was 8 us of the
    // database's time, half its re-check). A replace marks the user's
    // deliveries, and their due rows for the fire still to come, which
    // may render from a copy of the user older than the replace.
    {14, R"sql(
ALTER TABLE deliveries ADD COLUMN user_changed boolean NOT NULL DEFAULT false;
ALTER TABLE due_index ADD COLUMN user_replaced boolean NOT NULL DEFAULT false;
)sql"},
    // A batch's events are one document of tens of KB, compressed as it is
    // stored: lz4 does it in a third of pglz's time at about the same size
    // (measured on a 100,000 burst's 1,246 documents: 62-88 ms against
    // 162-277 ms, 6.5 MB against 5.8 MB), 1.2 us of the database's CPU a
    // message. New documents only; a server built without lz4 keeps pglz.
    {15, R"sql(
DO $$ BEGIN
  ALTER TABLE journal ALTER COLUMN data SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN NULL;
END $$;
)sql"},
  };
  return list;
}

} // namespace

void migrate(pqxx::connection_base& conn) {
  {
    pqxx::work w{conn};
    // Several connections of a node migrate at once: IF NOT EXISTS alone
    // races on the table's type.
    w.exec("SELECT pg_advisory_xact_lock(4242001)");
    w.exec("CREATE TABLE IF NOT EXISTS schema_migrations ("
           " version integer PRIMARY KEY,"
           " applied_at timestamptz NOT NULL DEFAULT now())");
    w.commit();
  }
  for (auto& m : migrations()) {
    pqxx::work w{conn};
    // Serialises migrating nodes; released at commit.
    w.exec("SELECT pg_advisory_xact_lock(4242001)");
    auto done = w.exec_params(
      "SELECT 1 FROM schema_migrations WHERE version = $1", m.version);
    if (!done.empty())
      continue;
    w.exec(m.sql);
    w.exec_params("INSERT INTO schema_migrations (version) VALUES ($1)",
                  m.version);
    w.commit();
    log(log_level::info, "journal", "schema migrated",
        {{"version", int64_t{m.version}}});
  }
}

} // namespace chime
