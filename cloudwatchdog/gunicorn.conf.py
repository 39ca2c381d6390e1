"""Gunicorn settings for `make run` (override with GUNICORN_WORKERS / GUNICORN_THREADS).

Four single-threaded workers on two cores, chosen by measurement (bench/ingest_http.py: 4 x 1
ahead of 3 x 1, 2 x 2, 3 x 2 and 4 x 2), with keep-alive connections spread over the workers.
"""
import gc
import os

# Every database statement of a web request ends within this (settings: 503 with a sentence when it does not).
os.environ.setdefault("DATABASE_STATEMENT_TIMEOUT", "60s")

workers = int(os.environ.get("GUNICORN_WORKERS", "4"))
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
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
