#include "net/user_json.hpp"

#include "actors/cluster_view.hpp"
#include "actors/errc.hpp"
#include "actors/occasion.hpp"
#include "actors/protocol.hpp"
#include "actors/schedule.hpp"
#include "actors/sharding.hpp"
#include "config/settings.hpp"

#include <date/tz.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <string_view>
#include <cctype>

namespace chime {

namespace {

using json = nlohmann::json;

constexpr size_t name_length_max = 200;
constexpr size_t email_length_max = 254;

problem bad_field(const std::string& field, const std::string& detail) {
  return problem{400, "Invalid field", "field '" + field + "': " + detail,
                 field};
}

size_t utf8_length(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80)
      ++n;
  return n;
}

bool ascii_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
         || (c >= '0' && c <= '9');
}

/// A DNS label: 1 to 63 letters, digits and inner hyphens.
bool valid_label(std::string_view l) {
  return !l.empty() && l.size() <= 63 && ascii_alnum(l.front())
         && ascii_alnum(l.back())
         && std::all_of(l.begin(), l.end(),
                        [](char c) { return ascii_alnum(c) || c == '-'; });
}

/// The HTML living standard's "valid email address": an atom of its local
/// characters, '@', and two or more DNS labels. By hand, not std::regex,
/// which was a twentieth of an import's CPU in the node.
bool valid_email(const std::string& s) {
  static constexpr std::string_view local_symbols = ".!#$%&'*+/=?^_`{|}~-";
  auto at = s.find('@');
  if (s.size() > email_length_max || at == std::string::npos || at == 0)
    return false;
  std::string_view view{s};
  auto local = view.substr(0, at);
  if (!std::all_of(local.begin(), local.end(), [](char c) {
        return ascii_alnum(c) || local_symbols.find(c) != std::string_view::npos;
      }))
    return false;
  auto domain = view.substr(at + 1);
  size_t labels = 0;
  for (size_t from = 0;; ++labels) {
    auto dot = domain.find('.', from);
    if (!valid_label(domain.substr(from, dot - from)))
      return false;
    if (dot == std::string_view::npos)
      return labels >= 1;
    from = dot + 1;
  }
}

std::optional<problem> take_string(const json& body, const std::string& field,
                                   std::string& out) {
  auto i = body.find(field);
  if (i == body.end())
    return bad_field(field, "is required");
  if (!i->is_string())
    return bad_field(field, "must be a string");
  out = i->get<std::string>();
  return std::nullopt;
}

std::optional<problem> check_name(const std::string& field,
                                  const std::string& value) {
  if (value.find_first_not_of(" \t\r\n") == std::string::npos)
    return bad_field(field, "must not be empty");
  if (utf8_length(value) > name_length_max)
    return bad_field(field, "must be at most 200 characters");
  // PostgreSQL stores no U+0000, and no name needs a control character.
  for (unsigned char c : value)
    if (c < 0x20 || c == 0x7F)
      return bad_field(field, "must not contain control characters");
  return std::nullopt;
}

json delivery_json(const delivery_record& d) {
  return json{
    {"key", d.key},
    {"occasion", d.occasion},
    {"local_date", d.local_date},
    {"status", to_string(d.status)},
    {"due_at", format_instant(from_ms(d.due_at_ms))},
    {"attempts", d.attempts},
    {"sent_at", d.sent_at_ms ? json(format_instant(from_ms(d.sent_at_ms)))
                             : json(nullptr)},
    {"last_error", d.last_error.empty() ? json(nullptr) : json(d.last_error)},
  };
}

json user_json(const user_view& v, uint32_t shard_count) {
  auto& u = v.user;
  json out{{"id", u.id},
           {"shard", shard_of(u.id, shard_count)},
           {"first_name", u.first_name},
           {"last_name", u.last_name},
           {"email", u.email}};
  for (auto& kind : occasion_registry()) {
    auto i = u.dates.find(std::string{kind->name()});
    out[std::string{kind->name()}]
      = i == u.dates.end() ? json(nullptr) : json(i->second);
  }
  out["timezone"] = u.timezone;
  json next = json::object();
  for (auto& d : v.due)
    next[d.occasion] = format_instant(from_ms(d.due_at_ms));
  out["next_due"] = next;
  auto list = json::array();
  for (auto& d : v.deliveries)
    list.push_back(delivery_json(d));
  out["deliveries"] = list;
  return out;
}

} // namespace

std::string problem_json(const problem& p) {
  json out{{"type", "about:blank"},
           {"title", p.title},
           {"status", p.status},
           {"detail", p.detail}};
  if (!p.field.empty())
    out["field"] = p.field;
  // A detail may quote the request, whose bytes need not be UTF-8.
  return out.dump(-1, ' ', false, json::error_handler_t::replace);
}

const problem no_such_user{404, "Not found", "no user with that id", {}};

problem journal_problem(const caf::error& err) {
  if (is(err, journal_errc::not_found))
    return no_such_user;
  if (is(err, journal_errc::conflict))
    return {409, "Conflict", "field 'email': already used by another user",
            "email"};
  if (is(err, journal_errc::refused))
    return {400, "Bad request",
            "the database refused a field's value (a character it cannot"
            " store?)",
            {}};
  if (is(err, journal_errc::fenced))
    return {503, "Unavailable",
            "the node that owned this user's shard no longer does (shards"
            " are moving); retry",
            {}};
  return {503, "Unavailable", "the journal is unavailable; retry later", {}};
}

std::optional<size_t> invalid_utf8_at(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3
                        : (c >> 3) == 0x1E ? 4 : 0;
    if (n == 0 || i + n > s.size())
      return i;
    uint32_t cp = n == 1 ? c : c & (0x7F >> n);
    for (size_t k = 1; k < n; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80)
        return i;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Overlong forms, surrogates and code points past U+10FFFF.
    static constexpr uint32_t least[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < least[n] || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
      return i;
    i += n;
  }
  return std::nullopt;
}

bool is_user_id(std::string_view s) {
  if (s.size() != 36)
    return false;
  for (size_t i = 0; i < s.size(); ++i) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !std::isxdigit(static_cast<unsigned char>(s[i])))
      return false;
  }
  return true;
}

bool is_delivery_key(std::string_view s) {
  // <user id>:<occasion>:<YYYY-MM-DD>
  return s.size() > 37 && s.size() <= 100 && is_user_id(s.substr(0, 36))
         && s[36] == ':' && !invalid_utf8_at(s);
}

namespace {

/// Parses a request body that must be one JSON object.
std::optional<problem> parse_object(const std::string& text, json& body) {
  if (auto at = invalid_utf8_at(text))
    return problem{400, "Malformed JSON",
                   "the body is not valid UTF-8 (at byte " + std::to_string(*at)
                     + ")",
                   {}};
  try {
    body = json::parse(text);
  } catch (const json::parse_error& e) {
    return problem{400, "Malformed JSON",
                   "malformed JSON at byte " + std::to_string(e.byte), {}};
  } catch (const json::out_of_range&) {
    // Well-formed JSON, but a number nlohmann_json cannot hold (1e400).
    return problem{400, "Malformed JSON",
                   "a number in the body is out of range", {}};
  }
  if (!body.is_object())
    return problem{400, "Invalid body", "the body must be a JSON object", {}};
  return std::nullopt;
}

} // namespace

parsed_string parse_string_body(const std::string& text,
                                const std::string& field) {
  parsed_string r;
  json body;
  if ((r.error = parse_object(text, body)))
    return r;
  for (auto& [key, value] : body.items())
    if (key != field)
      return {{}, bad_field(key, "unknown field")};
  r.error = take_string(body, field, r.value);
  return r;
}

parsed_string parse_seed(const std::string& text) {
  auto r = parse_string_body(text, "seed");
  if (r.error)
    return r;
  if (auto err = check_seeds(r.value); !err.empty() || r.value.empty())
    r.error = bad_field("seed", err.empty() ? "expected HOST:PORT" : err);
  return r;
}

std::string cluster_json(const cluster_view& view) {
  auto members = json::array();
  for (auto& m : view.members())
    members.push_back({{"name", m.name},
                       {"state", m.state},
                       {"http_url", m.http_url},
                       {"cluster_address", m.cluster_address.empty()
                                             ? json(nullptr)
                                             : json(m.cluster_address)},
                       {"shards", m.shards}});
  auto shards = json::array();
  auto owners = view.shards();
  for (size_t s = 0; s < owners.size(); ++s)
    shards.push_back({{"shard", s},
                      {"owner", owners[s].owner.empty()
                                  ? json(nullptr)
                                  : json(owners[s].owner)},
                      {"epoch", owners[s].epoch}});
  return json{{"self", view.self()}, {"members", members}, {"shards", shards}}
    .dump();
}

namespace {

const std::vector<std::string> required_fields
  = {"first_name", "last_name", "email", "timezone"};

bool is_user_field(const std::string& key) {
  return std::find(required_fields.begin(), required_fields.end(), key)
           != required_fields.end()
         || find_occasion(key) != nullptr;
}

parsed_user parse_user_object(const json& body, instant now) {
  parsed_user r;
  for (auto& [key, value] : body.items()) {
    if (!is_user_field(key)) {
      r.error = bad_field(key, "unknown field");
      return r;
    }
  }
  auto& u = r.user;
  for (auto [field, out] : {std::pair{"first_name", &u.first_name},
                            std::pair{"last_name", &u.last_name}}) {
    if ((r.error = take_string(body, field, *out)))
      return r;
    if ((r.error = check_name(field, *out)))
      return r;
  }
  if ((r.error = take_string(body, "email", u.email)))
    return r;
  if (!valid_email(u.email)) {
    r.error = bad_field("email", "is not a valid email address");
    return r;
  }
  if ((r.error = take_string(body, "timezone", u.timezone)))
    return r;
  auto zone = find_zone(u.timezone);
  if (zone == nullptr) {
    r.error = bad_field("timezone", "'" + u.timezone
                                      + "' is not a time zone of the tz"
                                        " database");
    return r;
  }
  date::year_month_day today{
    date::floor<date::days>(zone->to_local(to_sys(now)))};
  for (auto& kind : occasion_registry()) {
    std::string field{kind->name()};
    auto i = body.find(field);
    if (i == body.end() || i->is_null()) {
      if (kind->required()) {
        r.error = bad_field(field, "is required");
        return r;
      }
      continue;
    }
    if (!i->is_string()) {
      r.error = bad_field(field, "must be a date string YYYY-MM-DD");
      return r;
    }
    auto text = i->get<std::string>();
    auto d = parse_date(text);
    if (!d) {
      r.error = bad_field(field, "'" + text
                                   + "' is not a real calendar date"
                                     " (YYYY-MM-DD)");
      return r;
    }
    if (date::sys_days{*d} > date::sys_days{today}) {
      r.error = bad_field(field, "'" + text + "' is in the future");
      return r;
    }
    u.dates[field] = text;
  }
  return r;
}

} // namespace

parsed_user parse_user(const std::string& text, instant now) {
  json body;
  if (auto err = parse_object(text, body))
    return {{}, err};
  return parse_user_object(body, now);
}

std::optional<problem> check_csv_header(const std::vector<std::string>& names) {
  for (size_t i = 0; i < names.size(); ++i) {
    if (!is_user_field(names[i]))
      return bad_field(names[i], "unknown column of the CSV header");
    if (std::find(names.begin(), names.begin() + static_cast<long>(i),
                  names[i])
        != names.begin() + static_cast<long>(i))
      return bad_field(names[i], "named twice in the CSV header");
  }
  auto required = required_fields;
  for (auto& kind : occasion_registry())
    if (kind->required())
      required.emplace_back(kind->name());
  for (auto& field : required)
    if (std::find(names.begin(), names.end(), field) == names.end())
      return bad_field(field, "is a required column of the CSV header");
  return std::nullopt;
}

parsed_user parse_user_row(const std::vector<std::string>& names,
                           const std::vector<std::string>& cells, instant now) {
  if (cells.size() != names.size())
    return {{}, problem{400, "Invalid row",
                        "the row has " + std::to_string(cells.size())
                          + " cells, the header " + std::to_string(names.size()),
                        {}}};
  json body = json::object();
  for (size_t i = 0; i < names.size(); ++i) {
    if (auto at = invalid_utf8_at(cells[i]))
      return {{}, bad_field(names[i], "is not valid UTF-8 (at byte "
                                        + std::to_string(*at) + ")")};
    // An empty cell is an occasion left out, as a JSON null is.
    if (!(cells[i].empty() && find_occasion(names[i]) != nullptr))
      body[names[i]] = cells[i];
  }
  return parse_user_object(body, now);
}

parsed_user parse_user_update(const std::string& text, instant now,
                              const std::string& id, uint32_t shard_count) {
  json body;
  if (auto err = parse_object(text, body))
    return {{}, err};
  // What a GET returned may come back whole: the read-only fields are
  // ignored, as long as they do not claim to be another user.
  if (auto i = body.find("id"); i != body.end()) {
    if (*i != id)
      return {{}, bad_field("id", "is read-only and names another user")};
    body.erase(i);
  }
  if (auto i = body.find("shard"); i != body.end()) {
    if (*i != shard_of(id, shard_count))
      return {{}, bad_field("shard", "is read-only and is not this user's")};
    body.erase(i);
  }
  body.erase("next_due");
  body.erase("deliveries");
  return parse_user_object(body, now);
}

std::string user_view_json(const user_view& v, uint32_t shard_count) {
  return user_json(v, shard_count).dump();
}

std::string deliveries_json(const std::vector<delivery_record>& list) {
  auto out = json::array();
  for (auto& d : list)
    out.push_back(delivery_json(d));
  return json{{"deliveries", out}}.dump();
}

std::string users_page_json(const std::vector<user_view>& users,
                            const std::string& next_cursor,
                            uint32_t shard_count) {
  auto out = json::array();
  for (auto& v : users)
    out.push_back(user_json(v, shard_count));
  return json{{"users", out},
              {"next_cursor",
               next_cursor.empty() ? json(nullptr) : json(next_cursor)}}
    .dump();
}

} // namespace chime
