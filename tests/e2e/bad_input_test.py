"""Proves that bad input gets a clear RFC 7807 problem naming the offending
field (400, 404, 409 or 413) and changes nothing: the journal and the users
table are compared before and after every bad request. Also proves that a
create is durable in the journal when its 201 arrives, and that a configured
API token guards the mutating endpoints."""

import json

from harness import FakeEmail, Node, run, user_fields

GOOD = user_fields(1, "1990-03-15", "Asia/Kathmandu", anniversary="2015-06-01")


def with_(**changes):
    body = dict(GOOD)
    for k, v in changes.items():
        if v is None:
            body.pop(k, None)
        else:
            body[k] = v
    return json.dumps(body).encode()


BAD_BODIES = [
    # (description, raw body, expected status, field named in the detail)
    ("malformed JSON", b'{"first_name": "Ada",', 400, "byte"),
    ("not an object", b'[1, 2]', 400, "object"),
    ("missing first_name", with_(first_name=None), 400, "first_name"),
    ("missing birthday", with_(birthday=None), 400, "birthday"),
    ("unknown field", with_(nickname="Ada"), 400, "nickname"),
    ("bad email", with_(email="ada-at-example.com"), 400, "email"),
    ("not a real date", with_(birthday="2023-02-30"), 400, "birthday"),
    ("bad date format", with_(anniversary="15/06/2015"), 400, "anniversary"),
    ("date in the future", with_(birthday="2999-01-01"), 400, "birthday"),
    ("unknown time zone", with_(timezone="Mars/Olympus_Mons"), 400, "timezone"),
    ("the machine's zone, not an IANA name", with_(timezone="localtime"), 400, "timezone"),
    ("a zone file under other rules", with_(timezone="posix/Europe/Paris"), 400, "timezone"),
    ("over-long name", with_(last_name="x" * 201), 400, "last_name"),
    ("empty name", with_(first_name="  "), 400, "first_name"),
    ("number as name", with_(first_name=42), 400, "first_name"),
    ("1 MiB body", b'{"first_name": "' + b"a" * (1024 * 1024) + b'"}', 413, "64 KiB"),
]


def state(db):
    return db.query("SELECT (SELECT count(*) FROM journal) || '/' || (SELECT count(*) FROM users)"
                    " || '/' || (SELECT coalesce(string_agg(email || last_name || timezone, ','), '') FROM users)")


def assert_problem(code, ctype, body, status, needle, what):
    assert code == status, f"{what}: expected {status}, got {code} {body}"
    assert ctype.startswith("application/problem+json"), f"{what}: content type {ctype}"
    assert body["status"] == status and needle in body["detail"], f"{what}: {body}"


def bad_input_is_rejected_and_changes_nothing(workdir, db, cleanup):
    email = FakeEmail(workdir)
    cleanup.append(email.stop)
    node = Node(workdir, db, email, "--clock-start", "2027-01-10T00:00:00Z").start()
    cleanup.append(node.stop)
    before = state(db)
    assert before.startswith("0/0/"), before
    for what, raw, status, needle in BAD_BODIES:
        code, ctype, body = node.api("POST", "/v1/users", raw=raw)
        assert_problem(code, ctype, body, status, needle, what)
        if status == 400 and needle not in ("byte", "object"):
            assert body["field"] == needle, f"{what}: {body}"
        assert state(db) == before, f"{what} changed the database"

    # A create is in the journal and the read model when its 201 arrives.
    created = node.create(**GOOD)
    assert db.query(f"SELECT count(*) FROM journal WHERE user_id = '{created['id']}'") == "1"
    assert db.query(f"SELECT count(*) FROM users WHERE id = '{created['id']}'") == "1"
    before = state(db)

    code, ctype, body = node.api("POST", "/v1/users", with_(first_name="Other"), raw=with_(first_name="Other"))
    assert_problem(code, ctype, body, 409, "email", "duplicate email")
    code, ctype, body = node.api("PUT", f"/v1/users/{created['id']}", raw=with_(timezone="Nowhere/Land"))
    assert_problem(code, ctype, body, 400, "timezone", "bad update")
    code, ctype, body = node.api("GET", "/v1/users/no-such-user")
    assert_problem(code, ctype, body, 404, "no user", "unknown user")
    code, ctype, body = node.api("DELETE", "/v1/users/no-such-user")
    assert_problem(code, ctype, body, 404, "no user", "delete unknown user")
    code, ctype, body = node.api("GET", "/v1/users?limit=0")
    assert_problem(code, ctype, body, 400, "limit", "bad limit")
    code, ctype, body = node.api("GET", "/v1/deliveries?status=lost")
    assert_problem(code, ctype, body, 400, "status", "bad status")
    assert state(db) == before, "a rejected request changed the database"

    # Listing with a cursor walks every user once.
    for n in range(2, 6):
        node.create(**user_fields(n, "1990-03-15", "Europe/Berlin"))
    seen, cursor = [], ""
    for _ in range(10):
        code, _, page = node.api("GET", f"/v1/users?limit=2&cursor={cursor}")
        assert code == 200, page
        seen += [u["id"] for u in page["users"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == 5 and len(set(seen)) == 5, seen

    # With a token configured, mutations need it; reads do not.
    guarded = Node(workdir, db, email, "--api-token", "s3cret").start()
    cleanup.append(guarded.stop)
    before = state(db)
    code, ctype, body = guarded.api("POST", "/v1/users", user_fields(9, "1990-01-01", "UTC"),
                                    headers={})
    assert_problem(code, ctype, body, 401, "Bearer", "missing token")
    code, _, _ = guarded.api("DELETE", f"/v1/users/{created['id']}", headers={"Authorization": "Bearer wrong"})
    assert code == 401
    assert state(db) == before
    code, _, _ = guarded.api("GET", f"/v1/users/{created['id']}", headers={})
    assert code == 200
    code, _, body = guarded.api("POST", "/v1/users", user_fields(9, "1990-01-01", "UTC"),
                                headers={"Authorization": "Bearer s3cret"})
    assert code == 201, body


if __name__ == "__main__":
    run(bad_input_is_rejected_and_changes_nothing)
