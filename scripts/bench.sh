#!/usr/bin/env bash
# The whole benchmark suite, each figure next to a baseline measured in the same run.
# Takes about 5 minutes after the release build on a 2-core machine. Results: docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== machine"; lscpu | grep -E "Model name|^CPU\(s\)|MHz" || true
grep -qw sha_ni /proc/cpuinfo && echo "SHA-NI: present" || echo "SHA-NI: absent"
echo "== verification and parsing (criterion)"
cargo bench -p suki-ambient-core --bench verify 2>&1 | sed -n '/ratios measured/,$p'
cargo build --release -p bench
echo "== adapters under load"
./target/release/adapter_load 1 64
echo "== memory"
./target/release/memory_load 1000
echo "== client"
./target/release/client_load 2000 32
echo "== durable inbox (SQLite; Postgres too when SUKI_POSTGRES_URL is set)"
./target/release/inbox_load 1000 6400
echo "== inbox health and counts at 10^6 rows, ingest under a /healthz flood"
./target/release/inbox_health 1000000 1000
