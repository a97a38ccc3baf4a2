#pragma once

#include "actors/node_context.hpp"

#include <memory>

namespace chime {

struct settings;

/// Sets each occasion kind's send time from `cfg` (once, at start-up).
void configure_occasions(const settings& cfg);

/// The node context `cfg` describes: clock, rules, intervals, delivery
/// settings, and mailers that call the email service at `cfg.email_url`.
std::shared_ptr<node_context> make_context(const settings& cfg);

/// Runs one Chime node until SIGTERM or SIGINT: builds the actor system and
/// the node's supervision tree (journal, delivery, shards, due poller), then
/// serves the HTTP API. On a signal it stops intake, stops the tree (which
/// flushes what the journal holds) and returns 0; it returns non-zero when
/// the tree gave up (restart intensity exceeded) or the port is taken.
int run_node(const settings& cfg);

} // namespace chime
