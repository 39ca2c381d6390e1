"""PromQL query_range through our HTTP API against Prometheus 2.42's on the same data (issue 25).

usage: .venv/bin/python bench/promql.py [--series 1000] [--hours 24] [--interval 15] [--runs 5]

The data: --series counters (`bench_requests_total`, job = one of 10, instance = one per series) with a sample
every --interval seconds over --hours ending at the end of the UTC day before yesterday, so the whole window is
a closed day. Prometheus reads it from TSDB blocks built by `promtool tsdb create-blocks-from openmetrics`
(as backfilled history reads); we ingest it through the ingest service (points_ingest, past timestamps) into a
database of our own (`cloudwatchdog_bench_promql`, created fresh and migrated) and compact it, so it reads
from chunks as day-old data does. Our API runs under gunicorn with the deployed config (as `make run` serves).

Timed: `rate(bench_requests_total[5m])` and `sum by (job) (rate(bench_requests_total[5m]))` over the whole
window at step=60 s, each the median of --runs HTTP round trips (the answer read whole) after one warm-up,
through both servers' /api/v1/query_range, and our engine in-process (the same fetch, no HTTP) to show where
the time goes. The answers are compared once (same series, same values at rel 1e-6) before timing.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cloudwatchdog.settings")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402

from bench.bench_db import fresh_database  # noqa: E402
from promql.tests.prometheus_harness import (  # noqa: E402
    PrometheusClient,
    build_blocks,
    free_port,
    parse_matrix,
    running_prometheus,
)

BENCH_DB = "cloudwatchdog_bench_promql"
DAY_MS = 86_400_000
METRIC = "bench_requests_total"
QUERIES = (f"rate({METRIC}[5m])", f"sum by (job) (rate({METRIC}[5m]))")
STEP_MS = 60_000


def bench_series(count: int, times_ms: np.ndarray) -> list[tuple[dict, np.ndarray]]:
    """Counters of requests: whole increments a scrape (exact in any float text), one reset in ten series."""
    rng = np.random.default_rng(25)
    series = []
    for k in range(count):
        values = np.cumsum(rng.integers(0, 40, size=len(times_ms))).astype(np.float64)
        if k % 10 == 3:
            restart = len(values) // 3
            values[restart:] -= values[restart - 1]
        series.append(({"job": f"job-{k % 10}", "instance": f"host-{k:04d}:9100"}, values))
    return series


def write_openmetrics(series, times_ms: np.ndarray, path: Path) -> None:
    """One family, each series' samples together in time order, timestamps in seconds (whole seconds, exact)."""
    stamps = [f"{t // 1000}.{t % 1000:03d}" for t in times_ms.tolist()]
    with path.open("w") as out:
        for labels, values in series:
            prefix = f'{METRIC}{{instance="{labels["instance"]}",job="{labels["job"]}"}} '
            out.writelines(f"{prefix}{v:.1f} {t}\n" for v, t in zip(values.tolist(), stamps))
        out.write("# EOF\n")


def load_ours(tenant, series, times_ms: np.ndarray) -> tuple[float, dict]:
    """Every point through the ingest service, a batch of 10 scrapes of every series at a time, then compaction
    of the closed day; returns the seconds ingest took and compaction's report."""
    from metrics.ingest import Event
    from metrics.services import points_ingest
    from metrics.storage import points_compact

    began = time.perf_counter()
    per_call = max(1, 10_000 // len(series))
    for first in range(0, len(times_ms), per_call):
        events = [Event(service=labels["job"], resource_id=labels["instance"], metric_name=METRIC,
                        value=float(values[i]), timestamp=int(times_ms[i]) * 1000, kind="counter")
                  for i in range(first, min(first + per_call, len(times_ms))) for labels, values in series]
        result = points_ingest(tenant=tenant, events=events)
        assert not result.rejected, result.rejected[:3]
    ingested = time.perf_counter() - began
    return ingested, points_compact(tenant=tenant)


def app_env() -> dict:
    """The bench database and the project's Redis for a gunicorn of the app."""
    db = connection.settings_dict
    url = f"postgresql://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST'] or ''}:{db['PORT'] or ''}/{db['NAME']}"
    if db.get("OPTIONS", {}).get("host"):
        url = f"postgresql://{db['USER']}:@/{db['NAME']}?host={db['OPTIONS']['host']}"
    return {**os.environ, "DATABASE_URL": url, "REDIS_URL": settings.REDIS_URL,
            "SECRET_KEY": "bench-promql-" + "x" * 50, "DEBUG": "false"}


def start_gunicorn(log: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    root = Path(__file__).resolve().parent.parent
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "cloudwatchdog.wsgi:application", "--config",
         "cloudwatchdog/gunicorn.conf.py", "--bind", f"127.0.0.1:{port}"],
        cwd=root, env=app_env(), stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/prometheus/api/v1/status/buildinfo", timeout=2):
                pass
        except urllib.error.HTTPError:
            return process, port  # it answers (401 without a key)
        except OSError:
            assert process.poll() is None, log.read_text()[-3000:]
            time.sleep(0.3)
        else:
            return process, port
    raise RuntimeError(f"gunicorn did not answer within 60 s: {log.read_text()[-3000:]}")


def round_trips(client: PrometheusClient, query: str, window: dict, runs: int) -> tuple[float, dict]:
    """Median seconds of `runs` query_range round trips (body read whole) after a warm-up, and the answer."""
    params = {"query": query, "start": window["start"], "end": window["end"], "step": window["step"]}
    body = client.get("/api/v1/query_range", params, timeout=300)  # warm-up, and the answer to compare
    assert body["status"] == "success", body
    elapsed = []
    url = f"{client.base_url}/api/v1/query_range?{urllib.parse.urlencode(params)}"
    for _ in range(runs):
        began = time.perf_counter()
        with urllib.request.urlopen(urllib.request.Request(url, headers=client.headers), timeout=300) as response:
            response.read()
        elapsed.append(time.perf_counter() - began)
    return statistics.median(elapsed), parse_matrix(body["data"]["result"])


def in_process(tenant, query: str, start_ms: int, end_ms: int, runs: int) -> float:
    """Median seconds of the engine over the store's fetch, without HTTP or JSON."""
    from promql.engine import query_range
    from promql.selectors import tenant_fetch

    elapsed = []
    for _ in range(runs + 1):
        began = time.perf_counter()
        query_range(query, tenant_fetch(tenant=tenant), start_ms=start_ms, end_ms=end_ms, step_ms=STEP_MS)
        elapsed.append(time.perf_counter() - began)
    return statistics.median(elapsed[1:])


def same_answer(ours: dict, theirs: dict) -> str:
    if sorted(ours) != sorted(theirs):
        return f"different series ({len(ours)} ours, {len(theirs)} Prometheus')"
    for labels, (ts, values) in theirs.items():
        our_ts, our_values = ours[labels]
        if not np.array_equal(ts, our_ts) or not np.allclose(our_values, values, rtol=1e-6, atol=1e-12,
                                                               equal_nan=True):
            return f"different values for {dict(labels)}"
    return f"same answer ({len(theirs)} series, {sum(len(ts) for ts, _ in theirs.values()):,} values)"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--interval", type=int, default=15, help="seconds between a series' samples")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    end_ms = (int(time.time() * 1000) // DAY_MS - 1) * DAY_MS  # midnight starting yesterday
    start_ms = end_ms - args.hours * 3600_000
    times_ms = np.arange(start_ms, end_ms, args.interval * 1000, dtype=np.int64)
    series = bench_series(args.series, times_ms)
    points = len(series) * len(times_ms)
    print(f"{args.series:,} series x {args.hours} h at {args.interval} s = {points:,} samples")

    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if not (prometheus and promtool):
        sys.exit("Needs Debian's Prometheus: apt-get install prometheus")
    window = {"start": f"{start_ms // 1000}", "end": f"{end_ms // 1000}", "step": f"{STEP_MS // 1000}"}

    with tempfile.TemporaryDirectory(prefix="bench-promql-") as workdir:
        workdir = Path(workdir)
        began = time.perf_counter()
        write_openmetrics(series, times_ms, workdir / "bench.om")
        build_blocks(promtool, workdir / "bench.om", workdir / "data")
        (workdir / "bench.om").unlink()
        print(f"Prometheus: blocks built in {time.perf_counter() - began:.0f} s")

        fresh_database(BENCH_DB)
        from tenants.services import api_key_issue, tenant_create

        tenant = tenant_create(slug="bench-promql")
        key = api_key_issue(tenant=tenant, scope="read").plaintext
        ingested, compaction = load_ours(tenant, series, times_ms)
        print(f"CloudWatchDog: ingested in {ingested:.0f} s ({points / ingested:,.0f} points/s), compacted "
              f"{compaction['points']:,} points into {compaction['chunks']:,} chunks in {compaction['seconds']:.0f} s")
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")

        gunicorn, port = start_gunicorn(workdir / "gunicorn.log")
        try:
            ours = PrometheusClient(f"http://127.0.0.1:{port}/prometheus",
                                    headers={"Authorization": f"Bearer {key}"})
            with running_prometheus(prometheus, workdir, storage=workdir / "data") as theirs:
                rows = []
                for query in QUERIES:
                    their_s, their_answer = round_trips(theirs, query, window, args.runs)
                    our_s, our_answer = round_trips(ours, query, window, args.runs)
                    engine_s = in_process(tenant, query, start_ms, end_ms, args.runs)
                    rows.append((query, our_s, engine_s, their_s, same_answer(our_answer, their_answer)))
        finally:
            gunicorn.terminate()
            gunicorn.wait(timeout=30)

    print(f"\nquery_range over {args.hours} h at step={STEP_MS // 1000}s, median of {args.runs} (seconds):")
    print(f"{'query':42} {'ours HTTP':>10} {'ours in-process':>16} {'Prometheus':>11} {'ratio':>6}")
    for query, our_s, engine_s, their_s, verdict in rows:
        print(f"{query:42} {our_s:10.3f} {engine_s:16.3f} {their_s:11.3f} {our_s / their_s:5.1f}x  {verdict}")


if __name__ == "__main__":
    main()
