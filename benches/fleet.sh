#!/usr/bin/env bash
# Fleet convergence and etcd load (benches/fleet_bench.rs): needs etcd (etcd-server).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --example fleet_bench --bin geosteer
./target/release/examples/fleet_bench
