"""Proves the first end-to-end promise: with the virtual clock one minute
before 09:00 in Asia/Kathmandu on a user's birthday (and, for another user, on
an anniversary), the email service receives exactly one request with the
right text and Idempotency-Key, within 1 s of the due instant, through the
real journal and email client."""

from harness import FakeEmail, Node, iso_ms, run, user_fields, wait_until


def birthday_and_anniversary_are_sent_once_on_time(workdir, db, cleanup):
    email = FakeEmail(workdir)
    cleanup.append(email.stop)
    # 09:00 in Kathmandu (+05:45) on 2027-03-15 is 03:15Z; start one virtual
    # minute before, at 4 virtual seconds per real second.
    node = Node(workdir, db, email, "--clock-start", "2027-03-15T03:14:00Z", "--clock-rate", "4").start()
    cleanup.append(node.stop)
    ada = node.create(**user_fields(1, "1990-03-15", "Asia/Kathmandu"))
    bob = node.create(**user_fields(2, "1985-07-01", "Asia/Kathmandu", anniversary="2015-03-15"))
    assert ada["next_due"]["birthday"] == "2027-03-15T03:15:00Z", ada
    assert bob["next_due"]["anniversary"] == "2027-03-15T03:15:00Z", bob
    assert bob["next_due"]["birthday"] == "2027-07-01T03:15:00Z", bob

    def both_sent():
        got = {d["key"]: d for d in node.deliveries() if d["status"] == "sent"}
        return got if len(got) == 2 else None

    sent = wait_until("both messages to be sent", both_sent, 60)
    ledger = email.ledger()
    keys = sorted(e["idempotency_key"] for e in ledger)
    expected = sorted([f"{ada['id']}:birthday:2027-03-15", f"{bob['id']}:anniversary:2027-03-15"])
    assert keys == expected, f"ledger keys {keys} != {expected}"
    by_key = {e["idempotency_key"]: e for e in ledger}
    assert by_key[f"{ada['id']}:birthday:2027-03-15"]["message"] == "Hey, First1 Last1 it's your birthday"
    assert by_key[f"{bob['id']}:anniversary:2027-03-15"]["message"] == "Hey, First2 Last2 happy anniversary"
    assert by_key[f"{ada['id']}:birthday:2027-03-15"]["email"] == "user1@example.com"
    for key, d in sent.items():
        lateness_ms = iso_ms(d["sent_at"]) - iso_ms(d["due_at"])
        assert 0 <= lateness_ms <= 1000, f"{key} sent {lateness_ms} ms after its due instant"
        assert d["attempts"] == 1, d
    # The user's own view shows this year's delivery state.
    code, _, view = node.api("GET", f"/v1/users/{ada['id']}")
    assert code == 200 and view["deliveries"][0]["status"] == "sent", view
    assert view["next_due"]["birthday"] == "2028-03-15T03:15:00Z", view
    # SIGTERM drains and exits cleanly.
    assert node.stop() == 0


if __name__ == "__main__":
    run(birthday_and_anniversary_are_sent_once_on_time)
