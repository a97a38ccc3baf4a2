#include "actors/protocol.hpp"

#include "actors/errc.hpp"
#include "actors/journal.hpp"
#include "runtime/directory.hpp"

#include <caf/actor_system_config.hpp>
#include <caf/typed_actor.hpp>

namespace chime {

std::string to_string(journal_errc x) {
  switch (x) {
    case journal_errc::not_found:
      return "not_found";
    case journal_errc::conflict:
      return "conflict";
    case journal_errc::unavailable:
      return "unavailable";
    case journal_errc::fenced:
      return "fenced";
    case journal_errc::refused:
      return "refused";
    case journal_errc::stale:
      return "stale";
  }
  return "unknown";
}

journal_actor journal_at(const directory& dir, const char* name) {
  return dir.get_as<journal_actor>(name);
}

void add_chime_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<user_record>("user_record")
    .add_message_type<due_entry>("due_entry")
    .add_message_type<std::vector<due_entry>>("std::vector<due_entry>")
    .add_message_type<delivery_record>("delivery_record")
    .add_message_type<std::vector<delivery_record>>(
      "std::vector<delivery_record>")
    .add_message_type<user_view>("user_view")
    .add_message_type<std::vector<user_view>>("std::vector<user_view>")
    .add_message_type<std::vector<caf::error>>("std::vector<caf::error>")
    .add_message_type<users_page>("users_page")
    .add_message_type<due_page>("due_page")
    .add_message_type<fire_request>("fire_request")
    .add_message_type<attempt_verdict>("attempt_verdict")
    .add_message_type<delivery_outcome>("delivery_outcome")
    .add_message_type<send_result>("send_result")
    .add_message_type<receipt>("receipt")
    .add_message_type<std::vector<receipt>>("std::vector<receipt>")
    .add_message_type<std::vector<std::string>>("std::vector<std::string>")
    .add_message_type<journal_stats>("journal_stats")
    .add_message_type<member_info>("member_info")
    .add_message_type<std::vector<member_info>>("std::vector<member_info>")
    .add_message_type<shard_owner>("shard_owner")
    .add_message_type<std::vector<shard_owner>>("std::vector<shard_owner>")
    .add_message_type<shard_lease>("shard_lease")
    .add_message_type<std::vector<shard_lease>>("std::vector<shard_lease>")
    .add_message_type<std::vector<uint32_t>>("std::vector<uint32_t>")
    .add_error_category(caf::atom("journal"),
                        [](uint8_t code, caf::atom_value, const caf::message&) {
                          return "journal: "
                                 + to_string(static_cast<journal_errc>(code));
                        });
}

} // namespace chime
