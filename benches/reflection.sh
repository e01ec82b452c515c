#!/usr/bin/env bash
# Reflection benchmark (see README.md here): bytes out / bytes in for the worst queries over
# UDP, and a single-source flood under response-rate limiting.
set -euo pipefail
cd "$(dirname "$0")/.."
bash benches/prepare.sh
BENCH_REPO="$PWD" exec python3 benches/reflection.py
