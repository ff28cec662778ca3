#!/usr/bin/env bash
# A/B of proxy binaries, alternated in one sitting on one database (release build first).
#
#   bash scripts/ab-proxy.sh cpu  RATE SECS BIN...   CPU µs per request by thread group at a
#                                                   fixed open-loop RATE (the `cpu` method)
#   bash scripts/ab-proxy.sh peak RATE SECS BIN...   closed-loop peak for SECS, then open loop
#                                                   at RATE; clicks dropped and persisted
#   bash scripts/ab-proxy.sh switches 0 SECS BIN...  closed-loop peak for SECS (at least 4),
#                                                   and per thread name the context switches
#                                                   (voluntary, involuntary) and minor page
#                                                   faults per second over its middle
#   bash scripts/ab-proxy.sh callgrind RATE SECS BIN...  instructions per request under
#                                                   valgrind's callgrind: a 25 s warm-up at
#                                                   2,000 /s, then SECS at RATE (valgrind
#                                                   serves about 1,000 /s) over the 500
#                                                   hottest codes, so the per-thread memo
#                                                   hits as at the peak (needs valgrind)
#   bash scripts/ab-proxy.sh profile 0 SECS BIN...   closed-loop peak for SECS (at least 4);
#                                                   perf's cpu-clock samples of the request
#                                                   thread over its middle, as ns per request:
#                                                   user and kernel, and the hottest symbols
#                                                   (needs perf; TOP=N symbols, 30 by default;
#                                                   PERIOD=N ns of CPU per sample, 50,000 by
#                                                   default: fewer samples disturb less)
#
# CLIENTS=N sends the redirects as from N clients behind a load balancer (--clients).
# LOAD_ARGS adds loadtest options to every load: "--threads 1 --busy-poll" keeps the generator
# from sleeping, so the servers do not pay its loopback wake-ups (BENCHMARKS.md, session 28).
# CACHE_SIM=1 has callgrind simulate the caches too and prints first-level instruction-cache
# misses per request beside the instructions.
# Each BIN is started alone (one worker thread, SQLite) on 127.0.0.1:18087, loaded, and
# stopped before the next. The store (100,000 links, 10,000 hot) is seeded once into $WORK.
# A BIN may be a wrapper script: `exec ./target/release/examples/bare_redirect
# 127.0.0.1:18087 1` puts the bare baseline in the same alternation.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
# A server left running on the shared port (SO_REUSEPORT) would take part of the next
# BIN's connections: whatever ends this script stops its servers and loads.
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
MODE=$1 RATE=$2 SECS=$3
shift 3
WORK=${WORK:-/tmp/linkgate-ab}
LT=./target/release/linkgate-loadtest
mkdir -p "$WORK"
if [ ! -f "$WORK/ab.db" ]; then
  $LT seed --store "sqlite://$WORK/ab.db" --links 100000 --domain 127.0.0.1:18087 \
    --codes-out "$WORK/all.txt" >/dev/null
  head -10000 "$WORK/all.txt" > "$WORK/hot.txt"
fi
head -500 "$WORK/hot.txt" > "$WORK/hot500.txt"
metrics() { curl -s http://127.0.0.1:19097/metrics; }
# The callgrind mode loads the 500 hottest codes, so the per-thread memo hits as at the peak.
CODES=hot
[ "$MODE" = callgrind ] && CODES=hot500
load() { $LT run --target http://127.0.0.1:18087 --codes-file "$WORK/$CODES.txt" ${CLIENTS:+--clients $CLIENTS} --connections 32 ${LOAD_ARGS:-} "$@"; }
# tid, name (spaces as _), voluntary and involuntary context switches, minor faults.
thread_counters() {
  local tid name minflt status
  task_stats "$1" | awk '{ print $1, $2, $10 }' | while read -r tid name minflt; do
    status=/proc/$1/task/$tid/status
    [ -r "$status" ] || continue
    echo "$tid $name $(awk '/^voluntary_ctxt_switches/ { v = $2 }
      /^nonvoluntary_ctxt_switches/ { n = $2 } END { print v, n }' "$status") $minflt"
  done | sort
}
# Inclusive instructions per served request of the request path's functions, from a
# callgrind profile.
per_request() {
  callgrind_annotate --inclusive=yes --show=Ir${CACHE_SIM:+,I1mr} --threshold=100 "$1" 2>/dev/null |
    awk -v n="$2" -v sim="${CACHE_SIM:-}" '
      /apps\/mod.rs:<T as pingora_core::apps::ServerApp>::process_new::\{\{closure\}\} *(\[|$)/ { k = "process_new (the connection task)" }
      /src\/lib.rs:pingora_proxy::HttpProxy<SV,C>::process_request::\{\{closure\}\} *(\[|$)/ { k = "process_request" }
      /(app|bare_[a-z_]+)\.rs:<[^>]* as pingora_proxy::proxy_trait::ProxyHttp>::request_filter::\{\{closure\}\} *(\[|$)/ { k = "request_filter" }
      k != "" && !(k in seen) {
        seen[k] = 1; x = $1; gsub(",", "", x); printf "  %-36s %8.0f", k, x / n
        # Without the "(N%)" shares (which may hold a space) the misses are field 2.
        if (sim != "") { line = $0; gsub(/\([^)]*\)/, "", line); split(line, f, " ")
          m = f[2]; gsub(",", "", m); printf "  I1 misses %6.0f", m / n }
        printf "\n"
      }
      { k = "" }'
}
for BIN in "$@"; do
  rm -rf "$WORK/journal"
  WRAP=()
  if [ "$MODE" = callgrind ]; then
    OUT=$WORK/callgrind.out
    rm -f "$OUT"*
    WRAP=(valgrind --tool=callgrind --trace-children=yes --instr-atstart=no ${CACHE_SIM:+--cache-sim=yes} --callgrind-out-file="$OUT.%p")
  fi
  LINKGATE__STORE__URL="sqlite://$WORK/ab.db" LINKGATE__PROXY__LISTEN=127.0.0.1:18087 \
    LINKGATE__PROXY__METRICS_LISTEN=127.0.0.1:19097 LINKGATE__PROXY__THREADS=1 RUST_LOG=warn \
    LINKGATE__CLICKS__JOURNAL_DIR="$WORK/journal" "${WRAP[@]}" "$BIN" >/dev/null 2>&1 &
  PID=$!
  # Under valgrind the server takes seconds to start.
  for _ in $(seq 300); do
    metrics >/dev/null 2>&1 || curl -s -o /dev/null http://127.0.0.1:18087/healthz && break
    sleep 0.1
  done
  if [ "$MODE" = callgrind ]; then
    load --rate 2000 --duration 25 --warmup 0 >/dev/null
    callgrind_control -i on >/dev/null 2>&1
    load --rate "$RATE" --duration "$SECS" --warmup 0 > "$WORK/run.txt"
    callgrind_control -i off >/dev/null 2>&1
    callgrind_control -d >/dev/null 2>&1
    SERVED=$(awk '$1 == "responses" { print $2 }' "$WORK/run.txt")
    echo "== $BIN: $SERVED requests instrumented; instructions per request:"
    per_request "$(ls -S "$OUT".*.1 | head -1)" "$SERVED"
  elif [ "$MODE" = profile ]; then
    load --zipf 0 --duration 3 --warmup 0 >/dev/null
    load --duration "$SECS" --warmup 0 > "$WORK/peak.txt" &
    LOAD=$!
    sleep 1
    # One sample every 50 µs of CPU; the middle SECS - 2 seconds.
    perf record -q -e cpu-clock -c ${PERIOD:-50000} -p $PID -o "$WORK/perf.data" -- sleep $((SECS - 2)) 2>/dev/null
    wait $LOAD
    PEAK=$(awk '$1 == "throughput" { print $2 }' "$WORK/peak.txt")
    echo "== $BIN: peak $PEAK /s; request thread, ns per request:"
    # Pingora names its request threads "Pingora HTTP Proxy..." (15 characters kept).
    perf report -i "$WORK/perf.data" --no-children --comms 'Pingora HTTP Pr' --sort sym -q \
      --stdio -g none -F sample,sym 2>/dev/null | sort -k1,1 -n -r |
      awk -v per=$((${PERIOD:-50000} / (SECS - 2))) -v peak="$PEAK" -v top="${TOP:-30}" '
        $2 == "[k]" || $2 == "[.]" {
          ns = $1 * per / peak; sym = $0; sub(/^ *[0-9]+ +\[.\] +/, "", sym)
          if ($2 == "[k]") k += ns; else u += ns
          if (n < top) { printf "  %7.0f  %s %s\n", ns, $2, substr(sym, 1, 110); n++ }
        }
        END { printf "  user %.0f ns, kernel %.0f ns\n", u, k }'
  elif [ "$MODE" = switches ]; then
    load --zipf 0 --duration 3 --warmup 0 >/dev/null
    load --duration "$SECS" --warmup 0 > "$WORK/peak.txt" &
    LOAD=$!
    sleep 1
    thread_counters $PID > "$WORK/threads-a.txt"
    sleep $((SECS - 2))
    thread_counters $PID > "$WORK/threads-b.txt"
    wait $LOAD
    echo "== $BIN: peak $(awk '$1 == "throughput" {print $2}' "$WORK/peak.txt") /s; per second over $((SECS - 2)) s:"
    join "$WORK/threads-a.txt" "$WORK/threads-b.txt" | awk -v secs=$((SECS - 2)) '
      { n[$2]++; v[$2] += $7 - $3; i[$2] += $8 - $4; f[$2] += $9 - $5 }
      END { for (t in n) printf "  %-24s %3d threads  voluntary %8.0f  involuntary %8.0f  minor faults %7.0f\n",
            t, n[t], v[t] / secs, i[t] / secs, f[t] / secs }' | sort
  elif [ "$MODE" = cpu ]; then
    # Clicks deferred while the cores were busy are processed after a run: the snapshots
    # wait for them (a BIN without metrics has none).
    load --rate "$RATE" --duration 3 --warmup 0 >/dev/null
    caught_up 19097
    cpu_of $PID > "$WORK/cpu-a.txt"
    load --rate "$RATE" --duration "$SECS" --warmup 0 > "$WORK/run.txt"
    caught_up 19097
    cpu_of $PID > "$WORK/cpu-b.txt"
    SERVED=$(awk '$1 == "responses" { print $2 }' "$WORK/run.txt")
    echo "== $BIN: $(grep -E '^(throughput|p50|p99) ' "$WORK/run.txt" | awk '{printf "%s %s %s  ", $1, $2, $3}')"
    cpu_per_request "$WORK/cpu-a.txt" "$WORK/cpu-b.txt" "$SERVED" | sed 's/^/  /'
  else
    load --duration "$SECS" --warmup 2 > "$WORK/peak.txt"
    sleep 3
    load --rate "$RATE" --duration "$SECS" --warmup 2 > "$WORK/open.txt"
    sleep 3
    echo "== $BIN: peak $(awk '$1 == "throughput" {print $2}' "$WORK/peak.txt") /s;" \
      "open loop at $RATE/s: $(grep -E '^(p50|p90|p99) ' "$WORK/open.txt" | awk '{printf "%s %s %s  ", $1, $2, $3}')"
    # A BIN without a metrics listener (the bare baseline through a wrapper) prints none.
    metrics | grep -E '^linkgate_clicks_(dropped|persisted|overflow_journaled|deferred|contended_pauses)_total |^linkgate_clicks_deferred |^linkgate_click_aggregate_window_milliseconds ' | sed 's/^/  /' || true
    # Clicks deferred at the peak are processed once the load stops: how long that takes.
    deferred() { metrics | awk '$1 == "linkgate_clicks_deferred" { print $2 }'; }
    if [ -n "$(deferred 2>/dev/null || true)" ]; then
      WAITED=0
      while [ "$(deferred)" != 0 ] && [ $WAITED -lt 300 ]; do
        sleep 1
        WAITED=$((WAITED + 1))
      done
      echo "  deferred clicks processed ${WAITED} s after the load"
    fi
  fi
  kill $PID
  wait $PID 2>/dev/null || true
done
