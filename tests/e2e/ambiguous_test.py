"""The ambiguous time-out (the hardening issue, point 3): a provider that
accepts a message and loses its answer. A burst of 1,000 on the defaults
while 5 % of requests are accepted and never answered: every message
arrives, every lost answer is counted in chime_email_ambiguous_total, and
the only duplicates are of messages whose answer was lost (their number is
reported)."""

from harness import FakeEmail, Node, run, user_fields, wait_until

USERS = 1000


def lost_answers_are_counted_and_explain_every_duplicate(workdir, db, cleanup):
    # Held past the client's default 5 s time-out.
    email = FakeEmail(workdir, "--accept-timeout-rate", "0.05", "--timeout-ms", "6000")
    cleanup.append(email.stop)
    node = Node(workdir, db, email, "--clock-start", "2027-03-15T08:59:00Z").start()
    cleanup.append(node.stop)
    users = node.create_many([user_fields(n, "1990-03-15", "UTC") for n in range(USERS)], 16)
    expected = {f"{u['id']}:birthday:2027-03-15" for u in users}
    wait_until("every message", lambda: expected <= set(email.keys()), 300, 0.5)
    wait_until("every delivery journaled sent",
               lambda: db.query("SELECT count(*) FROM deliveries WHERE status = 'sent'")
               == str(USERS), 120, 0.5)
    ledger = email.ledger()
    keys = [e["idempotency_key"] for e in ledger]
    lost = {e["idempotency_key"] for e in ledger if e.get("answer_lost")}
    duplicated = {k for k in keys if keys.count(k) > 1}
    duplicates = len(keys) - len(set(keys))
    counted = node.metric("chime_email_ambiguous_total")
    print(f"{USERS} messages; {len(lost)} answers lost; chime_email_ambiguous_total {counted:.0f}; "
          f"duplicates {duplicates} ({len(duplicated)} keys)")
    assert set(keys) == expected
    assert duplicated <= lost, f"duplicates of keys whose answer came: {duplicated - lost}"
    assert counted >= sum(1 for e in ledger if e.get("answer_lost")), "a lost answer went uncounted"
    assert duplicates <= counted
    assert lost, "no answer was lost: the fault did not strike"


if __name__ == "__main__":
    run(lost_answers_are_counted_and_explain_every_duplicate)
