#!/usr/bin/env bash
# Failover and swap-cost benchmark (see README.md here). Sends traffic only to loopback.
# Usage: tests/bench/failover.sh            (20 trials of each failure kind)
#        TRIALS=5 tests/bench/failover.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v dnsperf >/dev/null 2>&1; then
  echo "installing dnsperf (needs root) ..." >&2
  apt-get update -qq && apt-get install -y -qq dnsperf >/dev/null
fi
cargo build --release --bins --examples -q
exec target/release/examples/failover_bench
