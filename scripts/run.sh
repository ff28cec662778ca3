#!/usr/bin/env bash
# Runs linkgate on the embedded default (SQLite in ./data, no Redis, no MariaDB).
# Builds what is needed first. Today the system is the store: this creates and migrates
# ./data/linkgate.db and checks it the way the proxy does at start-up.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

need cmake
log "building"
cargo build --release --locked -p linkgate-admin -p linkgate-proxy
./target/release/linkgate-admin --check-config
./target/release/linkgate-admin migrate
./target/release/linkgate-proxy check-store
