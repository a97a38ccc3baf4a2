"""One request never hurts another (the hardening issue, point 4): writes
are committed in groups, yet a write PostgreSQL would refuse fails alone with
the status it deserves, and input the database cannot hold never reaches it.
  poisoned  500 good and 50 creates with U+0000 in a name, all at once:
            500 201s, 50 400s naming the field, no reconnect;
  racing    30 creates of one email (its case varied) beside 40 unrelated
            ones, all at once: one 201, 29 409s, 40 201s;
  encoding  invalid UTF-8 in a body is 400; in a path (GET /v1/users/%ff,
            POST /v1/deliveries/%ff:retry) 404, in a query 400 naming the
            parameter; the journal's connection
            survives all of it and writes after it succeed.
Usage: isolation_test.py poisoned|racing|encoding"""

import json
import sys
from concurrent.futures import ThreadPoolExecutor

from harness import FakeEmail, Node, run, user_fields


def start(workdir, db, cleanup):
    email = FakeEmail(workdir)
    cleanup.append(email.stop)
    node = Node(workdir, db, email, "--clock-start", "2027-01-10T00:00:00Z").start()
    cleanup.append(node.stop)
    return node


def create_all(node, bodies):
    """Every body POSTed at once; the answers in the bodies' order."""
    with ThreadPoolExecutor(64) as pool:
        return list(pool.map(lambda b: node.api("POST", "/v1/users", b), bodies))


def reconnects(node):
    return node.log_text().count("connected to PostgreSQL")


def poisoned(workdir, db, cleanup):
    node = start(workdir, db, cleanup)
    connected = reconnects(node)
    good = [user_fields(n, "1990-03-15", "UTC") for n in range(500)]
    bad = [dict(user_fields(1000 + n, "1990-03-15", "UTC"), first_name=f"Ada\u0000{n}")
           for n in range(50)]
    bodies = [b for pair in zip(good[:50], bad) for b in pair] + good[50:]
    answers = create_all(node, bodies)
    codes = [a[0] for a in answers]
    assert codes.count(201) == 500 and codes.count(400) == 50, \
        {c: codes.count(c) for c in set(codes)}
    for (code, _, body), sent in zip(answers, bodies):
        if code == 400:
            assert "\u0000" in sent["first_name"], sent
            assert "first_name" in body["detail"], body
    assert db.query("SELECT count(*) FROM users") == "500"
    assert node.metric("chime_users_created_total") == 500, "a refused create was counted"
    assert reconnects(node) == connected, "the journal lost its connection"


def racing(workdir, db, cleanup):
    node = start(workdir, db, cleanup)
    same = [dict(user_fields(n, "1990-03-15", "UTC"),
                 email=("Race@Example.com" if n % 3 == 0 else
                        "race@example.com" if n % 3 == 1 else "RACE@EXAMPLE.COM"))
            for n in range(30)]
    others = [user_fields(100 + n, "1990-03-15", "UTC") for n in range(40)]
    bodies = [b for pair in zip(same, others) for b in pair] + others[30:]
    answers = create_all(node, bodies)
    raced = [a[0] for a, b in zip(answers, bodies) if b in same]
    unrelated = [a[0] for a, b in zip(answers, bodies) if b in others]
    assert raced.count(201) == 1 and raced.count(409) == 29, \
        {c: raced.count(c) for c in set(raced)}
    assert unrelated == [201] * 40, {c: unrelated.count(c) for c in set(unrelated)}
    assert db.query("SELECT count(*) FROM users WHERE lower(email) = 'race@example.com'") == "1"


def encoding(workdir, db, cleanup):
    node = start(workdir, db, cleanup)
    connected = reconnects(node)
    raw = json.dumps(user_fields(1, "1990-03-15", "UTC")).encode().replace(b"First1", b"Fi\xffrst")
    code, ctype, body = node.api("POST", "/v1/users", raw=raw)
    assert code == 400 and ctype.startswith("application/problem+json"), (code, body)
    created = node.create(**user_fields(2, "1990-03-15", "UTC"))
    code, _, body = node.api("PUT", f"/v1/users/{created['id']}", raw=raw)
    assert code == 400, (code, body)
    for method, path in (("GET", "/v1/users/%ff"), ("DELETE", "/v1/users/%ff"),
                         ("PUT", "/v1/users/%ff"), ("POST", "/v1/deliveries/%ff:retry")):
        code, ctype, body = node.api(method, path, user_fields(3, "1990-03-15", "UTC")
                                     if method == "PUT" else None)
        assert code == 404 and ctype.startswith("application/problem+json"), \
            (method, path, code, body)
    for path, field in (("/v1/users?cursor=%ff", "cursor"), ("/v1/deliveries?user=%ff", "user")):
        code, _, body = node.api("GET", path)
        assert code == 400 and field in body["detail"], (path, code, body)
    node.create(**user_fields(4, "1990-03-15", "UTC"))
    assert reconnects(node) == connected, "the journal lost its connection"


SCENARIOS = {f.__name__: f for f in (poisoned, racing, encoding)}

if __name__ == "__main__":
    run(SCENARIOS[sys.argv[1]])
