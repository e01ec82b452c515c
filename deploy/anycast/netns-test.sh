#!/usr/bin/env bash
# Anycast failover end to end, with real hosts: network namespaces with their own addresses.
#
#   client (10.0.3.2) --- router (BIRD, AS 64511) ---+--- host1 (BIRD, geosteer) 192.0.2.53
#                                                    +--- host2 (BIRD, geosteer) 192.0.2.53
#
# Each host announces the service address 192.0.2.53/32 over BGP with BFD while its geosteer's
# /readyz is healthy (deploy/anycast/geosteer-anycast). The client sends a query every 20 ms
# and counts the ones that get no answer. Two failures of the host serving it:
#   1. geosteer killed: the watcher withdraws the route;
#   2. the whole host gone (silently: its link stays up, it stops answering): BFD takes the
#      route away without waiting for the BGP hold timer.
# Prints the queries lost in each. Needs root (network namespaces), BIRD 2, curl, dig,
# python3. Every wait is a bounded poll; the namespaces are deleted on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
binary=${GEOSTEER:-$PWD/target/debug/geosteer}
tag="gs$$"
ns_r="$tag-r" ns_c="$tag-c" ns_1="$tag-h1" ns_2="$tag-h2"
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for ns in "$ns_r" "$ns_c" "$ns_1" "$ns_2"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# Background processes are started with `ip netns exec` itself (it execs the program), so
# their PIDs are the programs' own; in_ns is for commands run to completion.
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

source deploy/anycast/lib.sh  # the working directory is the repository

for ns in "$ns_r" "$ns_c" "$ns_1" "$ns_2"; do
  ip netns add "$ns"
  in_ns "$ns" ip link set lo up
done
in_ns "$ns_r" sysctl -qw net.ipv4.ip_forward=1

# link NS_A IF_A ADDR_A NS_B IF_B ADDR_B
link() {
  ip link add "$2" netns "$1" type veth peer name "$5" netns "$4"
  in_ns "$1" ip addr add "$3" dev "$2"; in_ns "$1" ip link set "$2" up
  in_ns "$4" ip addr add "$6" dev "$5"; in_ns "$4" ip link set "$5" up
}
link "$ns_r" r-h1 10.0.1.1/30 "$ns_1" h1-r 10.0.1.2/30
link "$ns_r" r-h2 10.0.2.1/30 "$ns_2" h2-r 10.0.2.2/30
link "$ns_r" r-c 10.0.3.1/30 "$ns_c" c-r 10.0.3.2/30
in_ns "$ns_c" ip route add default via 10.0.3.1
in_ns "$ns_1" ip route add default via 10.0.1.1
in_ns "$ns_2" ip route add default via 10.0.2.1

# The router: BGP with both hosts, BFD on the sessions, routes into its kernel table.
cat > "$work/router.conf" <<EOF
log stderr all;
router id 10.0.3.1;
protocol device { }
protocol kernel { ipv4 { export all; }; }
protocol bfd { interface "r-*" { min rx interval 50 ms; min tx interval 50 ms; multiplier 3; }; }
template bgp host { local as 64511; hold time 9; keepalive time 3; bfd on; ipv4 { import all; export none; }; }
protocol bgp host1 from host { neighbor 10.0.1.2 as 64512; }
protocol bgp host2 from host { neighbor 10.0.2.2 as 64512; }
EOF
ip netns exec "$ns_r" bird -f -c "$work/router.conf" -s "$work/router.ctl" -P "$work/router.pid" 2>"$work/router.log" &
pids+=($!)

# A host: the service address on lo, geosteer on it, BIRD announcing while ready.
mkdir -p "$work/zones"
cat > "$work/zones/zone.yaml" <<'YAML'
zone: any.example
soa: {primary: ns1.any.example., contact: h.any.example., serial: 1}
ns: [ns1.any.example.]
records:
  ns1: {type: A, value: 192.0.2.53}
YAML
start_geosteer() { # NS NAME
  ip netns exec "$1" "$binary" serve --listen 192.0.2.53:53 --admin 127.0.0.1:8053 --identity "$2" \
    --zones "$work/zones" --geo geo/dbip-country.mmdb --rrl-rate 0 >"$work/$2.out" 2>&1 &
  pids+=($!)
  eval "geosteer_$2=$!"
}
host() { # NS NAME ADDR
  in_ns "$1" ip addr add 192.0.2.53/32 dev lo
  cat > "$work/$2.conf" <<EOF
log stderr all;
router id $3;
protocol device { }
protocol bfd { interface "h*" { min rx interval 50 ms; min tx interval 50 ms; multiplier 3; }; }
protocol static geosteer_v4 { disabled; ipv4; route 192.0.2.53/32 blackhole; }
protocol bgp upstream_v4 {
  local $3 as 64512; neighbor ${3%.2}.1 as 64511; hold time 9; keepalive time 3; bfd on;
  ipv4 { import none; export where net = 192.0.2.53/32; };
}
EOF
  ip netns exec "$1" bird -f -c "$work/$2.conf" -s "$work/$2.ctl" -P "$work/$2.pid" 2>"$work/$2-bird.log" &
  pids+=($!)
  until_ok "$2's BIRD" 10 birdc -s "$work/$2.ctl" show status
  ip netns exec "$1" env INTERVAL=0.1 RISE=2 FALL=2 TIMEOUT=0.5 PROTOCOLS=geosteer_v4 \
    BIRDC="birdc -s $work/$2.ctl" READYZ="http://127.0.0.1:8053/readyz" \
    deploy/anycast/geosteer-anycast 2>"$work/$2-watcher.log" &
  pids+=($!)
  start_geosteer "$1" "$2"
}
host "$ns_1" host1 10.0.1.2
host "$ns_2" host2 10.0.2.2

routes() { in_ns "$ns_r" ip route show 192.0.2.53/32 | grep -c via; }
both_announced() { birdc -s "$work/router.ctl" show route 192.0.2.53/32 all | grep -c "BGP.as_path" | grep -qx 2; }
echo "anycast: namespaces, BIRD and geosteer started" >&2
until_ok "both hosts announcing to the router" 60 both_announced
echo "anycast: both hosts announce" >&2
until_ok "the route in the router's kernel table" 10 in_ns "$ns_r" ip route get 192.0.2.53

serving() { # which host answers the client now
  in_ns "$ns_c" dig @192.0.2.53 CH TXT id.server +short +time=1 +tries=1 | tr -d '"'
}
until_ok "an answer at the client" 10 serving

# The client: a query every 20 ms, each waiting at most 300 ms; one line per query.
cat > "$work/client.py" <<'PY'
# Sends a query every 20 ms without waiting for answers; a query is lost when no answer
# came within 300 ms. Prints one line per query: send time, ok|lost.
import select, socket, struct, sys, time
duration = float(sys.argv[1])
question = b"\x03ns1\x03any\x07example\x00\x00\x01\x00\x01"
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sent, answered = {}, set()
start = time.monotonic()
next_send, qid = start, 0
while True:
    now = time.monotonic()
    if now >= start + duration + 0.3:
        break
    if now >= next_send and now < start + duration:
        qid += 1
        sock.sendto(struct.pack(">HHHHHH", qid & 0xFFFF, 0x0100, 1, 0, 0, 0) + question, ("192.0.2.53", 53))
        sent[qid & 0xFFFF] = now
        next_send += 0.02
    ready, _, _ = select.select([sock], [], [], max(0.0, min(next_send - time.monotonic(), 0.02)))
    if ready:
        data, _ = sock.recvfrom(4096)
        (rid,) = struct.unpack(">H", data[:2])
        if rid in sent and time.monotonic() - sent[rid] <= 0.3:
            answered.add(rid)
for rid, at in sorted(sent.items(), key=lambda kv: kv[1]):
    print(f"{at - start:.3f} {'ok' if rid in answered else 'lost'}")
PY

# phase NAME ACTION: runs the client for 6 s, does ACTION 1 s in, reports the losses.
phase() {
  local name=$1; shift
  ip netns exec "$ns_c" python3 "$work/client.py" 6 > "$work/$name.client" &
  local client=$!
  sleep 1
  "$@"
  wait "$client"
  local total lost
  total=$(wc -l < "$work/$name.client")
  lost=$(grep -c lost "$work/$name.client" || true)
  local gap
  gap=$(awk '$2 == "lost" { if (!first) first = $1; last = $1 } END { if (first) printf "%.0f", (last - first) * 1000 + 20; else print 0 }' "$work/$name.client")
  echo "anycast: $name: $lost of $total queries lost (one sent every 20 ms; outage ~${gap} ms)"
  [ "$total" -gt 100 ] || { echo "anycast netns test: the client did not run" >&2; exit 1; }
}

first=$(serving)
[ "$first" = host1 ] || [ "$first" = host2 ] || { echo "anycast netns test: unexpected server '$first'" >&2; exit 1; }
other=host1; [ "$first" = host1 ] && other=host2
kill_geosteer() { eval "kill -9 \$geosteer_$first"; }
phase "geosteer on $first killed" kill_geosteer
now=$(serving)
[ "$now" = "$other" ] || { echo "anycast netns test: after the kill $now answers, not $other" >&2; exit 1; }

# Bring it back, wait for both announcements, then take the whole serving host away.
ns_first=$ns_1; [ "$first" = host2 ] && ns_first=$ns_2
start_geosteer "$ns_first" "$first"
until_ok "both hosts announcing again" 60 both_announced
serving_now=$(serving)
ns_now=$ns_1 if_now=h1-r; [ "$serving_now" = host2 ] && ns_now=$ns_2 if_now=h2-r
# A host that dies does not tell its router (no carrier loss across a switch): its link
# stays up and it simply stops answering, here by losing its address. Only BFD notices.
host_gone() { in_ns "$ns_now" ip addr flush dev "$if_now"; }
phase "host $serving_now gone silently (BFD, 3 x 50 ms)" host_gone
survivor=$(serving)
[ -n "$survivor" ] && [ "$survivor" != "$serving_now" ] \
  || { echo "anycast netns test: after $serving_now went, '$survivor' answers" >&2; exit 1; }
echo "deploy/anycast: clients of a dead instance or host reach the other: OK"
