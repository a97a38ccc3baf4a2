"""Proves POST /v1/users:import (issue 11, point 3) as a client sees it: an
NDJSON body over 64 KiB and a CSV body, each with bad lines, are imported
line by line; every bad line is reported with its line number and the field
it names, and changes nothing; the good lines read back through GET as
created users. Users imported one virtual minute before their 09:00 (one from
each format) are each sent exactly once, on time, by the fake email service:
an import schedules as a create does."""

import json

from harness import FakeEmail, Node, iso_ms, run, user_fields, wait_until


def users_by_email(node):
    code, _, page = node.api("GET", "/v1/users?limit=1000")
    assert code == 200 and page["next_cursor"] is None, page
    return {u["email"]: u for u in page["users"]}


def post_import(node, content_type, body):
    code, ctype, answer = node.api("POST", "/v1/users:import", raw=body.encode(),
                                   headers={"Content-Type": content_type}, timeout=120)
    assert code == 200 and ctype.startswith("application/json"), (code, answer)
    return answer


def errors_of(answer):
    return [(e["line"], e["field"]) for e in answer["errors"]]


def ndjson_lines():
    """Line 1 is due in a minute; lines 2-9 hold each kind of bad line among
    good ones; padding users take the body well past 64 KiB."""
    soon = user_fields(1, "1990-03-15", "Asia/Kathmandu")
    lines = [
        json.dumps(soon),                                                    # 1 due soon
        json.dumps(user_fields(2, "1985-07-01", "Europe/Berlin", "2015-06-01")),  # 2
        json.dumps(dict(user_fields(3, "1985-07-01", "UTC"), email="no-at-sign")),  # 3 email
        '{"first_name": "Broken", ',                                         # 4 malformed
        json.dumps(dict(user_fields(5, "1985-07-01", "UTC"), nickname="x")),  # 5 unknown field
        "",                                                                  # 6 blank: skipped
        json.dumps(dict(user_fields(7, "1985-07-01", "UTC"), email="USER1@example.com")),  # 7 taken
        json.dumps(user_fields(8, "2999-01-01", "UTC")),                     # 8 birthday ahead
        json.dumps(dict(user_fields(9, "1985-07-01", "UTC"), first_name="x" * (70 * 1024))),  # 9 too long
    ]
    lines += [json.dumps(user_fields(1000 + i, "1980-01-02", "America/St_Johns")) for i in range(600)]
    return lines


def csv_body():
    """Columns in another order, a quoted cell with a comma, an empty
    anniversary; line 3 has an unknown zone, line 4 a missing cell; line 5
    is due in a minute by its anniversary."""
    return "\r\n".join([
        "email,first_name,last_name,birthday,anniversary,timezone",
        'csv1@example.com,Jane,"Smith, Jr.",1970-01-01,,America/New_York',
        "csv2@example.com,Bad,Zone,1970-01-01,,Mars/Olympus",
        "csv3@example.com,Short,Row,1970-01-01,UTC",
        "csv4@example.com,Anna,Versary,1980-05-05,2015-03-15,Asia/Kathmandu",
    ]) + "\r\n"


def import_validates_line_by_line_and_schedules(workdir, db, cleanup):
    email = FakeEmail(workdir)
    cleanup.append(email.stop)
    # 09:00 in Kathmandu on 2027-03-15 is 03:15Z, one virtual minute ahead.
    node = Node(workdir, db, email, "--clock-start", "2027-03-15T03:14:00Z", "--clock-rate", "4").start()
    cleanup.append(node.stop)

    lines = ndjson_lines()
    body = "\n".join(lines) + "\n"
    assert len(body) > 64 * 1024 * 2
    answer = post_import(node, "application/x-ndjson", body)
    assert answer["imported"] == 2 + 600 and answer["failed"] == 6, answer
    assert answer["errors_omitted"] == 0, answer
    assert errors_of(answer) == [(3, "email"), (4, None), (5, "nickname"), (7, "email"),
                                 (8, "birthday"), (9, None)], answer
    details = {e["line"]: e["detail"] for e in answer["errors"]}
    assert "already used" in details[7] and "line exceeds" in details[9], details

    answer = post_import(node, "text/csv", csv_body())
    assert (answer["imported"], answer["failed"]) == (2, 2), answer
    assert errors_of(answer) == [(3, "timezone"), (4, None)], answer

    # Bad lines changed nothing; good ones read back as created users.
    users = users_by_email(node)
    assert len(users) == 2 + 600 + 2, len(users)
    for missing in ("user3@example.com", "user5@example.com", "user7@example.com",
                    "user8@example.com", "user9@example.com", "csv2@example.com", "csv3@example.com"):
        assert missing not in users, missing
    code, _, ada = node.api("GET", f"/v1/users/{users['user1@example.com']['id']}")
    assert code == 200 and ada["first_name"] == "First1", ada
    assert ada["next_due"]["birthday"] == "2027-03-15T03:15:00Z", ada
    code, _, jane = node.api("GET", f"/v1/users/{users['csv1@example.com']['id']}")
    assert code == 200 and jane["last_name"] == "Smith, Jr." and jane["anniversary"] is None, jane
    assert users["user2@example.com"]["anniversary"] == "2015-06-01", users["user2@example.com"]

    # The users due soon are sent once each, on time.
    anna = users["csv4@example.com"]
    expected = sorted([f"{ada['id']}:birthday:2027-03-15", f"{anna['id']}:anniversary:2027-03-15"])

    def sent():
        got = [d for d in node.deliveries(status="sent")]
        return got if len(got) == 2 else None

    for d in wait_until("the imported users' messages to be sent", sent, 60):
        lateness_ms = iso_ms(d["sent_at"]) - iso_ms(d["due_at"])
        assert 0 <= lateness_ms <= 1000, f"{d['key']} sent {lateness_ms} ms after its due instant"
    keys = sorted(email.keys())
    assert keys == expected, f"ledger keys {keys} != {expected}"
    assert node.stop() == 0


if __name__ == "__main__":
    run(import_validates_line_by_line_and_schedules)
