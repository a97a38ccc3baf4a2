"""Proves catch-up after a crash: the node is killed with SIGKILL before two
users are due and started again after both due instants. The one still inside
the catch-up window is sent on start-up, exactly once; the one older than the
window is recorded `expired` and never sent."""

from harness import FakeEmail, Node, run, user_fields, wait_until


def missed_messages_are_caught_up_or_expired(workdir, db, cleanup):
    email = FakeEmail(workdir)
    cleanup.append(email.stop)
    node = Node(workdir, db, email, "--catch-up-s", "7200")
    cleanup.append(node.stop)
    node.start("--clock-start", "2027-03-15T00:00:00Z")
    # Due 2027-03-15T03:15Z (09:00 Kathmandu): 16 h 45 min late at restart.
    late = node.create(**user_fields(1, "1990-03-15", "Asia/Kathmandu"))
    # Due 2027-03-15T19:00Z (09:00 on Mar 16 at +14:00): 1 h late at restart.
    recent = node.create(**user_fields(2, "1990-03-16", "Pacific/Kiritimati"))
    assert recent["next_due"]["birthday"] == "2027-03-15T19:00:00Z", recent
    node.kill9()
    assert email.ledger() == []

    node.start("--clock-start", "2027-03-15T20:00:00Z")

    def settled():
        by_user = {d["user_id"] if "user_id" in d else d["key"].split(":")[0]: d for d in node.deliveries()}
        done = {k: d for k, d in by_user.items() if d["status"] in ("sent", "expired")}
        return done if len(done) == 2 else None

    done = wait_until("both deliveries to settle", settled, 60)
    assert done[recent["id"]]["status"] == "sent", done
    assert done[late["id"]]["status"] == "expired", done
    keys = [e["idempotency_key"] for e in email.ledger()]
    assert keys == [f"{recent['id']}:birthday:2027-03-16"], keys
    # Both moved on to next year.
    code, _, view = node.api("GET", f"/v1/users/{late['id']}")
    assert view["next_due"]["birthday"] == "2028-03-15T03:15:00Z", view


if __name__ == "__main__":
    run(missed_messages_are_caught_up_or_expired)
