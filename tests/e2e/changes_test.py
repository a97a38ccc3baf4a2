"""What the user changed is what gets sent (the hardening issue, point 11).
During an email outage, with this morning's messages already due and
failing: an anniversary removed is never sent; a birthday corrected from
03-15 to 03-16 never sends the 03-15 message and is owed on 03-16 this year;
a rename goes out under the new name. Deliveries journaled `cancelled` are
the synchronisation point that the old messages were attempted and dropped."""

from harness import FakeEmail, Node, run, user_fields, wait_until


def changes_during_an_outage_are_what_is_sent(workdir, db, cleanup):
    email = FakeEmail(workdir, "--outage")
    cleanup.append(email.stop)
    node = Node(workdir, db, email, "--backoff-base-ms", "100", "--backoff-cap-ms", "1000")
    cleanup.append(node.stop)
    node.start("--clock-start", "2027-03-15T00:00:00Z")
    remover = node.create(**user_fields(1, "1990-03-15", "UTC", anniversary="2015-03-15"))
    corrector = node.create(**user_fields(2, "1990-03-15", "UTC"))
    renamed = node.create(**user_fields(3, "1990-03-15", "UTC"))
    node.stop()
    node.start("--clock-start", "2027-03-15T08:59:58Z")
    key = lambda u, occasion="birthday", day="2027-03-15": f"{u['id']}:{occasion}:{day}"
    owed = [key(remover), key(remover, "anniversary"), key(corrector), key(renamed)]

    def failing():
        failed = {d["key"] for d in node.deliveries(status="failed")}
        return set(owed) <= failed
    wait_until("this morning's messages to fail against the outage", failing, 60, 0.2)

    code, _, view = node.api("PUT", f"/v1/users/{remover['id']}",
                             user_fields(1, "1990-03-15", "UTC"))
    assert code == 200 and view["anniversary"] is None, view
    code, _, view = node.api("PUT", f"/v1/users/{corrector['id']}",
                             user_fields(2, "1990-03-16", "UTC"))
    assert code == 200, view
    assert view["next_due"]["birthday"] == "2027-03-16T09:00:00Z", view
    code, _, view = node.api("PUT", f"/v1/users/{renamed['id']}",
                             dict(user_fields(3, "1990-03-15", "UTC"), first_name="Renamed"))
    assert code == 200, view

    email.control(outage=False)
    cancelled = lambda: {d["key"] for d in node.deliveries(status="cancelled")}
    wait_until("the removed and moved messages to be cancelled",
               lambda: {key(remover, "anniversary"), key(corrector)} <= cancelled(), 60, 0.2)
    wait_until("the others to be sent", lambda: {key(remover), key(renamed)} <= set(email.keys()), 60, 0.2)

    # The corrected date, this year.
    node.stop()
    node.start("--clock-start", "2027-03-16T08:59:58Z")
    wait_until("the corrected birthday", lambda: key(corrector, day="2027-03-16") in email.keys(), 60, 0.2)
    ledger = email.ledger()
    assert sorted(e["idempotency_key"] for e in ledger) == sorted(
        [key(remover), key(renamed), key(corrector, day="2027-03-16")]), ledger
    message = {e["idempotency_key"]: e["message"] for e in ledger}[key(renamed)]
    assert message == "Hey, Renamed Last3 it's your birthday", message


if __name__ == "__main__":
    run(changes_during_an_outage_are_what_is_sent)
