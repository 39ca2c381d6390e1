"""Gunicorn settings for `make run` (override with GUNICORN_WORKERS / GUNICORN_THREADS)."""
import os

workers = int(os.environ.get("GUNICORN_WORKERS", "3"))
threads = int(os.environ.get("GUNICORN_THREADS", "2"))
worker_class = "gthread"  # keeps connections alive for agents that batch
keepalive = 75
timeout = 120
accesslog = os.environ.get("GUNICORN_ACCESS_LOG")  # off by default: the ingest path is hot
errorlog = "-"
