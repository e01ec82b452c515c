"""Reflection benchmark: how much geosteer reflects to a forged source over UDP.

1. For the worst queries of the shipped zone, bytes out / bytes in over UDP without a cookie.
2. A single-source flood of one query at a fixed rate (dnsperf -Q), with response-rate
   limiting as shipped: replies a second, and bytes out / bytes in over the flood.

With Knot installed (`knotd`), the flood also runs against Knot serving the same names with
its RRL module at its documented settings (rate-limit 200, slip 2).

Run through benches/reflection.sh (builds the release binary; needs dnsperf).
"""
import os
import re
import socket
import struct
import subprocess
import tempfile
import time

from knot import write_config  # benches/knot.py

REPO = os.environ["BENCH_REPO"]
RATE = int(os.environ.get("FLOOD_RATE", "20000"))
SECONDS = int(os.environ.get("FLOOD_SECONDS", "4"))
ZONE = "live.example.net"


def wire_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def query(name, qtype, subnet=None):
    header = struct.pack(">HHHHHH", 0x4242, 0, 1, 0, 0, 1)
    options = b""
    if subnet:
        octets = bytes(int(x) for x in subnet.split(".")[:3])
        options = struct.pack(">HHHBB", 8, 7, 1, 24, 0) + octets
    opt = b"\0" + struct.pack(">HHIH", 41, 4096, 0, len(options)) + options
    return header + wire_name(name) + struct.pack(">HH", qtype, 1) + opt


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def flood(port, label):
    stream = os.path.join(tempfile.mkdtemp(prefix="geosteer-flood-"), "flood.bin")
    q = query(f"ingest.{ZONE}", 1)
    with open(stream, "wb") as f:
        for _ in range(1000):
            f.write(struct.pack(">H", len(q)) + q)
    out = subprocess.run(
        ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-B", "-d", stream, "-l", str(SECONDS),
         "-Q", str(RATE), "-c", "1", "-q", "50000", "-t", "1"],
        capture_output=True, text=True, timeout=SECONDS + 60).stdout
    get = lambda pattern: float(re.search(pattern, out).group(1))
    sent, completed = get(r"Queries sent:\s+(\d+)"), get(r"Queries completed:\s+(\d+)")
    req, resp = get(r"Average packet size:\s+request (\d+)"), get(r"response (\d+)")
    print(f"  {label:32} sent {sent:6.0f}, replies {completed:6.0f} ({completed / SECONDS:5.0f}/s), "
          f"reply {resp:3.0f} B for {req:3.0f} B, bytes out/in {completed * resp / (sent * req):.2f}")


def knot(port, directory):
    """Knot serving the shipped zone's steered name statically, with RRL at its documented
    settings; None without knotd."""
    if subprocess.run(["sh", "-c", "command -v knotd"], capture_output=True).returncode != 0:
        return None
    conf = write_config(directory, port, ZONE, ["ingest 30 A 198.51.100.32", "ingest 30 A 198.51.100.31"],
                        rrl=(200, 2))
    proc = subprocess.Popen(["knotd", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.2)
    for _ in range(100):
        try:
            s.sendto(query(f"ingest.{ZONE}", 1), ("127.0.0.1", port))
            s.recv(4096)
            return proc
        except OSError:
            time.sleep(0.1)
    proc.terminate()
    return None


def main():
    port = free_port()
    server = subprocess.Popen(
        [os.path.join(REPO, "target/release/geosteer"), "serve", "--listen", f"127.0.0.1:{port}",
         "--no-admin", "--zones", os.path.join(REPO, "zones"),
         "--geo", os.path.join(REPO, "geo/dbip-country.mmdb")],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in server.stdout:
            if line.startswith("geosteer listening on"):
                break
        worst = [
            ("apex ANY", query(ZONE, 255)),
            ("steered ANY, ECS", query(f"ingest.{ZONE}", 255, "85.214.0.0")),
            ("steered A, ECS", query(f"ingest.{ZONE}", 1, "85.214.0.0")),
            ("_explain TXT", query(f"_explain.ingest.{ZONE}", 16, "85.214.0.0")),
            ("apex TXT", query(ZONE, 16)),
            ("apex MX", query(ZONE, 15)),
            ("NXDOMAIN", query(f"nothing.{ZONE}", 1)),
            ("SRV", query(f"_rtmp._tcp.{ZONE}", 33)),
        ]
        print("bytes out / bytes in over UDP, no cookie, EDNS buffer 4096:")
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(2)
        worst_ratio = 0.0
        for name, q in worst:
            s.sendto(q, ("127.0.0.1", port))
            reply = s.recv(65535)
            ratio = len(reply) / len(q)
            worst_ratio = max(worst_ratio, ratio)
            tc = " (TC)" if reply[2] & 0x02 else ""
            print(f"  {name:18} {len(q):4} -> {len(reply):5} bytes  {ratio:5.2f}x{tc}")
            time.sleep(0.05)
        print(f"  worst: {worst_ratio:.2f}x")
        print(f"\nsingle-source flood of one query, {RATE} q/s for {SECONDS} s:")
        flood(port, "geosteer (RRL 100/s per kind, slip 2)")
        knot_port = free_port()
        knotd = knot(knot_port, tempfile.mkdtemp(prefix="geosteer-knot-"))
        if knotd is None:
            print("  knot: not installed (apt-get install knot) or did not start")
        else:
            try:
                flood(knot_port, "Knot (mod-rrl rate-limit 200, slip 2)")
            finally:
                knotd.terminate()
                knotd.wait(timeout=10)
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
