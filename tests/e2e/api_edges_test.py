"""The API's edges (the hardening issue, point 8): a chunked body obeys the
64 KiB limit without the node reading it whole; a body that is not JSON is
415; a known path with the wrong method is 405 with Allow; what a GET
returned can be PUT back; a 503 says when to retry; answers carry no
library's exception text. Each bad request changes nothing."""

import http.client
import json
import os
import socket
import urllib.error
import urllib.request

from harness import FakeEmail, Node, rss_mib, run, unreachable_broker, user_fields, wait_until


def chunked_post(port, total_mib, path="/v1/users"):
    """POSTs `total_mib` of chunked body (stopping when the node stops
    reading); the status of the answer."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.putrequest("POST", path)
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    chunk = b"a" * (1024 * 1024)
    try:
        conn.send(b'{"first_name": "')
        for _ in range(total_mib):
            conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        conn.send(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError, socket.timeout):
        pass  # the node stopped reading: its answer is waiting
    try:
        return conn.getresponse().status
    finally:
        conn.close()


def headers_of(url, method="GET"):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10) as r:
            return r.status, r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.headers


def api_edges(workdir, db, cleanup):
    email = FakeEmail(workdir)
    cleanup.append(email.stop)
    node = Node(workdir, db, email, "--clock-start", "2027-01-10T00:00:00Z").start()
    cleanup.append(node.stop)
    created = node.create(**user_fields(1, "1990-03-15", "Europe/Berlin"))
    before = db.query("SELECT count(*) || '/' || max(seq) FROM journal")

    # A chunked body past 64 KiB: 413, and the node never holds it.
    rss = rss_mib(node.proc.pid)
    assert chunked_post(node.port, 200) == 413
    grown = rss_mib(node.proc.pid) - rss
    print(f"a 200 MiB chunked POST: 413, the node grew {grown:.1f} MiB")
    assert grown < 50, f"the node grew {grown:.0f} MiB reading a chunked body"
    # Routes that take a small body whole (no streaming reader) refuse a
    # chunked one before reading it: its length is unknown.
    rss = rss_mib(node.proc.pid)
    code = chunked_post(node.port, 200, "/v1/cluster:join")
    grown = rss_mib(node.proc.pid) - rss
    print(f"a 200 MiB chunked POST to /v1/cluster:join: {code}, the node grew {grown:.1f} MiB")
    assert code == 411 and grown < 50, (code, grown)

    # Not JSON: 415.
    code, ctype, body = node.api("POST", "/v1/users", raw=json.dumps(user_fields(2, "1990-03-15", "UTC")).encode(),
                                 headers={"Content-Type": "text/plain"})
    assert code == 415 and ctype.startswith("application/problem+json"), (code, body)

    # The wrong method on a known path: 405 with Allow.
    for method, path, allow in (("DELETE", "/v1/users", "GET, POST"),
                                ("PATCH", f"/v1/users/{created['id']}", "GET, PUT, DELETE"),
                                ("GET", "/v1/cluster:leave", "POST")):
        code, headers = headers_of(node.url + path, method)
        assert code == 405 and headers["Allow"] == allow, (method, path, code, dict(headers))

    # Malformed JSON names the byte, not the parser's exception.
    code, _, body = node.api("POST", "/v1/users", raw=b'{"first_name": ')
    assert code == 400 and "byte" in body["detail"] and "exception" not in body["detail"], body
    assert db.query("SELECT count(*) || '/' || max(seq) FROM journal") == before, \
        "a refused request changed the journal"

    # What a GET returned goes back whole: read-only fields are ignored...
    code, _, got = node.api("GET", f"/v1/users/{created['id']}")
    got["first_name"] = "Renamed"
    code, _, body = node.api("PUT", f"/v1/users/{created['id']}", got)
    assert code == 200 and body["first_name"] == "Renamed", (code, body)
    # ...unless they claim another user or shard.
    other = dict(got, id="0f8b9c1e-3a2d-4e5f-8a9b-0c1d2e3f4a5b")
    code, _, body = node.api("PUT", f"/v1/users/{created['id']}", other)
    assert code == 400 and body["field"] == "id", body
    code, _, body = node.api("PUT", f"/v1/users/{created['id']}", dict(got, shard=(got["shard"] + 1) % 256))
    assert code == 400 and body["field"] == "shard", body

    # A 503 says when to come back (a node whose broker is away is not ready).
    lonely = Node(workdir, db, email, "--clock-start", "2027-01-10T00:00:00Z",
                  broker=unreachable_broker())
    cleanup.append(lonely.stop)
    lonely.start(ready=False)
    def not_ready():
        try:
            code, headers = headers_of(lonely.url + "/readyz")
        except OSError:
            return None  # not listening yet
        return headers if code == 503 else None
    headers = wait_until("the node without a broker to answer 503", not_ready, 30, 0.2)
    assert headers["Retry-After"] == "1", dict(headers)


if __name__ == "__main__":
    run(api_edges)
