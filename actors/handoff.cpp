#include "actors/handoff.hpp"

#include "actors/node_context.hpp"
#include "runtime/directory.hpp"

#include <caf/all.hpp>

namespace chime {

handoff_actor handoff_at(const directory& dir) {
  return dir.get_as<handoff_actor>(handoff_name);
}

} // namespace chime
