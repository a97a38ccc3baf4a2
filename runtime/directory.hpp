#pragma once

#include <caf/actor.hpp>
#include <caf/actor_cast.hpp>

#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace chime {

/// Where a node's long-lived actors are found by name ("journal", "shard/17",
/// "delivery", ...). The supervisor that (re)starts an actor registers its
/// new handle here, so callers always reach the current incarnation instead
/// of a handle to one that crashed. Shared by the node's actors and its HTTP
/// threads; thread-safe.
class directory {
public:
  void put(const std::string& name, caf::actor handle) {
    std::lock_guard<std::mutex> guard{mtx_};
    actors_[name] = std::move(handle);
  }

  /// The current handle, or an invalid one when none is registered.
  caf::actor get(const std::string& name) const {
    std::lock_guard<std::mutex> guard{mtx_};
    auto i = actors_.find(name);
    return i == actors_.end() ? caf::actor{} : i->second;
  }

  /// The current handle as the typed interface `Handle` its actor
  /// implements (invalid when none is registered).
  template <class Handle>
  Handle get_as(const std::string& name) const {
    return caf::actor_cast<Handle>(get(name));
  }

  void erase(const std::string& name) {
    std::lock_guard<std::mutex> guard{mtx_};
    actors_.erase(name);
  }

  void clear() {
    std::lock_guard<std::mutex> guard{mtx_};
    actors_.clear();
  }

private:
  mutable std::mutex mtx_;
  std::map<std::string, caf::actor> actors_;
};

using directory_ptr = std::shared_ptr<directory>;

} // namespace chime
