"""Where a 100-point (--points) JSON ingest request spends its time, in process (issue 26).

POSTs N 100-point bodies (known series, fresh timestamps) through cloudwatchdog.wsgi.application, the
WSGI callable gunicorn serves (its middleware lists included), under cProfile. Prints the top entries by
cumulative time, requests/s and CPU ms a request without the profiler
(the CPU figure is the steadier one on a shared machine), and per request: SQL statements (CONN_HEALTH_CHECKS'
SELECT 1 included) and Redis commands sent from the request's thread (a background sender's are counted
apart: they are off the request path).

usage: .venv/bin/python bench/ingest_profile.py [--requests 2000] [--top 25] [--path /api/v1/ingest/metrics]
It makes its own database (cloudwatchdog_bench_ingest) beside the configured one.
"""
import argparse
import cProfile
import io
import os
import pstats
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cloudwatchdog.settings")

import django  # noqa: E402

django.setup()

import orjson  # noqa: E402
import redis  # noqa: E402
from bench_db import fresh_database  # noqa: E402
from django.db import connection, connections  # noqa: E402

BENCH_DB = "cloudwatchdog_bench_ingest"
POINTS = 100


class RedisCounter:
    """Counts Redis commands by the thread that sends them."""

    def __init__(self):
        self.on_path = 0
        self.off_path = 0
        self.path_thread = threading.get_ident()
        original = redis.Redis.execute_command
        counter = self

        def counted(client, *args, **options):
            if threading.get_ident() == counter.path_thread:
                counter.on_path += 1
            else:
                counter.off_path += 1
            return original(client, *args, **options)

        redis.Redis.execute_command = counted


class QueryCounter:
    """Statements through Django's cursors, and CONN_HEALTH_CHECKS' SELECT 1 (is_usable, a raw cursor)."""

    def __init__(self):
        self.count = 0
        self.health_checks = 0
        original = type(connections["default"]).is_usable
        counter = self

        def counted(conn):
            counter.health_checks += 1
            return original(conn)

        type(connections["default"]).is_usable = counted

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        return execute(sql, params, many, context)


def bodies(count: int, points: int = POINTS) -> list[bytes]:
    # Live data: timestamps in the last seconds (older ones are late points, checked against chunks).
    start = datetime.now(timezone.utc) - timedelta(seconds=20)
    out = []
    for n in range(count):
        ts = (start + timedelta(microseconds=n * 2)).isoformat(timespec="microseconds").replace("+00:00", "Z")
        events = [{"source": "bench", "service": "profile", "resource_id": f"r{s}", "metric_name": "load",
                   "value": float(n + s), "timestamp": ts, "tags": {"env": "bench"}} for s in range(points)]
        out.append(orjson.dumps({"events": events}))
    return out


def post(application, path: str, key: str, body: bytes) -> str:
    environ = {
        "REQUEST_METHOD": "POST", "PATH_INFO": path, "SCRIPT_NAME": "", "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)), "HTTP_AUTHORIZATION": f"Bearer {key}",
        "HTTP_HOST": "127.0.0.1", "REMOTE_ADDR": "127.0.0.1", "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr, "wsgi.multithread": False,
        "wsgi.multiprocess": True, "wsgi.run_once": False, "wsgi.version": (1, 0),
    }
    status = []
    result = application(environ, lambda s, headers, exc_info=None: status.append(s))
    b"".join(result)
    if hasattr(result, "close"):
        result.close()
    return status[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--sort", default="cumulative", help="pstats sort key: cumulative (default) or tottime")
    parser.add_argument("--path", default="/api/v1/ingest/metrics")
    parser.add_argument("--points", type=int, default=POINTS, help="events a request (default 100)")
    args = parser.parse_args()
    fresh_database(BENCH_DB)
    from cloudwatchdog.wsgi import application
    from tenants.services import api_key_issue, tenant_create

    tenant = tenant_create(slug="profile")
    key = api_key_issue(tenant=tenant, scope="all").plaintext
    warm = bodies(args.requests * 3 + 50, args.points)
    for body in warm[:50]:  # series made, caches and connections warm
        status = post(application, args.path, key, body)
    print(f"status of the last warm-up request: {status}")
    redis_counter = RedisCounter()
    queries = QueryCounter()

    timed = warm[50:50 + args.requests]
    began, cpu_began = time.perf_counter(), time.thread_time()
    for body in timed:
        post(application, args.path, key, body)
    elapsed, cpu = time.perf_counter() - began, time.thread_time() - cpu_began

    counted = warm[50 + args.requests:50 + 2 * args.requests]
    redis_counter.on_path = redis_counter.off_path = 0
    with connection.execute_wrapper(queries):
        for body in counted:
            post(application, args.path, key, body)
    time.sleep(0.5)  # a background sender's commands land
    print(f"{args.path}: {args.requests / elapsed:,.0f} requests/s in process (no profiler), "
          f"{elapsed / args.requests * 1e3:.3f} ms a request, of which this thread's CPU {cpu / args.requests * 1e3:.3f} ms")
    print(f"per request: {queries.count / args.requests:.2f} SQL statements through Django (COPY apart) + "
          f"{queries.health_checks / args.requests:.2f} health checks, "
          f"{redis_counter.on_path / args.requests:.2f} Redis commands on the request's thread, "
          f"{redis_counter.off_path / args.requests:.2f} off it")

    profiled = warm[50 + 2 * args.requests:]
    profiler = cProfile.Profile()
    profiler.enable()
    for body in profiled:
        post(application, args.path, key, body)
    profiler.disable()
    stats = pstats.Stats(profiler).sort_stats(args.sort)
    stats.print_stats(args.top)


if __name__ == "__main__":
    main()
