"""Proves the dead-letter path and deletes during delivery:
1. a delivery that fails every attempt becomes `dead` after the configured
   attempts, is listed by GET /v1/deliveries?status=dead, waits in the
   broker's dead-letter queue (its depth, also in /metrics), and once the
   email service works again POST /v1/deliveries/{key}:retry sends it, once;
2. a user deleted after their message was handed to the broker and attempted,
   but before it was sent, gets nothing, and the queue drains. A sentinel due
   later is the synchronisation point."""

from harness import FakeEmail, Node, run, user_fields, wait_until


def dead_letters_redrive_and_deletes_in_flight(workdir, db, cleanup):
    email = FakeEmail(workdir, "--error-rate", "1.0")
    cleanup.append(email.stop)
    node = Node(workdir, db, email, "--backoff-base-ms", "50", "--backoff-cap-ms", "200")
    cleanup.append(node.stop)
    node.start("--clock-start", "2027-03-15T00:00:00Z")
    doomed = node.create(**user_fields(1, "1990-03-15", "UTC"))            # 09:00Z
    deleted = node.create(**user_fields(2, "1990-03-15", "Etc/GMT+1"))     # 10:00Z
    sentinel = node.create(**user_fields(3, "1990-03-15", "Etc/GMT+2"))    # 11:00Z
    node.stop()

    # 1. Dead after two failed attempts, then re-driven.
    node.start("--clock-start", "2027-03-15T08:59:58Z", "--delivery-attempts-max", "2")
    key = f"{doomed['id']}:birthday:2027-03-15"
    dead = wait_until("the delivery to be dead", lambda: node.deliveries(status="dead"), 30)
    assert [d["key"] for d in dead] == [key], dead
    assert dead[0]["attempts"] == 2 and dead[0]["last_error"] == "HTTP 500", dead
    # In the dead-letter queue, where operators look (its journal copy read).
    wait_until("the dead letter in its queue", lambda: node.broker.depth("chime.deliveries.dead") == 1, 30)
    wait_until("the journal's copy to be read", lambda: node.broker.depth("chime.deliveries.dead.audit") == 0, 30)
    wait_until("the depth in /metrics",
               lambda: node.metric('chime_queue_depth{queue="chime.deliveries.dead"}') == 1, 30, 0.2)
    assert email.ledger() == []
    email.control(**{"error-rate": 0})
    code, _, body = node.api("POST", f"/v1/deliveries/{key}:retry")
    assert code == 200, body
    wait_until("the re-driven delivery to be sent", lambda: node.deliveries(user=doomed["id"], status="sent"), 30)
    assert email.keys() == [key]
    code, ctype, body = node.api("POST", f"/v1/deliveries/{key}:retry")
    assert code == 404 and "no dead delivery" in body["detail"], body
    node.stop()

    # 2. Deleted while its message is in the broker's hands and failing.
    email.control(outage=True)
    node.start("--clock-start", "2027-03-15T09:59:58Z", "--clock-rate", "600")
    wait_until("the deleted user's message to be attempted",
               lambda: [d for d in node.deliveries(user=deleted["id"]) if d["status"] == "failed"], 30)
    code, _, _ = node.api("DELETE", f"/v1/users/{deleted['id']}")
    assert code == 204
    email.control(outage=False)
    wait_until("the sentinel's message", lambda: node.deliveries(user=sentinel["id"], status="sent"), 60)
    wait_until("the queue to drain", lambda: node.broker.depth("chime.deliveries") == 0, 30)
    assert [d["status"] for d in node.deliveries(user=deleted["id"])] == ["cancelled"]
    assert sorted(email.keys()) == sorted([key, f"{sentinel['id']}:birthday:2027-03-15"]), email.keys()


if __name__ == "__main__":
    run(dead_letters_redrive_and_deletes_in_flight)
