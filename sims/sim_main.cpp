// chime-sim: runs the deterministic simulator (sims/sim/) for one seed, a
// range of seeds, or as long as a soak lasts, and exits non-zero on any
// violated invariant.
#include "sims/sim/env.hpp"
#include "sims/sim/simulation.hpp"

#include <charconv>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

namespace {

constexpr const char* usage = R"(usage: chime-sim [flags]
  --seed N          one run (default 1)
  --seeds A..B      every seed from A to B; prints each failing seed
  --soak-s N        runs seeds from --seed on until N seconds have passed
  --users N         users at the start (default 1000)
  --days N          simulated days (default 30)
  --faults P        none | default | harsh | actors (default: default;
                    actors: the default faults and single actors failing)
  --nodes N         nodes sharing the journal and broker (default 1)
  --traffic F       creates, updates and deletes per user per day (default 0.004)
  --rate N          email requests per second, cluster-wide (default 50)
  --break X         test only: no-outbox-sweeper | no-recheck | no-fencing |
                    next-year-on-update
  --fail-fast       with --seeds or --soak-s: stop at the first failing seed
  --trace           print every trace event
)";

std::optional<uint64_t> number(const std::string& text) {
  uint64_t n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc{} || end != text.data() + text.size())
    return std::nullopt;
  return n;
}

std::string hex(uint64_t x) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(x));
  return buf;
}

std::string replay_command(const chime::sim::sim_options& o) {
  auto cmd = "build/chime-sim --seed " + std::to_string(o.seed) + " --users "
             + std::to_string(o.users) + " --days " + std::to_string(o.days)
             + " --faults " + o.faults + " --nodes " + std::to_string(o.nodes);
  if (o.traffic_per_user_day != chime::sim::sim_options{}.traffic_per_user_day)
    cmd += " --traffic " + std::to_string(o.traffic_per_user_day);
  if (!o.broken.empty())
    cmd += " --break " + o.broken;
  return cmd;
}

void print_failure(const chime::sim::sim_options& o,
                   const chime::sim::sim_report& r) {
  std::cout << "FAIL seed " << o.seed << ": " << r.violations
            << " violations\n";
  for (auto& v : r.violation_samples)
    std::cout << "  " << v << "\n";
  std::cout << "  replay: " << replay_command(o) << "\n";
}

} // namespace

int main(int argc, char** argv) {
  chime::sim::sim_options opts;
  std::optional<std::pair<uint64_t, uint64_t>> range;
  uint64_t soak_s = 0;
  bool fail_fast = false;
  std::vector<std::string> args(argv + 1, argv + argc);
  for (size_t i = 0; i < args.size(); ++i) {
    auto& flag = args[i];
    if (flag == "--help" || flag == "-h") {
      std::cout << usage;
      return 0;
    }
    if (flag == "--trace" || flag == "--fail-fast") {
      (flag == "--trace" ? opts.echo_trace : fail_fast) = true;
      continue;
    }
    if (i + 1 >= args.size()) {
      std::cerr << "chime-sim: flag '" << flag << "' needs a value\n" << usage;
      return 2;
    }
    auto value = args[++i];
    auto bad = [&](const char* expected) {
      std::cerr << "chime-sim: flag '" << flag << "': expected " << expected
                << ", got '" << value << "'\n";
      return 2;
    };
    auto n = number(value);
    if (flag == "--seed" && n)
      opts.seed = *n;
    else if (flag == "--seeds") {
      auto dots = value.find("..");
      auto a = number(value.substr(0, dots));
      auto b = dots == std::string::npos ? std::nullopt
                                         : number(value.substr(dots + 2));
      if (!a || !b || *b < *a)
        return bad("A..B with A <= B");
      range = {*a, *b};
    } else if (flag == "--soak-s" && n)
      soak_s = *n;
    else if (flag == "--users" && n && *n > 0 && *n <= 10'000'000)
      opts.users = static_cast<uint32_t>(*n);
    else if (flag == "--days" && n && *n > 0 && *n <= 3660)
      opts.days = static_cast<uint32_t>(*n);
    else if (flag == "--nodes" && n && *n > 0 && *n <= 64)
      opts.nodes = static_cast<uint32_t>(*n);
    else if (flag == "--rate" && n && *n > 0)
      opts.email_rate_per_s = static_cast<double>(*n);
    else if (flag == "--faults") {
      if (!chime::sim::find_profile(value))
        return bad("none, default or harsh");
      opts.faults = value;
    } else if (flag == "--break") {
      if (value != "no-outbox-sweeper" && value != "no-recheck"
          && value != "no-fencing" && value != "next-year-on-update")
        return bad("no-outbox-sweeper, no-recheck, no-fencing or "
                   "next-year-on-update");
      opts.broken = value;
    } else if (flag == "--traffic") {
      try {
        opts.traffic_per_user_day = std::stod(value);
      } catch (const std::exception&) {
        return bad("a number");
      }
    } else if (flag == "--seed" || flag == "--soak-s" || flag == "--users"
               || flag == "--days" || flag == "--nodes" || flag == "--rate")
      return bad("a positive whole number in range");
    else {
      std::cerr << "chime-sim: unknown flag '" << flag << "'\n" << usage;
      return 2;
    }
  }

  if (!range && soak_s == 0) {
    auto r = chime::sim::run_simulation(opts);
    std::cout << "seed " << opts.seed << "\nusers " << opts.users << "\ndays "
              << opts.days << "\nfaults " << opts.faults << "\nnodes "
              << opts.nodes << "\ncommands " << r.commands << "\nfaults_injected "
              << r.faults << "\ncrashes " << r.crashes
              << "\nactor_crashes " << r.actor_crashes << "\ngive_ups "
              << r.give_ups << "\nemail_requests "
              << r.requests << "\ndelivered " << r.delivered
              << "\noccurrences_checked " << r.occurrences_checked
              << "\nexpired " << r.expired << "\ntrace_events "
              << r.trace_events << "\nduplicates_in_crash_window "
              << r.duplicates_in_crash_window << "\nduplicates_in_fence_window "
              << r.duplicates_in_fence_window << "\nduplicates_ambiguous "
              << r.duplicates_ambiguous << "\ntakeover_checks "
              << r.takeover_checks << "\nviolations " << r.violations
              << "\ntrace_hash " << hex(r.trace_hash) << "\nelapsed_s "
              << r.elapsed_s << "\n";
    if (r.violations > 0)
      print_failure(opts, r);
    return r.violations > 0 ? 1 : 0;
  }

  auto first = range ? range->first : opts.seed;
  auto last = range ? range->second : UINT64_MAX;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{soak_s};
  uint64_t runs = 0, failed = 0, dups = 0, fence_dups = 0, ambiguous_dups = 0;
  for (auto seed = first; seed <= last; ++seed) {
    if (soak_s > 0 && std::chrono::steady_clock::now() >= deadline)
      break;
    opts.seed = seed;
    auto r = chime::sim::run_simulation(opts);
    ++runs;
    dups += r.duplicates_in_crash_window;
    fence_dups += r.duplicates_in_fence_window;
    ambiguous_dups += r.duplicates_ambiguous;
    std::cout << "seed " << seed << " trace_hash " << hex(r.trace_hash)
              << " violations " << r.violations << " duplicates_in_crash_window "
              << r.duplicates_in_crash_window << " duplicates_in_fence_window "
              << r.duplicates_in_fence_window << " duplicates_ambiguous "
              << r.duplicates_ambiguous << " give_ups " << r.give_ups
              << " delivered " << r.delivered
              << " checked " << r.occurrences_checked << "\n";
    if (r.violations > 0) {
      ++failed;
      print_failure(opts, r);
      if (fail_fast)
        break;
    }
  }
  std::cout << "runs " << runs << "\nfailed_runs " << failed
            << "\nduplicates_in_crash_window " << dups
            << "\nduplicates_in_fence_window " << fence_dups
            << "\nduplicates_ambiguous " << ambiguous_dups << "\nviolations "
            << (failed > 0 ? "some" : "0") << "\n";
  return failed > 0 ? 1 : 0;
}
