#!/usr/bin/env bash
# The test command: prepares services, then runs every check CI runs.
#   the compose file, formatting, clippy (warnings are errors), and all tests on SQLite,
#   MariaDB and Redis.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

bash scripts/services.sh

# Leftovers of interrupted runs (each test drops its own database when it passes).
mariadb --protocol=tcp -h 127.0.0.1 -ulinkgate -plinkgate -N -e \
  "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'linkgate\\_test\\_%'" 2>/dev/null |
  while read -r db; do
    mariadb --protocol=tcp -h 127.0.0.1 -ulinkgate -plinkgate -e "DROP DATABASE IF EXISTS \`$db\`" || true
  done

log "docker-compose config"
need docker-compose docker-compose
docker-compose config -q

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi
