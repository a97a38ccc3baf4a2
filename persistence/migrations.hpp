#pragma once

namespace pqxx {
class connection_base;
}

namespace chime {

/// Brings the schema up to the newest version, one transaction per version,
/// under an advisory lock so that nodes starting together do not race.
/// Applied versions are recorded in `schema_migrations` and never re-run.
void migrate(pqxx::connection_base& conn);

} // namespace chime
