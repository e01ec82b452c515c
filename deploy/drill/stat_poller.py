#!/usr/bin/env python3
"""Ingest-side clock of the disaster-recovery drill: polls one nginx-rtmp server's /stat
every 0.1 s (inside the node's namespace, started by drill.py) and writes a JSON line
{"t": monotonic seconds, "bytes": {stream: bytes_in}} whenever a stream's bytes grew or a
stream came or went: "last frame received" and "first frame received" are read from these
lines. A server that is down is polled on (it may come back). Ends on SIGTERM.
"""

import json
import re
import signal
import sys
import time
import urllib.request

INTERVAL = 0.1
STREAM = re.compile(r"<stream>\s*<name>([^<]*)</name>.*?<bytes_in>(\d+)</bytes_in>", re.S)


def main():
    url, path = sys.argv[1], sys.argv[2]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    last = None
    with open(path, "a", buffering=1) as out:
        while True:
            started = time.monotonic()
            try:
                with urllib.request.urlopen(url, timeout=0.5) as response:
                    text = response.read().decode("utf-8", "replace")
                streams = {name: int(n) for name, n in STREAM.findall(text)}
            except OSError:
                streams = {}
            if streams != last:
                out.write(json.dumps({"t": round(started, 3), "bytes": streams}) + "\n")
                last = streams
            time.sleep(max(0.0, INTERVAL - (time.monotonic() - started)))


if __name__ == "__main__":
    main()
