"""Proves delivery through the broker under a rate limit of 500/s, on the
default settings, while the email service fails 20 % of requests (10 %
500s, 5 % 429 with Retry-After, 5 % that hang for 3 s before the connection
drops): every message arrives exactly once, no wall-clock second of requests
exceeds the limit, while the backlog lasts the limit is used at 95 % or
more, and every broker message (a bundle of deliveries) is acked in the end (the in-flight limit adapts, and hung requests are let go after a
time-out derived from the answers). Users are created first and the node
restarted with its clock just before their common due instant, so creation
time cannot shift it."""

from harness import FakeEmail, Node, per_second, run, user_fields, wait_until

USERS = 6000
RATE = 500


def burst_is_paced_and_delivered_once(workdir, db, cleanup):
    email = FakeEmail(workdir, "--error-rate", "0.10", "--timeout-rate", "0.05", "--timeout-ms", "3000",
                      "--rate-429", "0.05", "--retry-after-s", "1")
    cleanup.append(email.stop)
    node = Node(workdir, db, email, "--email-rate-per-s", str(RATE))
    cleanup.append(node.stop)
    node.start("--clock-start", "2027-03-15T00:00:00Z")
    users = node.create_many([user_fields(n, "1990-03-15", "UTC") for n in range(USERS)], workers=32)
    node.stop()
    node.start("--clock-start", "2027-03-15T08:59:58Z")

    wait_until("every message", lambda: len(set(email.keys())) >= USERS, 180, 0.5)
    keys = email.keys()
    expected = {f"{u['id']}:birthday:2027-03-15" for u in users}
    assert set(keys) == expected, "ledger keys differ from the users' keys"
    assert len(keys) == USERS, \
        f"{len(keys) - USERS} duplicates, {email.duplicated()}"

    requests = email.requests()
    counts = per_second(requests)
    assert max(counts) <= RATE, f"a second had {max(counts)} requests (limit {RATE}): {counts}"
    # While the backlog lasts: the full seconds before the last new message
    # went out (the tail is only retries waiting out their backoff), from
    # the first at full pace (before it, the node is still recording and
    # handing off the 6000 fires: a ramp, bounded below).
    accepted = sorted(e["received_at"] for e in email.ledger())
    backlog_end = accepted[int(len(accepted) * 0.95)][:19]
    seconds = sorted({r["received_at"][:19] for r in requests})
    inside = [c for s, c in zip(seconds, counts) if s < backlog_end]
    ramp = next((i for i, c in enumerate(inside) if c >= 0.9 * RATE), len(inside))
    assert ramp <= 3, f"{ramp} s before the pace reached 90 % of the limit: {counts}"
    inside = inside[ramp:]
    assert inside, counts
    average = sum(inside) / len(inside)
    print(f"requests per second: {counts}")
    print(f"in-flight limit {node.metric('chime_email_concurrency_limit'):.0f}, "
          f"time-out {node.metric('chime_email_timeout_ms'):.0f} ms, "
          f"ambiguous time-outs {node.metric('chime_email_ambiguous_total'):.0f}")
    print(f"{USERS} messages, {len(requests)} requests, {ramp} s ramp, then average {average:.1f}/s "
          f"while the backlog lasted "
          f"({average / RATE:.1%} of {RATE}/s), peak {max(counts)}/s")
    assert average >= 0.95 * RATE, f"average {average:.1f}/s is under 95 % of {RATE}/s"
    # The deliveries travelled in bundles: each was acked once its last
    # delivery settled, so nothing is left in the queue, ready or unacked.
    wait_until("the delivery queue to be empty",
               lambda: node.broker.depth("chime.deliveries") == 0, 30, 0.5)


if __name__ == "__main__":
    run(burst_is_paced_and_delivered_once)
