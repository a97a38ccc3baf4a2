"""Proves the supervision tree (the supervision issue, point 2): during one
burst, one actor of every long-lived kind is made to fail through the test
hook (POST /v1/admin/crash, served with --test-hooks 1), one after another
as the burst goes on. Every message still reaches the email service exactly
once, and each failure shows as a restart of that actor in
GET /v1/supervision and in chime_actor_restarts_total. Then one actor is made
to fail past the root's restart limit, and the node exits 1."""

from harness import FakeEmail, Node, http, run, user_fields, wait_until

USERS = 3000
RATE = 300  # messages/s: the burst lasts about ten seconds

# Every kind the node runs, as registered: journals, the broker's publisher
# and consumers, the delivery actor, the dead-letter keeper, user commands,
# the shard host and one shard, the due poller, the outbox sweeper, the
# cluster's coordination and membership, and the HTTP server.
KINDS = ["delivery", "journal/send/1", "handoff", "consumer", "shard", "shards", "journal",
         "dead_letters", "dead_consumer", "users", "due_poller", "outbox_sweeper",
         "coordination", "membership", "http"]


def tree_restarts(node):
    """Restarts per actor name, from the node's supervision tree."""
    code, _, body = node.api("GET", "/v1/supervision")
    assert code == 200, body
    out = {}

    def walk(n):
        out[n["name"]] = n["restarts"]
        for c in n.get("children", []):
            walk(c)
    walk(body["root"])
    return out, body


def every_kind_fails_mid_burst_and_nothing_is_lost_or_doubled(workdir, db, cleanup):
    email = FakeEmail(workdir)
    cleanup.append(email.stop)
    node = Node(workdir, db, email, "--email-rate-per-s", str(RATE), "--test-hooks", "1")
    cleanup.append(node.stop)
    node.start("--clock-start", "2027-03-15T00:00:00Z")
    users = node.create_many([user_fields(n, "1990-03-15", "UTC") for n in range(USERS)], workers=16)
    shard_name = f"shard/{users[0]['shard']}"
    node.stop()
    node.start("--clock-start", "2027-03-15T08:59:58Z")

    step = USERS // (len(KINDS) + 3)
    crashed = []
    for k, kind in enumerate(KINDS):
        name = shard_name if kind == "shard" else kind
        # Mid-burst: each crash after the ledger has grown by another step.
        wait_until(f"{(k + 1) * step} messages before crashing {name}",
                   lambda: len(email.keys()) >= (k + 1) * step, 60, 0.05)
        try:
            code, _, body = node.api("POST", "/v1/admin/crash", {"actor": name}, timeout=5)
            assert code == 202, (name, code, body)
        except OSError:
            assert name == "http", f"crashing {name} broke the connection"
        if name == "http":
            wait_until("the HTTP server back", lambda: http_up(node), 30, 0.05)
        crashed.append((name, len(email.keys())))
    sent_at_last_crash = crashed[-1][1]
    assert sent_at_last_crash < USERS, f"the burst ended before the last crash: {crashed}"

    wait_until("every message", lambda: len(set(email.keys())) >= USERS, 180, 0.5)
    keys = email.keys()
    expected = {f"{u['id']}:birthday:2027-03-15" for u in users}
    assert set(keys) == expected, "ledger keys differ from the users' keys"
    assert len(keys) == USERS, f"{len(keys) - USERS} duplicates"

    restarts, tree = tree_restarts(node)
    for name, _ in crashed:
        assert restarts.get(name, 0) >= 1, f"{name}'s restart is not in the tree: {tree}"
        assert node.metric(f'chime_actor_restarts_total{{actor="{name}"}}', missing=0) >= 1, name
    assert tree["restarts_total"] >= len(KINDS)
    assert {f["subject"] for f in tree["failures"] if f["kind"] == "actor"} >= {n for n, _ in crashed}
    print(f"{USERS} messages, each once, with {len(crashed)} actors crashed mid-burst "
          f"(sent when each failed: {', '.join(f'{n}@{s}' for n, s in crashed)})")

    # Past the root's restart limit (5 within 10 s, the defaults) the node
    # gives up: it exits non-zero, and says why, instead of looping.
    def gone_or_restarted(before):
        if node.proc.poll() is not None:
            return True
        try:
            return tree_restarts(node)[0]["handoff"] > before
        except OSError:
            return False  # the node is going: the next check sees it gone
    for _ in range(8):
        if node.proc.poll() is not None:
            break
        before = tree_restarts(node)[0]["handoff"]
        try:
            node.api("POST", "/v1/admin/crash", {"actor": "handoff"}, timeout=5)
        except OSError:
            break
        wait_until("the publisher restarted, or the node gone", lambda: gone_or_restarted(before), 10, 0.02)
    code = node.proc.wait(30)
    assert code == 1, f"the node exited with {code} past its restart limit"
    assert "supervision tree gave up" in node.log_text()
    assert "restart intensity exceeded" in node.log_text()


def http_up(node):
    try:
        return http("GET", node.url + "/healthz", timeout=1)[0] == 200
    except OSError:
        return False


if __name__ == "__main__":
    run(every_kind_fails_mid_burst_and_nothing_is_lost_or_doubled)
