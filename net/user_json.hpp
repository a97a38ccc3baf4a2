#pragma once

#include "actors/user_record.hpp"
#include "runtime/clock.hpp"

#include <caf/fwd.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace chime {

class cluster_view;

struct user_view;
struct delivery_record;

/// An RFC 7807 problem: what the API answers for bad input or failures.
struct problem {
  int status = 400;
  std::string title;
  std::string detail;
  std::string field; ///< the offending field, when there is one
};

std::string problem_json(const problem& p);

/// 404 for a user id that names no user.
extern const problem no_such_user;

/// What the API answers for a journal error (journal_errc): a taken email
/// is a conflict naming the field, a refusal is the request's fault, the
/// rest asks to retry.
problem journal_problem(const caf::error& err);

/// Where `s` stops being UTF-8 (byte offset), or nothing when it is.
std::optional<size_t> invalid_utf8_at(std::string_view s);
/// A user id as Chime makes them (a UUID); anything else names no user.
bool is_user_id(std::string_view s);
/// A delivery key as Chime makes them: `<user id>:<occasion>:<date>`.
bool is_delivery_key(std::string_view s);

/// A body that is a JSON object of one string field, or the problem.
struct parsed_string {
  std::string value;
  std::optional<problem> error;
};
parsed_string parse_string_body(const std::string& text, const std::string& field);

/// `{"seed": "HOST:PORT"}` of POST /v1/cluster:join, or the problem.
parsed_string parse_seed(const std::string& text);

/// GET /v1/cluster: this node, the members, and every shard's owner and
/// epoch as last read.
std::string cluster_json(const cluster_view& view);

/// A validated user, or the problem with the request body.
struct parsed_user {
  user_record user;
  std::optional<problem> error;
};

/// Parses and validates a POST/PUT body per SPEC.md section 2: names
/// non-empty and at most 200 characters, a valid email, real calendar dates
/// not after today, a known time zone, no unknown fields. `now` decides what
/// "today" is.
parsed_user parse_user(const std::string& body, instant now);

/// A CSV import's header (the fields its columns hold, SPEC.md section 2's
/// names): the problem when a column is unknown or named twice, or a
/// required field has none.
std::optional<problem> check_csv_header(const std::vector<std::string>& names);

/// One CSV import row under header `names`, validated as parse_user does a
/// body. An empty cell of an occasion leaves the occasion out; an empty
/// name is empty (and refused).
parsed_user parse_user_row(const std::vector<std::string>& names,
                           const std::vector<std::string>& cells, instant now);

/// A PUT body: as parse_user, but the read-only fields a GET answers with
/// (`id`, `shard`, `next_due`, `deliveries`) are ignored, unless `id` or
/// `shard` is not user `id`'s.
parsed_user parse_user_update(const std::string& body, instant now,
                              const std::string& id, uint32_t shard_count);

/// The API's representation of a user (SPEC.md section 2).
std::string user_view_json(const user_view& v, uint32_t shard_count);

/// The API's representation of a list of deliveries.
std::string deliveries_json(const std::vector<delivery_record>& list);

/// A page of users with its next cursor.
std::string users_page_json(const std::vector<user_view>& users,
                            const std::string& next_cursor,
                            uint32_t shard_count);

} // namespace chime
