// Fuzzes the broker message decoder (net/delivery_message.hpp), which reads
// whatever sits in the delivery queue. Properties: a body that decodes encodes
// to a body that decodes to the same delivery (but its address and text,
// which a message no longer carries: they are rendered after the re-check),
// and encoding is stable.

#include "actors/protocol.hpp"
#include "net/delivery_message.hpp"
#include "tests/fuzz/fuzz_check.hpp"

#include <cstddef>
#include <cstdint>
#include <string>

namespace {

bool same_message(const chime::delivery_record& a,
                  const chime::delivery_record& b) {
  return a.key == b.key && a.user_id == b.user_id && a.occasion == b.occasion
         && a.local_date == b.local_date && a.due_at_ms == b.due_at_ms
         && a.status == b.status;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace chime;
  auto d = from_message_body(
    std::string(reinterpret_cast<const char*>(data), size));
  if (!d)
    return 0;
  auto body = to_message_body(*d);
  auto again = from_message_body(body);
  CHIME_FUZZ_CHECK(again.has_value());
  CHIME_FUZZ_CHECK(!again->empty() && again->size() == d->size());
  for (size_t i = 0; i < d->size(); ++i) {
    CHIME_FUZZ_CHECK(same_message((*d)[i], (*again)[i]));
    CHIME_FUZZ_CHECK((*again)[i].email.empty() && (*again)[i].message.empty());
  }
  CHIME_FUZZ_CHECK(to_message_body(*again) == body);
  return 0;
}
