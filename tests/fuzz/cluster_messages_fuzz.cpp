// Fuzzes what one node deserializes from another: CAF 0.17's binary
// deserializer over the input, as a whole `caf::message` the way BASP reads
// one (type names, then values, any registered type), and as each Chime
// message type on its own (the first byte picks it). Properties: what decodes
// encodes, decodes again, and encodes to the same bytes. A peer's cluster
// address (which a joiner states and its peers later dial) is parsed too.

#include "actors/protocol.hpp"
#include "cluster/membership.hpp"
#include "tests/fuzz/fuzz_check.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>
#include <caf/message.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace {

using namespace chime;
using bytes = std::vector<char>;

caf::actor_system& fuzz_system() {
  // One system for the whole run, never destroyed: the deserializer only
  // needs its type registry and node id. Threads kept to the minimum.
  static auto* sys = [] {
    auto* cfg = new caf::actor_system_config;
    cfg->set("scheduler.max-threads", 1);
    cfg->set("logger.verbosity", caf::atom("quiet"));
    add_chime_types(*cfg);
    return new caf::actor_system(*cfg);
  }();
  return *sys;
}

template <class T>
bytes encode(T& x) {
  bytes out;
  caf::binary_serializer sink{fuzz_system(), out};
  CHIME_FUZZ_CHECK(!sink(x));
  return out;
}

template <class T>
void round_trip(const char* data, size_t size) {
  T x;
  caf::binary_deserializer source{fuzz_system(), data, size};
  if (source(x))
    return;
  auto first = encode(x);
  T y;
  caf::binary_deserializer again{fuzz_system(), first};
  CHIME_FUZZ_CHECK(!again(y));
  CHIME_FUZZ_CHECK(again.remaining() == 0);
  CHIME_FUZZ_CHECK(encode(y) == first);
}

using decoder = void (*)(const char*, size_t);

// Every type of protocol.hpp that crosses nodes, alone and in the lists
// registered with the actor system.
constexpr decoder decoders[] = {
  round_trip<caf::message>,
  round_trip<user_record>,
  round_trip<due_entry>,
  round_trip<delivery_record>,
  round_trip<user_view>,
  round_trip<users_page>,
  round_trip<fire_request>,
  round_trip<attempt_verdict>,
  round_trip<delivery_outcome>,
  round_trip<send_result>,
  round_trip<receipt>,
  round_trip<journal_stats>,
  round_trip<member_info>,
  round_trip<shard_owner>,
  round_trip<shard_lease>,
  round_trip<std::vector<std::string>>,
  round_trip<std::vector<uint32_t>>,
  round_trip<std::vector<delivery_record>>,
  round_trip<std::vector<user_view>>,
  round_trip<std::vector<member_info>>,
  round_trip<std::vector<shard_owner>>,
  round_trip<std::vector<shard_lease>>,
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0)
    return 0;
  auto pick = data[0] % std::size(decoders);
  auto rest = reinterpret_cast<const char*>(data + 1);
  decoders[pick](rest, size - 1);
  std::string address(rest, size - 1);
  if (auto parsed = split_address(address))
    CHIME_FUZZ_CHECK(split_address(parsed->first + ":"
                                   + std::to_string(parsed->second))
                     == parsed);
  return 0;
}
