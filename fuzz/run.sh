#!/usr/bin/env bash
# Runs every fuzz target (cargo fuzz, nightly), each for SECONDS (default 60) or RUNS inputs.
#   bash fuzz/run.sh                     # one minute each
#   SECONDS_PER_TARGET=3600 bash fuzz/run.sh packet   # a long run of one target
# Crashes are saved under fuzz/artifacts/<target>/ and reproduced with
#   cargo +nightly fuzz run <target> fuzz/artifacts/<target>/<file>
set -euo pipefail
cd "$(dirname "$0")"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz
python3 seeds.py
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(packet packet_general policy_yaml feed_json admin_request)
limit=()
if [ -n "${RUNS:-}" ]; then
  limit=(-runs="$RUNS")
else
  limit=(-max_total_time="${SECONDS_PER_TARGET:-60}")
fi
for target in "${targets[@]}"; do
  echo "== $target"
  # One job per core; the corpus grows in corpus/<target> between runs.
  log=$(mktemp)
  cargo +nightly fuzz run "$target" "corpus/$target" -- "${limit[@]}" -max_len=4096 -print_final_stats=1 >"$log" 2>&1 || true
  grep -E "^(stat::|#[0-9]+ *DONE|==[0-9]+== ERROR|SUMMARY|Done [0-9]+ runs)" "$log" || true
  # A target that does not build, or stops before its inputs are done, fails the run.
  if ! grep -qE "^Done [0-9]+ runs|^#[0-9]+ *DONE" "$log"; then
    tail -n 30 "$log" >&2
    echo "$target: the fuzz run did not complete" >&2
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
  if compgen -G "artifacts/$target/crash-*" >/dev/null || compgen -G "artifacts/$target/oom-*" >/dev/null || compgen -G "artifacts/$target/timeout-*" >/dev/null; then
    echo "$target: crashes in fuzz/artifacts/$target" >&2
    exit 1
  fi
done
