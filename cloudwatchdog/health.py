"""/healthz (the process is up and PostgreSQL answers) and /readyz (what is down, if anything).

Both answer without authentication, so they say what is down, never why (the log does).
"""
import logging

import redis
from django.conf import settings
from django.db import connection
from django.http import JsonResponse

logger = logging.getLogger(__name__)


def _postgres_ok() -> tuple[bool, str]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return True, "ok"
    except Exception as error:  # noqa: BLE001 - any failure means "down"
        logger.warning("health: PostgreSQL is down: %s", error)
        return False, "unavailable"


def _redis_ok() -> tuple[bool, str]:
    try:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=settings.REDIS_TIMEOUT_SECONDS,
                                      socket_connect_timeout=settings.REDIS_TIMEOUT_SECONDS)
        try:
            client.ping()
        finally:
            client.close()
        return True, "ok"
    except redis.RedisError as error:
        logger.warning("health: Redis is down: %s", error)
        return False, "unavailable: rate limits are per process, asynchronous runs and beat wait"


def healthz(request):
    ok, detail = _postgres_ok()
    response = JsonResponse({"status": "ok" if ok else "down", "postgres": detail}, status=200 if ok else 503)
    if not ok:
        response["Retry-After"] = "5"
    return response


def readyz(request):
    """Ready (200) while PostgreSQL answers; Redis down is "degraded", still 200: ingest and reads go on."""
    checks = {"postgres": _postgres_ok(), "redis": _redis_ok()}
    down = [name for name, (ok, _) in checks.items() if not ok]
    ready = checks["postgres"][0]
    status = "ready" if not down else ("degraded" if ready else "not ready")
    body = {"status": status, "checks": {name: detail for name, (_, detail) in checks.items()}}
    if down:
        body["detail"] = f"Down: {', '.join(down)}."
    response = JsonResponse(body, status=200 if ready else 503)
    if not ready:
        response["Retry-After"] = "5"
    return response
