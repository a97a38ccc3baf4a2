"""Proves that GET /openapi.json (the hardening issue, point 8) describes the
API as the node answers it. The document is OpenAPI 3.1 and lists exactly the
routes the node serves; any other method on a documented path is 405 with the
documented methods in Allow. Every documented operation is then called for
real, with good and bad input, and each answer must have a status the
document lists for that operation, the documented Content-Type and headers,
and a body valid against the documented schema (JSON Schema 2020-12, $refs
resolved). What the node accepts must be valid against the documented request
schema, an operation documented without a token is called without one, and
every documented status but those only a fault can provoke must be seen.
Needs python3-jsonschema: tests/e2e/CMakeLists.txt runs it on Debian's
interpreter."""

import json
import sys
import urllib.parse

try:
    from jsonschema import Draft202012Validator
except ImportError:
    sys.exit(f"openapi_test needs python3-jsonschema, which {sys.executable} cannot import:"
             " run scripts/setup.sh and run the test with /usr/bin/python3")

from harness import FakeEmail, Node, free_port, run, unreachable_broker, user_fields, wait_until

TOKEN = "openapi-test-token"

# What the node serves (net/http_api.cpp), as lower-case OpenAPI methods.
ROUTES = {
    "/v1/users": {"get", "post"},
    "/v1/users:import": {"post"},
    "/v1/users/{id}": {"get", "put", "delete"},
    "/v1/deliveries": {"get"},
    "/v1/deliveries/{key}:retry": {"post"},
    "/healthz": {"get"},
    "/readyz": {"get"},
    "/metrics": {"get"},
    "/openapi.json": {"get"},
    "/v1/cluster": {"get"},
    "/v1/cluster:leave": {"post"},
    "/v1/cluster:join": {"post"},
    "/v1/supervision": {"get"},
    "/v1/dashboard": {"get"},
    "/v1/dashboard/events": {"get"},
    "/dashboard": {"get"},
}
OPERATION_KEYS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
# Statuses only a fault provokes (a handler throwing, the journal or a
# shard's owner away); /readyz's 503 is provoked below.
FAULT_STATUSES = {"500", "503"}

NO_SUCH_USER = "0f8b9c1e-3a2d-4e5f-8a9b-0c1d2e3f4a5b"
TOO_LARGE = b'{"first_name": "' + b"a" * (65 * 1024) + b'"}'


def media_matches(documented, actual):
    """A Content-Type is the documented media type: its parameters too, when
    the document names some."""
    def parts(t):
        return [p.strip().lower() for p in t.split(";") if p.strip()]
    want, got = parts(documented), parts(actual)
    return got == want if len(want) > 1 else got[:1] == want


class Document:
    """The served document, and the checks of answers against it."""

    def __init__(self, doc):
        self.doc = doc
        self.seen = {}  # (path template, method) -> statuses answered

    def resolve(self, obj):
        """An OpenAPI object with its local $ref (chain) followed."""
        while "$ref" in obj:
            ref = obj["$ref"]
            assert ref.startswith("#/"), f"a $ref outside the document: {ref}"
            obj = self.doc
            for part in ref[2:].split("/"):
                obj = obj[part.replace("~1", "/").replace("~0", "~")]
        return obj

    def validate(self, schema, instance, what):
        # The components ride along so that "#/components/..." resolves.
        root = dict(schema, components=self.doc["components"])
        validator = Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER)
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
        assert not errors, f"{what}: not as documented: " + "; ".join(
            f"at /{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in errors[:5])

    def check_answer(self, response, headers, text, what):
        """Checks headers, Content-Type and body against a response object;
        the body, parsed when it is JSON."""
        response = self.resolve(response)
        for name, header in response.get("headers", {}).items():
            header = self.resolve(header)
            value = headers.get(name)
            if value is None:
                assert not header.get("required"), f"{what}: no {name} header"
            else:
                self.validate(header["schema"], value, f"{what}, header {name}")
        content = response.get("content")
        if not content:
            assert text == "", f"{what}: a body where the document has none: {text[:200]}"
            return None
        ctype = headers.get("Content-Type", "")
        media = next((m for m in content if media_matches(m, ctype)), None)
        assert media, f"{what}: Content-Type {ctype!r}, documented {sorted(content)}"
        body = json.loads(text) if media.split(";")[0].endswith("json") else text
        self.validate(content[media]["schema"], body, f"{what}, body")
        return body

    def query_names(self, template, op):
        params = self.doc["paths"][template].get("parameters", []) + op.get("parameters", [])
        return {p["name"] for p in map(self.resolve, params) if p["in"] == "query"}

    def call(self, node, method, template, path=None, query=None, headers=None, body=None,
             raw=None, expect=None):
        """Calls a documented operation and checks the answer against the
        document; the status and body. An operation documented without
        security is called without a token."""
        op = self.doc["paths"].get(template, {}).get(method.lower())
        assert op, f"{method} {template} is not documented"
        if headers is None and "security" not in op:
            headers = {}
        for name in query or {}:
            assert name in self.query_names(template, op), f"{method} {template}: ?{name} is not documented"
        target = (path or template) + ("?" + urllib.parse.urlencode(query) if query else "")
        status, answer_headers, text = node.exchange(method, target, body, headers=headers, raw=raw)
        what = f"{method} {target[:120]} -> {status}"
        response = op["responses"].get(str(status))
        assert response, (f"{what}: status {status} is not documented for {method} {template}"
                          f" (documented: {sorted(op['responses'])}); body: {text[:300]}")
        answer = self.check_answer(response, answer_headers, text, what)
        assert expect is None or status == expect, f"{what}: expected {expect}; body: {text[:300]}"
        sent_token = headers is None or any(k.lower() == "authorization" for k in headers)
        if "security" in op and not sent_token:
            assert status == 401, f"{what}: answered without the token it is documented to need"
        content = self.resolve(op["requestBody"])["content"] if "requestBody" in op else {}
        if 200 <= status < 300 and "application/json" in content:
            schema = content["application/json"]["schema"]
            self.validate(schema, body if raw is None else json.loads(raw), f"{what}: the request it accepted")
        self.seen.setdefault((template, method.lower()), set()).add(str(status))
        return status, answer


def check_the_document(doc):
    assert doc["openapi"].startswith("3.1."), doc["openapi"]
    documented = {path: {m for m in item if m in OPERATION_KEYS} for path, item in doc["paths"].items()}
    assert documented == ROUTES, f"documented routes differ from the served ones: {documented}"
    for name, schema in doc["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema)
    for path, methods in ROUTES.items():
        for method in methods:
            op = doc["paths"][path][method]
            assert op.get("responses"), f"{method} {path} documents no answer"
            for scheme in op.get("security", []):
                assert set(scheme) <= set(doc["components"]["securitySchemes"]), scheme


def wrong_methods_are_405_with_allow(api, node):
    """Every documented path, asked with methods it does not document."""
    examples = {"{id}": NO_SUCH_USER, "{key}": f"{NO_SUCH_USER}:birthday:2027-03-15"}
    allowed = api.resolve({"$ref": "#/components/responses/MethodNotAllowed"})
    for template, methods in ROUTES.items():
        path = template
        for name, value in examples.items():
            path = path.replace(name, value)
        for method in ({"patch", "get", "post", "delete"} - methods):
            status, headers, text = node.exchange(method.upper(), path, headers={})
            what = f"{method.upper()} {path} -> {status}"
            assert status == 405, f"{what}: expected 405: {text[:300]}"
            api.check_answer(allowed, headers, text, what)
            allow = {m.strip().lower() for m in headers["Allow"].split(",")}
            assert allow == methods, f"{what}: Allow {headers['Allow']}, documented {sorted(methods)}"
    not_found = api.resolve({"$ref": "#/components/responses/NotFound"})
    for path in ("/v1/users:export", "/v1/dashboards", "/v2/users"):
        status, headers, text = node.exchange("GET", path, headers={})
        assert status == 404, f"GET {path} (not served) -> {status}"
        api.check_answer(not_found, headers, text, f"GET {path}")


def users(api, node, doomed):
    """/v1/users and /v1/users/{id}; the id of a user to keep."""
    one = "/v1/users/{id}"
    good = user_fields(1, "1985-07-01", "Asia/Kathmandu", anniversary="2015-06-01")
    _, ada = api.call(node, "POST", "/v1/users", body=good, expect=201)
    assert ada["anniversary"] == "2015-06-01" and ada["first_name"] == "First1", ada
    _, bob = api.call(node, "POST", "/v1/users", body=user_fields(2, "1985-07-02", "UTC"), expect=201)
    assert bob["anniversary"] is None, bob
    for raw, field in ((b'{"first_name": ', None), (b"[1]", None),
                       (json.dumps(dict(good, email="ada-at-example.com")).encode(), "email"),
                       (json.dumps(dict(good, nickname="Ada")).encode(), "nickname"),
                       (json.dumps(dict(good, birthday="2999-01-01")).encode(), "birthday")):
        _, problem = api.call(node, "POST", "/v1/users", raw=raw, expect=400)
        assert problem.get("field") == field, problem
    api.call(node, "POST", "/v1/users", body=user_fields(3, "1985-07-01", "UTC"), headers={}, expect=401)
    api.call(node, "POST", "/v1/users", body=user_fields(3, "1985-07-01", "UTC"),
             headers={"Authorization": "Bearer wrong"}, expect=401)
    api.call(node, "POST", "/v1/users", body=dict(good, first_name="Other"), expect=409)
    api.call(node, "POST", "/v1/users", raw=TOO_LARGE, expect=413)
    api.call(node, "POST", "/v1/users", raw=json.dumps(good).encode(),
             headers={"Content-Type": "text/plain", "Authorization": f"Bearer {TOKEN}"}, expect=415)

    _, page = api.call(node, "GET", "/v1/users", query={"limit": 1}, expect=200)
    assert len(page["users"]) == 1 and page["next_cursor"], page
    seen = [u["id"] for u in page["users"]]
    while page["next_cursor"]:
        _, page = api.call(node, "GET", "/v1/users", query={"limit": 1, "cursor": page["next_cursor"]},
                           expect=200)
        seen += [u["id"] for u in page["users"]]
    assert sorted(seen) == sorted([ada["id"], bob["id"], doomed["id"]]), seen
    api.call(node, "GET", "/v1/users", expect=200)
    api.call(node, "GET", "/v1/users", query={"limit": 0}, expect=400)
    api.call(node, "GET", "/v1/users", query={"cursor": "page-2"}, expect=400)

    _, got = api.call(node, "GET", one, f"/v1/users/{ada['id']}", expect=200)
    api.call(node, "GET", one, f"/v1/users/{NO_SUCH_USER}", expect=404)
    api.call(node, "GET", one, "/v1/users/not-an-id", expect=404)

    # What a GET answered goes back whole; a plain create body does too.
    _, put = api.call(node, "PUT", one, f"/v1/users/{ada['id']}", body=dict(got, first_name="Renamed"),
                      expect=200)
    assert put["first_name"] == "Renamed", put
    api.call(node, "PUT", one, f"/v1/users/{ada['id']}", body=dict(good, last_name="Byron"), expect=200)
    api.call(node, "PUT", one, f"/v1/users/{ada['id']}", body=dict(good, timezone="Mars/Olympus"), expect=400)
    api.call(node, "PUT", one, f"/v1/users/{ada['id']}", body=dict(got, id=NO_SUCH_USER), expect=400)
    api.call(node, "PUT", one, f"/v1/users/{ada['id']}", body=good, headers={}, expect=401)
    api.call(node, "PUT", one, f"/v1/users/{NO_SUCH_USER}", body=good, expect=404)
    api.call(node, "PUT", one, "/v1/users/not-an-id", body=good, expect=404)
    api.call(node, "PUT", one, f"/v1/users/{ada['id']}", body=dict(good, email=bob["email"]), expect=409)
    api.call(node, "PUT", one, f"/v1/users/{ada['id']}", raw=TOO_LARGE, expect=413)
    api.call(node, "PUT", one, f"/v1/users/{ada['id']}", raw=json.dumps(good).encode(),
             headers={"Content-Type": "text/plain", "Authorization": f"Bearer {TOKEN}"}, expect=415)

    api.call(node, "DELETE", one, f"/v1/users/{bob['id']}", headers={}, expect=401)
    api.call(node, "DELETE", one, f"/v1/users/{bob['id']}", expect=204)
    api.call(node, "DELETE", one, f"/v1/users/{bob['id']}", expect=404)
    api.call(node, "DELETE", one, "/v1/users/not-an-id", expect=404)
    return ada["id"]


def imports(api, node):
    """/v1/users:import in both formats, with a bad line, a bad header, too
    many lines (the node reads 20 at most), no token, another media type."""
    path = "/v1/users:import"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    ndjson = {**auth, "Content-Type": "application/x-ndjson"}
    csv = {**auth, "Content-Type": "text/csv"}
    lines = [json.dumps(user_fields(100 + i, "1985-07-01", "UTC")) for i in range(3)]
    lines[1] = json.dumps(dict(user_fields(101, "1985-07-01", "UTC"), email="nope"))
    # Every accepted line is a valid UserInput.
    schema = api.doc["components"]["schemas"]["UserInput"]
    api.validate(schema, json.loads(lines[0]), "an imported line")
    _, result = api.call(node, "POST", path, headers=ndjson, raw="\n".join(lines).encode(), expect=200)
    assert (result["imported"], result["failed"]) == (2, 1), result
    assert [(e["line"], e["field"]) for e in result["errors"]] == [(2, "email")], result
    rows = "first_name,last_name,email,birthday,timezone\nCsv,One,csv1@example.com,1985-07-01,UTC\n"
    _, result = api.call(node, "POST", path, headers=csv, raw=rows.encode(), expect=200)
    assert result["imported"] == 1, result
    _, problem = api.call(node, "POST", path, headers=csv, raw=b"first_name,nickname\n", expect=400)
    assert problem["field"] == "nickname", problem
    many = "\n".join(json.dumps(user_fields(200 + i, "1985-07-01", "UTC")) for i in range(25))
    _, stopped = api.call(node, "POST", path, headers=ndjson, raw=many.encode(), expect=413)
    assert (stopped["imported"], stopped["resume_line"]) == (20, 21), stopped
    api.call(node, "POST", path, headers={"Content-Type": "application/x-ndjson"},
             raw=lines[0].encode(), expect=401)
    api.call(node, "POST", path, headers={**auth, "Content-Type": "application/json"},
             raw=lines[0].encode(), expect=415)


def deliveries(api, node, ada, doomed):
    """/v1/deliveries and a re-drive of the doomed user's dead delivery."""
    _, listed = api.call(node, "GET", "/v1/deliveries", query={"user": ada}, expect=200)
    assert all(d["key"].startswith(ada) for d in listed["deliveries"]), listed
    api.call(node, "GET", "/v1/deliveries", query={"status": "sent", "limit": 10}, expect=200)
    for query in ({"status": "lost"}, {"user": "bob"}, {"limit": 5000}):
        _, problem = api.call(node, "GET", "/v1/deliveries", query=query, expect=400)
        assert problem["field"] == next(iter(query)), problem

    retry = "/v1/deliveries/{key}:retry"
    key = f"{doomed}:birthday:2027-03-15"
    def dead():
        return api.call(node, "GET", "/v1/deliveries", query={"status": "dead"}, expect=200)[1]["deliveries"]
    assert [d["key"] for d in wait_until("the doomed delivery to be dead", dead, 60)] == [key]
    api.call(node, "POST", retry, f"/v1/deliveries/{key}:retry", headers={}, expect=401)
    _, redriven = api.call(node, "POST", retry, f"/v1/deliveries/{key}:retry", expect=200)
    assert [d["key"] for d in redriven["deliveries"]] == [key], redriven
    api.call(node, "POST", retry, f"/v1/deliveries/{NO_SUCH_USER}:birthday:2027-03-15:retry", expect=404)
    api.call(node, "POST", retry, "/v1/deliveries/nonsense:retry", expect=404)


def operations(api, node):
    """The routes with no resource of their own; the node joins a cluster of
    nobody and leaves, so this comes last."""
    api.call(node, "GET", "/healthz", expect=200)
    api.call(node, "GET", "/readyz", expect=200)
    _, text = api.call(node, "GET", "/metrics", expect=200)
    assert "# TYPE chime_users gauge" in text, text[:500]
    api.call(node, "GET", "/openapi.json", expect=200)
    _, cluster = api.call(node, "GET", "/v1/cluster", expect=200)
    assert [m["name"] for m in cluster["members"]] == [cluster["self"]], cluster

    _, tree = api.call(node, "GET", "/v1/supervision", expect=200)
    assert tree["root"]["name"] == "node" and tree["root"]["children"], tree
    _, snapshot = api.call(node, "GET", "/v1/dashboard", expect=200)
    assert snapshot["node"] == tree["node"], snapshot
    _, page = api.call(node, "GET", "/dashboard", expect=200)
    assert "<title>Chime" in page, page[:200]
    first_event(api, node)

    join = "/v1/cluster:join"
    seed = f"127.0.0.1:{free_port()}"
    for raw, field in ((b'{"seed": ', None), (b'{"seed": "nowhere"}', "seed"),
                       (b'{"seed": "127.0.0.1:7100", "secret": "x"}', "secret")):
        _, problem = api.call(node, "POST", join, raw=raw, expect=400)
        assert problem.get("field") == field, problem
    api.call(node, "POST", join, body={"seed": seed}, headers={}, expect=401)
    api.call(node, "POST", join, raw=json.dumps({"seed": seed}).encode(),
             headers={"Content-Type": "text/plain", "Authorization": f"Bearer {TOKEN}"}, expect=415)
    api.call(node, "POST", join, raw=b'{"seed": "' + b"a" * (65 * 1024) + b'"}', expect=413)
    api.call(node, "POST", join, body={"seed": seed}, expect=202)
    api.call(node, "POST", "/v1/cluster:leave", headers={}, expect=401)
    api.call(node, "POST", "/v1/cluster:leave", expect=202)


def first_event(api, node):
    """GET /v1/dashboard/events never ends: its headers and first event are
    read, checked, and the stream closed."""
    import http.client
    template = "/v1/dashboard/events"
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
    try:
        conn.request("GET", template)
        response = conn.getresponse()
        assert response.status == 200, response.status
        op = api.doc["paths"][template]["get"]
        data = b""
        while b"\n\n" not in data:
            chunk = response.read1(65536)
            assert chunk, "the stream ended before its first event"
            data += chunk
        line = data.split(b"\n\n")[0].decode()
        assert line.startswith("data: "), line[:200]
        api.check_answer(op["responses"]["200"], dict(response.getheaders()), line,
                         f"GET {template} -> 200")
        api.validate(api.resolve({"$ref": "#/components/schemas/DashboardSnapshot"}),
                     json.loads(line[len("data: "):]), f"GET {template}, first event")
    finally:
        conn.close()
    api.seen.setdefault((template, "get"), set()).add("200")


def not_ready(api, workdir, db, email, cleanup):
    """/readyz of a node whose broker is nowhere: the documented 503."""
    lonely = Node(workdir, db, email, broker=unreachable_broker())
    cleanup.append(lonely.stop)
    lonely.start(ready=False)
    def answered():
        try:
            return api.call(lonely, "GET", "/readyz")[0] == 503
        except OSError:
            return False  # not listening yet
    wait_until("the node without a broker to answer 503", answered, 30, 0.2)
    lonely.stop()


def openapi_document_matches_the_api(workdir, db, cleanup):
    email = FakeEmail(workdir, "--error-rate", "1.0")
    cleanup.append(email.stop)
    # A fast clock five minutes before 09:00 UTC: the doomed user's birthday
    # message falls due while the other checks run, fails its only attempt
    # and is dead, ready to re-drive.
    node = Node(workdir, db, email, "--api-token", TOKEN, "--delivery-attempts-max", "1",
                "--import-lines-max", "20")
    cleanup.append(node.stop)
    node.start("--clock-start", "2027-03-15T08:55:00Z", "--clock-rate", "20")

    status, headers, text = node.exchange("GET", "/openapi.json", headers={})
    assert status == 200 and headers["Content-Type"] == "application/json", (status, dict(headers))
    api = Document(json.loads(text))
    check_the_document(api.doc)
    api.call(node, "GET", "/openapi.json", expect=200)

    _, doomed = api.call(node, "POST", "/v1/users", body=user_fields(9, "1990-03-15", "UTC"), expect=201)
    assert doomed["next_due"]["birthday"] == "2027-03-15T09:00:00Z", \
        f"the node took too long to start: the doomed user is due {doomed['next_due']}"
    wrong_methods_are_405_with_allow(api, node)
    ada = users(api, node, doomed)
    imports(api, node)
    deliveries(api, node, ada, doomed["id"])
    not_ready(api, workdir, db, email, cleanup)
    operations(api, node)

    unseen = []
    for path, methods in ROUTES.items():
        for method in methods:
            documented = set(api.doc["paths"][path][method]["responses"])
            seen = api.seen.get((path, method), set())
            print(f"{method.upper():6} {path:30} answered {sorted(seen)} of {sorted(documented)}")
            unseen += [f"{method.upper()} {path} {s}" for s in documented - seen - FAULT_STATUSES]
    assert not unseen, f"documented statuses the test never saw answered: {unseen}"


if __name__ == "__main__":
    run(openapi_document_matches_the_api)
