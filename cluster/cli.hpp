#pragma once

#include <string>
#include <vector>

namespace chime {

/// `chime cluster status|leave|join [--node URL] [--seed HOST:PORT]
/// [--api-token T] [--json]`: acts on a running node through its HTTP API
/// (SPEC.md section 5). Returns the process exit code.
int run_cluster_command(const std::vector<std::string>& args,
                        const std::vector<std::string>& environ_entries);

} // namespace chime
