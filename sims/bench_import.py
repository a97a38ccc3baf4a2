#!/usr/bin/env python3
"""Intake benchmark (SPEC.md section 8, last target): bulk import through
POST /v1/users:import, and creates through POST /v1/users with concurrent
clients, both durable when answered.

    python3 sims/bench_import.py [--users 1000000] [--format ndjson|csv]
                                 [--creates 40000] [--clients 32]

Uses the dev services of `scripts/services.sh start` (CHIME_DATA_DIR,
CHIME_PG_PORT, CHIME_AMQP_PORT choose them), in a fresh database and RabbitMQ
virtual host (both dropped at the end), with its own fake email service and
one node on real time. The import body is generated in memory first (not
timed), then sent in one request; the figure is users / (answer - first byte
sent). The creates come from --clients keep-alive connections driven by one
event loop, each sending its next create when the last is answered. Prints
both figures and one JSON line. Python 3 standard library only.
"""

import argparse
import contextlib
import json
import os
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid

from bench_burst import CHIME, Proc, free_port, http_status, log, psql, services_env, wait_until

ZONES = ["UTC", "Europe/Berlin", "Asia/Kathmandu", "America/St_Johns", "Pacific/Chatham",
         "America/Los_Angeles", "Australia/Sydney", "Asia/Tokyo"]


def user(i, tag):
    """The i-th generated user: dates and zones spread over the year and the
    world, an anniversary for every third."""
    u = {"first_name": f"First{i}", "last_name": f"Last{i}", "email": f"{tag}{i}@bench.example.com",
         "birthday": f"{1950 + i % 50}-{1 + i % 12:02d}-{1 + i % 28:02d}", "timezone": ZONES[i % len(ZONES)]}
    if i % 3 == 0:
        u["anniversary"] = f"{2000 + i % 20}-{1 + (i // 12) % 12:02d}-{1 + i % 27:02d}"
    return u


def import_body(n, fmt):
    if fmt == "ndjson":
        return "".join(json.dumps(user(i, "imp")) + "\n" for i in range(n)).encode()
    fields = ["first_name", "last_name", "email", "birthday", "anniversary", "timezone"]
    lines = [",".join(fields)]
    for i in range(n):
        u = user(i, "imp")
        lines.append(",".join(u.get(f, "") for f in fields))
    return ("\n".join(lines) + "\n").encode()


def request_bytes(method, path, body, content_type, host):
    head = (f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


class Reply:
    """Reads one HTTP/1.1 response with a Content-Length from its bytes."""

    def __init__(self):
        self.buf = b""
        self.status = None
        self.need = None
        self.close = False  # the server ends the connection after this answer

    def feed(self, data):
        """True once the whole response is in; what came after it is kept."""
        self.buf += data
        if self.need is None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return False
            head = self.buf[:end].decode("latin-1").split("\r\n")
            self.status = int(head[0].split()[1])
            length = 0
            for line in head[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
                if name.strip().lower() == "connection":
                    self.close = value.strip().lower() == "close"
            self.buf = self.buf[end + 4:]
            self.need = length
        return len(self.buf) >= self.need

    def body(self):
        return self.buf[:self.need]


def exchange(port, raw, timeout_s=600):
    """Sends one request on a new connection; its status and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
        s.sendall(raw)
        reply = Reply()
        while True:
            data = s.recv(1 << 16)
            if not data:
                raise RuntimeError("connection closed before the answer was complete")
            if reply.feed(data):
                return reply.status, reply.body()


def run_creates(port, total, clients):
    """`total` creates over `clients` keep-alive connections: (seconds, the
    statuses that were not 201)."""
    host = f"127.0.0.1:{port}"
    sel = selectors.DefaultSelector()
    state = {}
    next_user = [0]
    done = [0]
    bad = {}

    def send_next(s):
        i = next_user[0]
        if i >= total:
            sel.unregister(s)
            s.close()
            return
        next_user[0] += 1
        body = json.dumps(user(i, "post")).encode()
        s.sendall(request_bytes("POST", "/v1/users", body, "application/json", host))
        state[s] = Reply()

    def connect():
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sel.register(s, selectors.EVENT_READ)
        send_next(s)

    t0 = time.monotonic()
    for _ in range(clients):
        connect()
    while done[0] < total:
        for key, _ in sel.select(timeout=30):
            s = key.fileobj
            data = s.recv(1 << 16)
            if not data:
                raise RuntimeError("the node closed a client connection")
            reply = state[s]
            if reply.feed(data):
                done[0] += 1
                if reply.status != 201:
                    bad[reply.status] = bad.get(reply.status, 0) + 1
                if reply.close:  # as a client does: a new connection
                    sel.unregister(s)
                    s.close()
                    connect()
                else:
                    send_next(s)
    return time.monotonic() - t0, bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=1000000, help="users in the import")
    ap.add_argument("--format", choices=["ndjson", "csv"], default="ndjson")
    ap.add_argument("--creates", type=int, default=40000, help="POST /v1/users requests")
    ap.add_argument("--clients", type=int, default=32, help="concurrent create clients")
    ap.add_argument("--keep", action="store_true", help="keep the database and logs")
    args = ap.parse_args()
    if not os.access(CHIME, os.X_OK):
        sys.exit(f"{CHIME} not found: cmake --build build --target chime")
    svc = services_env()
    if not svc["rabbit_node"]:
        sys.exit("no RabbitMQ node name: run scripts/services.sh start")
    admin_db = svc["db"].rsplit("/", 1)[0] + "/postgres"
    tag = "chime_bench_" + uuid.uuid4().hex[:10]
    db_url = svc["db"].rsplit("/", 1)[0] + "/" + tag
    amqp_url = svc["amqp"].rsplit("/", 1)[0] + "/" + tag
    rabbit = ["rabbitmqctl", "-n", svc["rabbit_node"], "-q"]
    workdir = tempfile.mkdtemp(prefix="chime-bench-import-")
    node = None
    with contextlib.ExitStack() as cleanup:  # undone in reverse, whatever happens
        try:
            psql(admin_db, f"CREATE DATABASE {tag}")
            if not args.keep:
                cleanup.callback(lambda: psql(admin_db, f"DROP DATABASE IF EXISTS {tag} WITH (FORCE)"))
            subprocess.run(rabbit + ["add_vhost", tag], check=True, capture_output=True)
            cleanup.callback(lambda: subprocess.run(rabbit + ["delete_vhost", tag], check=True,
                                                  capture_output=True))
            subprocess.run(rabbit + ["set_permissions", "-p", tag, "guest", ".*", ".*", ".*"],
                           check=True, capture_output=True)
            fake_port = free_port()
            fake = Proc("fake-email", [CHIME, "fake-email", "--port", str(fake_port), "--ledger",
                                       os.path.join(workdir, "ledger.jsonl")], workdir)
            cleanup.callback(fake.stop)
            port = free_port()
            node = Proc("node", [CHIME, "serve", "--http-port", str(port), "--database-url", db_url,
                                 "--amqp-url", amqp_url, "--email-url", f"http://127.0.0.1:{fake_port}",
                                 "--log-level", "warn"], workdir)
            cleanup.callback(node.stop)
            wait_until("the node to be ready",
                       lambda: http_status(f"http://127.0.0.1:{port}/readyz") == 200, 60)

            body = import_body(args.users, args.format)
            ctype = "application/x-ndjson" if args.format == "ndjson" else "text/csv"
            log(f"importing {args.users} users ({len(body) / 2**20:.0f} MiB of {args.format})")
            raw = request_bytes("POST", "/v1/users:import", body, ctype, f"127.0.0.1:{port}")
            t0 = time.monotonic()
            status, answer = exchange(port, raw)
            import_s = time.monotonic() - t0
            answer = json.loads(answer)
            if status != 200 or answer["imported"] != args.users:
                raise RuntimeError(f"import answered {status}: {str(answer)[:500]}")
            stored = int(psql(db_url, "SELECT count(*) FROM users"))
            import_rate = args.users / import_s
            log(f"imported {args.users} in {import_s:.1f}s: {import_rate:,.0f} users/s"
                f" ({stored} users stored)")

            log(f"{args.creates} creates from {args.clients} clients")
            create_s, bad = run_creates(port, args.creates, args.clients)
            if bad:
                raise RuntimeError(f"creates answered other than 201: {bad}")
            create_rate = args.creates / create_s
            log(f"created {args.creates} in {create_s:.1f}s: {create_rate:,.0f} creates/s")
            result = {"import_users": args.users, "import_format": args.format,
                      "import_s": round(import_s, 2), "import_users_per_s": round(import_rate),
                      "creates": args.creates, "clients": args.clients,
                      "create_s": round(create_s, 2), "creates_per_s": round(create_rate)}
            print(f"import   {import_rate:10,.0f} users/s   (target 50,000)")
            print(f"creates  {create_rate:10,.0f} per s     (target 5,000, {args.clients} clients)")
            print(json.dumps(result), flush=True)
        except Exception:
            if node is not None:
                print(node.tail(), file=sys.stderr)
            print(f"logs kept in {workdir}", file=sys.stderr)
            raise
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
