"""Gunicorn settings for `make run` and the Procfile's roles.

GUNICORN_ROLE picks the pool's size (cloudwatchdog/routes.py, POOL_SIZES): `ingest` (agents' writes,
3 single-threaded workers, at INGEST_NICE) and `web` (everything else, 2 workers x 2 threads) run apart so a
flood of one cannot queue the other; `ingest_bulk` (the same as ingest, at INGEST_BULK_NICE) serves
the writes of a key whose requests queue behind its share, when make run's front sends them there;
unset, one gunicorn serves everything with 4 single-threaded workers (bench/ingest_http.py: 4 x 1
ahead of 3 x 1, 2 x 2, 3 x 2 and 4 x 2 for ingest alone).
GUNICORN_WORKERS / GUNICORN_THREADS override the role's counts. Each worker thread keeps one
database connection (CONN_MAX_AGE), so a pool holds at most workers x threads of them.
"""
import gc
import os

# gunicorn puts its working directory on sys.path before it reads this file
from cloudwatchdog.routes import ALL, INGEST, INGEST_BULK, INGEST_BULK_NICE, INGEST_NICE, POOL_SIZES, pool_size

# Every database statement of a web request ends within this (settings: 503 with a sentence when it does not).
os.environ.setdefault("DATABASE_STATEMENT_TIMEOUT", "60s")

role = os.environ.get("GUNICORN_ROLE") or ALL
if role not in POOL_SIZES:
    raise SystemExit(f"GUNICORN_ROLE={role!r}: expected one of {', '.join(sorted(POOL_SIZES))}")
workers, threads = pool_size(role)
proc_name = f"cloudwatchdog-{role}"
worker_class = "cloudwatchdog.gunicorn_worker.BalancedThreadWorker"  # gthread, keep-alive connections spread over workers
keepalive = 75
timeout = 120
graceful_timeout = 10  # requests in flight get this long on TERM; make run's Ctrl-C allows 15 s in all
accesslog = os.environ.get("GUNICORN_ACCESS_LOG")  # off by default: the ingest path is hot
errorlog = "-"
# Gunicorn 27 opens a control socket at one path per user ($XDG_RUNTIME_DIR or ~/.gunicorn/gunicorn.ctl):
# a second instance on the host would take the first one's. An instance has one only when it names its own.
control_socket = os.environ.get("GUNICORN_CONTROL_SOCKET", "")
control_socket_disable = not control_socket


def post_worker_init(worker):
    # Django and the app are loaded and never freed: keep them out of every later collection, so a
    # full collection walks only what requests allocate.
    gc.freeze()
    if role in (INGEST, INGEST_BULK):
        # On shared cores a flood (served by ingest_bulk) then waits for reads and other tenants' writes
        # (and, at an INGEST_NICE above 0, the ingest pool's writes for reads).
        os.nice(int(os.environ.get("INGEST_NICE", INGEST_NICE)) if role == INGEST
                else int(os.environ.get("INGEST_BULK_NICE", INGEST_BULK_NICE)))
        from cloudwatchdog.backend_priority import own_session_follows_nice

        own_session_follows_nice(role_pid=os.getppid())  # else the nice level counts for nothing against reads
