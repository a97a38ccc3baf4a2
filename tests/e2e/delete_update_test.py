"""Proves two promises about changes: a user deleted before their due instant
gets nothing, and a user whose time zone changes after this year's message was
sent is not sent it again (their next message moves to next year). A sentinel
user due after the would-be duplicate is the synchronisation point: once the
sentinel's message is sent, the clock has passed every instant that matters."""

from harness import FakeEmail, Node, run, user_fields, wait_until


def deleted_users_get_nothing_and_updates_never_resend(workdir, db, cleanup):
    email = FakeEmail(workdir)
    cleanup.append(email.stop)
    # Users are created at midnight; the node then restarts with its clock
    # just before the first due instant, running one virtual hour per second.
    node = Node(workdir, db, email)
    cleanup.append(node.stop)
    node.start("--clock-start", "2027-03-15T00:00:00Z")
    # Due 16:00Z (09:00 in Los Angeles, PDT): deleted long before.
    gone = node.create(**user_fields(1, "1990-03-15", "America/Los_Angeles"))
    code, _, _ = node.api("DELETE", f"/v1/users/{gone['id']}")
    assert code == 204
    code, _, _ = node.api("GET", f"/v1/users/{gone['id']}")
    assert code == 404
    # Due 03:15Z (09:00 in Kathmandu), moved to Los Angeles after it was sent.
    mover = node.create(**user_fields(2, "1990-03-15", "Asia/Kathmandu"))
    # Due 19:00Z (09:00 in Honolulu): after everything above.
    sentinel = node.create(**user_fields(3, "1990-03-15", "Pacific/Honolulu"))
    node.stop()
    node.start("--clock-start", "2027-03-15T03:14:00Z", "--clock-rate", "3600")

    wait_until("the mover's message", lambda: node.deliveries(user=mover["id"], status="sent"), 30)
    moved = dict(user_fields(2, "1990-03-15", "America/Los_Angeles"))
    code, _, view = node.api("PUT", f"/v1/users/{mover['id']}", moved)
    assert code == 200, view
    assert view["timezone"] == "America/Los_Angeles"
    assert view["next_due"]["birthday"] == "2028-03-15T16:00:00Z", view

    wait_until("the sentinel's message", lambda: node.deliveries(user=sentinel["id"], status="sent"), 60)
    keys = sorted(e["idempotency_key"] for e in email.ledger())
    assert keys == sorted([f"{mover['id']}:birthday:2027-03-15", f"{sentinel['id']}:birthday:2027-03-15"]), keys
    assert node.deliveries(user=gone["id"]) == []


if __name__ == "__main__":
    run(deleted_users_get_nothing_and_updates_never_resend)
