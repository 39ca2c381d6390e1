"""Gunicorn settings for `make run` (override with GUNICORN_WORKERS / GUNICORN_THREADS)."""
import os

workers = int(os.environ.get("GUNICORN_WORKERS", "4"))
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
worker_class = "cloudwatchdog.gunicorn_worker.BalancedThreadWorker"  # gthread, keep-alive connections spread over workers
keepalive = 75
timeout = 120
accesslog = os.environ.get("GUNICORN_ACCESS_LOG")  # off by default: the ingest path is hot
errorlog = "-"
