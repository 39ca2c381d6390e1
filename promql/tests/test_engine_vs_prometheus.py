"""The engine answers as Prometheus 2.42 does: every expression below goes to real Prometheus over the synthetic
blocks (prometheus_harness.py) and to `query_range` over the same arrays, and both answer the same series (label
sets), at the same steps, with the same values (relative 1e-6, absolute 1e-12 near zero, NaN equal to NaN).

The expressions cover what issue 25 lists: every matcher kind; rate/irate/increase/delta over several ranges;
*_over_time; the aggregations by and without; arithmetic with scalars and between vectors (on/ignoring);
comparisons with and without bool; and/or/unless; offset; histogram_quantile; abs/clamp/round; time(); absent."""
import numpy as np
import pytest

from promql.engine import Series, labels_match
from promql.tests.prometheus_harness import SPAN_MS, START_MS

EXPRESSIONS = [
    # Selectors: every matcher kind, a regex on __name__, and a matcher on a label no series has.
    "http_requests_total",
    'http_requests_total{job="api"}',
    'http_requests_total{code!="200"}',
    'http_requests_total{path=~"/api/.*"}',
    'http_requests_total{path!~"/api/.*|/health"}',
    '{__name__=~"queue_.*", queue!="emails"}',
    'node_temperature_celsius{sensor=~"cpu.", instance!="10.0.2.9:9100"}',
    'http_requests_total{datacenter=""}',
    # Counters and gauges over ranges.
    "rate(http_requests_total[1m])",
    "rate(http_requests_total[5m])",
    "rate(request_duration_seconds_count[90s])",
    "irate(http_requests_total[2m])",
    "increase(http_requests_total[10m])",
    "increase(http_requests_total[15s])",
    "delta(node_temperature_celsius[5m])",
    "delta(queue_depth[2m])",
    # *_over_time.
    "avg_over_time(node_temperature_celsius[5m])",
    "min_over_time(queue_depth[3m])",
    "max_over_time(queue_depth[3m])",
    "sum_over_time(node_temperature_celsius[2m])",
    "count_over_time(node_temperature_celsius[10m])",
    "quantile_over_time(0.9, node_temperature_celsius[10m])",
    "last_over_time(queue_depth[2m])",
    "stddev_over_time(node_temperature_celsius[10m])",
    # Aggregations, by and without.
    "sum(http_requests_total)",
    "sum by (job) (rate(http_requests_total[5m]))",
    "sum without (instance, path) (rate(http_requests_total[5m]))",
    "avg by (instance) (node_temperature_celsius)",
    "min without (sensor) (node_temperature_celsius)",
    "max by (job, instance) (http_requests_total)",
    "count by (code) (http_requests_total)",
    "topk(2, rate(http_requests_total[5m]))",
    "bottomk by (job) (1, rate(http_requests_total[5m]))",
    "quantile(0.5, queue_depth)",
    "quantile without (sensor) (0.25, node_temperature_celsius)",
    # Arithmetic: with scalars, between vectors one-to-one, with on and ignoring.
    "node_temperature_celsius * 9 / 5 + 32",
    "2 ^ 3 - queue_depth % 7",
    "-queue_depth",
    "rate(request_duration_seconds_sum[5m]) / rate(request_duration_seconds_count[5m])",
    'sum by (instance) (rate(http_requests_total{job="api"}[5m])) / on (instance) '
    "rate(request_duration_seconds_count[5m])",
    'http_requests_total{code="500"} / ignoring (code) http_requests_total{code="200", method="GET"}',
    # Comparisons, filters and bool.
    "queue_depth > 30",
    "queue_depth > bool 30",
    "node_temperature_celsius <= 50",
    "40 < node_temperature_celsius",
    "rate(http_requests_total[5m]) > rate(http_requests_total[5m] offset 10m)",
    'queue_depth{queue="emails"} != bool ignoring (queue) queue_depth{queue="thumbnails"}',
    # Set operators.
    'http_requests_total{job="api"} and http_requests_total{code="200"}',
    "queue_depth or node_temperature_celsius",
    'http_requests_total unless http_requests_total{method="POST"}',
    'queue_depth and on (job) http_requests_total{job="worker"}',
    # Offset.
    "queue_depth offset 5m",
    "rate(http_requests_total[5m] offset 1h)",
    'increase(http_requests_total{job="worker"}[3m] offset 2m)',
    # Histograms.
    "histogram_quantile(0.9, rate(request_duration_seconds_bucket[5m]))",
    "histogram_quantile(0.5, sum by (le) (rate(request_duration_seconds_bucket[5m])))",
    "histogram_quantile(0.99, sum by (le, instance) (increase(request_duration_seconds_bucket[2m])))",
    # Functions.
    'abs(node_temperature_celsius{sensor="outdoor"})',
    "clamp(node_temperature_celsius, 0, 50)",
    "clamp_min(queue_depth, 10)",
    "clamp_max(queue_depth, 10)",
    "round(queue_depth)",
    "round(node_temperature_celsius, 0.5)",
    "time()",
    "time() - 1704067200",
    "absent(nonexistent_metric)",
    'absent(queue_depth{queue="reports"})',
]

# (start, end, step): a minute grid on the 15 s scrapes, running 10 minutes past the data; and steps off
# every grid, starting between samples.
WINDOWS = {
    "minute-steps": (START_MS, START_MS + SPAN_MS + 10 * 60_000, 60_000),
    "odd-steps": (START_MS + 1_234, START_MS + SPAN_MS, 37_000),
}


def in_memory_fetch(series):
    """The engine's `fetch` over the harness's arrays: what storage would answer for the same samples."""
    def fetch(matchers, low_ms, high_ms):
        found = []
        for one in series:
            if labels_match(matchers, one.labels):
                lo, hi = np.searchsorted(one.ts_ms, [low_ms, high_ms + 1])
                if hi > lo:
                    found.append(Series(tuple(sorted(one.labels.items())), one.ts_ms[lo:hi], one.values[lo:hi]))
        return found
    return fetch


def assert_same_matrix(ours: dict, theirs: dict, expr: str) -> None:
    """Both matrices as {labels: (ts_ms, values)}: the same label sets, steps and values."""
    assert sorted(ours) == sorted(theirs), f"{expr}: label sets differ"
    for labels, (their_ts, their_values) in theirs.items():
        our_ts, our_values = ours[labels]
        np.testing.assert_array_equal(our_ts, their_ts, err_msg=f"{expr} {labels}: steps differ")
        close = np.isclose(our_values, their_values, rtol=1e-6, atol=1e-12, equal_nan=True)
        if not close.all():
            at = np.flatnonzero(~close)[:5]
            raise AssertionError(f"{expr} {labels}: values differ at {our_ts[at].tolist()}: "
                                 f"ours {our_values[at].tolist()}, Prometheus {their_values[at].tolist()}")


def engine_matrix(result) -> dict:
    assert result.result_type == "matrix", result.result_type
    matrix = {}
    for one in result.series:
        assert one.labels not in matrix, f"two series with labels {one.labels}"
        matrix[tuple(one.labels)] = (np.asarray(one.ts_ms, dtype=np.int64), np.asarray(one.values, dtype=np.float64))
    return matrix


def test_the_expressions_cover_what_issue_25_lists():
    assert len(EXPRESSIONS) >= 40
    text = " ".join(EXPRESSIONS)
    for construct in ('="', '!="', '=~"', '!~"', "rate(", "irate(", "increase(", "delta(", "_over_time(",
                      "sum ", "avg ", "min ", "max ", "count ", "topk(", "bottomk ", "quantile(", " by (", " without (",
                      " on (", " ignoring (", " bool ", " and ", " or ", " unless ", " offset ", "histogram_quantile(",
                      "abs(", "clamp(", "round(", "time()", "absent("):
        assert construct in text, construct


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_query_range_answers_as_prometheus_does(synthetic_prometheus, expr, window):
    assert_answers_as_prometheus(synthetic_prometheus, expr, window)


def assert_answers_as_prometheus(prometheus, expr: str, window: str) -> None:
    from promql.engine import query_range

    start_ms, end_ms, step_ms = WINDOWS[window]
    theirs = prometheus.client.query_range(expr, start_ms=start_ms, end_ms=end_ms, step_ms=step_ms)
    result = query_range(expr, in_memory_fetch(prometheus.series), start_ms=start_ms, end_ms=end_ms, step_ms=step_ms)
    assert_same_matrix(engine_matrix(result), theirs, expr)
