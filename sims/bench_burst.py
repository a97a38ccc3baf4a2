#!/usr/bin/env python3
"""Burst benchmark (SPEC.md section 8, first target): N users due at the same
instant reach the fake email service through the real journal (PostgreSQL)
and broker (RabbitMQ).

    python3 sims/bench_burst.py --users 100000 [--concurrency 64] [--rate-per-s 0]

Uses the dev services of `scripts/services.sh start`, in a fresh database and a
fresh RabbitMQ virtual host (both dropped at the end), with its own fake email
service (no failures, no latency) on a free port. It makes the schema by
starting a node once, bulk-loads N users due at 2027-03-15T09:00:00Z straight
into PostgreSQL (COPY through psql), starts the node on a virtual clock 20 s
before that instant at rate 1, waits until the fake's ledger holds N messages,
then prints throughput, lateness, duplicates and peak RSS, and one JSON line
with the same figures. Python 3 standard library only; psql and rabbitmqctl
must be on PATH. Everything it starts is stopped, even on failure.
"""

import argparse
import csv
import datetime
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHIME = os.environ.get("CHIME_BIN", os.path.join(ROOT, "build", "chime"))

PEERS_DIR = os.environ.get("CHIME_PEERS_DIR",
                           os.path.join(os.path.dirname(ROOT), "shared", "peers"))
PEERS_FAKE = os.path.join(PEERS_DIR, "fake-email.js")

DUE_ISO = "2027-03-15T09:00:00Z"
# The node's virtual clock starts this long before the due instant: the
# head start the peers' jobs get (their LEAD_MS), which a node that runs
# all along has, and more than the fire lead (--fire-lead-ms, 10 s).
LEAD_S = 20
SHARDS = 256
CLK_TCK = os.sysconf("SC_CLK_TCK")


def iso_to_ms(text):
    dt = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(round(dt.timestamp() * 1000))


def ms_to_iso(ms):
    dt = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + ".%03dZ" % (ms % 1000)


DUE_MS = iso_to_ms(DUE_ISO)


def shard_of(user_id, count=SHARDS):
    """FNV-1a 64 of the id's bytes, as actors/sharding.hpp."""
    h = 14695981039346656037
    for b in user_id.encode():
        h ^= b
        h = (h * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h % count


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(url, timeout=1.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as res:
            return res.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def wait_until(what, predicate, timeout_s, interval_s=0.1):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(interval_s)  # polling interval, not a synchronisation


def psql(url, sql, stdin=None):
    out = subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-Atqc", sql],
                         input=stdin, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"psql failed ({sql[:60]}...): {out.stderr.strip()}")
    return out.stdout.strip()


def services_env():
    """The dev services' URLs and RabbitMQ node name (scripts/services.sh env)."""
    out = subprocess.run([os.path.join(ROOT, "scripts", "services.sh"), "env"],
                         capture_output=True, text=True, check=True).stdout
    env = dict(re.findall(r"(\w+)=(\S+)", out))
    return {
        "db": os.environ.get("BENCH_DATABASE_URL", env.get("CHIME_DATABASE_URL",
                             "postgresql://postgres@127.0.0.1:55432/chime")),
        "amqp": os.environ.get("BENCH_AMQP_URL", env.get("CHIME_AMQP_URL",
                               "amqp://guest:guest@127.0.0.1:55672/%2F")),
        "rabbit_node": os.environ.get("BENCH_RABBITMQ_NODE", env.get("RABBITMQ_NODE")),
    }


# --------------------------------------------------------------- processes

class Proc:
    """A child process with its output in a log file."""

    def __init__(self, name, argv, workdir):
        self.name = name
        self.log_path = os.path.join(workdir, name + ".log")
        self.log = open(self.log_path, "w")
        self.started_wall = time.time()
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout_s=60):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log(f"{self.name} did not stop within {timeout_s}s of SIGTERM: killing it")
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()
        return self.proc.returncode

    def tail(self, chars=4000):
        try:
            with open(self.log_path) as f:
                return f.read()[-chars:]
        except OSError:
            return ""


def proc_status_kb(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def cpu_ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, IndexError, ValueError):
        return 0


def all_procs():
    """(pid, ppid, comm, cmdline) of every process we can see."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
            comm = stat[stat.index("(") + 1:stat.rindex(")")]
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            out.append((int(d), ppid, comm, cmd))
        except (OSError, ValueError):
            continue
    return out


def environ(pid):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


class CpuGroups:
    """CPU time used by each component between two snapshots: the node, the
    fake, the dev PostgreSQL (postmaster and its backends) and the dev
    RabbitMQ (its beam.smp)."""

    def __init__(self, node_pid, fake_pid, pg_port, rabbit_node):
        self.node_pid, self.fake_pid = node_pid, fake_pid
        self.pg_port, self.rabbit_node = str(pg_port), rabbit_node or ""

    def groups(self):
        procs = all_procs()
        postmasters = [p for p, _, comm, cmd in procs
                       if comm in ("postgres", "postmaster") and self.pg_port in cmd]
        pg = set(postmasters) | {p for p, pp, _, _ in procs if pp in postmasters}
        beams = [p for p, _, comm, _ in procs if comm.startswith("beam")]
        # The node name is in the broker's environment, not its command line.
        beam = {p for p in beams if self.rabbit_node
                and f"RABBITMQ_NODENAME={self.rabbit_node}".encode() in environ(p)}
        return {"chime": {self.node_pid}, "fake": {self.fake_pid},
                "postgres": pg, "rabbitmq": beam}

    def snapshot(self):
        # Backends that exit between snapshots take their CPU time with them;
        # the node keeps a pool, so its backends live through the run.
        return {name: {p: cpu_ticks(p) for p in pids}
                for name, pids in self.groups().items()}

    @staticmethod
    def diff(a, b, wall_s):
        out = {}
        for name in b:
            ticks = sum(t - a.get(name, {}).get(p, 0) for p, t in b[name].items())
            secs = ticks / CLK_TCK
            out[name] = {"cpu_s": round(secs, 2),
                         "cores": round(secs / wall_s, 2) if wall_s > 0 else None}
        return out


class RssSampler(threading.Thread):
    def __init__(self, pid, interval_s=0.2):
        super().__init__(daemon=True)
        self.pid, self.interval_s = pid, interval_s
        self.peak_rss_kb = 0
        self.hwm_kb = 0
        self.done = threading.Event()

    def sample(self):
        rss = proc_status_kb(self.pid, "VmRSS")
        hwm = proc_status_kb(self.pid, "VmHWM")
        if rss:
            self.peak_rss_kb = max(self.peak_rss_kb, rss)
        if hwm:
            self.hwm_kb = max(self.hwm_kb, hwm)

    def run(self):
        while not self.done.wait(self.interval_s):
            self.sample()

    def stop(self):
        self.sample()
        self.done.set()


class Ledger:
    """Follows the fake's ledger file, counting lines as they arrive."""

    def __init__(self, path):
        self.path = path
        self.lines = 0
        self.offset = 0
        self.partial = b""

    def count(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except FileNotFoundError:
            return 0
        self.offset += len(chunk)
        data = self.partial + chunk
        self.lines += data.count(b"\n")
        self.partial = data[data.rfind(b"\n") + 1:]
        return self.lines

    def entries(self):
        with open(self.path) as f:
            return [json.loads(line) for line in f if line.strip()]


# --------------------------------------------------------------- loading

def load_users(db_url, n, spread=False):
    """Bulk-loads n users and their due index rows, through COPY FROM STDIN:
    all with a birthday due at DUE_ISO, or (spread) with birthdays spread
    over the year after it, due 09:00 UTC on their day."""
    created = DUE_MS - 86_400_000  # a day before the due instant
    day0 = datetime.date(2027, 3, 16)
    users, due = io.StringIO(), io.StringIO()
    uw, dw = csv.writer(users, lineterminator="\n"), csv.writer(due, lineterminator="\n")
    for i in range(n):
        uid = str(uuid.UUID(int=(0xB0 << 120) | i, version=4))
        day = day0 + datetime.timedelta(days=(i * 7919) % 365) if spread else None
        birthday = day.replace(year=1992).isoformat() if spread else "1990-03-15"
        due_ms = DUE_MS + (day - day0).days * 86_400_000 + 86_400_000 if spread else DUE_MS
        uw.writerow([uid, f"First{i}", f"Last{i}", f"user{i}@bench.example.com", "UTC",
                     json.dumps({"birthday": birthday}), created, created])
        dw.writerow([uid, "birthday", shard_of(uid), due_ms,
                     day.isoformat() if spread else "2027-03-15"])
    t = time.monotonic()
    psql(db_url, "COPY users (id, first_name, last_name, email, timezone, dates,"
                 " created_at_ms, updated_at_ms) FROM STDIN WITH (FORMAT csv)",
         stdin=users.getvalue())
    psql(db_url, "COPY due_index (user_id, occasion, shard, due_at_ms, local_date)"
                 " FROM STDIN WITH (FORMAT csv)", stdin=due.getvalue())
    psql(db_url, "ANALYZE users; ANALYZE due_index")
    return time.monotonic() - t


def due_poll_cost(db_url):
    """The due poll's time a due row it returned, in us, and its calls, in
    this database, from pg_stat_statements (the dev services preload it;
    None when it is not there): it must not grow with the tables."""
    try:
        psql(db_url, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        out = psql(db_url, "SELECT round((sum(total_exec_time) * 1000"
                           " / greatest(sum(rows), 1))::numeric, 2) || ' ' || sum(calls)"
                           " FROM pg_stat_statements WHERE dbid = (SELECT oid FROM"
                           " pg_database WHERE datname = current_database())"
                           " AND query LIKE 'WITH page AS%'")
        us, calls = out.split()
        return float(us), int(calls)
    except (RuntimeError, ValueError):
        return None, None


# --------------------------------------------------------------- the run

def timed_ms(url, times=20):
    """Median wall time of GET url, in ms."""
    took = []
    for _ in range(times):
        t = time.monotonic()
        with urllib.request.urlopen(url, timeout=30) as r:
            r.read()
        took.append((time.monotonic() - t) * 1000)
    return round(sorted(took)[len(took) // 2], 2)


def measure_idle(n, node, http_port, ready_s, rss):
    """Start-up and the costs that must not grow with the number of users."""
    base = f"http://127.0.0.1:{http_port}"
    time.sleep(3)  # the first polls and the statistics settle
    uid = str(uuid.UUID(int=(0xB0 << 120) | (n // 2), version=4))
    result = {
        "users": n,
        "node_ready_s": round(ready_s, 2),
        "rss_mib": round((proc_status_kb(node.pid, "VmRSS") or 0) / 1024, 1),
        "peak_rss_mib": round(max(rss.hwm_kb, proc_status_kb(node.pid, "VmHWM") or 0) / 1024, 1),
        "metrics_scrape_ms": timed_ms(base + "/metrics"),
        "list_page_ms": timed_ms(base + "/v1/users?limit=100"),
        "user_read_ms": timed_ms(base + "/v1/users/" + uid),
    }
    print()
    for k, v in result.items():
        print(f"{k:24}{v}")
    return result


class DashboardStream(threading.Thread):
    """An open dashboard page's event stream (GET /v1/dashboard/events):
    read, and its events counted, until stopped."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port, self.events, self.sock = port, 0, None

    def run(self):
        try:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            self.sock.sendall(b"GET /v1/dashboard/events HTTP/1.1\r\nHost: bench\r\n\r\n")
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return
                self.events += data.count(b"data: ")
        except OSError:
            return

    def stop(self):
        if self.sock:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.join(5)


def snapshot_cpu_us(pid, port, n=500):
    """The node's CPU per dashboard snapshot: n snapshots asked for back to
    back on one idle node, its CPU ticks before and after."""
    before = cpu_ticks(pid)
    for _ in range(n):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/dashboard", timeout=5).read()
    ticks = cpu_ticks(pid) - before
    return round(ticks / os.sysconf("SC_CLK_TCK") * 1e6 / n, 1)


def percentile(sorted_values, q):
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, int(round(q * (len(sorted_values) - 1)))))
    return sorted_values[k]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=100000)
    ap.add_argument("--concurrency", type=int, default=None,
                    help="--delivery-concurrency-max of the node (default: the node's)")
    ap.add_argument("--rate-per-s", type=float, default=0,
                    help="--email-rate-per-s of the node (default 0: unlimited)")
    ap.add_argument("--deadline-s", type=float, default=None,
                    help="how long to wait for every message (default 60 + users/500)")
    ap.add_argument("--spread", action="store_true",
                    help="no burst: the users' birthdays spread over a year; measure"
                         " start-up, RSS and the cost of a /metrics scrape, a user list"
                         " page and a user read at this number of users")
    ap.add_argument("--dashboard", action="store_true",
                    help="keep a dashboard event stream open through the burst (as an open"
                         " /dashboard page does) and measure a snapshot's CPU cost")
    ap.add_argument("--keep", action="store_true",
                    help="keep the working folder (logs, ledger) and the database after a success")
    args = ap.parse_args()
    n = args.users
    deadline_s = args.deadline_s or 60 + n / 500

    if not os.access(CHIME, os.X_OK):
        sys.exit(f"{CHIME} not found: cmake --build build --target chime")
    for tool in ("psql", "rabbitmqctl"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not on PATH")

    svc = services_env()
    if not svc["rabbit_node"]:
        sys.exit("no RabbitMQ node name: run scripts/services.sh start")
    base_db = svc["db"]
    admin_db = base_db.rsplit("/", 1)[0] + "/postgres"
    pg_port = re.search(r":(\d+)/", base_db).group(1)
    tag = "chime_bench_" + uuid.uuid4().hex[:10]
    db_url = base_db.rsplit("/", 1)[0] + "/" + tag
    # The bench's own virtual host replaces the URL's (the default, %2F).
    amqp_url = re.sub(r"^(amqps?://[^/]+).*$", r"\1", svc["amqp"]) + "/" + tag
    rabbit = ["rabbitmqctl", "-n", svc["rabbit_node"], "-q"]

    workdir = tempfile.mkdtemp(prefix="chime-bench-")
    log(f"{n} users, concurrency {args.concurrency}, rate {args.rate_per_s}/s;"
        f" database and vhost {tag}; logs in {workdir}")

    cleanup = []  # run in reverse, whatever happens
    ok = False
    node = None
    try:
        psql(admin_db, f"CREATE DATABASE {tag}")
        if not args.keep:  # a kept database lets the journal be analysed
            cleanup.append(("drop database",
                            lambda: psql(admin_db, f"DROP DATABASE IF EXISTS {tag} WITH (FORCE)")))
        subprocess.run(rabbit + ["add_vhost", tag], check=True, capture_output=True)
        cleanup.append(("delete vhost",
                        lambda: subprocess.run(rabbit + ["delete_vhost", tag],
                                               check=True, capture_output=True)))
        subprocess.run(rabbit + ["set_permissions", "-p", tag, "guest", ".*", ".*", ".*"],
                       check=True, capture_output=True)

        fake_port = free_port()
        ledger_path = os.path.join(workdir, "ledger.jsonl")
        # The peers' independent fake (../shared/peers), so that Chime and
        # they are measured against the same service.
        fake = Proc("fake-email", ["node", PEERS_FAKE, f"--port={fake_port}",
                                   f"--ledger={ledger_path}"], workdir)
        cleanup.append(("stop fake", fake.stop))
        email_url = f"http://127.0.0.1:{fake_port}"
        wait_until("the fake email service",
                   lambda: http_status(email_url + "/stats") == 200, 20)

        http_port = free_port()
        base_flags = ["--http-port", str(http_port), "--node-name", tag, "--database-url", db_url, "--amqp-url", amqp_url,
                      "--email-url", email_url, "--log-level", "warn"]

        def start_node(name, extra):
            p = Proc(name, [CHIME, "serve", *base_flags, *extra], workdir)

            def ready():
                if not p.alive():
                    raise RuntimeError(f"{name} exited with {p.proc.returncode}:\n{p.tail()}")
                return http_status(f"http://127.0.0.1:{http_port}/readyz") == 200
            return p, ready

        # 1. The schema: a node applies its migrations at start.
        t = time.monotonic()
        schema_node, ready = start_node("node-schema", [])
        try:
            wait_until("the schema node to be ready", ready, 60)
        finally:
            schema_node.stop()
        log(f"schema made by a node in {time.monotonic() - t:.1f}s")

        # 2. The users, straight into PostgreSQL.
        load_s = load_users(db_url, n, args.spread)
        counts = psql(db_url, "SELECT (SELECT count(*) FROM users) || ' ' ||"
                              " (SELECT count(*) FROM due_index)")
        log(f"loaded {n} users in {load_s:.1f}s ({n / load_s:,.0f}/s); users, due rows: {counts}")

        # 3. The node, on a virtual clock LEAD_S seconds before the due instant.
        clock_start = ms_to_iso(DUE_MS - LEAD_S * 1000)
        tuning = [] if args.concurrency is None else [
            "--delivery-concurrency-max", str(args.concurrency)]
        node, ready = start_node("node", [
            "--clock-start", clock_start, "--clock-rate", "1",
            "--email-rate-per-s", str(args.rate_per_s)] + tuning)
        cleanup.append(("stop node", node.stop))
        # The virtual clock maps clock-start to the moment the node started.
        due_real = node.started_wall + LEAD_S
        rss = RssSampler(node.pid)
        rss.start()
        cpu = CpuGroups(node.pid, fake.proc.pid, pg_port, svc["rabbit_node"])
        wait_until("the node to be ready", ready, 60)
        ready_s = time.time() - node.started_wall
        log(f"node ready {ready_s:.2f}s after start (due {LEAD_S}s after start)")
        if args.spread:
            print(json.dumps(measure_idle(n, node, http_port, ready_s, rss)), flush=True)
            ok = True
            return
        stream = DashboardStream(http_port) if args.dashboard else None
        if stream:
            stream.start()
            cleanup.append(("close the dashboard stream", stream.stop))
        # CPU is counted from the due instant (or readiness, if later) on.
        if time.time() < due_real:
            time.sleep(due_real - time.time())
        cpu_before = cpu.snapshot()
        cpu_t0 = time.time()

        ledger = Ledger(ledger_path)
        last_report = [time.monotonic()]

        def all_received():
            if not node.alive():
                raise RuntimeError(f"node exited with {node.proc.returncode}:\n{node.tail()}")
            got = ledger.count()
            if time.monotonic() - last_report[0] >= 5:
                last_report[0] = time.monotonic()
                rss_now = proc_status_kb(node.pid, "VmRSS") or 0
                log(f"ledger {got}/{n}, node RSS {rss_now / 1024:.0f} MiB")
            return got >= n
        try:
            wait_until(f"{n} messages in the ledger", all_received, deadline_s, 0.05)
        except RuntimeError:
            os.system("top -b -n1 | head -20")
            raise
        done_wall = time.time()
        cpu_after = cpu.snapshot()
        cpu_used = CpuGroups.diff(cpu_before, cpu_after, done_wall - cpu_t0)

        # The journal records each outcome just after the fake answers.
        def journal_sent():
            return int(psql(db_url, "SELECT count(*) FROM deliveries WHERE status = 'sent'")) >= n
        try:
            wait_until("every delivery recorded as sent", journal_sent, 30, 0.2)
        except RuntimeError as e:
            log(f"warning: {e}")
        time.sleep(1)  # a late duplicate would show up here
        rss.stop()
        peak_hwm_kb = max(rss.hwm_kb, proc_status_kb(node.pid, "VmHWM") or 0)

        dashboard = {}
        if stream:
            stream.stop()
            dashboard = {"dashboard_events_during_burst": stream.events,
                         "dashboard_snapshot_cpu_us": snapshot_cpu_us(node.pid, http_port)}

        # 4. The figures.
        entries = ledger.entries()
        received = sorted(iso_to_ms(e["received_at"]) for e in entries)
        keys = {e.get("idempotency_key") for e in entries}
        duplicates = len(entries) - len(keys)
        first_ms, last_ms = received[0], received[-1]
        window_s = max((last_ms - first_ms) / 1000, 0.001)
        e2e_s = max(last_ms / 1000 - due_real, 0.001)
        lateness = [int(x) for x in psql(
            db_url, "SELECT sent_at_ms - due_at_ms FROM deliveries"
                    " WHERE status = 'sent' ORDER BY 1").split()]
        statuses = psql(db_url, "SELECT status || '=' || count(*) FROM deliveries"
                                " GROUP BY status ORDER BY status").split()
        poll_us, poll_calls = due_poll_cost(db_url)
        result = {
            "users": n,
            "concurrency": args.concurrency,
            "rate_per_s": args.rate_per_s,
            "received": len(entries),
            "throughput_msgs_per_s": round(n / window_s, 1),
            "throughput_basis": "N / (last - first received_at in the fake's ledger)",
            "burst_window_s": round(window_s, 3),
            "e2e_msgs_per_s": round(n / e2e_s, 1),
            "e2e_basis": "N / (last received_at - due instant in real time,"
                         f" taken as node start + {LEAD_S} s)",
            "e2e_s": round(e2e_s, 3),
            "first_received_after_due_s": round(first_ms / 1000 - due_real, 3),
            "lateness_p50_ms": percentile(lateness, 0.50),
            "lateness_p99_ms": percentile(lateness, 0.99),
            "lateness_max_ms": lateness[-1] if lateness else None,
            "lateness_basis": "journal: deliveries.sent_at_ms - due_at_ms"
                              " (virtual ms = real ms at clock rate 1)",
            "sent_in_journal": len(lateness),
            "delivery_statuses": statuses,
            "duplicates": duplicates,
            "peak_rss_mib": round(peak_hwm_kb / 1024, 1),
            "peak_rss_basis": "VmHWM of the node",
            "node_ready_s": round(ready_s, 2),
            "load_users_per_s": round(n / load_s),
            "cpu_during_burst": cpu_used,
            "due_poll_us_per_row": poll_us,
            "due_poll_calls": poll_calls,
            "due_poll_basis": "pg_stat_statements: the due poll's time over the due rows it returned",
            **dashboard,
        }
        print()
        print(f"users                   {n}  (concurrency {args.concurrency},"
              f" rate {args.rate_per_s or 'unlimited'})")
        print(f"received by the fake    {len(entries)}  (duplicates: {duplicates})")
        print(f"throughput              {result['throughput_msgs_per_s']:,.0f} msgs/s"
              f"  [{result['throughput_basis']}: {window_s:.2f}s]")
        print(f"end to end              {result['e2e_msgs_per_s']:,.0f} msgs/s"
              f"  [N / (last received - due instant), {e2e_s:.2f}s; first arrived"
              f" {result['first_received_after_due_s']:+.2f}s after due]")
        print(f"lateness p50 / p99 / max {result['lateness_p50_ms']} / "
              f"{result['lateness_p99_ms']} / {result['lateness_max_ms']} ms"
              f"  [journal, {len(lateness)} sent]")
        print(f"peak RSS (VmHWM)        {result['peak_rss_mib']} MiB")
        print(f"due poll                {poll_us} us a due row, {poll_calls} polls"
              f"  [{result['due_poll_basis']}]")
        print(f"node ready after        {ready_s:.2f}s")
        print("CPU during the burst    " + ", ".join(
            f"{k} {v['cpu_s']}s ({v['cores']} cores)" for k, v in cpu_used.items()))
        if dashboard:
            node_cpu_s = cpu_used.get("chime", {}).get("cpu_s", 0)
            share = dashboard["dashboard_snapshot_cpu_us"] * dashboard["dashboard_events_during_burst"] \
                / 1e6 / max(node_cpu_s, 1e-9)
            result["dashboard_cpu_share_of_node"] = round(share, 5)
            print(f"dashboard               {dashboard['dashboard_events_during_burst']} events during the"
                  f" burst, {dashboard['dashboard_snapshot_cpu_us']:.0f} us of node CPU each:"
                  f" {share:.3%} of the node's CPU in the burst")
        print(json.dumps(result), flush=True)
        ok = True
    finally:
        for what, fn in reversed(cleanup):
            try:
                fn()
            except Exception as e:  # cleanup must not hide the run's own failure
                print(f"cleanup ({what}): {e}", file=sys.stderr)
        if not ok and node is not None:
            print("--- node log (tail)", file=sys.stderr)
            print(node.tail(), file=sys.stderr)
        if ok and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        elif not ok:
            print(f"logs kept in {workdir}", file=sys.stderr)


if __name__ == "__main__":
    main()
