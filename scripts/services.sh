#!/usr/bin/env bash
# Prepares a Debian machine for building and testing linkgate, changing only what is missing:
#   - installs cmake (Pingora's build needs it), mariadb-server and redis-server when absent;
#   - starts MariaDB and Redis when they do not answer, leaving running ones alone;
#   - creates the database user linkgate/linkgate (TCP, 127.0.0.1) with rights on the
#     databases named linkgate* (the app's `linkgate` database and per-test databases).
# Root over TCP is never relied on: a fresh Debian MariaDB lets root in only by unix socket.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

MYSQL_HOST=${LINKGATE_MYSQL_HOST:-127.0.0.1}
MYSQL_PORT=${LINKGATE_MYSQL_PORT:-3306}
REDIS_PORT=${LINKGATE_REDIS_PORT:-6379}
DB_USER=linkgate
DB_PASS=${LINKGATE_DB_PASSWORD:-linkgate}

need cmake
need mariadb-admin mariadb-server
need mariadb mariadb-client
need redis-server redis-server
need redis-cli redis-tools

mariadb_up() { mariadb-admin --protocol=tcp -h "$MYSQL_HOST" -P "$MYSQL_PORT" ping; }
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }

if mariadb_up >/dev/null 2>&1; then
  log "MariaDB answers on $MYSQL_HOST:$MYSQL_PORT"
else
  log "starting MariaDB"
  as_root mkdir -p /run/mysqld
  as_root chown mysql:mysql /run/mysqld 2>/dev/null || true
  if [ ! -d /var/lib/mysql/mysql ]; then
    as_root mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
  fi
  if ! { [ -x /etc/init.d/mariadb ] && as_root /etc/init.d/mariadb start >/dev/null 2>&1; }; then
    as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
  fi
  wait_for 60 mariadb_up || die "MariaDB did not start (see /var/log/mysql or journalctl)"
fi

if redis_up; then
  log "Redis answers on 127.0.0.1:$REDIS_PORT"
else
  log "starting Redis"
  as_root mkdir -p /var/lib/redis /var/log/redis
  as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" \
    --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/linkgate.log
  wait_for 30 redis_up || die "Redis did not start (see /var/log/redis/linkgate.log)"
fi

# Creating the user needs an administrative login: root over the unix socket (Debian's
# default), or root over TCP where a machine allows it.
root_sql() {
  if as_root mariadb --protocol=socket -uroot -e 'SELECT 1' >/dev/null 2>&1; then
    as_root mariadb --protocol=socket -uroot "$@"
  else
    mariadb --protocol=tcp -h "$MYSQL_HOST" -P "$MYSQL_PORT" -uroot "$@"
  fi
}

if mariadb --protocol=tcp -h "$MYSQL_HOST" -P "$MYSQL_PORT" -u"$DB_USER" -p"$DB_PASS" \
     -e 'CREATE DATABASE IF NOT EXISTS linkgate' >/dev/null 2>&1; then
  log "database user $DB_USER is ready"
else
  log "creating database user $DB_USER"
  root_sql <<SQL
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS '$DB_USER'@'::1' IDENTIFIED BY '$DB_PASS';
GRANT ALL PRIVILEGES ON \`linkgate%\`.* TO '$DB_USER'@'localhost';
GRANT ALL PRIVILEGES ON \`linkgate%\`.* TO '$DB_USER'@'127.0.0.1';
GRANT ALL PRIVILEGES ON \`linkgate%\`.* TO '$DB_USER'@'::1';
CREATE DATABASE IF NOT EXISTS linkgate CHARACTER SET utf8mb4;
SQL
  mariadb --protocol=tcp -h "$MYSQL_HOST" -P "$MYSQL_PORT" -u"$DB_USER" -p"$DB_PASS" -e 'SELECT 1' >/dev/null \
    || die "the $DB_USER user cannot log in over TCP"
fi
log "services ready: mysql://$DB_USER:***@$MYSQL_HOST:$MYSQL_PORT/linkgate, redis://127.0.0.1:$REDIS_PORT"
