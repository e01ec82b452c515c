#!/usr/bin/env bash
# Latency benchmark (see README.md here). Sends traffic only to loopback.
# TRIALS=n sets the failover benchmark's trials per failure kind (default 20).
set -euo pipefail
here="$(dirname "$0")"
"$here/prepare.sh"
exec "$here/../target/release/examples/latency_bench"
