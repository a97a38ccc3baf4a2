"""Proves that retries live in the broker, not in the node (the hardening
issue, point 2), in real time, on the default settings, against the test
broker whose consumer_timeout is 60 s (scripts/test.sh): through a 150 s
email outage no delivery stays unacked in the node long enough for the
broker to close the consumer's channel, the node's memory stays flat, and
when the service comes back every message is delivered once, none dead."""

import glob
import os
import time

from harness import FakeEmail, Node, rss_mib, run, user_fields, wait_until

USERS = 1000
OUTAGE_S = 150  # two and a half times the consumer_timeout


def consumer_timeouts():
    """Lines of the test broker's log where it closed a channel for an
    unacknowledged delivery."""
    log_dir = os.environ.get("CHIME_TEST_RABBITMQ_LOG_DIR")
    assert log_dir and os.path.isdir(log_dir), f"no broker log folder: {log_dir!r}"
    lines = []
    for path in glob.glob(os.path.join(log_dir, "*.log")):
        with open(path, errors="replace") as f:
            lines += [l for l in f if "delivery acknowledgement" in l and "timed out" in l]
    return lines


def retries_wait_in_the_broker_through_an_outage(workdir, db, cleanup):
    email = FakeEmail(workdir, "--outage")
    cleanup.append(email.stop)
    node = Node(workdir, db, email)
    cleanup.append(node.stop)
    node.start("--clock-start", "2027-03-15T00:00:00Z")
    users = node.create_many([user_fields(n, "1990-03-15", "UTC") for n in range(USERS)])
    node.stop()
    timeouts_before = len(consumer_timeouts())

    node.start("--clock-start", "2027-03-15T08:59:58Z")
    wait_until("the first failed attempts",
               lambda: node.metric('chime_deliveries_total{status="failed"}', missing=0) > 0, 30, 0.2)
    outage_end = time.monotonic() + OUTAGE_S
    rss = []
    # Figures, not synchronisation: the outage lasts its time whatever happens.
    while time.monotonic() < outage_end:
        rss.append(rss_mib(node.proc.pid))
        time.sleep(min(10, max(0, outage_end - time.monotonic())))
    email.control(outage=False)

    wait_until("every message", lambda: len(set(email.keys())) >= USERS, 240, 0.5)
    keys = email.keys()
    expected = {f"{u['id']}:birthday:2027-03-15" for u in users}
    assert set(keys) == expected, "ledger keys differ from the users' keys"
    assert len(keys) == USERS, f"{len(keys) - USERS} duplicates"
    assert node.deliveries(status="dead") == [], f"deliveries dead after a {OUTAGE_S} s outage"
    assert node.broker.depth("chime.deliveries.dead") == 0
    timeouts = consumer_timeouts()[timeouts_before:]
    assert not timeouts, "the broker closed a channel for an unacked delivery:\n" + "".join(timeouts)
    log = node.log_text()
    assert "connection lost" not in log, "the consumer lost its connection during the outage"
    via_broker = node.metric("chime_retries_via_broker_total")
    assert via_broker > 0
    # Flat: after the first quarter (the node's own warm-up), no growth
    # beyond allocator noise.
    settled = rss[len(rss) // 4:]
    growth = max(settled) - settled[0]
    print(f"{USERS} messages through a {OUTAGE_S} s outage: {via_broker:.0f} retries waited in the broker; "
          f"RSS {min(rss):.1f}..{max(rss):.1f} MiB (growth after the first quarter {growth:.1f} MiB); "
          f"no consumer time-out, none dead, none twice")
    assert growth < 8, f"the node grew {growth:.1f} MiB during the outage: {rss}"


if __name__ == "__main__":
    run(retries_wait_in_the_broker_through_an_outage)
