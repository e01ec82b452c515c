#!/usr/bin/env bash
# Scale benchmark, one command: peak memory and start-up of the real server with 1, 50 and
# 500 differently steered names on the load benchmark's city database (prepared once by
# benches/support/city_db.sh). NAMES=1,50 limits it.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
. benches/support/city_db.sh
cargo build --release -q
BENCH_WORK="$data" BENCH_REPO="$repo" python3 benches/scale.py
