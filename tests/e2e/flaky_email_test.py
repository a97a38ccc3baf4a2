"""Proves that a message still arrives exactly once when the email service
fails half its requests (500s and time-outs): Chime retries with backoff under
the same idempotency key until one attempt is accepted, and the delivery
record shows the attempts it took."""

from harness import FakeEmail, Node, run, user_fields, wait_until

USERS = 12


def every_message_arrives_once_despite_failures(workdir, db, cleanup):
    # 25 % answered 500, 25 % held past the client's time-out (never accepted).
    email = FakeEmail(workdir, "--error-rate", "0.25", "--timeout-rate", "0.25", "--timeout-ms", "1500")
    cleanup.append(email.stop)
    # The default settings: the time-out derives from the answers, the
    # retries wait in the broker's retry queues.
    node = Node(workdir, db, email, "--clock-start", "2027-03-15T03:14:50Z", "--clock-rate", "1").start()
    cleanup.append(node.stop)
    ids = [node.create(**user_fields(n, "1990-03-15", "Asia/Kathmandu"))["id"] for n in range(USERS)]

    def all_sent():
        sent = [d for d in node.deliveries(status="sent")]
        return sent if len(sent) == USERS else None

    sent = wait_until("every message to be sent", all_sent, 120)
    ledger = email.ledger()
    keys = [e["idempotency_key"] for e in ledger]
    assert sorted(keys) == sorted(f"{i}:birthday:2027-03-15" for i in ids), f"ledger: {keys}"
    attempts = sum(d["attempts"] for d in sent)
    assert attempts > USERS, f"with half the requests failing, {USERS} sends took only {attempts} attempts"
    assert all(d["attempts"] >= 1 for d in sent)
    print(f"{USERS} messages, {attempts} attempts, {len(ledger)} accepted")


if __name__ == "__main__":
    run(every_message_arrives_once_despite_failures)
