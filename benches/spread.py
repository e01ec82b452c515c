#!/usr/bin/env python3
"""Spreading benchmark (benches/spread.sh; see benches/README.md).

1. CPU per query: the same fleet (the example's twelve PoPs, each with four servers at one
   place, weights 1:1:2:4) served twice by the same build, the steered name with and without
   `spread: {within: 10%}`, against the shipped country database. dnsperf sends ECS queries
   for random /24s at a fixed 40,000 queries/s; the server's CPU time (schedstat, every
   thread) over the queries answered, in rounds that alternate which server goes first.
2. Publish time of a load change at 200 nodes: loads posted through the admin interface (a
   value that moves a node's score, then one that makes it full), and the server's own
   ranking, rebuild and change-publication histograms.
"""

import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
import urllib.request

os.environ.setdefault("BENCH_WORK", tempfile.mkdtemp(prefix="geosteer-spread-"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import load  # noqa: E402  (benches/load.py: servers, streams, dnsperf)

REPO = os.environ["BENCH_REPO"]
REPS = int(os.environ.get("REPS", "5"))
SECONDS = int(os.environ.get("SECONDS_PER_RUN", "4"))
COUNTRY_DB = os.path.join(REPO, "geo/dbip-country.mmdb")
BINARY = os.path.join(REPO, "target/release/geosteer")


def fleet_zone(directory, spread):
    zones = os.path.join(directory, "zones")
    os.makedirs(zones)
    lines = [f"zone: {load.ZONE}", f"soa: {{primary: ns1.{load.ZONE}., contact: h.{load.ZONE}., serial: 1}}",
             f"ns: [ns1.{load.ZONE}.]", "check: {type: none}", "nodes:"]
    for i, (name, geo, lat, lon, _) in enumerate(load.NODES):
        for s, weight in enumerate((1, 1, 2, 4)):
            lines.append(f"  {name}-{s}: {{geo: {geo}, location: [{lat}, {lon}], "
                         f"addresses: [198.18.{i}.{s + 1}], weight: {weight}}}")
    extra = ", spread: {within: 10%}" if spread else ""
    lines += ["steer:", f"  ingest: {{ttl: 30, answers: 1{extra}}}"]
    with open(os.path.join(zones, f"{load.ZONE}.yaml"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return zones


def start(name, zones, admin=None):
    port = load.free_port()
    argv = [BINARY, "serve", "--listen", f"127.0.0.1:{port}", "--zones", zones, "--geo", COUNTRY_DB,
            "--rrl-rate", "0", "--rrl-exempt", "127.0.0.0/8"]
    argv += ["--admin", f"127.0.0.1:{admin}"] if admin else ["--no-admin"]
    return load.Server(name, argv, port, lambda s: load.answers(s.port, name="ingest"))


def cpu_per_query(work):
    random.seed(11)
    subnets = set()
    while len(subnets) < 100_000:
        a = random.randint(1, 223)
        if a in (10, 127):
            continue
        subnets.add(f"{a}.{random.randint(0, 255)}.{random.randint(0, 255)}.0/24")
    stream = os.path.join(work, "stream-ecs.bin")
    load.write_stream(stream, [load.query_bytes("ingest", s) for s in sorted(subnets)])
    servers = {"unspread": start("unspread", fleet_zone(os.path.join(work, "a"), False)),
               "spread": start("spread", fleet_zone(os.path.join(work, "b"), True))}
    cpu = {n: [] for n in servers}
    qps = {n: [] for n in servers}
    try:
        # Spreading must actually spread: several servers of a site answer.
        seen = {n: set() for n in servers}
        for s in sorted(subnets)[:400]:
            for n, server in servers.items():
                seen[n].add(load.query(server.port, "ingest", s))
        load.log(f"distinct answers over 400 networks: {({n: len(v) for n, v in seen.items()})}")
        order = list(servers)
        for rep in range(REPS):
            order = order[1:] + order[:1]
            for name in order:
                server = servers[name]
                sat = load.dnsperf(server.port, stream, SECONDS)
                qps[name].append(sat["qps"])
                before = server.cpu_ns()
                fixed = load.dnsperf(server.port, stream, SECONDS, rate=load.CPU_RATE)
                used = server.cpu_ns() - before
                cpu[name].append(used / 1000 / fixed["completed"])
                load.log(f"rep {rep + 1}/{REPS} {name:9} {sat['qps']:9.0f} q/s sat, "
                         f"{cpu[name][-1]:5.2f} us/q at 40k, lost {int(fixed['lost'])}")
    finally:
        for s in servers.values():
            s.stop()
    print(f"\nCPU per query, {REPS} runs of {SECONDS} s, 100,000 random ECS /24s, 48 nodes (12 sites x 4):")
    print(f"{'name':10} {'sat q/s med':>12} {'CPU us/q@40k med':>17} {'min':>6} {'max':>6}")
    for name in servers:
        print(f"{name:10} {statistics.median(qps[name]):12.0f} {statistics.median(cpu[name]):17.2f} "
              f"{min(cpu[name]):6.2f} {max(cpu[name]):6.2f}")
    ratio = statistics.median(cpu["spread"]) / statistics.median(cpu["unspread"])
    pairs = [s / u for s, u in zip(cpu["spread"], cpu["unspread"])]
    print(f"spread / unspread CPU per query: {ratio:.3f} (per round: {', '.join(f'{p:.3f}' for p in pairs)})")


def histogram(text, name):
    total = re.search(rf"^{name}_sum (\S+)$", text, re.M)
    count = re.search(rf"^{name}_count (\S+)$", text, re.M)
    return (float(total.group(1)) if total else 0.0, float(count.group(1)) if count else 0.0)


def admin(port, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(request, timeout=30) as reply:
        return reply.read().decode()


def publish_time(work):
    random.seed(5)
    zones = os.path.join(work, "big", "zones")
    os.makedirs(zones)
    lines = [f"zone: {load.ZONE}", f"soa: {{primary: ns1.{load.ZONE}., contact: h.{load.ZONE}., serial: 1}}",
             f"ns: [ns1.{load.ZONE}.]", "check: {type: none}", "nodes:"]
    for i in range(200):
        lat, lon = random.uniform(-50, 60), random.uniform(-170, 170)
        lines.append(f"  n{i}: {{geo: EU-DE, location: [{lat:.2f}, {lon:.2f}], addresses: [198.18.{i // 250}.{i % 250 + 1}]}}")
    lines += ["steer:", "  ingest: {ttl: 30, answers: 2, spread: {within: 10%}}"]
    with open(os.path.join(zones, f"{load.ZONE}.yaml"), "w") as f:
        f.write("\n".join(lines) + "\n")
    admin_port = load.free_port()
    server = start("big", zones, admin=admin_port)
    try:
        rows = []
        for kind, value in (("score", 0.9), ("full", 1.2)):
            before = {m: histogram(admin(admin_port, "GET", "/metrics"), m)
                      for m in ("geosteer_ranking_seconds", "geosteer_answer_rebuild_seconds",
                                "geosteer_change_publish_seconds")}
            changes = 20
            for i in range(changes):
                node = f"n{random.randrange(200)}"
                admin(admin_port, "POST", "/latency", {"zone": load.ZONE, "loads": [{"node": node, "load": value}]})
                time.sleep(0.8)  # past the re-ranking interval (0.5 s): each change ranked on its own
            after = {m: histogram(admin(admin_port, "GET", "/metrics"), m) for m in before}
            for metric in before:
                total, count = (after[metric][0] - before[metric][0], after[metric][1] - before[metric][1])
                rows.append((kind, metric, count, 1000 * total / count if count else float("nan")))
    finally:
        server.stop()
    print("\nload changes at 200 nodes (spread name, answers 2, shipped country database), 20 each:")
    print(f"{'load':6} {'metric':34} {'count':>6} {'mean ms':>8}")
    for kind, metric, count, mean in rows:
        print(f"{kind:6} {metric:34} {count:6.0f} {mean:8.1f}")


def main():
    work = tempfile.mkdtemp(prefix="geosteer-spread-")
    if os.environ.get("PART", "all") in ("all", "cpu"):
        cpu_per_query(work)
    if os.environ.get("PART", "all") in ("all", "publish"):
        publish_time(work)


if __name__ == "__main__":
    main()
