"""The dashboard in a real headless Chromium (the supervision issue, point 5),
against a two-node cluster: a dead letter is made first (every attempt
refused), then a burst starts a few seconds after the browser test does
(tests/browser/dashboard_test.js says what it checks). Its screenshot is
kept as net/dashboard.png when CHIME_KEEP_SCREENSHOT is set (the README
shows it)."""

import datetime
import os
import shutil
import subprocess
import time

from harness import Cluster, FakeEmail, iso_ms, run, user_fields, wait_until

USERS = 1000
HERE = os.path.dirname(os.path.abspath(__file__))
BROWSER_DIR = os.path.join(HERE, "..", "browser")


def clock_at(cluster, iso):
    """--clock-start that puts the cluster's shared clock (anchored when the
    cluster was made) at `iso` now."""
    ms = iso_ms(iso) - int(time.time() * 1000 - cluster.anchor_ms)
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def dashboard_in_chromium(workdir, db, cleanup):
    email = FakeEmail(workdir, "--error-rate", "1.0")
    cleanup.append(email.stop)
    cluster = Cluster(workdir, db, email, 2, "--test-hooks", "1", "--email-rate-per-s", "100",
                      "--delivery-attempts-max", "2", "--backoff-base-ms", "50",
                      "--backoff-cap-ms", "200")
    cleanup.append(cluster.stop)
    n1 = cluster.nodes[0]
    cluster.start("--clock-start", clock_at(cluster, "2027-03-15T00:00:00Z"))
    wait_until("the cluster to converge", cluster.converged, 60, 0.2)
    doomed = n1.create(**user_fields(0, "1990-03-15", "UTC"))
    n1.create_many([user_fields(n, "1990-03-16", "UTC") for n in range(1, USERS + 1)], workers=16)
    cluster.stop()

    # The dead letter: on the 15th, every attempt refused.
    cluster.start("--clock-start", clock_at(cluster, "2027-03-15T08:59:58Z"))
    dead_key = f"{doomed['id']}:birthday:2027-03-15"
    wait_until("the dead letter", lambda: n1.deliveries(status="dead"), 60, 0.2)
    cluster.stop()
    email.control(**{"error-rate": 0})

    # The burst: the 16th's 09:00 comes a few seconds after the browser starts.
    cluster.start("--clock-start", clock_at(cluster, "2027-03-16T08:59:50Z"))
    wait_until("the cluster to converge", cluster.converged, 60, 0.2)
    screenshot = os.path.join(workdir, "dashboard.png")
    browser = subprocess.run(
        ["node", os.path.join(BROWSER_DIR, "dashboard_test.js"), n1.url, Cluster.TOKEN, dead_key,
         screenshot],
        cwd=BROWSER_DIR, capture_output=True, text=True, timeout=240)
    print(browser.stdout)
    assert browser.returncode == 0, browser.stdout + browser.stderr

    # Re-driven from the page: sent once, with the whole burst, although the
    # delivery actor the peer forwards to was crashed and replaced meanwhile.
    wait_until("the re-driven dead letter sent", lambda: dead_key in email.keys(), 60, 0.5)
    wait_until("the whole burst", lambda: len(set(email.keys())) >= USERS + 1, 120, 0.5)
    keys = email.keys()
    assert len(keys) == len(set(keys)) == USERS + 1, f"{len(keys) - len(set(keys))} duplicates"
    if os.environ.get("CHIME_KEEP_SCREENSHOT"):
        shutil.copy(screenshot, os.path.join(HERE, "..", "..", "net", "dashboard.png"))


if __name__ == "__main__":
    run(dashboard_in_chromium)
