#!/usr/bin/env bash
# Rebuild benchmark (see README.md here): 200 nodes against the full city database that
# load.sh prepares (run load.sh once first), or the database given as $1.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
cargo build --release -q --example rebuild_bench
exec target/release/examples/rebuild_bench "$@"
