#!/usr/bin/env bash
# Spreading benchmark, one command: CPU per query of a spread name against the same name
# unspread (same build, one run), and the publish time of load changes at 200 nodes.
# Installs dnsperf from Debian if missing. REPS (default 5), SECONDS_PER_RUN (default 4);
# PART=cpu or PART=publish runs one part.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v dnsperf >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends dnsperf >/dev/null
fi
cargo build --release -q
BENCH_REPO="$PWD" python3 benches/spread.py
