#!/usr/bin/env python3
"""Load benchmark: geosteer against gdnsd (geoip plugin, city auto mode), Knot (static) and a
trivial canned-answer responder (the machine's ceiling), on one GeoIP2 City database and one
set of query streams, all on loopback. Run through benches/load.sh, which prepares the
inputs; see benches/README.md.

Prints a table: saturating queries/s (median, min, max over REPS runs), lost queries, server
CPU microseconds per query at a fixed 40,000 queries/s (from the server's own scheduler
accounting; "+client" adds dnsperf's CPU per query in the same run, since on loopback the
sender's kernel delivers each segment to its receiver and so a server whose answers wait for
the client's next segment has their delivery charged to the client), latency p50/p99/p99.9 at a fixed 20,000 queries/s, peak RSS; then the ratios
geosteer/gdnsd, geosteer/Knot and geosteer/ceiling, and a correctness check of geosteer's (and
gdnsd's) answers against the nearest node computed here from the database's coordinates.
"""

import math
import os
import random
import re
import resource
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

import knot  # benches/knot.py: a private Knot instance

WORK = os.environ["BENCH_WORK"]
REPO = os.environ["BENCH_REPO"]
CITY_DB = os.path.join(WORK, "city.mmdb")
SUBNETS = os.path.join(WORK, "subnets.txt")
REPS = int(os.environ.get("REPS", "3"))
SECONDS = int(os.environ.get("SECONDS_PER_RUN", "4"))
# For quick looks while profiling: ONLY=geosteer,gdnsd STREAMS=ecs (the table needs all).
ONLY = [n for n in os.environ.get("ONLY", "").split(",") if n]
# A/B of two builds in one run: BASELINE=/path/to/an/other/geosteer adds it as server
# "baseline", given the same zone and database, and prints geosteer / baseline ratios.
BASELINE = os.environ.get("BASELINE")
# Extra arguments: dnsperf saturates from one address, which response-rate limiting (on by
# default) would throttle, so geosteer runs without it unless GEOSTEER_ARGS says otherwise;
# e.g. GEOSTEER_ARGS="--rrl-source-rate 1000000" measures its cost without limiting.
GEOSTEER_ARGS = os.environ.get("GEOSTEER_ARGS", "--rrl-rate 0").split()
BASELINE_ARGS = os.environ.get("BASELINE_ARGS", "").split()
# COOKIES=1: geosteer and the baseline share a cookie secret, and a stream "ecs-cookie" (the
# ECS stream, each query with a valid client and server cookie for 127.0.0.1) is added, so
# the cost of checking and answering cookies is measured.
COOKIES = os.environ.get("COOKIES") == "1"
# DNSSEC=1 (implies COOKIES=1): the zone is signed (keys made with geosteer dnssec keygen),
# and a stream "ecs-do" is added: the ecs-cookie stream with the DO bit, so the cost of
# sending signed answers is measured against the same queries without DO. Cookies, because
# without a valid one a DO answer is more than three times its query and is truncated.
DNSSEC = os.environ.get("DNSSEC") == "1"
COOKIES = COOKIES or DNSSEC
# MODE=tcp: every dnsperf run over TCP (dnsperf -m tcp) instead of UDP.
MODE = os.environ.get("MODE", "udp")
# CLIENTS: dnsperf's clients (sockets; over TCP, connections), default 4.
CLIENTS = int(os.environ.get("CLIENTS", "4"))
STREAMS = [n for n in os.environ.get("STREAMS", "").split(",") if n]
CPU_RATE = 40_000
LATENCY_RATE = 20_000
ZONE = "bench.example"

# The example zone's primary PoPs (zones/live.example.net.yaml): name, geo, lat, lon, address.
NODES = [
    ("us-west-1", "NA-US", 37.34, -121.89, "198.51.100.11"),
    ("us-east-1", "NA-US", 39.04, -77.49, "198.51.100.12"),
    ("sao-paulo-1", "SA-BR", -23.55, -46.63, "198.51.100.21"),
    ("london-1", "EU-GB", 51.51, -0.13, "198.51.100.31"),
    ("frankfurt-1", "EU-DE", 50.11, 8.68, "198.51.100.32"),
    ("dubai-1", "AS-AE", 25.20, 55.27, "198.51.100.41"),
    ("riyadh-1", "AS-SA", 24.71, 46.68, "198.51.100.42"),
    ("johannesburg-1", "AF-ZA", -26.20, 28.05, "198.51.100.51"),
    ("mumbai-1", "AS-IN", 19.08, 72.88, "198.51.100.61"),
    ("singapore-1", "AS-SG", 1.35, 103.82, "198.51.100.71"),
    ("bangkok-1", "AS-TH", 13.76, 100.50, "198.51.100.73"),
    ("tokyo-1", "AS-JP", 35.68, 139.69, "198.51.100.81"),
]
STATIC_ADDRESS = "192.0.2.80"


def log(message):
    print(message, file=sys.stderr, flush=True)


def free_port():
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        port = u.getsockname()[1]
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            t.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            u.close()
            t.close()
    raise RuntimeError("no free port")


# --- configurations, all from NODES -------------------------------------------------------

def geosteer_config(directory):
    zones = os.path.join(directory, "zones")
    os.makedirs(zones)
    lines = [
        f"zone: {ZONE}",
        "ttl: 300",
        f"soa: {{primary: ns1.{ZONE}., contact: h.{ZONE}., serial: 1, minimum: 60}}",
        f"ns: [ns1.{ZONE}.]",
        "records:",
        "  ns1: {type: A, value: 192.0.2.53}",
        f"  www: {{type: A, value: {STATIC_ADDRESS}}}",
        "check: {type: none}",
        "nodes:",
    ]
    for name, geo, lat, lon, ip in NODES:
        lines.append(f"  {name}: {{geo: {geo}, location: [{lat}, {lon}], addresses: [{ip}]}}")
    lines += ["steer:", "  ingest: {ttl: 30, answers: 1}"]
    if DNSSEC:
        lines.append("dnssec: {keys: keys}")
        subprocess.run([os.path.join(REPO, "target/release/geosteer"), "dnssec", "keygen", "--zone", ZONE,
                        "--dir", os.path.join(zones, "keys")], check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(zones, f"{ZONE}.yaml"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return zones


def gdnsd_config(directory, port):
    for sub in ("zones", "geoip", "run", "state"):
        os.makedirs(os.path.join(directory, sub))
    os.symlink(CITY_DB, os.path.join(directory, "geoip", "city.mmdb"))
    dcs = ", ".join(f"n{i}" for i in range(len(NODES)))
    coords = "\n".join(f"          n{i} => [ {n[2]}, {n[3]} ]" for i, n in enumerate(NODES))
    dcmap = "\n".join(f"          n{i} => {n[4]}" for i, n in enumerate(NODES))
    with open(os.path.join(directory, "config"), "w") as f:
        f.write(f"""options => {{
  listen => [ 127.0.0.1:{port} ]
  run_dir => {directory}/run
  state_dir => {directory}/state
  udp_threads => 2
  tcp_threads => 1
}}
plugins => {{ geoip => {{
  maps => {{
    bench => {{
      geoip2_db => city.mmdb
      datacenters => [ {dcs} ]
      auto_dc_coords => {{
{coords}
      }}
    }}
  }}
  resources => {{
    ingest => {{
      map => bench
      dcmap => {{
{dcmap}
      }}
    }}
  }}
}}}}
""")
    with open(os.path.join(directory, "zones", ZONE), "w") as f:
        f.write(f"""@ 300 SOA ns1 h 1 3600 600 1209600 60
@ 300 NS ns1
ns1 300 A 192.0.2.53
www 300 A {STATIC_ADDRESS}
ingest 30 DYNA geoip!ingest
""")


def knot_config(directory, port):
    knot.write_config(directory, port, ZONE, [f"www 300 A {STATIC_ADDRESS}", f"ingest 30 A {NODES[0][4]}"])


# --- servers ---------------------------------------------------------------------------

class Server:
    def __init__(self, name, argv, port, ready, cwd=None):
        self.name, self.port = name, port
        self.out = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(argv, stdout=self.out, stderr=subprocess.STDOUT, cwd=cwd)
        deadline = time.time() + 120
        while not ready(self):
            if self.proc.poll() is not None or time.time() > deadline:
                self.out.seek(0)
                raise RuntimeError(f"{name} did not start:\n{self.out.read().decode(errors='replace')[-3000:]}")
            time.sleep(0.1)

    def cpu_ns(self):
        """Time on CPU of every thread of the process, in nanoseconds (schedstat)."""
        total = 0
        for task in os.listdir(f"/proc/{self.proc.pid}/task"):
            try:
                with open(f"/proc/{self.proc.pid}/task/{task}/schedstat") as f:
                    total += int(f.read().split()[0])
            except OSError:
                pass
        return total

    def socket_drops(self):
        """Datagrams dropped by the server's own UDP sockets (the last column of
        /proc/net/udp and udp6, for sockets bound to its port): what of dnsperf's lost
        queries the server lost, as against dnsperf's own receive buffers."""
        total = 0
        for table in ("/proc/net/udp", "/proc/net/udp6"):
            try:
                with open(table) as f:
                    next(f)
                    for line in f:
                        fields = line.split()
                        if int(fields[1].rsplit(":", 1)[1], 16) == self.port:
                            total += int(fields[-1])
            except (OSError, ValueError, IndexError, StopIteration):
                pass
        return total

    def peak_rss_mib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def answers(port, name="www", timeout=0.2):
    try:
        return query(port, name, None, timeout) is not None
    except OSError:
        return False


# --- DNS queries -----------------------------------------------------------------------

def wire_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def query_bytes(name, subnet=None, qid=0, cookie=b"", dnssec_ok=False):
    """A query for name/A, RD clear, EDNS (1232, DO when `dnssec_ok`) with an optional ECS
    /24 option and an optional COOKIE option (its bytes)."""
    header = struct.pack(">HHHHHH", qid, 0, 1, 0, 0, 1)
    question = wire_name(f"{name}.{ZONE}") + struct.pack(">HH", 1, 1)
    options = b""
    if subnet is not None:
        octets = bytes(int(x) for x in subnet.split("/")[0].split(".")[:3])
        options = struct.pack(">HHHBB", 8, 4 + 3, 1, 24, 0) + octets
    if cookie:
        options += struct.pack(">HH", 10, len(cookie)) + cookie
    opt = b"\0" + struct.pack(">HHIH", 41, 1232, 0x8000 if dnssec_ok else 0, len(options)) + options
    return header + question + opt


def server_cookie(port):
    """A valid client + server cookie for 127.0.0.1 from the server on `port`."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2.0)
    s.bind(("127.0.0.1", 0))
    s.sendto(query_bytes("www", cookie=b"\x11" * 8), ("127.0.0.1", port))
    data = s.recv(4096)
    s.close()
    at = data.find(b"\x00\x0a\x00\x18")
    if at < 0:
        raise RuntimeError("no COOKIE option in the reply")
    return data[at + 4:at + 28]


def query(port, name, subnet, timeout=1.0):
    """The first A address of the answer, or None."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        qid = random.randrange(65536)
        s.sendto(query_bytes(name, subnet, qid), ("127.0.0.1", port))
        data = s.recv(4096)
    except OSError:
        return None
    finally:
        s.close()
    if len(data) < 12 or struct.unpack(">H", data[:2])[0] != qid:
        return None
    ancount = struct.unpack(">H", data[6:8])[0]
    at = 12
    while data[at] != 0:
        at += 1 + data[at]
    at += 5
    for _ in range(ancount):
        if data[at] & 0xC0 == 0xC0:
            at += 2
        else:
            while data[at] != 0:
                at += 1 + data[at]
            at += 1
        rtype, _, _, rdlen = struct.unpack(">HHIH", data[at:at + 10])
        at += 10
        if rtype == 1 and rdlen == 4:
            return socket.inet_ntoa(data[at:at + 4])
        at += rdlen
    return None


def write_stream(path, queries):
    """dnsperf's binary input (-B): each query as a two-byte length and its wire bytes."""
    with open(path, "wb") as f:
        for q in queries:
            f.write(struct.pack(">H", len(q)) + q)


# --- dnsperf ---------------------------------------------------------------------------

def dnsperf(port, stream, seconds, rate=None, verbose=False):
    # -b: dnsperf's own socket buffers at 4 MiB (the kernel caps them at rmem_max), so that
    # servers that send replies in batches do not overflow its receive buffers, and what is
    # lost is lost by the server.
    argv = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-B", "-d", stream,
            "-l", str(seconds), "-c", str(CLIENTS), "-q", "500", "-t", "2", "-b", "4096"]
    if MODE != "udp":
        argv += ["-m", MODE]
    if rate:
        argv += ["-Q", str(rate)]
    if verbose:
        argv += ["-v"]
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    stats = {"client_cpu_s": (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)}
    for key, pattern in [("sent", r"Queries sent:\s+(\d+)"), ("completed", r"Queries completed:\s+(\d+)"),
                         ("lost", r"Queries lost:\s+(\d+)"), ("qps", r"Queries per second:\s+([\d.]+)")]:
        m = re.search(pattern, out)
        stats[key] = float(m.group(1)) if m else float("nan")
    if verbose:
        stats["latencies"] = [float(l.rsplit(None, 1)[1]) for l in out.splitlines()
                              if l.startswith("> ") and l.rsplit(None, 1)[1][0].isdigit()]
    return stats


def percentile(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(math.ceil(p / 100 * len(values))) - 1)]


# --- correctness -----------------------------------------------------------------------

def great_circle_km(lat1, lon1, lat2, lon2):
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0088 * math.asin(min(1.0, math.sqrt(a)))


def check_nearest(port, sample):
    """Answers that are not the nearest node to the subnet's database coordinates (ignoring
    near-ties within 1 km), and lost queries."""
    wrong, lost, examples = 0, 0, []
    by_ip = {n[4]: n for n in NODES}
    for subnet, lat, lon in sample:
        got = query(port, "ingest", subnet)
        if got is None:
            lost += 1
            continue
        distances = sorted((great_circle_km(lat, lon, n[2], n[3]), n[4]) for n in NODES)
        if got != distances[0][1]:
            mine = great_circle_km(lat, lon, by_ip[got][2], by_ip[got][3]) if got in by_ip else math.inf
            if mine - distances[0][0] > 1.0:
                wrong += 1
                if len(examples) < 3:
                    examples.append(f"{subnet} ({lat:.2f},{lon:.2f}): got {got}, nearest {distances[0][1]}")
    return wrong, lost, examples


# --- main ------------------------------------------------------------------------------

def main():
    random.seed(7)
    with open(SUBNETS) as f:
        rows = [line.split() for line in f if line.strip()]
    subnets = [(r[0], float(r[2]), float(r[3])) for r in rows]
    countries = len({r[1] for r in rows})
    random.shuffle(subnets)
    streams = {
        "ecs": os.path.join(WORK, "stream-ecs.bin"),
        "no-ecs": os.path.join(WORK, "stream-noecs.bin"),
        "static": os.path.join(WORK, "stream-static.bin"),
    }
    write_stream(streams["ecs"], [query_bytes("ingest", s[0]) for s in subnets])
    write_stream(streams["no-ecs"], [query_bytes("ingest")] * 1000)
    write_stream(streams["static"], [query_bytes("www")] * 1000)
    if STREAMS:
        streams = {k: v for k, v in streams.items() if k in STREAMS}
    log(f"streams: {len(subnets)} ECS /24s from {countries} countries; no-ECS; static")

    work = tempfile.mkdtemp(prefix="geosteer-load-")
    if COOKIES:
        secret = os.path.join(work, "cookie.secret")
        with open(secret, "w") as f:
            f.write("00112233445566778899aabbccddeeff\n")
        GEOSTEER_ARGS.extend(["--cookie-secret-file", secret])
        BASELINE_ARGS.extend(["--cookie-secret-file", secret])
    servers = {}
    try:
        port = free_port()
        servers["ceiling"] = Server("ceiling", [os.path.join(REPO, "target/release/examples/ceiling_responder"),
                                                f"127.0.0.1:{port}", "2"], port, lambda s: answers(s.port))
        port = free_port()
        zones = geosteer_config(os.path.join(work, "geosteer"))
        servers["geosteer"] = Server("geosteer", [os.path.join(REPO, "target/release/geosteer"), "serve",
                                                  "--listen", f"127.0.0.1:{port}", "--no-admin",
                                                  "--zones", zones, "--geo", CITY_DB] + GEOSTEER_ARGS, port,
                                     lambda s: answers(s.port))
        if BASELINE:
            port = free_port()
            servers["baseline"] = Server("baseline", [BASELINE, "serve", "--listen", f"127.0.0.1:{port}",
                                                      "--no-admin", "--zones", zones, "--geo", CITY_DB]
                                         + BASELINE_ARGS, port,
                                         lambda s: answers(s.port))
        if not ONLY or "gdnsd" in ONLY:
            port = free_port()
            gdnsd_dir = os.path.join(work, "gdnsd")
            gdnsd_config(gdnsd_dir, port)
            servers["gdnsd"] = Server("gdnsd", ["gdnsd", "-c", gdnsd_dir, "start"], port,
                                      lambda s: answers(s.port))
        if not ONLY or "knot" in ONLY:
            port = free_port()
            knot_dir = os.path.join(work, "knot")
            knot_config(knot_dir, port)
            servers["knot"] = Server("knot", ["knotd", "-c", os.path.join(knot_dir, "knot.conf")], port,
                                     lambda s: answers(s.port))
        log("servers up: " + ", ".join(f"{n}:{s.port}" for n, s in servers.items()))
        if COOKIES:
            cookie = server_cookie(servers["geosteer"].port)
            streams["ecs-cookie"] = os.path.join(WORK, "stream-ecs-cookie.bin")
            write_stream(streams["ecs-cookie"], [query_bytes("ingest", s[0], cookie=cookie) for s in subnets])
        if DNSSEC:
            streams["ecs-do"] = os.path.join(WORK, "stream-ecs-do.bin")
            write_stream(streams["ecs-do"], [query_bytes("ingest", s[0], cookie=cookie, dnssec_ok=True)
                                             for s in subnets])

        # Correctness first (also warms every server).
        sample = subnets[:2000]
        correctness = {name: check_nearest(servers[name].port, sample)
                       for name in ("geosteer", "baseline", "gdnsd") if name in servers}

        results = {(n, st): {"qps": [], "lost": 0, "drops": 0, "cpu": [], "client": [], "lat": []}
                   for n in servers for st in streams}
        order = [n for n in servers if not ONLY or n in ONLY]
        for rep in range(REPS):
            order = order[1:] + order[:1]  # A/B interleaving: a different server first each round
            for stream_name, stream in streams.items():
                for name in order:
                    server, r = servers[name], results[(name, stream_name)]
                    drops_before = server.socket_drops()
                    sat = dnsperf(server.port, stream, SECONDS)
                    r["qps"].append(sat["qps"])
                    r["lost"] += int(sat["lost"])
                    before = server.cpu_ns()
                    fixed = dnsperf(server.port, stream, SECONDS, rate=CPU_RATE)
                    used = server.cpu_ns() - before
                    if fixed["completed"] > 0:
                        r["cpu"].append(used / 1000 / fixed["completed"])
                        r["client"].append(fixed["client_cpu_s"] * 1e6 / fixed["completed"])
                    r["lost"] += int(fixed["lost"])
                    lat = dnsperf(server.port, stream, SECONDS, rate=LATENCY_RATE, verbose=True)
                    r["lat"] += lat["latencies"]
                    r["lost"] += int(lat["lost"])
                    r["drops"] += server.socket_drops() - drops_before
                    log(f"rep {rep + 1}/{REPS} {stream_name:7} {name:9} {sat['qps']:9.0f} q/s  "
                        f"{r['cpu'][-1] if r['cpu'] else float('nan'):5.2f} us/q  lost {r['lost']} "
                        f"(server sockets dropped {r['drops']})")
        rss = {n: s.peak_rss_mib() for n, s in servers.items()}
    finally:
        for s in servers.values():
            s.stop()

    def cell(name, stream):
        r = results[(name, stream)]
        q = r["qps"]
        lat_us = [x * 1e6 for x in r["lat"]]
        return {
            "med": statistics.median(q), "min": min(q), "max": max(q), "lost": r["lost"], "drops": r["drops"],
            "cpu": statistics.median(r["cpu"]) if r["cpu"] else float("nan"),
            "client": statistics.median(r["client"]) if r["client"] else float("nan"),
            "p50": percentile(lat_us, 50), "p99": percentile(lat_us, 99), "p999": percentile(lat_us, 99.9),
        }

    db_mib = os.path.getsize(CITY_DB) / 2**20
    print(f"\nload benchmark: {len(subnets)} ECS /24s from {countries} countries; {REPS} runs of {SECONDS} s each; "
          f"database {db_mib:.0f} MiB (DB-IP City Lite, GeoIP2 schema, IPv4+IPv6); dnsperf -c {CLIENTS} -q 500 -b 4096")
    print("(lost: queries dnsperf got no reply to; drops: of those, datagrams the server's own sockets "
          "dropped; the rest were dropped at dnsperf's)")
    print(f"{'stream':8} {'server':9} {'sat q/s med':>12} {'min':>9} {'max':>9} {'lost':>6} {'drops':>6} "
          f"{'CPU us/q@40k':>13} {'+client':>8} {'p50 us@20k':>11} {'p99':>7} {'p99.9':>7} {'peak RSS MiB':>13}")
    cells = {}
    for stream in streams:
        for name in order:
            c = cells[(name, stream)] = cell(name, stream)
            print(f"{stream:8} {name:9} {c['med']:12.0f} {c['min']:9.0f} {c['max']:9.0f} {c['lost']:6d} {c['drops']:6d} "
                  f"{c['cpu']:13.2f} {c['cpu'] + c['client']:8.2f} {c['p50']:11.0f} {c['p99']:7.0f} {c['p999']:7.0f} {rss[name]:13.0f}")
    if "baseline" in order:
        print("\nratios (geosteer / baseline):  sat q/s   CPU/q   p99")
        for stream in streams:
            g, b = cells[("geosteer", stream)], cells[("baseline", stream)]
            print(f"  {stream:8}                      {g['med'] / b['med']:6.2f}  {g['cpu'] / b['cpu']:6.2f}  "
                  f"{g['p99'] / b['p99']:5.2f}")
    if DNSSEC:
        g, d = cells[("geosteer", "ecs-cookie")], cells[("geosteer", "ecs-do")]
        print(f"\nsigned zone, geosteer: ECS with DO / without (same queries, valid cookies): "
              f"CPU/q {d['cpu'] / g['cpu']:.2f}, sat q/s {d['med'] / g['med']:.2f}, p99 {d['p99'] / g['p99']:.2f}")
    if ONLY or STREAMS:
        return
    print("\nratios (geosteer / other):  sat q/s   CPU/q   p99")
    for stream in streams:
        g = cells[("geosteer", stream)]
        for other in ("gdnsd", "knot", "ceiling"):
            o = cells[(other, stream)]
            print(f"  {stream:8} / {other:8}        {g['med'] / o['med']:6.2f}  {g['cpu'] / o['cpu']:6.2f}  "
                  f"{g['p99'] / o['p99']:5.2f}")
    print(f"\npeak RSS geosteer {rss['geosteer']:.0f} MiB; target database + 64 MiB = {db_mib + 64:.0f} MiB")
    print(f"\ncorrectness ({len(sample)} ECS subnets, nearest node from the database's coordinates):")
    for name, (wrong, lost, examples) in correctness.items():
        print(f"  {name:9} wrong {wrong}, unanswered {lost}" + "".join(f"\n    {e}" for e in examples))


if __name__ == "__main__":
    main()
