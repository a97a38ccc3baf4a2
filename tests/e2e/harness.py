"""Black-box harness: runs the real `chime` binary, its fake email service and
a fresh database on the PostgreSQL the test command started, and talks to them
only as a user would (HTTP, flags, the ledger). Waits are explicit, with
deadlines; nothing sleeps to synchronise."""

import collections
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid

CHIME = os.environ.get("CHIME_BIN", "build/chime")
BASE_DB = os.environ.get("CHIME_TEST_DATABASE_URL")
BASE_AMQP = os.environ.get("CHIME_TEST_AMQP_URL")
RABBIT_NODE = os.environ.get("CHIME_TEST_RABBITMQ_NODE")
SERVICES = os.environ.get("CHIME_TEST_SERVICES")


def fail(msg):
    raise AssertionError(msg)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what, predicate, timeout_s=30.0, interval_s=0.05):
    """Polls `predicate` until it returns a truthy value or the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            fail(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval_s)  # polling interval, not a synchronisation


def exchange(method, url, body=None, headers=None, raw=None, timeout=30):
    """A request's status, response headers and body text."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None and not any(k.lower() == "content-type" for k in (headers or {})):
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            return res.status, res.headers, res.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def http(method, url, body=None, headers=None, raw=None, timeout=30):
    """A request's status, Content-Type and body (parsed when it is JSON)."""
    status, answer_headers, text = exchange(method, url, body, headers, raw, timeout)
    ctype = answer_headers.get("Content-Type", "")
    return status, ctype, (json.loads(text) if text and "json" in ctype else text)


def psql(url, sql):
    out = subprocess.run(["psql", url, "-Atqc", sql], check=True, capture_output=True, text=True)
    return out.stdout.strip()


class Database:
    """A fresh database on the test PostgreSQL, dropped at the end."""

    def __init__(self):
        if not BASE_DB:
            fail("CHIME_TEST_DATABASE_URL is not set: run the tests through scripts/test.sh")
        self.name = "chime_e2e_" + uuid.uuid4().hex[:12]
        self.admin = BASE_DB.rsplit("/", 1)[0] + "/postgres"
        psql(self.admin, f"CREATE DATABASE {self.name}")
        self.url = BASE_DB.rsplit("/", 1)[0] + "/" + self.name

    def query(self, sql):
        return psql(self.url, sql)

    def drop(self):
        psql(self.admin, f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")


def read_json_lines(path):
    """The complete lines of a JSON-lines file another process is appending
    to: a last line without its newline is still being written."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        lines = f.read().split("\n")
    return [json.loads(line) for line in lines[:-1] if line.strip()]


def rabbitmqctl(*args):
    return subprocess.run(["rabbitmqctl", "-n", RABBIT_NODE, "-q", *args], check=True,
                          capture_output=True, text=True).stdout


class Broker:
    """A fresh virtual host on the test RabbitMQ, deleted at the end."""

    def __init__(self):
        if not (BASE_AMQP and RABBIT_NODE):
            fail("CHIME_TEST_AMQP_URL / CHIME_TEST_RABBITMQ_NODE are not set: run the tests through scripts/test.sh")
        self.vhost = "chime_e2e_" + uuid.uuid4().hex[:12]
        rabbitmqctl("add_vhost", self.vhost)
        rabbitmqctl("set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*")
        self.url = BASE_AMQP.rsplit("/", 1)[0] + "/" + self.vhost

    def depth(self, queue):
        for line in rabbitmqctl("list_queues", "-p", self.vhost, "--no-table-headers", "name",
                                "messages").splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == queue:
                return int(parts[1])
        return 0

    def drop(self):
        rabbitmqctl("delete_vhost", self.vhost)


def unreachable_broker():
    """A broker for a Node that is nowhere: the node never becomes ready."""
    return type("nowhere", (), {"url": f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F"})()


class FakeEmail:
    def __init__(self, workdir, *flags):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ledger_path = os.path.join(workdir, f"ledger-{self.port}.jsonl")
        self.requests_path = os.path.join(workdir, f"requests-{self.port}.jsonl")
        self.log = open(os.path.join(workdir, f"fake-{self.port}.log"), "w")
        self.proc = subprocess.Popen(
            [CHIME, "fake-email", "--port", str(self.port), "--ledger", self.ledger_path,
             "--request-log", self.requests_path, "--seed", "7", *flags],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_until("the fake email service", lambda: self._up(), 20)

    def _up(self):
        try:
            return http("GET", self.url + "/healthz", timeout=1)[0] == 200
        except OSError:
            return False

    def ledger(self):
        return read_json_lines(self.ledger_path)

    def requests(self):
        """Every request the service answered, accepted or not."""
        return read_json_lines(self.requests_path)

    def keys(self):
        return [e["idempotency_key"] for e in self.ledger()]

    def duplicated(self, shown=10):
        """The keys accepted more than once, each with the times it arrived,
        for a failure's message: when they came says which path sent twice."""
        times = collections.defaultdict(list)
        for e in self.ledger():
            times[e["idempotency_key"]].append(e.get("received_at"))
        twice = {k: t for k, t in times.items() if len(t) > 1}
        return f"{len(twice)} keys: " + "; ".join(
            f"{k} at {', '.join(map(str, t))}" for k, t in list(twice.items())[:shown])

    def control(self, **knobs):
        status, _, body = http("POST", self.url + "/control", knobs)
        assert status == 200, body

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


class Node:
    """One `chime serve` process."""

    def __init__(self, workdir, db, email, *flags, port=None, broker=None):
        self.workdir, self.db, self.email, self.flags = workdir, db, email, list(flags)
        self.broker = broker or db.broker
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None
        self.starts = 0

    def start(self, *extra, ready=True):
        self.starts += 1
        self.log_path = os.path.join(self.workdir, f"node-{self.port}-{self.starts}.log")
        self.log = open(self.log_path, "w")
        env = dict(os.environ)
        env["CHIME_DATABASE_URL"] = self.db.url
        env["CHIME_EMAIL_URL"] = self.email.url
        env["CHIME_AMQP_URL"] = self.broker.url
        self.proc = subprocess.Popen(
            [CHIME, "serve", "--http-port", str(self.port), *self.flags, *extra],
            stdout=self.log, stderr=subprocess.STDOUT, env=env)
        if ready:
            wait_until("the node to be ready", self._ready, 30)
        return self

    def _ready(self):
        if self.proc.poll() is not None:
            fail(f"node exited with {self.proc.returncode}; log:\n" + open(self.log_path).read())
        try:
            return http("GET", self.url + "/readyz", timeout=1)[0] == 200
        except OSError:
            return False

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.log.close()

    def stop(self, timeout=30):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            code = self.proc.wait(timeout)
            self.log.close()
            return code
        return self.proc.returncode if self.proc else None

    def cluster(self):
        code, _, body = self.api("GET", "/v1/cluster")
        assert code == 200, body
        return body

    def metric(self, name, missing=None):
        """A sample's value from /metrics (`name` with its labels, if any);
        `missing`, if given, when there is no such sample yet."""
        code, _, text = self.api("GET", "/metrics")
        assert code == 200, text
        for line in text.splitlines():
            if line.split(" ")[0] == name:
                return float(line.split(" ")[1])
        if missing is not None:
            return missing
        raise AssertionError(f"{name} not in /metrics")

    def log_text(self):
        return open(self.log_path).read()

    def api(self, method, path, body=None, headers=None, **kw):
        """A request as the node's operator makes it: with the node's
        --api-token, unless `headers` says otherwise."""
        return http(method, self.url + path, body, headers=self._operator(headers), **kw)

    def exchange(self, method, path, body=None, headers=None, **kw):
        """As `api`, answering the status, headers and body text."""
        return exchange(method, self.url + path, body, headers=self._operator(headers), **kw)

    def _operator(self, headers):
        if headers is None and "--api-token" in self.flags:
            token = self.flags[self.flags.index("--api-token") + 1]
            return {"Authorization": f"Bearer {token}"}
        return headers

    def create(self, **fields):
        status, _, body = self.api("POST", "/v1/users", fields)
        assert status == 201, (status, body)
        return body

    def now_ms(self):
        """The node's clock (virtual or not), from /healthz."""
        return iso_ms(self.api("GET", "/healthz")[2]["now"])

    def create_many(self, fields_list, workers=8):
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(lambda f: self.create(**f), fields_list))

    def deliveries(self, user=None, status=None):
        q = []
        if user:
            q.append("user=" + user)
        if status:
            q.append("status=" + status)
        code, _, body = self.api("GET", "/v1/deliveries?" + "&".join(q) + "&limit=1000")
        assert code == 200, body
        return body["deliveries"]


class Cluster:
    """N `chime serve` nodes on one database and broker: n1 founds the
    cluster, the others join through it; one secret, one virtual clock
    (--clock-anchor-ms), node-to-node traffic on free ports."""

    SECRET = "e2e-cluster-secret"
    TOKEN = "e2e-api-token"

    def __init__(self, workdir, db, email, n, *flags, emails=None):
        self.anchor_ms = int(time.time() * 1000)
        self.ports = [free_port() for _ in range(n)]
        self.nodes = []
        for k in range(n):
            self.nodes.append(Node(workdir, db, (emails or [email] * n)[k], *flags,
                                   *self.cluster_flags(k)))

    def cluster_flags(self, k, secret=None):
        flags = ["--node-name", f"n{k + 1}", "--cluster-port", str(self.ports[k]),
                 "--cluster-secret", secret or self.SECRET, "--api-token", self.TOKEN,
                 "--clock-anchor-ms", str(self.anchor_ms)]
        if k > 0:
            flags += ["--seed", f"127.0.0.1:{self.ports[0]}"]
        return flags

    def start(self, *extra):
        for node in self.nodes:
            node.start(*extra)
        return self

    def stop(self):
        for node in self.nodes:
            node.stop()

    def converged(self, nodes=None):
        """The shard map every given node reports, when all agree that every
        shard is owned by one of them (all up) and each of them owns some: a
        node just up owns none until the others give it its share, and the
        shards in that hand-over answer 503 for a moment."""
        nodes = nodes or self.nodes
        names = {f"n{self.nodes.index(n) + 1}" for n in nodes}
        maps = []
        for node in nodes:
            try:
                c = node.cluster()
            except OSError:
                return None
            up = {m["name"] for m in c["members"] if m["state"] == "up"}
            owners = [s["owner"] for s in c["shards"]]
            if up != names or any(o not in names for o in owners) \
                    or any(n not in owners for n in names):
                return None
            maps.append([(s["owner"], s["epoch"]) for s in c["shards"]])
        return maps[0] if all(m == maps[0] for m in maps) else None


def user_fields(n, birthday, timezone, anniversary=None):
    f = {"first_name": f"First{n}", "last_name": f"Last{n}", "email": f"user{n}@example.com",
         "birthday": birthday, "timezone": timezone}
    if anniversary:
        f["anniversary"] = anniversary
    return f


def services(command):
    """Runs scripts/services.sh on the test services (restart-rabbitmq, ...)."""
    if not SERVICES:
        fail("CHIME_TEST_SERVICES is not set: run the tests through scripts/test.sh")
    done = subprocess.run(["bash", SERVICES, command], capture_output=True, text=True)
    if done.returncode != 0:
        fail(f"services.sh {command} failed ({done.returncode}): {done.stdout}{done.stderr}")


def rss_mib(pid):
    """A process's resident memory, MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def per_second(entries):
    """Counts of entries per wall-clock second of received_at, in order."""
    counts = {}
    for e in entries:
        second = e["received_at"][:19]
        counts[second] = counts.get(second, 0) + 1
    return [counts[k] for k in sorted(counts)]


def iso_ms(text):
    """Milliseconds since the epoch of an ISO-8601 UTC instant."""
    from datetime import datetime
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def run(test):
    """Runs one scenario with a fresh database and working folder; prints a
    closing line in the plain 'N passed, N failed' form."""
    workdir = tempfile.mkdtemp(prefix="chime-e2e-")
    db = Database()
    db.broker = Broker()
    cleanup = []
    try:
        test(workdir, db, cleanup)
        print(f"{test.__name__}: 1 passed, 0 failed")
    except BaseException:
        for path in sorted(os.listdir(workdir)):
            if path.endswith(".log"):
                print(f"--- {path}", file=sys.stderr)
                print(open(os.path.join(workdir, path)).read()[-6000:], file=sys.stderr)
        raise
    finally:
        for c in reversed(cleanup):
            try:
                c()
            except Exception as e:  # cleanup must not hide the test's own failure
                print("cleanup:", e, file=sys.stderr)
        db.drop()
        db.broker.drop()
