#!/usr/bin/env bash
# Shared by the benchmark scripts: dnsperf from Debian when missing, a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v dnsperf >/dev/null 2>&1; then
  echo "installing dnsperf (needs root) ..." >&2
  apt-get update -qq && apt-get install -y -qq dnsperf >/dev/null
fi
cargo build --release --bins --examples -q
