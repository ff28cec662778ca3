#!/usr/bin/env bash
# Runs the whole of linkgate on the embedded default (SQLite in ./data, no Redis, no MariaDB):
# builds, then starts the admin service (migrates ./data/linkgate.db, serves the API on
# 127.0.0.1:8081, creates the first administrator) and the proxy on http://localhost:8080,
# whose public port also passes /api/* through to the admin. Ctrl-C stops both.
#
# The first administrator is LINKGATE_ADMIN_EMAIL (default admin@linkgate.local) with
# LINKGATE_ADMIN_PASSWORD, or a generated password printed once below.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

need cmake
need curl
log "building (release)"
cargo build --release --locked -p linkgate-admin -p linkgate-proxy >&2
./target/release/linkgate-admin --check-config

export LINKGATE__ADMIN__BOOTSTRAP_ADMIN_EMAIL="${LINKGATE_ADMIN_EMAIL:-admin@linkgate.local}"
if [ -n "${LINKGATE_ADMIN_PASSWORD:-}" ]; then
  export LINKGATE__ADMIN__BOOTSTRAP_ADMIN_PASSWORD="$LINKGATE_ADMIN_PASSWORD"
fi
./target/release/linkgate-admin serve &
admin_pid=$!
trap 'kill "$admin_pid" 2>/dev/null || true; wait "$admin_pid" 2>/dev/null || true' EXIT INT TERM

# The admin migrates the schema before it listens; the proxy checks the schema at start.
for _ in $(seq 1 100); do
  if curl -fsS --max-time 2 -o /dev/null http://127.0.0.1:8081/readyz 2>/dev/null; then break; fi
  kill -0 "$admin_pid" 2>/dev/null || die "linkgate-admin exited; see its output above"
  sleep 0.2
done
log "serving on http://127.0.0.1:8080: redirects, and the API under /api/v1 (Ctrl-C stops)"
log "sign in: curl -s -XPOST localhost:8080/api/v1/auth/login -H 'content-type: application/json' -d '{\"email\":\"$LINKGATE__ADMIN__BOOTSTRAP_ADMIN_EMAIL\",\"password\":\"...\"}'"
./target/release/linkgate-proxy
