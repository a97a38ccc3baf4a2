#include "net/user_import.hpp"

#include "actors/errc.hpp"
#include "actors/protocol.hpp"
#include "actors/shard.hpp"
#include "actors/sharding.hpp"
#include "actors/user_commands.hpp"
#include "runtime/metrics.hpp"

#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <deque>
#include <unordered_set>

namespace chime {

namespace {

using json = nlohmann::json;

std::string media_type(const std::string& content_type) {
  auto base = content_type.substr(0, content_type.find(';'));
  while (!base.empty() && base.back() == ' ')
    base.pop_back();
  std::transform(base.begin(), base.end(), base.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return base;
}

/// Splits one CSV record (RFC 4180 quoting, within one line) into `cells`;
/// what is wrong with it otherwise.
std::optional<std::string> split_csv(std::string_view line,
                                     std::vector<std::string>& cells) {
  cells.clear();
  cells.emplace_back();
  size_t i = 0;
  while (i <= line.size()) {
    auto& cell = cells.back();
    if (i < line.size() && line[i] == '"') {
      for (++i;; ++i) {
        if (i >= line.size())
          return "a quoted cell is not closed on its line";
        if (line[i] == '"') {
          if (i + 1 < line.size() && line[i + 1] == '"') {
            cell += '"';
            ++i;
            continue;
          }
          ++i;
          break;
        }
        cell += line[i];
      }
      if (i < line.size() && line[i] != ',')
        return "a quoted cell goes on after its closing quote";
    } else {
      auto end = std::min(line.find(',', i), line.size());
      cell.append(line.substr(i, end - i));
      i = end;
    }
    if (i >= line.size())
      break;
    ++i; // the comma
    cells.emplace_back();
  }
  return std::nullopt;
}

bool blank(std::string_view s) {
  return s.find_first_not_of(" \t\r") == std::string_view::npos;
}

} // namespace

std::optional<import_format> import_format_of(const std::string& content_type) {
  auto base = media_type(content_type);
  if (base == "application/x-ndjson")
    return import_format::ndjson;
  if (base == "text/csv")
    return import_format::csv;
  return std::nullopt;
}

// -- import_lines -------------------------------------------------------------

import_lines::import_lines(import_format format, size_t line_size_max)
  : format_(format), line_size_max_(line_size_max) {
}

void import_lines::feed(std::string_view chunk, instant now, const sink& out) {
  while (!chunk.empty() && !header_problem_) {
    auto nl = chunk.find('\n');
    auto piece = chunk.substr(0, nl);
    if (!overlong_ && partial_.size() + piece.size() > line_size_max_) {
      // Dropped as it arrives: a line is never held past its limit.
      overlong_ = true;
      partial_.clear();
    }
    if (nl == std::string_view::npos) {
      if (!overlong_)
        partial_.append(piece);
      return;
    }
    chunk.remove_prefix(nl + 1);
    if (partial_.empty() || overlong_) {
      take_line(piece, now, out); // no copy when the line is in one chunk
    } else {
      partial_.append(piece);
      take_line(partial_, now, out);
    }
    partial_.clear();
    overlong_ = false;
  }
}

void import_lines::finish(instant now, const sink& out) {
  if (!partial_.empty() || overlong_)
    take_line(partial_, now, out);
  partial_.clear();
  overlong_ = false;
  if (format_ == import_format::csv && header_.empty() && !header_problem_)
    header_problem_ = problem{400, "Invalid CSV",
                              "the body has no header line naming the"
                              " columns (first_name,last_name,email,...)",
                              {}};
}

void import_lines::take_line(std::string_view text, instant now,
                             const sink& out) {
  ++line_;
  if (overlong_) {
    parsed_user p{{}, problem{400, "Line too long",
                              "the line exceeds "
                                + std::to_string(line_size_max_ / 1024)
                                + " KiB",
                              {}}};
    return out(line_, p);
  }
  if (!text.empty() && text.back() == '\r')
    text.remove_suffix(1);
  if (line_ == 1 && text.substr(0, 3) == "\xEF\xBB\xBF")
    text.remove_prefix(3); // a byte order mark, as spreadsheets write
  if (blank(text))
    return;
  if (format_ == import_format::ndjson) {
    auto p = parse_user(std::string{text}, now);
    return out(line_, p);
  }
  auto bad = split_csv(text, cells_);
  if (header_.empty()) {
    for (auto& c : cells_) {
      auto from = c.find_first_not_of(' ');
      auto to = c.find_last_not_of(' ');
      header_.push_back(from == std::string::npos
                          ? std::string{}
                          : c.substr(from, to - from + 1));
    }
    header_problem_ = bad ? problem{400, "Invalid CSV",
                                    "the header line: " + *bad, {}}
                          : check_csv_header(header_);
    if (header_problem_)
      header_problem_->detail = "line " + std::to_string(line_) + ": "
                                + header_problem_->detail;
    return;
  }
  if (bad) {
    parsed_user p{{}, problem{400, "Invalid CSV", *bad, {}}};
    return out(line_, p);
  }
  auto p = parse_user_row(header_, cells_, now);
  out(line_, p);
}

// -- tally and answers --------------------------------------------------------

void import_tally::fail(uint64_t line, problem what) {
  ++failed;
  if (errors.size() < errors_max)
    errors.push_back({line, std::move(what)});
}

namespace {

json tally_json(const import_tally& t) {
  // Refusals by the journal come after the parse errors of later lines.
  auto sorted = t.errors;
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const import_error& a, const import_error& b) {
                     return a.line < b.line;
                   });
  auto errors = json::array();
  for (auto& e : sorted)
    errors.push_back({{"line", e.line},
                      {"field", e.what.field.empty() ? json(nullptr)
                                                     : json(e.what.field)},
                      {"detail", e.what.detail}});
  return json{{"imported", t.imported},
              {"failed", t.failed},
              {"errors", errors},
              {"errors_omitted", t.failed - t.errors.size()}};
}

std::string dump(const json& j) {
  // A detail may quote the line, whose bytes need not be UTF-8.
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

} // namespace

std::string import_result_json(const import_tally& t) {
  return dump(tally_json(t));
}

std::string import_stopped_json(const problem& p, const import_tally& t,
                                uint64_t resume_line) {
  auto out = json::parse(problem_json(p));
  out.update(tally_json(t));
  out["resume_line"] = resume_line;
  return dump(out);
}

// -- import_writer ------------------------------------------------------------

struct import_writer::impl {
  context_ptr ctx;
  std::vector<journal_actor> journals;
  size_t batch_size_max;
  caf::scoped_actor self;
  import_tally tally;
  std::vector<user_view> batch;
  std::vector<uint64_t> batch_lines;
  /// Hashes of the emails (lower case) of this import's valid lines.
  std::unordered_set<uint64_t> emails;
  using pending_t = decltype(self->request(journals[0], journal_timeout,
                                           import_atom::value, batch));
  /// A batch committing: its lines, and its users due within the horizon
  /// by their place in it (for their shards, once created).
  struct in_flight {
    pending_t reply;
    std::vector<uint64_t> lines;
    std::vector<std::pair<size_t, user_view>> due_soon;
  };
  std::deque<in_flight> sent;
  size_t next_journal = 0;
  bool failed = false;
  uint64_t resume_line = 0;

  impl(caf::actor_system& sys, context_ptr c, std::vector<journal_actor> js,
       size_t n)
    : ctx(std::move(c)), journals(std::move(js)), batch_size_max(n),
      self(sys) {
  }

  void created(in_flight& b, const std::vector<caf::error>& refusals) {
    uint64_t n = 0;
    for (size_t i = 0; i < refusals.size(); ++i) {
      if (refusals[i])
        tally.fail(b.lines[i], journal_problem(refusals[i]));
      else
        ++n;
    }
    tally.imported += n;
    static auto& users_created = get_metric("chime_users_created_total");
    users_created.add(static_cast<int64_t>(n));
    for (auto& [i, v] : b.due_soon)
      if (!refusals[i])
        to_shard_if_due_soon(*ctx, std::move(v));
  }

  /// Waits for the oldest batch in flight and takes in its outcome.
  void settle_oldest() {
    auto b = std::move(sent.front());
    sent.pop_front();
    b.reply.receive(
      [&](std::vector<caf::error>& refusals) { created(b, refusals); },
      [&](caf::error&) {
        resume_line = failed ? std::min(resume_line, b.lines.front())
                             : b.lines.front();
        failed = true;
      });
  }

  void send() {
    // Two batches a journal: the next one waits in its mailbox while it
    // commits the one before, so that no journal sits idle for the round
    // trip to this thread (one a journal: 44-53k users/s, two: 50-57k, in
    // alternating runs of a 1,000,000 import).
    if (sent.size() >= 2 * journals.size())
      settle_oldest();
    if (failed || batch.empty())
      return;
    // Copies kept only of the users a shard may want once they are durable.
    std::vector<std::pair<size_t, user_view>> due_soon;
    for (size_t i = 0; i < batch.size(); ++i)
      if (due_within_horizon(*ctx, batch[i]))
        due_soon.emplace_back(i, batch[i]);
    auto& journal = journals[next_journal++ % journals.size()];
    auto reply = self->request(journal, journal_timeout, import_atom::value,
                               std::move(batch));
    sent.push_back(in_flight{std::move(reply), std::move(batch_lines),
                             std::move(due_soon)});
    batch.clear();
    batch_lines.clear();
  }

  /// False (and the line failed) when an earlier line has the email.
  bool first_with_email(uint64_t line, const std::string& email) {
    auto lower = email;
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    if (emails.insert(std::hash<std::string>{}(lower)).second)
      return true;
    tally.fail(line, journal_problem(make_error(journal_errc::conflict)));
    return false;
  }
};

import_writer::import_writer(caf::actor_system& sys, context_ptr ctx,
                             std::vector<journal_actor> journals,
                             size_t batch_size_max)
  : impl_(std::make_unique<impl>(sys, std::move(ctx), std::move(journals),
                                 batch_size_max)) {
}

import_writer::~import_writer() = default;

bool import_writer::add(uint64_t line, parsed_user& parsed) {
  auto& i = *impl_;
  if (i.failed)
    return false;
  if (parsed.error) {
    i.tally.fail(line, std::move(*parsed.error));
    return true;
  }
  if (!i.first_with_email(line, parsed.user.email))
    return true;
  i.batch.push_back(
    planned_create(*i.ctx, std::move(parsed.user), i.ctx->clock->now()));
  i.batch_lines.push_back(line);
  if (i.batch.size() >= i.batch_size_max)
    i.send();
  return !i.failed;
}

bool import_writer::finish() {
  auto& i = *impl_;
  i.send();
  while (!i.sent.empty())
    i.settle_oldest();
  return !i.failed;
}

const import_tally& import_writer::tally() const {
  return impl_->tally;
}

uint64_t import_writer::resume_line() const {
  return impl_->resume_line;
}

} // namespace chime
