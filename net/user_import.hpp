#pragma once

#include "actors/journal.hpp"
#include "actors/node_context.hpp"
#include "net/user_json.hpp"

#include <caf/fwd.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace chime {

/// How the body of POST /v1/users:import is written.
enum class import_format : uint8_t { ndjson = 1, csv };

/// The import format a Content-Type names (`application/x-ndjson`,
/// `text/csv`), or nothing.
std::optional<import_format> import_format_of(const std::string& content_type);

/// Cuts an import body into lines as its chunks arrive and validates each
/// line as POST /v1/users validates a body. Owned by one import request.
/// Lines are numbered from 1 as a text editor does (a CSV's header is line
/// 1); blank lines are skipped, but counted.
class import_lines {
public:
  /// Called for each non-blank line: the user, or the problem with it.
  using sink = std::function<void(uint64_t line, parsed_user& parsed)>;

  import_lines(import_format format, size_t line_size_max);

  /// Reads the next chunk; `now` decides what "today" is.
  void feed(std::string_view chunk, instant now, const sink& out);

  /// The body ended: reads its last line if no newline closed it.
  void finish(instant now, const sink& out);

  /// What is wrong with a CSV's header (or its absence, after finish):
  /// then no line is read at all.
  const std::optional<problem>& header_problem() const {
    return header_problem_;
  }

  /// Lines seen so far.
  uint64_t lines() const {
    return line_;
  }

private:
  void take_line(std::string_view text, instant now, const sink& out);

  import_format format_;
  size_t line_size_max_;
  std::string partial_;  ///< the current line, until its newline arrives
  bool overlong_ = false; ///< the current line is past line_size_max_
  uint64_t line_ = 0;
  std::vector<std::string> header_; ///< a CSV's column names, once read
  std::optional<problem> header_problem_;
  std::vector<std::string> cells_; ///< reused for every CSV row
};

/// One line of an import that was not imported.
struct import_error {
  uint64_t line = 0;
  problem what;
};

/// What an import did, as the API answers it.
struct import_tally {
  uint64_t imported = 0;
  uint64_t failed = 0;
  /// The first errors_max failed lines; the others are only counted.
  std::vector<import_error> errors;
  size_t errors_max = 1000;

  void fail(uint64_t line, problem what);
};

/// `{"imported", "failed", "errors", "errors_omitted"}`.
std::string import_result_json(const import_tally& t);

/// The problem answered when an import stops before its end (`p`: too many
/// lines, the journal gone), with the tally of what it did and
/// `resume_line`, the first line not imported: the lines before it are
/// imported or listed as failed, those from it on are not.
std::string import_stopped_json(const problem& p, const import_tally& t,
                                uint64_t resume_line);

/// Writes an import's valid users to the journal in batches, two in flight
/// on each of `journals` (one committing, one queued) while more are read,
/// and keeps the tally. Lives on the HTTP thread that reads the import,
/// which it blocks while a batch it must wait for commits. Each user is
/// planned and journaled as a create is (planned_create), so the due poller
/// schedules it; one due within the horizon is also handed to its shard at
/// once, when the shard runs here. A second line with an email fails here,
/// before the journal: batches committing side by side could otherwise each
/// wait for the other's row of that email (a deadlock).
class import_writer {
public:
  import_writer(caf::actor_system& sys, context_ptr ctx,
                std::vector<journal_actor> journals, size_t batch_size_max);
  ~import_writer();

  /// Takes a line's outcome (the user's id already set); false once the
  /// journal failed, after which nothing more is written.
  bool add(uint64_t line, parsed_user& parsed);

  /// Writes what is left and waits for it; false when the journal failed.
  bool finish();

  const import_tally& tally() const;

  /// After a failure, the first line of the first batch not imported
  /// (later batches may have been: their lines fail as taken when resent).
  uint64_t resume_line() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace chime
