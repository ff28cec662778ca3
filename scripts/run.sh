#!/usr/bin/env bash
# Runs linkgate on the embedded default (SQLite in ./data, no Redis, no MariaDB):
# builds, migrates ./data/linkgate.db, then serves redirects on http://localhost:8080
# (metrics on 127.0.0.1:9090) until Ctrl-C. Links are created with the admin service once it
# exists; until then `linkgate-loadtest seed` can fill the store (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

need cmake
log "building (release)"
cargo build --release --locked -p linkgate-admin -p linkgate-proxy >&2
./target/release/linkgate-admin --check-config
./target/release/linkgate-admin migrate
log "serving redirects on http://127.0.0.1:8080 (Ctrl-C stops)"
exec ./target/release/linkgate-proxy
