#pragma once

#include "actors/node_context.hpp"

#include <string>
#include <string_view>

namespace chime {

/// GET /v1/supervision: the node's supervision tree from its root, each
/// supervisor with its strategy and intensity limit, each child with its
/// restarts and last exit, and the node's most recent failures.
std::string supervision_json(const node_context& ctx);

/// GET /v1/dashboard, and each event of its stream: everything the
/// dashboard shows of this node, from the gauges and counters the node
/// keeps anyway (nothing here reads the database).
std::string dashboard_json(const node_context& ctx);

/// GET /dashboard: the page, compiled in from net/dashboard.html.
std::string_view dashboard_page();

} // namespace chime
