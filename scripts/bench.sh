#!/usr/bin/env bash
# Standard benchmarks: builds release once, prepares scratch stores, runs every measurement
# BENCHMARKS.md records, and prints the results. Loopback only; every run is time-bounded.
#   bash scripts/bench.sh            # everything
#   SECONDS_PER_RUN=5 bash scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

RUN_SECS=${SECONDS_PER_RUN:-10}
MYSQL=mysql://linkgate:linkgate@127.0.0.1:3306
WORK=$(mktemp -d /tmp/linkgate-bench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

bash scripts/services.sh
log "building release binaries"
cargo build --release --locked -p linkgate-loadtest >&2
LT=./target/release/linkgate-loadtest

scratch_db() {
  mariadb --protocol=tcp -h127.0.0.1 -ulinkgate -plinkgate \
    -e "DROP DATABASE IF EXISTS $1; CREATE DATABASE $1 CHARACTER SET utf8mb4"
}

echo "## Click batch ingest (10,000 rows per batch, median of 5)"
$LT store-bench --store "sqlite://$WORK/ingest.db" --rows 10000 --rounds 5
scratch_db linkgate_bench
$LT store-bench --store "$MYSQL/linkgate_bench" --rows 10000 --rounds 5

echo
echo "## Seeding 1,000,000 links through the store"
scratch_db linkgate_seed
$LT seed --store "$MYSQL/linkgate_seed" --links 1000000 --codes-out "$WORK/codes.txt"

echo
echo "## Generator ceiling: closed loop against the built-in fixed-302 server"
$LT serve --listen 127.0.0.1:18099 --seconds $((RUN_SECS * 4 + 10)) >/dev/null &
wait_for 10 bash -c 'exec 3<>/dev/tcp/127.0.0.1/18099'
$LT run --target http://127.0.0.1:18099 --codes a,b,c --connections 32 \
  --duration "$RUN_SECS" --warmup 2 --json "$WORK/ceiling.json"
