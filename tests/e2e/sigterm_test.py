"""A single node SIGTERMed while a send is in flight (the email service takes
3 s to answer) waits for the answer, journals the outcome, exits 0, and,
restarted after the due instant, does not send that message again."""

from harness import FakeEmail, Node, iso_ms, run, user_fields, wait_until


def sigterm_finishes_the_send_in_flight(workdir, db, cleanup):
    email = FakeEmail(workdir, "--latency-ms", "3000")
    cleanup.append(email.stop)
    node = Node(workdir, db, email, "--outbox-grace-s", "1")
    cleanup.append(node.stop)
    node.start("--clock-start", "2027-03-15T08:59:56Z")
    ada = node.create(**user_fields(1, "1990-03-15", "UTC"))
    key = f"{ada['id']}:birthday:2027-03-15"
    due_ms = iso_ms("2027-03-15T09:00:00Z")
    # The request leaves at the due instant and is answered 3 s later.
    wait_until("the send to be in flight", lambda: node.now_ms() >= due_ms + 1000, 30, 0.05)
    assert email.keys() == [], "answered too early to test anything"
    assert node.stop() == 0, "SIGTERM did not exit 0"
    assert email.keys() == [key], email.keys()
    status = db.query(f"SELECT status FROM deliveries WHERE key = '{key}'")
    assert status == "sent", f"the outcome was not journaled before exit: {status}"

    restart_ms = iso_ms("2027-03-15T09:00:30Z")
    node.start("--clock-start", "2027-03-15T09:00:30Z")
    # Catch-up, redelivery and the outbox sweeper (every 2 s, grace 1 s) have
    # all had their chance to send it again.
    wait_until("a few sweeps", lambda: node.now_ms() >= restart_ms + 6000, 30, 0.1)
    assert email.keys() == [key], f"sent again after the restart: {email.keys()}"
    assert node.stop() == 0


if __name__ == "__main__":
    run(sigterm_finishes_the_send_in_flight)
