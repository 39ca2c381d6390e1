"""The database connections this host's roles may open, against what PostgreSQL accepts (issue 26).

A database check (Django runs those in `migrate` and `manage.py check --database default`), so an
operator who grows a pool or the Celery concurrency hears of it at deploy time, not as "too many
clients" under load. It counts one host; with several, the README's Production section adds theirs.
"""
from __future__ import annotations

import math
import os

from django.conf import settings
from django.core.checks import Tags, Warning, register
from django.db import DatabaseError, connections

from cloudwatchdog.routes import INGEST, INGEST_BULK, WEB, pool_size

# migrate / maintain_points and an operator's psql, beside the roles
SPARE_CONNECTIONS = 2


def connection_budget(environ=os.environ) -> dict[str, int]:
    """Connections each role may hold at once: one per gunicorn thread (CONN_MAX_AGE keeps it) and
    one per Celery process, beat and detection process."""
    return {
        "ingest pool": math.prod(pool_size(INGEST, environ)),
        "ingest_bulk pool": math.prod(pool_size(INGEST_BULK, environ)),
        "web pool": math.prod(pool_size(WEB, environ)),
        "worker": int(environ.get("CELERY_CONCURRENCY", 2)),
        "worker_bulk": int(environ.get("CELERY_BULK_CONCURRENCY", 1)),
        "beat": 1,
        "detection processes": settings.CLOUDWATCHDOG["DETECTION_PROCESSES"],
        "migrate and your sessions": SPARE_CONNECTIONS,
    }


@register(Tags.database)
def connection_budget_check(app_configs, databases=None, **kwargs):
    if not databases or "default" not in databases:
        return []
    try:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT current_setting('max_connections')::int"
                           " - current_setting('superuser_reserved_connections')::int")
            accepted = cursor.fetchone()[0]
    except DatabaseError:
        return []  # migrate says so itself
    budget = connection_budget()
    needed = sum(budget.values())
    if needed <= accepted:
        return []
    parts = ", ".join(f"{role} {count}" for role, count in budget.items())
    return [Warning(
        f"This host's roles may open {needed} database connections ({parts}); PostgreSQL accepts {accepted}.",
        hint="Raise PostgreSQL's max_connections, or lower GUNICORN_WORKERS / GUNICORN_THREADS, CELERY_CONCURRENCY, "
             "CELERY_BULK_CONCURRENCY or DETECTION_PROCESSES; with several hosts, count theirs too (README, Production).",
        id="cloudwatchdog.W001")]
