"""Which requests the ingest pool serves, and how big each gunicorn pool is (issue 26).

Ingest (agents' writes) and everything else (API reads, the console, admin, /prometheus/, /metrics,
health) run in separate gunicorn pools, so a flood of one cannot queue the other. This one list is
what `make run`'s front (cloudwatchdog/front.py) routes by and what the README's nginx `map` must
match (tests/test_routes.py compares them). Both pools run the same application: a request routed
to the other pool is still answered, only without the isolation. No Django import here: gunicorn's
config file and the front read it before (or without) Django.
"""
from __future__ import annotations

import os

# (method, exact path): nginx's $uri and the front compare the path without its query string.
INGEST_ROUTES = (
    ("POST", "/api/v1/ingest/metrics"),
    ("POST", "/v1/metrics"),
    ("POST", "/otlp/v1/metrics"),
    ("POST", "/api/v1/write"),
    ("POST", "/api/v1/push"),
    ("POST", "/api/v1/ingest/noop"),  # the benchmarks' no-op, served only with BENCH_ENDPOINTS
)
_INGEST = frozenset(INGEST_ROUTES)

INGEST, INGEST_BULK, WEB, ALL = "ingest", "ingest_bulk", "web", "all"

# (workers, threads) per role, chosen by measurement on 2 cores (bench/mixed_load.py): ingest is
# CPU-bound Python, one thread per worker; reads wait on PostgreSQL more than they compute.
# ALL is one gunicorn serving everything (no GUNICORN_ROLE: tests, benchmarks, a single-pool host).
# INGEST_BULK serves the ingest requests of a key whose requests queue behind its share (a flood), as
# many at once as the ingest pool (make run's front hands out the ingest pool's slots to both).
POOL_SIZES = {INGEST: (3, 1), INGEST_BULK: (3, 1), WEB: (2, 2), ALL: (4, 1)}
# Ingest workers run at the first nice level, so behind nginx alone, where a flood reaches the ingest
# pool, the kernel runs reads first on shared cores. Where the front sends a flood to ingest_bulk (make
# run sets INGEST_NICE=0), the ingest pool serves tenants that do not flood, at the readers' level.
# A flood's at the second, so other tenants' writes and the Celery workers (at 10 and 12) pass it.
INGEST_NICE, INGEST_BULK_NICE = 5, 15


def pool_for(method: str, path: str) -> str:
    """The pool that serves a request; `path` may carry a query string."""
    return INGEST if (method, path.partition("?")[0]) in _INGEST else WEB


def pool_size(role: str, environ=os.environ) -> tuple[int, int]:
    """(workers, threads) of a role's gunicorn; GUNICORN_WORKERS / GUNICORN_THREADS override both roles."""
    workers, threads = POOL_SIZES[role]
    return int(environ.get("GUNICORN_WORKERS", workers)), int(environ.get("GUNICORN_THREADS", threads))
