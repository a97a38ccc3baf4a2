"""Black-box checks of chime-sim: python3 sim_test.py seeds|determinism|teeth.

The CI seed set is fixed: every change is checked against the same 200 runs,
and a failure names the seed that replays it.
"""
import os
import re
import subprocess
import sys

SIM = os.environ.get("CHIME_SIM", "build/chime-sim")
# Seeds per set (default: all). The sanitizer build runs the first few of
# each set: the same code paths, at several times the cost per run.
SEEDS_MAX = int(os.environ.get("CHIME_SIM_SEEDS_MAX", "0"))


def seed_range(first, last):
    """The --seeds argument and the run count for seeds first..last."""
    if SEEDS_MAX:
        last = min(last, first + SEEDS_MAX - 1)
    return ["--seeds", f"{first}..{last}"], last - first + 1
CI_SET = ["--seeds", "1..100", "--users", "300", "--days", "14",
          "--faults", "default"]
HARSH_SET = ["--seeds", "201..250", "--users", "300", "--days", "14",
             "--faults", "harsh"]
ACTORS_SET = ["--seeds", "401..430", "--users", "300", "--days", "14",
              "--faults", "actors"]
# Three nodes with the real membership, leases and fencing: node crashes,
# partitions (node to node, node to database), pauses past the lease,
# graceful leaves and joins, single actors crashed (a peer's restarted
# delivery actor is a new actor to forward to); every user's dates fall
# inside the run.
CLUSTER_SET = ["--seeds", "301..350", "--users", "300", "--days", "3",
               "--faults", "actors", "--nodes", "3"]


def run(*args):
    p = subprocess.run([SIM, *args], capture_output=True, text=True,
                       timeout=390)
    return p.returncode, p.stdout + p.stderr


def field(out, name):
    m = re.search(r"^" + name + r" (\S+)$", out, re.M)
    assert m, f"no '{name}' line in:\n{out[-2000:]}"
    return m.group(1)


def check_set(args, runs):
    code, out = run(*args)
    print(out[-600:])
    assert code == 0, "a CI seed failed:\n" + "\n".join(
        line for line in out.splitlines() if line.startswith(("FAIL", "  ")))
    assert field(out, "runs") == str(runs)
    assert field(out, "failed_runs") == "0"
    return out


def check_seeds(first, last, options):
    seeds, runs = seed_range(first, last)
    return check_set(seeds + options, runs)


def seeds():
    out = check_seeds(1, 100, CI_SET[2:])
    # Lost answers strike (1 % of requests), and their resends are counted
    # in their own class, not excused as a crash's.
    if not SEEDS_MAX:
        assert int(field(out, "duplicates_ambiguous")) > 0, "no answer was lost"


def seeds_harsh():
    check_seeds(201, 250, HARSH_SET[2:])


def seeds_actors():
    # Single actors fail (the supervision issue): their supervisors restart
    # them and the invariants hold.
    check_seeds(401, 430, ACTORS_SET[2:])


def seeds_cluster_a():
    check_seeds(301, 325, CLUSTER_SET[2:])


def seeds_cluster_b():
    check_seeds(326, 350, CLUSTER_SET[2:])


def determinism():
    cluster = CLUSTER_SET[2:] + ["--seed", "307"]
    assert field(run(*cluster)[1], "trace_hash") == field(run(*cluster)[1], "trace_hash"), \
        "the same cluster seed gave different traces"
    one = ["--users", "300", "--days", "12", "--faults", "harsh"]
    _, a = run("--seed", "7", *one)
    _, b = run("--seed", "7", *one)
    _, c = run("--seed", "8", *one)
    ha, hb, hc = (field(x, "trace_hash") for x in (a, b, c))
    print(f"seed 7: {ha} {hb}; seed 8: {hc}")
    assert ha == hb, "the same seed gave different traces"
    assert ha != hc, "different seeds gave the same trace"
    assert int(field(a, "trace_events")) > 1000, "the run did too little"
    # A run inside a range (one process, many actor systems) is the same
    # run as alone.
    _, r = run("--seeds", "6..7", *one)
    assert re.search(r"^seed 7 trace_hash " + ha + " ", r, re.M), r


def teeth():
    # Updates are rare at CI's traffic; a corrected date needs some to show.
    updates = CI_SET + ["--traffic", "0.05"]
    # The journal hands what it recorded to the publisher itself, so a
    # delivery is lost only from the publisher's buffer (full during a broker
    # outage, or gone with its node): that takes more users due in an outage
    # than CI's set has.
    crowded = ["--seeds", "1..20", "--users", "3000", "--days", "14",
               "--faults", "default"]
    # A copy of a delivery that comes while the first is held for its
    # instant (the fire lead) is dropped as a copy, so the re-check is what
    # stops a second send less often at CI's traffic: its teeth show with
    # more users deleted or changed while a delivery of theirs is on its
    # way. At the lead's 10 s the updates' set (0.05 a user a day) met none
    # in 100 seeds; at 0.2, seed 6 sends to a user deleted hours before
    # (and the same set passes whole unbroken).
    changes = CI_SET + ["--traffic", "0.2"]
    for broken, seed_set in (("no-recheck", changes), ("no-outbox-sweeper", crowded),
                             ("no-fencing", CLUSTER_SET),
                             ("next-year-on-update", updates)):
        code, out = run(*seed_set, "--break", broken, "--fail-fast")
        m = re.search(r"^FAIL seed (\d+): ", out, re.M)
        assert code != 0 and m, f"--break {broken} went unnoticed:\n{out[-1500:]}"
        seed = m.group(1)
        hash_in_set = re.search(r"^seed " + seed + r" trace_hash (\S+)", out,
                                re.M).group(1)
        print(f"--break {broken}: seed {seed} fails:")
        print("\n".join(l for l in out.splitlines() if l.startswith("  "))[:800])
        args = seed_set[2:] + ["--seed", seed, "--break", broken]
        code, replay = run(*args)
        assert code != 0, f"seed {seed} did not fail again:\n{replay}"
        assert field(replay, "trace_hash") == hash_in_set, "replay differs"
        assert int(field(replay, "violations")) > 0


if __name__ == "__main__":
    {"seeds": seeds, "seeds_harsh": seeds_harsh, "seeds_actors": seeds_actors,
     "seeds_cluster_a": seeds_cluster_a,
     "seeds_cluster_b": seeds_cluster_b,
     "determinism": determinism, "teeth": teeth}[sys.argv[1]]()
    print("ok")
