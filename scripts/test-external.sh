#!/usr/bin/env bash
# make test-external: the suite against Debian's PostgreSQL 15 and Redis 7 running as real
# services on this machine (installed with apt-get when missing), through DATABASE_URL and
# REDIS_URL, as a deployment runs it. Both are started here, on their own ports and data, and
# stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
PG_BIN=/usr/lib/postgresql/15/bin
PG_PORT="${EXTERNAL_PG_PORT:-55432}"
REDIS_PORT="${EXTERNAL_REDIS_PORT:-56379}"
ROOT_DIR="$(pwd)/.data/external"
PGDATA="$ROOT_DIR/postgres"

as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

missing=()
[ -x "$PG_BIN/pg_ctl" ] || missing+=(postgresql-15)
command -v redis-server >/dev/null || missing+=(redis-server)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts its own cluster and server on install; these tests use their own, on other ports.

mkdir -p "$ROOT_DIR"
stop() {
  as_postgres "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true
  [ -f "$ROOT_DIR/redis.pid" ] && kill "$(cat "$ROOT_DIR/redis.pid")" 2>/dev/null || true
}
trap stop EXIT
stop  # whatever an interrupted earlier run left

if [ ! -f "$PGDATA/PG_VERSION" ]; then
  install -d -o postgres -g postgres "$PGDATA"
  as_postgres "$PG_BIN/initdb" -D "$PGDATA" -U postgres --auth=trust --encoding=UTF8 >/dev/null
fi
chown postgres:postgres "$PGDATA" 2>/dev/null || true
as_postgres "$PG_BIN/pg_ctl" -D "$PGDATA" -w -l "$PGDATA/server.log" \
  -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k /tmp -c max_connections=200 -c shared_buffers=256MB" start >/dev/null
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
  --pidfile "$ROOT_DIR/redis.pid" --logfile "$ROOT_DIR/redis.log"

export DATABASE_URL="postgresql://postgres@127.0.0.1:$PG_PORT/cloudwatchdog"
export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
if [ -z "${SECRET_KEY:-}" ]; then
  SECRET_KEY=$($PY -c 'import secrets; print(secrets.token_urlsafe(50))')
fi
export SECRET_KEY
export POSTGRES_RESTART_COMMAND="runuser -u postgres -- $PG_BIN/pg_ctl -D $PGDATA -l $PGDATA/server.log -m fast -w restart"
[ "$(id -u)" = 0 ] || POSTGRES_RESTART_COMMAND="$PG_BIN/pg_ctl -D $PGDATA -l $PGDATA/server.log -m fast -w restart"
echo "PostgreSQL 15 on 127.0.0.1:$PG_PORT, Redis on 127.0.0.1:$REDIS_PORT"
# make run's Ctrl-C cycles start embedded servers of their own; make test runs them.
$PY -m pytest -q --ignore=tests/test_make_run.py "$@"
