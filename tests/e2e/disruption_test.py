"""Proves that a burst survives a disruption in its middle and loses nothing:
  kill9     the node is killed with SIGKILL and started again; duplicates are
            allowed only for requests in flight at the kill, and counted;
  rabbitmq  the broker is restarted; no duplicates;
  postgres  the database is restarted; no duplicates.
  frozen    the database stops answering (every process SIGSTOPped, its
            connections left open) mid-burst: /readyz is 503 and a write is
            answered 503 within 5 s, nothing hangs; thawed, the node recovers
            and every message arrives exactly once.
The node recovers by itself from the last three, without a restart. Usage:
disruption_test.py kill9|rabbitmq|postgres|frozen"""

import sys
import time

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


def postgres_frozen(workdir, db, cleanup):
    email = FakeEmail(workdir)
    cleanup.append(email.stop)
    node = Node(workdir, db, email, "--clock-start", "2027-03-15T08:59:45Z").start()
    cleanup.append(node.stop)
    users = node.create_many([user_fields(n, "1990-03-15", "UTC") for n in range(300)])
    wait_until("the burst to be under way", lambda: len(email.keys()) >= 30, 60, 0.02)
    services("freeze-postgres")
    cleanup.append(lambda: services("thaw-postgres"))
    frozen = time.monotonic()
    try:
        wait_until("/readyz to say 503", lambda: node.api("GET", "/readyz", timeout=10)[0] == 503,
                   5, 0.1)
        print(f"/readyz 503 {time.monotonic() - frozen:.1f} s after the freeze")
        for what, call in (("a create", lambda: node.api("POST", "/v1/users",
                                                         user_fields(900, "1990-03-15", "UTC"),
                                                         timeout=10)),
                           ("a read", lambda: node.api("GET", f"/v1/users/{users[0]['id']}",
                                                       timeout=10))):
            asked = time.monotonic()
            code = call()[0]
            took = time.monotonic() - asked
            print(f"{what} while frozen: {code} in {took:.1f} s")
            assert code == 503 and took <= 5, f"{what}: {code} after {took:.1f} s"
    finally:
        services("thaw-postgres")
    wait_until("the node to be ready again", lambda: node.api("GET", "/readyz")[0] == 200, 30, 0.2)
    node.create(**user_fields(901, "1990-03-15", "UTC"))
    expected = {f"{u['id']}:birthday:2027-03-15" for u in users}
    wait_until("every message", lambda: expected <= set(email.keys()), 120, 0.5)
    keys = [k for k in email.keys() if k in expected]
    assert len(keys) == len(expected), f"{len(keys) - len(expected)} duplicates"
    assert node.proc.poll() is None, "the node died"


if __name__ == "__main__":
    run(postgres_frozen if sys.argv[1] == "frozen" else burst_survives(sys.argv[1]))
