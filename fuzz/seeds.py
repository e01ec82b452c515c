"""Writes seed inputs for the fuzz targets into corpus/<target>/ (ordinary queries, policy
files and feed batches), so the fuzzers start from valid inputs instead of from nothing."""
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def name(text):
    out = b""
    for label in text.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def query(qname, qtype, qclass=1, opcode=0, ecs=None, edns=True, qid=0x1234):
    flags = (opcode << 11) | 0x0100
    packet = struct.pack(">HHHHHH", qid, flags, 1, 0, 0, 1 if edns else 0)
    packet += name(qname) + struct.pack(">HH", qtype, qclass)
    if edns:
        options = b""
        if ecs:
            family, source, address = ecs
            options += struct.pack(">HHHBB", 8, 4 + len(address), family, source, 0) + address
        packet += b"\0" + struct.pack(">HHIH", 41, 1232, 0, len(options)) + options
    return packet


def write(target, items):
    folder = os.path.join(HERE, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    for i, data in enumerate(items):
        with open(os.path.join(folder, f"seed-{i:03}"), "wb") as f:
            f.write(data)


packets = [
    query("ingest.test.example.", 1, ecs=(1, 24, bytes([127, 1, 0]))),
    query("ingest.test.example.", 28, ecs=(2, 48, bytes([0x20, 0x01, 0x0d, 0xb8, 0, 5]))),
    query("ingest.test.example.", 1, edns=False),
    query("INGEST.Test.Example.", 255),
    query("www.test.example.", 1),
    query("_explain.ingest.test.example.", 16, ecs=(1, 24, bytes([127, 3, 0]))),
    query("id.server.", 16, qclass=3),
    query("a.sub.test.example.", 1),
    query("nothing.test.example.", 15),
    query("example.org.", 1),
    query("ingest.test.example.", 1, opcode=4),
    query("test.example.", 252),
]
write("packet", packets)
write("packet_general", packets)
with open(os.path.join(HERE, "../tests/fixtures/zones/test.example.yaml"), "rb") as f:
    policy = f.read()
write("policy_yaml", [policy, policy[:2000]])
write("feed_json", [
    b'{"zone": "test.example", "measurements": [{"group": "AS-JP", "node": "tokyo", "rtt_ms": 12, "loss": 0.01}], "loads": [{"node": "tokyo", "load": 0.5}]}',
    b'{"measurements": [{"group": "127.1.0.0/24", "node": "singapore", "rtt_ms": 30, "at": 1799999990}]}',
    b'{"measurements": [{"group": "AS4713", "node": "tokyo", "rtt_ms": 10, "address": "192.0.2.1"}]}',
])
write("admin_request", [
    b"\x80nodes\nBearer s3cret\n",
    b"\xc1latency\nBearer s3cret\n{\"measurements\": []}",
    b"\x81nodes/test.example/tokyo/drain\nbearer s3cret\n",
    b"\x80explain?name=ingest.test.example&client=127.1.0.5\nBearer s3cret\n",
    b"\x00healthz\n\n",
    b"\x80metrics\nBearer wrong\n",
])
print("seeds written", file=sys.stderr)
