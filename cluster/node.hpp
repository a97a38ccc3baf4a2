#pragma once

namespace chime {

struct settings;

/// Runs one Chime node until SIGTERM or SIGINT: builds the actor system and
/// the node's supervision tree (journal, delivery, shards, due poller), then
/// serves the HTTP API. On a signal it stops intake, stops the tree (which
/// flushes what the journal holds) and returns 0; it returns non-zero when
/// the tree gave up (restart intensity exceeded) or the port is taken.
int run_node(const settings& cfg);

} // namespace chime
