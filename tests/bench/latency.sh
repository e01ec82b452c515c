#!/usr/bin/env bash
# Latency scoring benchmark (see README.md here). Sends traffic only to loopback.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v dnsperf >/dev/null 2>&1; then
  echo "installing dnsperf (needs root) ..." >&2
  apt-get update -qq && apt-get install -y -qq dnsperf >/dev/null
fi
cargo build --release --bins --examples -q
exec target/release/examples/latency_bench
