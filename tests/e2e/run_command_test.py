"""The README's run command as a new user runs it: `scripts/run.sh` with the
URLs it chooses itself (no URL passed in), in its own data folder and ports.
A user due shortly is sent (the message is in the fake's ledger) and /readyz
answers 200; then `scripts/run.sh --demo` twice more, once while the first
run's services still run and once after they were stopped."""

import os
import signal
import subprocess
import sys
import tempfile

from harness import free_port, http, read_json_lines, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN = os.path.join(ROOT, "scripts", "run.sh")
SERVICES = os.path.join(ROOT, "scripts", "services.sh")


def free_port_pair():
    """A port whose successor is free too (RabbitMQ's distribution port)."""
    while True:
        port = free_port()
        if port < 65535:
            import socket
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port + 1))
                    return port
                except OSError:
                    continue


class Setup:
    def __init__(self):
        self.data = tempfile.mkdtemp(prefix="chime-run-")
        self.http_port = free_port()
        self.email_port = free_port()
        self.env = {k: v for k, v in os.environ.items()
                    if not (k.startswith("CHIME_") or k.startswith("RABBITMQ_"))}
        self.env.update(CHIME_DATA_DIR=self.data, CHIME_PG_PORT=str(free_port()),
                        CHIME_AMQP_PORT=str(free_port_pair()),
                        CHIME_FAKE_EMAIL_PORT=str(self.email_port),
                        CHIME_HTTP_PORT=str(self.http_port))
        self.base = f"http://127.0.0.1:{self.http_port}"
        self.ledger_path = os.path.join(self.data, "email-ledger.jsonl")
        self.runs = 0

    def services(self, command):
        done = subprocess.run(["bash", SERVICES, command], env=self.env,
                              capture_output=True, text=True)
        assert done.returncode == 0, f"services.sh {command}: {done.stdout}{done.stderr}"

    def run(self, *flags):
        """Starts the run command; returns the process and its output file."""
        self.runs += 1
        out_path = os.path.join(self.data, f"run-{self.runs}.out")
        out = open(out_path, "w")
        proc = subprocess.Popen(["bash", RUN, *flags], env=self.env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.current = (proc, out, out_path)
        return proc

    def output(self):
        return open(self.current[2]).read()

    def ready(self):
        proc = self.current[0]
        if proc.poll() is not None:
            raise AssertionError(f"run.sh exited with {proc.returncode}:\n{self.output()}")
        try:
            return http("GET", self.base + "/readyz", timeout=2)[0] == 200
        except OSError:
            return False

    def stop(self):
        proc, out, _ = self.current
        proc.send_signal(signal.SIGINT)  # Ctrl-C, as a user stops it
        code = proc.wait(60)
        out.close()
        assert code == 0, f"run.sh exited {code} on Ctrl-C:\n{self.output()}"

    def node_threads(self):
        """The threads of the nodes this setup's run started."""
        mark = f"CHIME_HTTP_PORT={self.http_port}".encode()
        out = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if os.path.basename(os.readlink(f"/proc/{pid}/exe")) != "chime":
                    continue
                argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
                if argv[1:2] not in ([b"dev"], [b"serve"]):
                    continue  # the fake email service, say
                if mark not in open(f"/proc/{pid}/environ", "rb").read().split(b"\0"):
                    continue
                out += [int(t) for t in os.listdir(f"/proc/{pid}/task")]
            except OSError:
                continue  # gone, or not ours to read
        return out

    def ledger_has(self, key):
        return any(e["idempotency_key"] == key for e in read_json_lines(self.ledger_path))


def demo_run(setup):
    """`run.sh --demo` at 10x: the demo creates its user, which is sent."""
    setup.run("--demo", "--clock-rate", "10")
    # The first run installs, builds and starts PostgreSQL and RabbitMQ.
    wait_until("the node to be ready", setup.ready, 300, 0.5)

    def arrived():
        setup.ready()  # fails fast with the output if the node died
        return "demo: the message arrived" in setup.output()
    wait_until("the demo's message", arrived, 120, 0.5)
    out = setup.output()
    user_id = out.split("(id ", 1)[1].split(")", 1)[0]
    assert setup.ledger_has(f"{user_id}:birthday:2027-03-15"), out
    assert "RabbitMQ unreachable" not in out, out
    assert http("GET", setup.base + "/readyz")[0] == 200
    setup.stop()


def run_command_sends_on_its_defaults():
    setup = Setup()
    try:
        # As the README's first example: a clock one virtual minute before
        # 09:00 in Kathmandu, ten times as fast; the user is created at once.
        setup.run("--clock-start", "2027-04-02T03:14:00Z", "--clock-rate", "10")
        wait_until("the node to be ready", setup.ready, 300, 0.5)
        # On its defaults every thread of the node yields to the running one
        # when woken (cpu-policy batch), the one each thread starts with.
        threads = setup.node_threads()
        assert threads, "no chime process found for this run"
        policies = {os.sched_getscheduler(t) for t in threads}
        assert policies == {os.SCHED_BATCH}, f"scheduling policies {policies}"
        status, _, user = http("POST", setup.base + "/v1/users", {
            "first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com",
            "birthday": "1990-04-02", "timezone": "Asia/Kathmandu"})
        assert status == 201, user
        assert user["next_due"]["birthday"] == "2027-04-02T03:15:00Z", user
        key = f"{user['id']}:birthday:2027-04-02"
        wait_until("the message in the ledger", lambda: setup.ready() and setup.ledger_has(key), 60, 0.2)
        setup.stop()
        # Again while the services of the first run still run, then after
        # they were stopped: the same command works both times.
        demo_run(setup)
        setup.services("stop")
        demo_run(setup)
        print("run_command_sends_on_its_defaults: 1 passed, 0 failed")
    except BaseException:
        for name in sorted(os.listdir(setup.data)):
            if name.endswith(".out") or name.endswith(".log"):
                print(f"--- {name}", file=sys.stderr)
                print(open(os.path.join(setup.data, name)).read()[-6000:], file=sys.stderr)
        raise
    finally:
        proc = getattr(setup, "current", (None,))[0]
        if proc is not None and proc.poll() is None:
            proc.kill()
        setup.services("destroy")


if __name__ == "__main__":
    run_command_sends_on_its_defaults()
