#!/usr/bin/env bash
# Serve the API + admin (gunicorn), a Celery worker and Celery beat; print the demo tenant's key.
# Ctrl-C stops all three, and the embedded PostgreSQL/Redis if this script's settings started them.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
PORT="${PORT:-8000}"
BIND="${BIND:-127.0.0.1:${PORT}}"  # this machine only; BIND=0.0.0.0:8000 (with ALLOWED_HOSTS) to serve others
mkdir -p .data

KEY=$($PY manage.py create_tenant demo --name "Demo tenant" 2>/dev/null | tail -n 1)

pids=()
cleanup() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  # Give them 15 s to finish their work, then make sure nothing outlives make run.
  for _ in $(seq 30); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.5
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  if [ -z "${DATABASE_URL:-}" ] || [ -z "${REDIS_URL:-}" ]; then
    $PY -c "from pathlib import Path; from cloudwatchdog import embedded; embedded.stop_all(Path('.'))" || true
  fi
}
trap cleanup INT TERM EXIT

.venv/bin/celery -A cloudwatchdog worker --loglevel=INFO --concurrency="${CELERY_CONCURRENCY:-2}" &
pids+=($!)
.venv/bin/celery -A cloudwatchdog beat --loglevel=INFO --schedule .data/celerybeat-schedule &
pids+=($!)
.venv/bin/gunicorn cloudwatchdog.wsgi:application --config cloudwatchdog/gunicorn.conf.py --bind "${BIND}" &
pids+=($!)

cat <<MSG

CloudWatchDog is up:
  API      http://127.0.0.1:${PORT}/api/v1/   (schema: /api/schema/, docs: /api/docs/)
  admin    http://127.0.0.1:${PORT}/admin/    (create a user: .venv/bin/python manage.py createsuperuser)
  health   http://127.0.0.1:${PORT}/healthz
Demo tenant 'demo', new API key (shown once):
${KEY}

MSG
wait -n "${pids[@]}"
