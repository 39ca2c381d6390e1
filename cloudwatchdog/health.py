"""/healthz (the process is up and PostgreSQL answers) and /readyz (what is down, if anything)."""
from django.db import connection
from django.http import JsonResponse


def _postgres_ok() -> tuple[bool, str]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return True, "ok"
    except Exception as error:  # noqa: BLE001 - any failure means "down"
        return False, f"{type(error).__name__}: {error}".strip()[:200]


def _redis_ok() -> tuple[bool, str]:
    try:
        from django.core.cache import cache

        cache._cache.get_client().ping()
        return True, "ok"
    except Exception as error:  # noqa: BLE001
        return False, f"{type(error).__name__}: {error}".strip()[:200]


def healthz(request):
    ok, detail = _postgres_ok()
    return JsonResponse({"status": "ok" if ok else "down", "postgres": detail}, status=200 if ok else 503)


def readyz(request):
    checks = {"postgres": _postgres_ok(), "redis": _redis_ok()}
    down = [name for name, (ok, _) in checks.items() if not ok]
    body = {"status": "ready" if not down else "not ready", "checks": {n: d for n, (_, d) in checks.items()}}
    if down:
        body["detail"] = f"Down: {', '.join(down)}."
    return JsonResponse(body, status=200 if not down else 503)
