"""Proves that a burst survives a disruption in its middle and loses nothing:
  kill9     the node is killed with SIGKILL and started again; duplicates are
            allowed only for requests in flight at the kill, and counted;
  rabbitmq  the broker is restarted; no duplicates;
  postgres  the database is restarted; no duplicates.
The node recovers by itself from the last two, without a restart. Usage:
disruption_test.py kill9|rabbitmq|postgres"""

import sys

from harness import FakeEmail, Node, run, services, user_fields, wait_until

USERS = 1000
RATE = 200
CONCURRENCY = 32


def burst_survives(kind):
    def scenario(workdir, db, cleanup):
        email = FakeEmail(workdir)
        cleanup.append(email.stop)
        node = Node(workdir, db, email, "--email-rate-per-s", str(RATE),
                    "--delivery-concurrency-max", str(CONCURRENCY), "--email-timeout-ms", "2000",
                    "--backoff-base-ms", "100", "--backoff-cap-ms", "1000", "--outbox-grace-s", "2")
        cleanup.append(node.stop)
        node.start("--clock-start", "2027-03-15T00:00:00Z")
        users = node.create_many([user_fields(n, "1990-03-15", "UTC") for n in range(USERS)])
        node.stop()
        node.start("--clock-start", "2027-03-15T08:59:59Z")
        wait_until("the burst to be under way", lambda: len(email.keys()) >= USERS * 0.3, 60, 0.02)

        if kind == "kill9":
            node.kill9()
            in_flight_bound = CONCURRENCY
            node.start("--clock-start", "2027-03-15T09:00:05Z")
        elif kind == "rabbitmq":
            services("restart-rabbitmq")
            in_flight_bound = 0
        else:
            services("restart-postgres")
            in_flight_bound = 0
        assert node.proc.poll() is None, "the node died"

        wait_until("every message", lambda: len(set(email.keys())) >= USERS, 180, 0.5)
        keys = email.keys()
        expected = {f"{u['id']}:birthday:2027-03-15" for u in users}
        assert set(keys) == expected, "ledger keys differ from the users' keys"
        duplicates = len(keys) - len(set(keys))
        print(f"duplicates_in_crash_window {duplicates}")
        assert duplicates <= in_flight_bound, f"{duplicates} duplicates after {kind} (allowed {in_flight_bound})"
        wait_until("every delivery to be journaled as sent",
                   lambda: len(node.deliveries(status="sent")) >= min(USERS, 1000), 60, 0.5)
    scenario.__name__ = f"burst_survives_{kind}"
    return scenario


if __name__ == "__main__":
    run(burst_survives(sys.argv[1]))
