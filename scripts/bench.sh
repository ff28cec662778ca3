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
cargo build --release --locked -p linkgate-loadtest -p linkgate-proxy --bins --examples >&2
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

echo
echo "## linkgate-proxy vs the bare Pingora baseline (cache hits, 1 server thread each)"
$LT seed --store "sqlite://$WORK/proxy.db" --links 100000 --domain 127.0.0.1:18080 --codes-out "$WORK/all.txt"
head -10000 "$WORK/all.txt" > "$WORK/hot.txt"
LINKGATE__STORE__URL="sqlite://$WORK/proxy.db" LINKGATE__PROXY__LISTEN=127.0.0.1:18080 \
  LINKGATE__PROXY__METRICS_LISTEN=127.0.0.1:19090 LINKGATE__PROXY__THREADS=1 RUST_LOG=warn \
  ./target/release/linkgate-proxy >/dev/null 2>&1 &
./target/release/examples/bare_redirect 127.0.0.1:18081 1 >/dev/null 2>&1 &
wait_for 20 bash -c 'exec 3<>/dev/tcp/127.0.0.1/18080' && wait_for 20 bash -c 'exec 3<>/dev/tcp/127.0.0.1/18081'
echo "### peak throughput (closed loop)"
$LT compare --a http://127.0.0.1:18081 --b http://127.0.0.1:18080 --codes-file "$WORK/hot.txt" \
  --connections 32 --duration "$RUN_SECS" --warmup 3 --rounds 3 --threads 1
echo "### latency at 50,000 requests/s (open loop, about half of peak)"
$LT compare --a http://127.0.0.1:18081 --b http://127.0.0.1:18080 --codes-file "$WORK/hot.txt" \
  --rate 50000 --connections 32 --duration "$RUN_SECS" --warmup 2 --rounds 2 --threads 1

echo
echo "## RSS of the proxy holding 1,000,000 cached links"
$LT seed --store "sqlite://$WORK/million.db" --links 1000000 --domain 127.0.0.1:18082 --codes-out "$WORK/million.txt"
LINKGATE__STORE__URL="sqlite://$WORK/million.db" LINKGATE__PROXY__LISTEN=127.0.0.1:18082 \
  LINKGATE__PROXY__METRICS_LISTEN=127.0.0.1:19092 LINKGATE__PROXY__THREADS=2 \
  LINKGATE__CACHE__L1_MAX_BYTES=1073741824 LINKGATE__CACHE__L1_TTL_SECS=3600 RUST_LOG=warn \
  ./target/release/linkgate-proxy >/dev/null 2>&1 &
MPID=$!
wait_for 20 bash -c 'exec 3<>/dev/tcp/127.0.0.1/18082'
$LT run --target http://127.0.0.1:18082 --codes-file "$WORK/million.txt" --cold-share 1 \
  --connections 64 --duration 45 --warmup 0 | grep -E "responses|throughput|errors"
curl -s http://127.0.0.1:19092/metrics | grep '^linkgate_proxy_l1_entries'
grep VmRSS "/proc/$MPID/status"
