#!/usr/bin/env bash
# The disaster-recovery drill (deploy/drill/README.md):
#   deploy/drill/run.sh [--short] [--json FILE] [--keep]
# Needs root (network namespaces) and nginx with the RTMP module, ffmpeg, Unbound, etcd,
# dig and ss; it says which Debian packages are missing. Uses $GEOSTEER if set, else
# builds target/release/geosteer.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ "$(id -u)" -ne 0 ]; then
  echo "drill: needs root (it creates network namespaces)" >&2
  exit 1
fi
missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
need nginx nginx
[ -e /usr/lib/nginx/modules/ngx_rtmp_module.so ] || missing+=(libnginx-mod-rtmp)
need ffmpeg ffmpeg
need unbound unbound
need unbound-control unbound
need etcd etcd-server
need dig bind9-dnsutils
need ss iproute2
need ip iproute2
need python3 python3
if [ ${#missing[@]} -gt 0 ]; then
  echo "drill: missing programs; install them with: apt-get install $(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')" >&2
  exit 1
fi
binary=${GEOSTEER:-}
if [ -z "$binary" ]; then
  cargo build --release --quiet --bin geosteer
  binary=$PWD/target/release/geosteer
fi
exec python3 deploy/drill/drill.py --binary "$binary" "$@"
