"""Proves catch-up across an email outage of a whole virtual day, on a fast
virtual clock: the email service is down from before the first due instant
until the next midnight. When it comes back, every message still inside the
catch-up window (12 h here) is sent, once; the older ones are recorded
`expired` and never sent."""

from harness import FakeEmail, Node, iso_ms, run, user_fields, wait_until

# Zones whose 09:00 on 2027-03-15 falls at these UTC hours.
ZONES = {"Etc/GMT-8": 1, "Etc/GMT-6": 3, "Etc/GMT-4": 5, "UTC": 9,
         "Etc/GMT+4": 13, "Etc/GMT+8": 17, "Etc/GMT+10": 19, "Etc/GMT+12": 21}
BACK_AT = "2027-03-16T00:00:00Z"
WINDOW_H = 12


def outage_of_a_day_is_caught_up_within_the_window(workdir, db, cleanup):
    email = FakeEmail(workdir, "--outage")
    cleanup.append(email.stop)
    # 48 virtual minutes per real second: the day passes in about 30 s.
    node = Node(workdir, db, email, "--clock-start", "2027-03-14T22:00:00Z", "--clock-rate", "2880",
                "--catch-up-s", str(WINDOW_H * 3600), "--backoff-base-ms", "50", "--backoff-cap-ms", "500",
                "--breaker-cooldown-ms", "300").start()
    cleanup.append(node.stop)
    users = {}
    for n, (zone, hour) in enumerate(ZONES.items()):
        u = node.create(**user_fields(n, "1990-03-15", zone))
        assert u["next_due"]["birthday"] == f"2027-03-15T{hour:02d}:00:00Z", u
        users[hour] = u

    wait_until("the node's clock to reach the end of the outage", lambda: node.now_ms() >= iso_ms(BACK_AT), 90, 0.1)
    assert email.ledger() == [], "the email service was down, yet accepted messages"
    email.control(outage=False)

    owed = {h for h in ZONES.values() if h >= 24 - WINDOW_H}

    def settled():
        states = {d["key"]: d["status"] for d in node.deliveries()}
        done = {k: s for k, s in states.items() if s in ("sent", "expired")}
        return done if len(done) == len(ZONES) else None

    done = wait_until("every delivery to be sent or expired", settled, 90, 0.2)
    for hour, u in users.items():
        key = f"{u['id']}:birthday:2027-03-15"
        assert done[key] == ("sent" if hour in owed else "expired"), (hour, done[key])
    keys = sorted(email.keys())
    assert keys == sorted(f"{users[h]['id']}:birthday:2027-03-15" for h in owed), keys
    print(f"sent {len(owed)} inside the {WINDOW_H} h window, expired {len(ZONES) - len(owed)}")


if __name__ == "__main__":
    run(outage_of_a_day_is_caught_up_within_the_window)
