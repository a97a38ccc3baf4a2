#pragma once

#include <string>
#include <vector>

namespace chime {

/// `chime fake-email`: the stand-in for the external email service (SPEC.md
/// section 4). Accepts POST /send-email, appends every accepted message to a
/// JSON-lines ledger (received_at, email, message, idempotency_key), and
/// injects failures on demand: error rate (500), time-out rate (holds the
/// request, then 504 without accepting), 429 rate with Retry-After, latency
/// and full outage (503). POST /control changes any knob at run time;
/// GET /ledger returns the ledger. With --request-log FILE it also records
/// every request (received_at, status, idempotency_key), accepted or not.
/// Runs until SIGTERM or SIGINT.
int run_fake_email(const std::vector<std::string>& args);

} // namespace chime
