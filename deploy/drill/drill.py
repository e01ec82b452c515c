#!/usr/bin/env python3
"""The disaster-recovery drill: real encoders (ffmpeg), real ingest servers (nginx-rtmp),
real resolvers (Unbound with ECS), a geosteer fleet on a three-member etcd, all in network
namespaces this script creates and removes; failures are made and the stream interruption
each encoder sees is measured. Run through deploy/drill/run.sh (see deploy/drill/README.md).

    router namespace (forwards between all)
      |-- svc:     geosteer gs1..gs3 (10.0.0.11-13:53), etcd m1..m3 (10.0.0.21-23)
      |-- node k:  nginx-rtmp on two carrier lines, 10.1.k.2 (AS64501) and 10.2.k.2 (AS64502),
      |            each its own veth to the router, so one can be cut
      |-- client r: Unbound (10.10r.0.53, ECS toward geosteer) and the region's encoders
                    (10.10r.0.2), which deploy/drill/geo.mmdb places in DE, JP or US

Times are CLOCK_MONOTONIC, which every namespace shares.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
ZONE = "live.example.net"
NAME = f"ingest.{ZONE}"
TTL = 30
ENCODERS_PER_REGION = 2
# A gap in a stream's bytes longer than this is an interruption (the stats are polled
# every 0.1 s; frames arrive every 40 ms).
GAP = 0.35
SETTLE = 3.0


@dataclass
class Node:
    name: str
    index: int
    tier: str
    geo: str
    location: tuple

    def line(self, which):
        return f"10.{1 if which == 'a' else 2}.{self.index}.2"


@dataclass
class Region:
    key: str
    index: int
    geo: str
    fenced: bool
    nodes: list = field(default_factory=list)

    @property
    def client(self):
        return f"10.10{self.index}.0.2"

    @property
    def resolver(self):
        return f"10.10{self.index}.0.53"

    def encoders(self):
        return [f"{self.key}-{i}" for i in range(1, ENCODERS_PER_REGION + 1)]


def regions(short):
    """Each region: a core and an edge node (primaries: with `answers: 2` a client's answer
    holds both) and a backup, which stands in for a primary that is out."""
    eu = Region("eu", 1, "EU", True, [
        Node("eu-core", 1, "core", "EU-DE", (50.11, 8.68)),
        Node("eu-edge", 2, "edge", "EU-FR", (48.86, 2.35)),
        Node("eu-backup", 3, "backup", "EU-NL", (52.37, 4.90))])
    asia = Region("as", 2, "AS", False, [
        Node("as-core", 4, "core", "AS-JP", (35.68, 139.69)),
        Node("as-edge", 5, "edge", "AS-KR", (37.57, 126.98)),
        Node("as-backup", 6, "backup", "AS-SG", (1.35, 103.82))])
    us = Region("us", 3, "NA", False, [
        Node("us-core", 7, "core", "NA-US", (39.04, -77.49)),
        Node("us-edge", 8, "edge", "NA-US", (41.88, -87.63)),
        Node("us-backup", 9, "backup", "NA-US", (32.78, -96.80))])
    return [eu, asia] if short else [eu, asia, us]


def policy(all_regions, answers):
    """The drill's zone: the shipped example's TTL and answer count, an EEA fence, every
    node checked over RTMP on both lines."""
    nodes = "\n".join(
        f"  {n.name}: {{tier: {n.tier}, geo: {n.geo}, location: [{n.location[0]}, {n.location[1]}], "
        f"addresses: [{{address: {n.line('a')}, asn: 64501}}, {{address: {n.line('b')}, asn: 64502}}]}}"
        for r in all_regions for n in r.nodes)
    eu = [n.name for n in all_regions[0].nodes]
    return f"""zone: {ZONE}
soa: {{primary: ns1.{ZONE}., contact: hostmaster.{ZONE}., minimum: 60, serial: 1}}
ns: [ns1.{ZONE}.]
records:
  ns1: {{type: A, values: [10.0.0.11, 10.0.0.12, 10.0.0.13]}}
check: {{type: rtmp, interval: 500ms, fall: 3, rise: 2}}
nodes:
{nodes}
steer:
  ingest:
    ttl: {TTL}
    answers: {answers}
    pools:
      eu: {{nodes: [{", ".join(eu)}]}}
    rules:
      - {{geos: [eea], pool: eu, fence: true}}
      - {{}}
"""


class Lab:
    """The namespaces, links and processes of one drill run; `close` removes them all."""

    def __init__(self, work, binary, all_regions):
        self.work, self.binary, self.regions = work, binary, all_regions
        self.tag = f"gsd{os.getpid() % 100000}"
        # What a drill saw go wrong besides the measures (read and cleared per drill).
        self.problems = []
        self.namespaces, self.processes = [], {}
        self.nodes = {n.name: n for r in all_regions for n in r.nodes}
        self.by_address = {n.line(w): (n.name, w) for n in self.nodes.values() for w in "ab"}
        self.region_of_node = {n.name: r for r in all_regions for n in r.nodes}

    # -- plumbing -----------------------------------------------------------------------
    def ns(self, name):
        return f"{self.tag}-{name}"

    def run(self, *argv, check=True):
        done = subprocess.run(argv, capture_output=True, text=True)
        if check and done.returncode != 0:
            raise SystemExit(f"drill: {' '.join(argv)} failed: {done.stderr.strip()}")
        return done

    def in_ns(self, ns, *argv, check=True):
        return self.run("ip", "netns", "exec", self.ns(ns), *argv, check=check)

    def spawn(self, key, ns, argv, log):
        out = open(os.path.join(self.work, f"{log}.log"), "ab")
        process = subprocess.Popen(["ip", "netns", "exec", self.ns(ns), *argv],
                                   stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
        self.processes[key] = process
        return process

    def stop(self, key, sig=signal.SIGTERM, wait=5.0):
        process = self.processes.pop(key, None)
        if process is None:
            return
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        try:  # anything the group left behind
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def close(self):
        for key in list(self.processes):
            self.stop(key, signal.SIGKILL, wait=2.0)
        for ns in self.namespaces:
            self.run("ip", "netns", "del", ns, check=False)

    def add_ns(self, name):
        self.run("ip", "netns", "add", self.ns(name))
        self.namespaces.append(self.ns(name))
        self.in_ns(name, "ip", "link", "set", "lo", "up")

    def link(self, ns_a, if_a, addr_a, ns_b, if_b, addr_b):
        self.run("ip", "link", "add", if_a, "netns", self.ns(ns_a), "type", "veth",
                 "peer", "name", if_b, "netns", self.ns(ns_b))
        for ns, iface, addr in ((ns_a, if_a, addr_a), (ns_b, if_b, addr_b)):
            self.in_ns(ns, "ip", "addr", "add", addr, "dev", iface)
            self.in_ns(ns, "ip", "link", "set", iface, "up")

    # -- building -----------------------------------------------------------------------
    def build(self):
        self.add_ns("rt")
        self.in_ns("rt", "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.add_ns("svc")
        self.link("rt", "svc", "10.0.0.1/24", "svc", "rt", "10.0.0.2/24")
        for last in (11, 12, 13, 21, 22, 23):
            self.in_ns("svc", "ip", "addr", "add", f"10.0.0.{last}/24", "dev", "rt")
        self.in_ns("svc", "ip", "route", "add", "default", "via", "10.0.0.1")
        for node in self.nodes.values():
            k = node.index
            self.add_ns(node.name)
            self.link("rt", f"n{k}a", f"10.1.{k}.1/24", node.name, "line-a", f"10.1.{k}.2/24")
            self.link("rt", f"n{k}b", f"10.2.{k}.1/24", node.name, "line-b", f"10.2.{k}.2/24")
            # Replies leave by the line they came in on.
            self.in_ns(node.name, "ip", "route", "add", "default", "via", f"10.1.{k}.1")
            self.in_ns(node.name, "ip", "rule", "add", "from", f"10.2.{k}.2", "table", "102")
            self.in_ns(node.name, "ip", "route", "add", "default", "via", f"10.2.{k}.1", "table", "102")
        for region in self.regions:
            r = region.index
            self.add_ns(f"cl-{region.key}")
            self.link("rt", f"c{r}", f"10.10{r}.0.1/24", f"cl-{region.key}", "rt", f"10.10{r}.0.2/24")
            self.in_ns(f"cl-{region.key}", "ip", "addr", "add", f"10.10{r}.0.53/24", "dev", "rt")
            self.in_ns(f"cl-{region.key}", "ip", "route", "add", "default", "via", f"10.10{r}.0.1")

    def start_etcd(self, i):
        cluster = ",".join(f"m{j}=http://10.0.0.2{j}:2380" for j in (1, 2, 3))
        self.spawn(f"etcd{i}", "svc", [
            "etcd", "--name", f"m{i}", "--data-dir", os.path.join(self.work, f"etcd{i}"),
            "--listen-client-urls", f"http://10.0.0.2{i}:2379",
            "--advertise-client-urls", f"http://10.0.0.2{i}:2379",
            "--listen-peer-urls", f"http://10.0.0.2{i}:2380",
            "--initial-advertise-peer-urls", f"http://10.0.0.2{i}:2380",
            "--initial-cluster", cluster, "--initial-cluster-state", "new",
            "--initial-cluster-token", self.tag], f"etcd{i}")

    @property
    def fleet(self):
        return ",".join(f"http://10.0.0.2{j}:2379" for j in (1, 2, 3))

    def start_geosteer(self, i):
        self.spawn(f"gs{i}", "svc", [
            self.binary, "serve", "--listen", f"10.0.0.1{i}:53", "--admin", f"127.0.0.1:805{i}",
            "--identity", f"gs{i}", "--zones", os.path.join(self.work, "zones"),
            "--geo", os.path.join(HERE, "geo.mmdb"), "--fleet", self.fleet,
            "--state-file", os.path.join(self.work, f"gs{i}.state")], f"gs{i}")

    def write_policy(self, answers):
        zones = os.path.join(self.work, "zones")
        os.makedirs(zones, exist_ok=True)
        path = os.path.join(zones, f"{ZONE}.yaml")
        with open(path + ".tmp", "w") as f:
            f.write(policy(self.regions, answers))
        os.replace(path + ".tmp", path)

    def start_node(self, name):
        base = os.path.join(self.work, "nodes", name)
        os.makedirs(os.path.join(base, "tmp"), exist_ok=True)
        conf = os.path.join(base, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
daemon off;
master_process on;
worker_processes 1;
user root;
pid {base}/nginx.pid;
error_log {base}/error.log warn;
events {{ worker_connections 256; }}
rtmp {{
  server {{
    listen 1935;
    application live {{ live on; record off; drop_idle_publisher 3s; }}
  }}
}}
http {{
  access_log off;
  client_body_temp_path {base}/tmp/body;
  proxy_temp_path {base}/tmp/proxy;
  fastcgi_temp_path {base}/tmp/fastcgi;
  uwsgi_temp_path {base}/tmp/uwsgi;
  scgi_temp_path {base}/tmp/scgi;
  server {{ listen 127.0.0.1:8080; location /stat {{ rtmp_stat all; }} }}
}}
""")
        self.spawn(f"nginx-{name}", name, ["nginx", "-p", base, "-c", conf, "-e", f"{base}/error.log"],
                   f"nginx-{name}")

    def start_poller(self, name):
        self.spawn(f"poll-{name}", name, [
            sys.executable, os.path.join(HERE, "stat_poller.py"), "http://127.0.0.1:8080/stat",
            os.path.join(self.work, f"stat-{name}.jsonl")], f"poll-{name}")

    def start_resolver(self, region):
        base = os.path.join(self.work, f"unbound-{region.key}")
        os.makedirs(base, exist_ok=True)
        conf = os.path.join(base, "unbound.conf")
        stubs = "\n".join(f"  stub-addr: 10.0.0.1{i}" for i in (1, 2, 3))
        with open(conf, "w") as f:
            f.write(f"""server:
  interface: {region.resolver}
  port: 53
  do-daemonize: no
  use-syslog: no
  logfile: ""
  username: ""
  chroot: ""
  directory: "{base}"
  pidfile: ""
  access-control: 10.0.0.0/8 allow
  module-config: "subnetcache iterator"
  send-client-subnet: 10.0.0.11
  send-client-subnet: 10.0.0.12
  send-client-subnet: 10.0.0.13
  client-subnet-always-forward: yes
  max-client-subnet-ipv4: 24
  qname-minimisation: no
  extended-statistics: yes
remote-control:
  control-enable: yes
  control-interface: {base}/control.sock
  control-use-cert: no
stub-zone:
  name: "{ZONE}"
{stubs}
""")
        self.spawn(f"unbound-{region.key}", f"cl-{region.key}", ["unbound", "-d", "-c", conf],
                   f"unbound-{region.key}")

    def resolver_servfails(self, region):
        conf = os.path.join(self.work, f"unbound-{region.key}", "unbound.conf")
        out = self.run("unbound-control", "-c", conf, "stats_noreset", check=False).stdout
        for line in out.splitlines():
            if line.startswith("num.answer.rcode.SERVFAIL="):
                return int(line.split("=")[1])
        return 0

    def start_supervisor(self, region, log):
        self.spawn(f"sup-{region.key}", f"cl-{region.key}", [
            sys.executable, os.path.join(HERE, "supervisor.py"), "--resolver", region.resolver,
            "--name", NAME, "--log", log, *region.encoders()], f"sup-{region.key}")

    def dig(self, ns, server, *args):
        return self.in_ns(ns, "dig", f"@{server}", "+tries=1", "+time=1", "+short", *args,
                          check=False).stdout.split()

    # -- waiting ------------------------------------------------------------------------
    def until(self, what, seconds, test):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if test():
                return
            time.sleep(0.1)
        raise SystemExit(f"drill: timed out after {seconds}s waiting for {what} (logs in {self.work})")

    def healthy(self, answers):
        """Every instance sees every line of every node up and answers every region with
        `answers` line-a addresses of the region's primaries."""
        script = ("import json, urllib.request\n"
                  "for i in (1, 2, 3):\n"
                  "    with urllib.request.urlopen(f'http://127.0.0.1:805{i}/nodes', timeout=1) as r:\n"
                  "        nodes = json.load(r)\n"
                  "    assert all(l['health'] == 'up' for n in nodes for l in n['lines']), i\n"
                  f"    assert sum(len(n['lines']) for n in nodes) == {2 * len(self.nodes)}, i\n")
        if self.in_ns("svc", sys.executable, "-c", script, check=False).returncode != 0:
            return False
        line_a = {n.line("a") for n in self.nodes.values()}
        for region in self.regions:
            primaries = {n.line("a") for n in region.nodes if n.tier != "backup"}
            # A fence holds its clients to the region's primaries; others get the nearest
            # primaries elsewhere after their region's.
            expected = min(answers, len(primaries)) if region.fenced else answers
            for i in (1, 2, 3):
                got = self.dig(f"cl-{region.key}", f"10.0.0.1{i}", f"+subnet={region.client}/24", NAME, "A")
                if (len(got) != expected or not set(got) <= line_a
                        or not set(got[:len(primaries)]) <= primaries):
                    return False
        return True

    def busiest_node(self, region):
        """The node of `region` most of its encoders publish on now."""
        tl = stat_timelines(self.work, self.nodes)
        now = time.monotonic()
        on = [publishing_on(tl, e, now - 0.5) for e in region.encoders()]
        return max((n.name for n in region.nodes), key=on.count)


def stat_timelines(work, nodes):
    """stream -> sorted [(t, node)] of the times its bytes grew on a node."""
    timelines = {}
    for node in nodes:
        path = os.path.join(work, f"stat-{node}.jsonl")
        if not os.path.exists(path):
            continue
        last = {}
        with open(path) as f:
            for line in f:
                record = json.loads(line)
                for stream, n in record["bytes"].items():
                    if n > last.get(stream, 0):
                        timelines.setdefault(stream, []).append((record["t"], node))
                last = record["bytes"]
    for points in timelines.values():
        points.sort()
    return timelines


def read_jsonl(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def publishing_on(timelines, stream, since):
    """The node a stream's bytes grew on last, if they grew after `since`."""
    points = [p for p in timelines.get(stream, []) if p[0] >= since]
    return points[-1][1] if points else None


def run_drill(lab, drill, answers):
    """One drill: fresh encoders settle on their home nodes, the failure is made, and each
    encoder's interruption is read from the ingest servers' statistics."""
    name = drill.name
    encoders = [(e, r) for r in lab.regions for e in r.encoders()]
    log = os.path.join(lab.work, f"encoders-{name}.jsonl")
    for region in lab.regions:
        lab.start_resolver(region)
    for region in lab.regions:
        lab.until(f"resolver {region.key}", 20,
                  lambda r=region: lab.dig(f"cl-{r.key}", r.resolver, NAME, "A"))
    servfails = {r.key: lab.resolver_servfails(r) for r in lab.regions}
    for region in lab.regions:
        lab.start_supervisor(region, log)

    def all_publishing():
        tl = stat_timelines(lab.work, lab.nodes)
        now = time.monotonic()
        return all(publishing_on(tl, e, now - 0.5) for e, _ in encoders)

    lab.until(f"{name}: every encoder publishing", 30, all_publishing)
    time.sleep(2.0)  # a steady stream before the failure
    lab.failed_at = time.monotonic()
    what = drill.action(lab)
    t0 = lab.failed_at
    timeout = drill.timeout
    steady_since = None

    def recovered():
        tl = stat_timelines(lab.work, lab.nodes)
        now = time.monotonic()
        return all(publishing_on(tl, e, now - GAP) for e, _ in encoders)

    deadline = t0 + timeout
    while time.monotonic() < deadline:
        if recovered():
            steady_since = steady_since or time.monotonic()
            if time.monotonic() - steady_since >= SETTLE and time.monotonic() - t0 >= SETTLE:
                break
        else:
            steady_since = None
        time.sleep(0.1)
    t_end = time.monotonic()
    for region in lab.regions:
        lab.stop(f"sup-{region.key}")
    dns_failures = sum(lab.resolver_servfails(r) - servfails[r.key] for r in lab.regions)
    for region in lab.regions:
        lab.stop(f"unbound-{region.key}")
    result = measure(lab, name, encoders, log, t0, t_end)
    result["dns_failures"] += dns_failures
    result["timed_out"] = steady_since is None
    result["failure"] = what
    result["problems"], lab.problems = lab.problems, []
    drill.restore(lab)
    lab.until(f"{name}: the fleet healthy again", 30, lambda: lab.healthy(answers))
    return result


def measure(lab, name, encoders, log, t0, t_end):
    tl = stat_timelines(lab.work, lab.nodes)
    # The whole drill counts for fences and DNS failures, from the encoders' start.
    events = read_jsonl(log)
    t_start = events[0]["t"] if events else t0
    fence_violations, dns_failures, rows = 0, 0, []
    for e in events:
        region = next(r for ident, r in encoders if ident == e["encoder"])
        if e["event"] == "resolve_failed":
            dns_failures += 1
        if not region.fenced:
            continue
        if e["event"] == "resolved":
            fence_violations += sum(
                1 for a in e["answer"]
                if a not in lab.by_address or lab.region_of_node[lab.by_address[a][0]] is not region)
    for ident, region in encoders:
        if region.fenced:  # each node outside the fence the encoder published on
            fence_violations += len({node for t, node in tl.get(ident, [])
                                     if t_start <= t <= t_end and lab.region_of_node[node] is not region})
        points = [p for p in tl.get(ident, []) if t0 - 1.0 <= p[0] <= t_end]
        interruption, back_at = 0.0, 0.0
        for (ta, _), (tb, _) in zip(points, points[1:]):
            if tb - ta > GAP and tb > t0:
                interruption += tb - ta
                back_at = tb - t0
        last = points[-1][0] if points else t0
        if t_end - last > GAP:  # not publishing when the drill ended
            interruption, back_at = interruption + t_end - last, None
        publishing = [e for e in events if e["encoder"] == ident and e["event"] == "publishing"]
        node = publishing_on(tl, ident, t_end - 1.0) if back_at is not None else None
        line = None
        if publishing and node:
            _, line = lab.by_address.get(publishing[-1]["address"], (None, None))
        rows.append({"id": ident, "region": region.geo, "interruption_s": round(interruption, 2),
                     "back_after_s": None if back_at is None else round(back_at, 2),
                     "node": node, "line": line})
    backs = [r["back_after_s"] for r in rows]
    return {"name": name,
            "all_publishing_s": None if None in backs else round(max(backs), 2),
            "fence_violations": fence_violations, "dns_failures": dns_failures,
            "encoders": rows}


# -- the drills ---------------------------------------------------------------------------
# Each drill aims at the node (or line) its region's encoders are on when it starts, since
# the resolvers hand out the answer's addresses in turn (Unbound's rrset-roundrobin).
class Drill:
    """A failure made by `act` and undone by `undo` (both given the lab and the target)."""

    def __init__(self, name, region, act, undo, timeout=20.0, answers=2):
        self.name, self.region, self.act, self.undo = name, region, act, undo
        self.timeout, self.answers = timeout, answers
        self.target = None

    def action(self, lab):
        region = next(r for r in lab.regions if r.key == self.region)
        self.target = lab.busiest_node(region)
        return self.act(lab, self.target, region)

    def restore(self, lab):
        region = next(r for r in lab.regions if r.key == self.region)
        self.undo(lab, self.target, region)


def kill(lab, name, region):
    lab.stop(f"nginx-{name}", signal.SIGKILL)
    return f"nginx on {name} killed"


def revive(lab, name, region):
    lab.start_node(name)


def cut(lab, name, region):
    lab.in_ns("rt", "ip", "link", "set", f"n{lab.nodes[name].index}a", "down")
    return f"{name}'s line a ({lab.nodes[name].line('a')}) cut"


def mend(lab, name, region):
    lab.in_ns("rt", "ip", "link", "set", f"n{lab.nodes[name].index}a", "up")


def lose_region(lab, name, region):
    for node in region.nodes:
        lab.stop(f"nginx-{node.name}", signal.SIGKILL)
    return f"every node of {region.geo} killed"


def regain_region(lab, name, region):
    for node in region.nodes:
        lab.start_node(node.name)


def stop_member_and_kill(lab, name, region):
    os.killpg(lab.processes["etcd1"].pid, signal.SIGSTOP)
    kill(lab, name, region)
    return f"etcd member m1 stopped (SIGSTOP), then nginx on {name} killed"


def resume_member_and_revive(lab, name, region):
    os.killpg(lab.processes["etcd1"].pid, signal.SIGCONT)
    revive(lab, name, region)


def fleet(lab, *args):
    lab.in_ns("svc", lab.binary, "fleet", "--fleet", lab.fleet, *args,
              "--by", "drill", "--reason", "maintenance drill")


def drain_then_stop(lab, name, region):
    """Maintenance: drain the node, let resolvers' cached answers expire, then stop it."""
    fleet(lab, "drain", "--share", "100", ZONE, name)
    time.sleep(TTL + 1)
    # By now the region's resolver has let its cached answer go: new encoders would not be
    # sent to the node.
    node = lab.nodes[name]
    answer = lab.dig(f"cl-{region.key}", region.resolver, NAME, "A")
    seen = "still answered it" if {node.line("a"), node.line("b")} & set(answer) else "answered without it"
    if seen == "still answered it":
        lab.problems.append(f"{name} drained, yet still answered after the TTL: {answer}")
    lab.failed_at = time.monotonic()
    lab.stop(f"nginx-{name}", signal.SIGTERM)
    return f"{name} drained (share 100); {TTL + 1} s later its region's resolver {seen}; then stopped"


def undrain(lab, name, region):
    revive(lab, name, region)
    fleet(lab, "obey", ZONE, name)


def drills(short):
    node_killed = Drill("node-killed", "eu", kill, revive)
    if short:
        return [node_killed]
    return [
        node_killed,
        Drill("line-cut", "as", cut, mend),
        # An answer of the region's two primaries dies whole with the region, and resolvers
        # keep it for the TTL; a third address (the nearest primary elsewhere) is what
        # lets encoders move at once.
        Drill("region-lost", "as", lose_region, regain_region, answers=3),
        Drill("region-lost-two-addresses", "as", lose_region, regain_region, timeout=TTL + 20.0),
        Drill("etcd-member-stopped", "us", stop_member_and_kill, resume_member_and_revive, timeout=25.0),
        Drill("drain-maintenance", "eu", drain_then_stop, undrain, timeout=TTL + 20.0),
        Drill("node-killed-one-address", "eu", kill, revive, timeout=TTL + 20.0, answers=1),
    ]


def table(report):
    lines = []
    for d in report["drills"]:
        flag = "  (did not settle within its timeout)" if d["timed_out"] else ""
        flag += "".join(f"\n  PROBLEM: {p}" for p in d["problems"])
        lines.append(f"\n{d['name']} ({d['failure']}; {d['answers']} addresses per answer, TTL {d['ttl_s']} s):")
        after = "never" if d["all_publishing_s"] is None else f"after {d['all_publishing_s']} s"
        lines.append(f"  every encoder publishing {after}; "
                     f"fence violations {d['fence_violations']}; DNS failures {d['dns_failures']}{flag}")
        lines.append(f"  {'encoder':<8} {'region':<6} {'interrupted s':>13} {'back after s':>12}  node / line")
        for e in d["encoders"]:
            back = "never" if e["back_after_s"] is None else f"{e['back_after_s']:.2f}"
            lines.append(f"  {e['id']:<8} {e['region']:<6} {e['interruption_s']:>13.2f} "
                         f"{back:>12}  {e['node']} / {e['line']}")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description="geosteer's disaster-recovery drill")
    parser.add_argument("--short", action="store_true", help="one drill, two regions (CI)")
    parser.add_argument("--json", help="write the report here as JSON")
    parser.add_argument("--binary", required=True, help="the geosteer binary")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    # Stopped from outside, still remove the namespaces and processes (the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    all_regions = regions(args.short)
    work = tempfile.mkdtemp(prefix="geosteer-drill-")
    lab = Lab(work, args.binary, all_regions)
    started = time.monotonic()
    report = {"drills": []}
    try:
        lab.build()
        lab.write_policy(2)
        for i in (1, 2, 3):
            lab.start_etcd(i)
        for node in lab.nodes:
            lab.start_node(node)
            lab.start_poller(node)
        for i in (1, 2, 3):
            lab.start_geosteer(i)
        lab.until("the fleet answering with every node up", 60, lambda: lab.healthy(2))
        print(f"drill: lab ready in {time.monotonic() - started:.1f} s "
              f"({len(all_regions)} regions, {len(lab.nodes)} ingest nodes, 3 geosteer, 3 etcd)",
              flush=True)
        for drill in drills(args.short):
            answers = drill.answers
            if answers != 2:
                lab.write_policy(answers)
                lab.until("the policy reloaded", 30, lambda: lab.healthy(answers))
            result = run_drill(lab, drill, answers)
            if answers != 2:
                lab.write_policy(2)
                lab.until("the policy restored", 30, lambda: lab.healthy(2))
            result["answers"], result["ttl_s"] = answers, TTL
            report["drills"].append(result)
            print(table({"drills": [result]}), flush=True)
    finally:
        lab.close()
        if not args.keep:
            subprocess.run(["rm", "-rf", work])
        else:
            print(f"drill: work directory kept: {work}")
    report["seconds"] = round(time.monotonic() - started, 1)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    bad = [d["name"] for d in report["drills"]
           if d["fence_violations"] or d["dns_failures"] or d["timed_out"] or d["problems"]]
    print(f"\ndrill: {len(report['drills'])} drills in {report['seconds']} s"
          + (f"; FAILED: {', '.join(bad)}" if bad else "; no fence violation, no DNS failure"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
