#!/usr/bin/env bash
# DNS latency while /what-if is hammered (benches/admin_load_bench.rs). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --example admin_load_bench --bin geosteer
./target/release/examples/admin_load_bench
