"""Proves the node's memory bounds (the hardening issue, point 7), each with
back-pressure instead of growth and nothing lost:
- resident: with --resident-users-max 10, 60 users due at one instant are
  never more than 10 resident; the rest wait in the due index (counted in
  chime_resident_limit_hits_total) and are loaded as the first ones fire;
- publisher: with --publish-buffer-max 5 and the broker away (its virtual
  host not there yet) while 30 messages fall due, the publisher holds at
  most 5 (the rest counted in chime_publish_buffer_full_total, left in the
  journal); once the broker is there, the outbox sweeper hands them off.
Every message is delivered once in both."""

import sys

from harness import FakeEmail, Node, rabbitmqctl, run, user_fields, wait_until

USERS_RESIDENT = 60
USERS_PUBLISH = 30


def expected_keys(users):
    return sorted(f"{u['id']}:birthday:2027-03-15" for u in users)


def resident_users_are_bounded(workdir, db, cleanup):
    email = FakeEmail(workdir)
    cleanup.append(email.stop)
    node = Node(workdir, db, email, "--resident-users-max", "10", "--due-poll-s", "1")
    cleanup.append(node.stop)
    node.start("--clock-start", "2027-03-15T08:59:30Z")
    users = node.create_many([user_fields(n, "1990-03-15", "UTC") for n in range(USERS_RESIDENT)])
    peak = [0]

    def all_sent():
        peak[0] = max(peak[0], node.metric("chime_users_resident"))
        return len(email.keys()) >= USERS_RESIDENT

    wait_until("every message", all_sent, 120, 0.1)
    assert sorted(email.keys()) == expected_keys(users), "a message missing or sent twice"
    hits = node.metric("chime_resident_limit_hits_total")
    print(f"{USERS_RESIDENT} users due at once, at most {peak[0]:.0f} resident (bound 10), "
          f"{hits:.0f} left for a later poll; all sent once")
    assert peak[0] <= 10, f"{peak[0]} users resident, past the bound of 10"
    assert hits > 0, "the bound was never reached: the test proves nothing"


def publisher_buffer_is_bounded(workdir, db, cleanup):
    email = FakeEmail(workdir)
    cleanup.append(email.stop)
    node = Node(workdir, db, email, "--publish-buffer-max", "5", "--outbox-grace-s", "1")
    cleanup.append(node.stop)
    node.start("--clock-start", "2027-03-15T08:59:40Z")
    users = [node.create(**user_fields(n, "1990-03-15", "UTC")) for n in range(USERS_PUBLISH)]
    # The broker goes away for this node (its virtual host with it) before
    # the messages fall due.
    vhost = db.broker.vhost
    rabbitmqctl("delete_vhost", vhost)
    wait_until("the publisher's buffer to fill",
               lambda: node.metric("chime_publish_buffer_full_total") >= USERS_PUBLISH - 5, 60, 0.2)
    assert email.keys() == []
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    wait_until("every message", lambda: len(email.keys()) >= USERS_PUBLISH, 120, 0.2)
    assert sorted(email.keys()) == expected_keys(users), "a message missing or sent twice"
    full = node.metric("chime_publish_buffer_full_total")
    print(f"{USERS_PUBLISH} due while the broker was away: {full:.0f} hand-offs left to the outbox "
          f"sweeper (buffer bound 5); all sent once after it came back")


if __name__ == "__main__":
    run({"resident": resident_users_are_bounded, "publisher": publisher_buffer_is_bounded}[sys.argv[1]])
