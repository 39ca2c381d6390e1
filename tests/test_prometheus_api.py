"""Issue 25's acceptance: Debian's Prometheus 2.42 in server mode scrapes itself every second into its own TSDB
and remote-writes to us; once everything up to a time T has been sent, PromQL queries over its own metrics go to
both query_range endpoints, ending at or before T, and the answers are the same series with the same values at
every step. promtool reads our /prometheus as it reads Prometheus.

One Prometheus run serves every query (about 65 s). Prometheus' own counters, gauges and histograms, all steady
while it runs, and the quantiles of its query-duration summary, NaN samples throughout (it runs no query until
the window has been sent): NaN is kept for PromQL and reads "NaN" as Prometheus answers."""
import base64
import subprocess
import time
import urllib.request

import numpy as np
import pytest

from promql.tests.prometheus_harness import PrometheusClient, free_port, running_prometheus

QUERIES = [
    # Selectors, every matcher kind.
    "up",
    'prometheus_http_requests_total{job="prometheus"}',
    'prometheus_http_requests_total{handler!="/metrics"}',
    'prometheus_http_request_duration_seconds_count{handler=~"/api/v1/.*|/metrics"}',
    '{__name__=~"prometheus_tsdb_head_(series|chunks)", job!~"node.*"}',
    # rate, irate, increase, delta over several ranges.
    "rate(prometheus_http_requests_total[5s])",
    "rate(prometheus_tsdb_head_samples_appended_total[1m])",
    "irate(process_cpu_seconds_total[5s])",
    "increase(prometheus_tsdb_head_samples_appended_total[30s])",
    "delta(go_goroutines[30s])",
    # Aggregations, by and without.
    "sum by (handler) (rate(prometheus_http_requests_total[30s]))",
    "sum without (code) (prometheus_http_requests_total)",
    "avg without (handler) (rate(prometheus_http_request_duration_seconds_count[30s]))",
    "max by (le) (prometheus_http_request_duration_seconds_bucket)",
    'count by (job) ({__name__=~"prometheus_tsdb_.*", quantile=""})',
    'topk(2, {__name__=~"go_memstats_.*_bytes"})',
    # Arithmetic, with scalars and between vectors (one-to-one, on and ignoring).
    "go_memstats_alloc_bytes / 1024 / 1024",
    "process_resident_memory_bytes - go_memstats_heap_inuse_bytes",
    "rate(prometheus_http_request_duration_seconds_sum[30s]) / rate(prometheus_http_request_duration_seconds_count[30s])",
    'prometheus_http_request_duration_seconds_count{handler="/metrics"} / ignoring (code) '
    'prometheus_http_requests_total{handler="/metrics"}',
    "scrape_samples_scraped / on (instance) up",
    # Comparisons, with and without bool.
    "go_goroutines > 10",
    "go_goroutines > bool 1000",
    "prometheus_http_requests_total < bool 5",
    # offset and *_over_time.
    "go_memstats_alloc_bytes offset 20s",
    "rate(prometheus_http_requests_total[30s] offset 10s)",
    "max_over_time(go_goroutines[30s])",
    "avg_over_time(process_resident_memory_bytes[20s])",
    "count_over_time(up[1m])",
    # histogram_quantile over Prometheus' own request durations.
    "histogram_quantile(0.9, rate(prometheus_http_request_duration_seconds_bucket[30s]))",
    "histogram_quantile(0.5, sum by (le) (rate(prometheus_http_request_duration_seconds_bucket[1m])))",
    # A summary's quantiles while it is empty: NaN samples, selected and counted in windows.
    'prometheus_engine_query_duration_seconds{quantile="0.9"}',
    'count_over_time(prometheus_engine_query_duration_seconds{slice="inner_eval"}[10s])',
]


def _own_metrics(prometheus: PrometheusClient) -> dict[str, float]:
    """Prometheus' remote-storage metrics from its /metrics, summed over their labels."""
    with urllib.request.urlopen(f"{prometheus.base_url}/metrics", timeout=5) as response:
        text = response.read().decode()
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("prometheus_remote_storage_"):
            series, _, value = line.rpartition(" ")
            name = series.split("{")[0]
            found[name] = found.get(name, 0.0) + float(value)
    return found


def _sent_up_to(prometheus: PrometheusClient, seconds: float, *, deadline: float) -> dict[str, float]:
    """Waits until every sample up to `seconds` (Unix time) has been remote-written, and answers the counters."""
    while time.time() < deadline:
        try:
            counters = _own_metrics(prometheus)
        except OSError:
            counters = {}
        if counters.get("prometheus_remote_storage_queue_highest_sent_timestamp_seconds", 0) >= seconds:
            return counters
        time.sleep(0.5)
    raise AssertionError(f"Prometheus had not sent its samples up to {seconds} in time: {counters}")


def _differences(ours: dict, theirs: dict, query: str) -> list[str]:
    """What differs between two matrices {labels: (ts_ms, values)}, as sentences (none: the same answer)."""
    if sorted(ours) != sorted(theirs):
        return [f"{query}: label sets differ: only ours {sorted(set(ours) - set(theirs))[:3]}, "
                f"only Prometheus' {sorted(set(theirs) - set(ours))[:3]}"]
    problems = []
    for labels, (their_ts, their_values) in theirs.items():
        our_ts, our_values = ours[labels]
        if not np.array_equal(our_ts, their_ts):
            problems.append(f"{query} {dict(labels)}: steps differ ({len(our_ts)} ours, {len(their_ts)} theirs)")
            continue
        close = np.isclose(our_values, their_values, rtol=1e-6, atol=1e-12, equal_nan=True)
        if not close.all():
            at = np.flatnonzero(~close)[:3]
            problems.append(f"{query} {dict(labels)}: at {our_ts[at].tolist()} ours {our_values[at].tolist()}, "
                            f"Prometheus {their_values[at].tolist()}")
    return problems


def _promtool(promtool: str, *args: str) -> str:
    done = subprocess.run([promtool, "query", *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"promtool query {args[0]}: {done.stderr or done.stdout}"
    return done.stdout


def _promtool_reads_us(promtool: str, url: str, *, start_ms: int, end_ms: int) -> None:
    """promtool 2.42 has no HTTP config: the key goes as the URL's userinfo, which Go sends as Basic auth."""
    instant = _promtool(promtool, "instant", "--time", str(end_ms / 1000), url, 'up{job="prometheus"}')
    assert 'up{instance=' in instant and "=> 1 @[" in instant, instant
    ranged = _promtool(promtool, "range", "--start", str(start_ms / 1000), "--end", str(end_ms / 1000),
                       "--step", "10s", url, "rate(prometheus_http_requests_total[30s])")
    assert "prometheus_http_requests_total" not in ranged and 'handler="/metrics"' in ranged, ranged
    labels = _promtool(promtool, "labels", url, "handler")
    assert "/metrics" in labels.split(), labels
    series = _promtool(promtool, "series", "--match", 'up{job="prometheus"}', url)
    assert series.startswith('{__name__="up", instance="127.0.0.1:'), series


@pytest.mark.django_db(transaction=True)
def test_prometheus_and_our_api_answer_the_same_range_queries_over_what_it_remote_wrote(
        live_server, make_tenant, prometheus_binaries, tmp_path):
    prometheus_binary, promtool = prometheus_binaries
    client = make_tenant("self-scraper")
    slug, key = client.tenant.slug, client.key
    port = free_port()
    config = f"""
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ["127.0.0.1:{port}"]
remote_write:
  - url: {live_server.url}/api/v1/write
    basic_auth:
      username: {slug}
      password: {key}
    queue_config:
      batch_send_deadline: 1s
      min_backoff: 100ms
      max_backoff: 1s
      retry_on_http_429: true
"""
    basic = base64.b64encode(f"{slug}:{key}".encode()).decode()
    ours = PrometheusClient(f"{live_server.url}/prometheus", headers={"Authorization": f"Basic {basic}"})
    with running_prometheus(prometheus_binary, tmp_path, config=config, port=port) as theirs:
        started = time.time()
        _sent_up_to(theirs, started + 60, deadline=started + 150)
        end_ms = int((started + 60) * 1000)
        # Shards send in parallel: once a later sample went out, every batch up to `end` has been flushed.
        counters = _sent_up_to(theirs, started + 63, deadline=started + 150)
        assert counters.get("prometheus_remote_storage_samples_failed_total", 0) == 0, counters
        assert counters.get("prometheus_remote_storage_samples_total", 0) > 10_000, counters

        start_ms = int(started * 1000) + 2_345  # off the scrape grid
        problems, answered = [], 0
        for query in QUERIES:
            expected = theirs.query_range(query, start_ms=start_ms, end_ms=end_ms, step_ms=1_000)
            answered += bool(expected)
            problems += _differences(ours.query_range(query, start_ms=start_ms, end_ms=end_ms, step_ms=1_000),
                                     expected, query)
        assert problems == []
        assert answered == len(QUERIES)
        _promtool_reads_us(promtool, f"http://{slug}:{key}@{live_server.url.split('://')[1]}/prometheus",
                           start_ms=start_ms, end_ms=end_ms)
