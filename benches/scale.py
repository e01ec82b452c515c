#!/usr/bin/env python3
"""Scale benchmark: peak memory and start-up time of the real server as steered names grow,
on the load benchmark's city database. Run through benches/scale.sh; see benches/README.md.

Each name is steered differently (its own node subset, answer count, fence), so names cannot
share rankings: what is measured is the cost of a name, not of a copy.
"""

import os
import random
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
import load  # noqa: E402  benches/load.py: servers, ports, the example's PoPs

NAMES = [int(n) for n in os.environ.get("NAMES", "1,50,500").split(",") if n]
REPS = int(os.environ.get("REPS", "1"))
BINARY = os.environ.get("GEOSTEER", os.path.join(load.REPO, "target/release/geosteer"))
# Extra nodes at random places, so that names can differ in their node sets.
EXTRA_NODES = 24


def nodes(rng):
    listed = [(n, g, la, lo, ip) for n, g, la, lo, ip in load.NODES]
    for i in range(EXTRA_NODES):
        lat, lon = rng.uniform(-45, 60), rng.uniform(-125, 150)
        geo = load.NODES[i % len(load.NODES)][1]
        listed.append((f"pop-{i}", geo, round(lat, 2), round(lon, 2), f"198.51.101.{i + 1}"))
    return listed


def zone_text(count, rng):
    listed = nodes(rng)
    lines = [
        f"zone: {load.ZONE}",
        "ttl: 300",
        f"soa: {{primary: ns1.{load.ZONE}., contact: h.{load.ZONE}., serial: 1, minimum: 60}}",
        f"ns: [ns1.{load.ZONE}.]",
        "records:",
        "  ns1: {type: A, value: 192.0.2.53}",
        "check: {type: none}",
        "nodes:",
    ]
    for name, geo, lat, lon, ip in listed:
        lines.append(f"  {name}: {{geo: {geo}, location: [{lat}, {lon}], addresses: [{ip}]}}")
    lines.append("steer:")
    european = ["london-1", "frankfurt-1"]
    for i in range(count):
        chosen = rng.sample([n[0] for n in listed], rng.randint(8, 20))
        answers = 1 + i % 2
        rules = []
        if i % 3 == 0:
            rules.append(f"{{geos: [EU], nodes: [{', '.join(european)}], fence: true}}")
        rules.append(f"{{nodes: [{', '.join(chosen)}]}}")
        lines.append(f"  name-{i}: {{ttl: 30, answers: {answers}, rules: [{', '.join(rules)}]}}")
    return "\n".join(lines) + "\n"


def ready(admin):
    def check(_server):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/readyz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False
    return check


def run(count, rep):
    import tempfile
    with tempfile.TemporaryDirectory() as work:
        zones = os.path.join(work, "zones")
        os.makedirs(zones)
        with open(os.path.join(zones, f"{load.ZONE}.yaml"), "w") as f:
            f.write(zone_text(count, random.Random(count * 1000 + rep)))
        port, admin = load.free_port(), load.free_port()
        argv = [BINARY, "serve", "--listen", f"127.0.0.1:{port}", "--zones", zones,
                "--geo", load.CITY_DB, "--admin", f"127.0.0.1:{admin}", "--rrl-rate", "0"]
        started = time.monotonic()
        server = load.Server(f"geosteer-{count}", argv, port, ready(admin))
        ready_s = time.monotonic() - started
        try:
            time.sleep(1)  # any work after readiness (released buffers) settles
            with open(f"/proc/{server.proc.pid}/status") as f:
                status = dict(line.split(":", 1) for line in f if ":" in line)
            mib = lambda key: int(status[key].split()[0]) / 1024  # noqa: E731
            return ready_s, mib("VmHWM"), mib("VmRSS")
        finally:
            server.stop()


def main():
    rows = []
    for count in NAMES:
        for rep in range(REPS):
            ready_s, peak, rss = run(count, rep)
            load.log(f"{count} names: ready {ready_s:.2f} s, peak {peak:.0f} MiB, rss {rss:.0f} MiB")
            rows.append((count, ready_s, peak, rss))
    base = {r[0]: r for r in rows}
    one = base.get(min(base)) if base else None
    print("| names | ready s | peak RSS MiB | RSS after ready MiB | peak above fewest MiB |")
    print("|---|---|---|---|---|")
    for count, ready_s, peak, rss in rows:
        above = peak - one[2] if one else float("nan")
        print(f"| {count} | {ready_s:.2f} | {peak:.0f} | {rss:.0f} | {above:.0f} |")


if __name__ == "__main__":
    main()
