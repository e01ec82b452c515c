#!/usr/bin/env python3
"""Encoder supervisor of the disaster-recovery drill: keeps one region's ffmpeg encoders
publishing to rtmp://NAME/live/KEY the way broadcast encoders retry. Runs inside the
region's client namespace (started by drill.py); one thread per encoder.

Retry policy (what the drill's figures assume):
  1. Resolve NAME through the region's resolver; keep the answer's addresses in order.
  2. Publish to the first address. A stream that ends (ffmpeg exits: refused, reset) or
     stalls (data outstanding and nothing acknowledged for STALL seconds, read from the
     kernel's TCP state with `ss`, as an encoder's send-buffer watchdog would) is abandoned,
     and the NEXT address of the same answer is tried at once.
  3. A connection not publishing within CONNECT seconds counts as failed the same way.
  4. When every address of the answer has failed, resolve again, after 0.5 s doubling to
     2 s while resolution or every address keeps failing (reset once a stream publishes).

Writes one JSON object per line to --log: {"t": monotonic seconds, "encoder": ID,
"event": ..., ...}; CLOCK_MONOTONIC is one clock for every namespace, so drill.py lines
these up with the ingest servers' statistics. Ends on SIGTERM (its encoders with it).
"""

import argparse
import json
import re
import signal
import subprocess
import sys
import threading
import time

STALL = 1.0
CONNECT = 2.0
POLL = 0.1


class Log:
    def __init__(self, path):
        self.file = open(path, "a", buffering=1)
        self.lock = threading.Lock()

    def write(self, encoder, event, **fields):
        record = {"t": round(time.monotonic(), 3), "encoder": encoder, "event": event}
        record.update(fields)
        with self.lock:
            self.file.write(json.dumps(record) + "\n")


def resolve(resolver, name):
    """The answer's IPv4 addresses in order, or (None, why) when resolution failed."""
    try:
        out = subprocess.run(
            ["dig", f"@{resolver}", name, "A", "+tries=1", "+time=2", "+noall", "+comments", "+answer"],
            capture_output=True, text=True, timeout=5,
        ).stdout
    except subprocess.TimeoutExpired:
        return None, "dig hung"
    status = re.search(r"status: (\w+)", out)
    if not status:
        return None, "timeout"
    if status.group(1) != "NOERROR":
        return None, status.group(1)
    addresses = re.findall(r"\sIN\s+A\s+(\d+\.\d+\.\d+\.\d+)", out)
    return (addresses, "ok") if addresses else (None, "NODATA")


def tcp_state(pid, address):
    """(state, lastack_ms, unacked) of process `pid`'s connection to address:1935, or None."""
    out = subprocess.run(
        ["ss", "-tinpH", "state", "all", "dst", address],
        capture_output=True, text=True,
    ).stdout
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if f"pid={pid}," not in line or ":1935" not in line:
            continue
        info = lines[i + 1] if i + 1 < len(lines) else ""
        lastack = re.search(r"lastack:(\d+)", info)
        unacked = re.search(r"unacked:(\d+)", info)
        acked = re.search(r"bytes_acked:(\d+)", info)
        return (
            line.split()[0],
            int(lastack.group(1)) if lastack else None,
            int(unacked.group(1)) if unacked else 0,
            int(acked.group(1)) if acked else 0,
        )
    return None


class Encoder(threading.Thread):
    def __init__(self, ident, args, log, stop):
        super().__init__(daemon=True)
        self.key, self.args, self.log, self.stop = ident, args, log, stop
        self.process = None

    def run(self):
        backoff = 0.5
        while not self.stop.is_set():
            answer, why = resolve(self.args.resolver, self.args.name)
            self.log.write(self.key, "resolved" if answer else "resolve_failed",
                           answer=answer or [], why=why)
            published = False
            for address in answer or []:
                if self.stop.is_set():
                    return
                published |= self.publish(address)
            if published:
                backoff = 0.5
                continue
            self.stop.wait(backoff)
            backoff = min(backoff * 2, 2.0)

    def publish(self, address):
        """Publishes to `address` until the stream ends or stalls; True if it published."""
        url = f"rtmp://{address}/live/{self.key}"
        self.process = subprocess.Popen(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re",
             "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
             "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
             "-g", "25", "-b:v", "300k", "-f", "flv", url],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        started = time.monotonic()
        self.log.write(self.key, "connecting", address=address)
        publishing, last_acked, why = False, 0, "exited"
        while not self.stop.wait(POLL):
            if self.process.poll() is not None:
                why = f"exited {self.process.returncode}"
                break
            state = tcp_state(self.process.pid, address)
            now = time.monotonic()
            if state and state[0] == "ESTAB" and state[3] > last_acked:
                last_acked = state[3]
                if not publishing and last_acked > 4096:
                    publishing = True
                    self.log.write(self.key, "publishing", address=address)
            if not publishing and now - started > CONNECT:
                why = "not publishing"
                break
            if publishing and state and state[1] is not None and state[1] > STALL * 1000 and state[2] > 0:
                why = "stalled"
                break
        self.end()
        self.log.write(self.key, "ended", address=address, why=why, published=publishing)
        return publishing

    def end(self):
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--resolver", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("encoders", nargs="+")
    args = parser.parse_args()
    log, stop = Log(args.log), threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    encoders = [Encoder(ident, args, log, stop) for ident in args.encoders]
    for encoder in encoders:
        encoder.start()
    while not stop.wait(0.2):
        pass
    for encoder in encoders:
        encoder.join(timeout=3)
        encoder.end()
    return 0


if __name__ == "__main__":
    sys.exit(main())
