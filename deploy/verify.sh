#!/usr/bin/env bash
# Checks deploy/ artifacts with the real tools (run by .ci/run): the systemd unit with
# systemd-analyze, pointed at the binary just built.
set -euo pipefail
cd "$(dirname "$0")/.."
binary="$PWD/target/debug/geosteer"
[ -x "$binary" ] || cargo build -q
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed "s|/usr/local/bin/geosteer|$binary|" deploy/geosteer.service > "$work/geosteer.service"
# systemd-analyze exits 0 on unknown keys (it only warns): any output is a failure here.
out=$(systemd-analyze verify "$work/geosteer.service" 2>&1) || { echo "$out"; exit 1; }
if [ -n "$out" ]; then
  echo "$out"
  exit 1
fi
echo "deploy/geosteer.service: OK"
