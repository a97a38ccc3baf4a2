#pragma once

#include <atomic>
#include <string>
#include <thread>
#include <vector>

namespace chime {

struct settings;

/// Starts the local services (scripts/services.sh: PostgreSQL, RabbitMQ,
/// the fake email service) and puts the URLs that script reports into the
/// environment, without overriding a CHIME_* variable the user set, so
/// `chime dev` reaches whatever folder and ports the script was told to use.
/// False when the services did not start.
bool start_dev_services(const std::string& services_script);

/// The demo's virtual clock start: 90 s before 09:00 on 2027-03-15 in
/// Asia/Kathmandu (+05:45), the demo user's birthday.
inline constexpr const char* demo_clock_start = "2027-03-15T03:13:30Z";

/// Runs the demo beside a starting node: waits until it is ready, creates
/// the demo user (due at the demo clock's 09:00), says when and where the
/// message will appear, and prints it when the fake email service's ledger
/// shows it. Ends early once `stop` is set.
class demo_runner {
public:
  explicit demo_runner(const settings& cfg);
  ~demo_runner();
  demo_runner(const demo_runner&) = delete;
  demo_runner& operator=(const demo_runner&) = delete;

private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

/// `chime dev --nodes N`: N nodes on the same PostgreSQL and RabbitMQ, as
/// child processes of this one (`self` is the chime binary). Node k is named
/// nk, serves HTTP on the base port + k - 1 and its cluster port on 7100 +
/// k - 1 (or --cluster-port + k - 1); nodes 2..N join through node 1. They
/// share one secret (--cluster-secret, CHIME_CLUSTER_SECRET, or a random
/// one) and one virtual clock. Their logs go to DATA/node-nk.log. SIGINT or
/// SIGTERM stops them all gracefully; returns 0 when every node exited 0.
int run_dev_cluster(const std::string& self, int nodes,
                    const std::vector<std::string>& args, const settings& base,
                    bool demo);

} // namespace chime
