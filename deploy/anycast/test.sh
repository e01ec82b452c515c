#!/usr/bin/env bash
# End-to-end check of the anycast example with the real BIRD (run by deploy/verify.sh):
# BIRD runs bird.conf (logging to stderr, its own control socket), geosteer-anycast watches a
# real geosteer, and the service route must appear in BIRD's table once geosteer is ready and
# disappear once geosteer is killed. Every wait is a bounded poll.
set -euo pipefail
cd "$(dirname "$0")/../.."
binary=${GEOSTEER:-$PWD/target/debug/geosteer}
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

sed 's/^log syslog all;/log stderr all;/' deploy/anycast/bird.conf > "$work/bird.conf"
bird -f -c "$work/bird.conf" -s "$work/bird.ctl" -P "$work/bird.pid" 2>"$work/bird.log" &
pids+=($!)
birdc="birdc -s $work/bird.ctl"

source deploy/anycast/lib.sh  # the working directory is the repository
announced() { $birdc show route 192.0.2.53/32 | grep -q blackhole; }
withdrawn() { ! announced; }
until_ok "BIRD's control socket" 10 $birdc show status

# geosteer on loopback with a fixed admin port the watcher polls.
admin_port=$((20000 + RANDOM % 20000))
mkdir -p "$work/zones"
cat > "$work/zones/zone.yaml" <<'YAML'
zone: any.example
soa: {primary: ns1.any.example., contact: h.any.example.}
ns: [ns1.any.example.]
records:
  ns1: {type: A, value: 192.0.2.53}
YAML

INTERVAL=0.2 RISE=2 FALL=2 BIRDC="$birdc" READYZ="http://127.0.0.1:$admin_port/readyz" MAX_ROUNDS=600 \
  deploy/anycast/geosteer-anycast 2>"$work/watcher.log" &
pids+=($!)
# The watcher's first act is to withdraw; with geosteer not running it must stay withdrawn.
until_ok "the watcher's initial withdrawal" 10 grep -q "routes disabled" "$work/watcher.log"
withdrawn || { echo "anycast test: announced before geosteer runs" >&2; exit 1; }

"$binary" serve --listen 127.0.0.1:0 --admin "127.0.0.1:$admin_port" --zones "$work/zones" \
  --geo geo/dbip-country.mmdb >"$work/geosteer.out" 2>&1 &
geosteer=$!
pids+=($geosteer)
until_ok "the route announced once geosteer is ready" 20 announced
kill "$geosteer"
until_ok "the route withdrawn once geosteer is gone" 20 withdrawn
echo "deploy/anycast: announced while ready, withdrawn when geosteer stopped: OK"
