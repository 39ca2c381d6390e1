"""More of the engine against Prometheus 2.42 (test_engine_vs_prometheus.py has the issue's list): subqueries,
group_left/right, @, the functions beyond the issue's, NaN and infinities, and the execution errors, whose words
must be Prometheus' own. Same synthetic blocks, same comparison."""
import json

import pytest

from promql.engine import ExecutionError, query_range
from promql.tests.test_engine_vs_prometheus import WINDOWS, assert_answers_as_prometheus, in_memory_fetch

EXPRESSIONS = [
    # Subqueries: the epoch-aligned inner grid, default step, offset, nesting, a range function over them.
    "max_over_time(rate(http_requests_total[5m])[30m:1m])",
    "min_over_time(node_temperature_celsius[10m:])",
    "avg_over_time(queue_depth[7m:45s])",
    "rate(sum by (job) (http_requests_total)[10m:30s])",
    "sum_over_time(queue_depth[10m:1m] offset 5m)",
    "max_over_time(deriv(node_temperature_celsius[5m])[20m:2m])",
    "count_over_time((queue_depth > 30)[15m:1m])",
    "quantile_over_time(0.5, node_temperature_celsius[30m:90s])",
    "max_over_time(max_over_time(queue_depth[5m:30s])[20m:1m])",
    "changes(round(node_temperature_celsius)[30m:1m])",
    # Many-to-one matching.
    "queue_depth / on(instance) group_left sum by (instance) (queue_depth)",
    "rate(http_requests_total[5m]) / ignoring(code) group_left sum without (code) (rate(http_requests_total[5m]))",
    "sum by (job) (rate(http_requests_total[5m])) / on(job) group_right rate(http_requests_total[5m])",
    'http_requests_total > on(instance) group_left(queue) queue_depth{queue="emails"}',
    # @ and negative offsets.
    "http_requests_total @ end()",
    "rate(http_requests_total[5m] @ start())",
    "node_temperature_celsius @ 1704070800",
    "predict_linear(node_temperature_celsius[10m] offset 3m, 600)",
    "min_over_time(node_temperature_celsius[1m] offset -1m)",
    # Range functions beyond the list.
    "idelta(node_temperature_celsius[2m])",
    "changes(queue_depth[10m])",
    "resets(http_requests_total[30m])",
    "deriv(node_temperature_celsius[10m])",
    "stdvar_over_time(queue_depth[10m])",
    "present_over_time(queue_depth[1m])",
    "holt_winters(node_temperature_celsius[10m], 0.5, 0.3)",
    "holt_winters(http_requests_total[3m], 0.8, 0.2)",
    'absent_over_time(queue_depth{queue="reports"}[5m])',
    # Aggregations beyond the list.
    "stddev by (job) (node_temperature_celsius)",
    "stdvar(queue_depth)",
    "group by (code) (http_requests_total)",
    'count_values("v", round(node_temperature_celsius))',
    "topk by (job) (1, http_requests_total)",
    "quantile(1.5, queue_depth)",
    "quantile(scalar(vector(NaN)), queue_depth)",
    "quantile_over_time(NaN, queue_depth[5m])",
    "histogram_quantile(NaN, rate(request_duration_seconds_bucket[5m]))",
    "sum by (__name__) ({__name__=~\"http_requests_total|queue_depth\"})",
    # Functions.
    'label_replace(queue_depth, "q", "x-$1", "queue", "(.*)s")',
    'label_replace(http_requests_total, "a", "$1$2${1}x$x$$", "code", "(.)(.)")',
    'label_join(queue_depth, "both", "/", "job", "queue")',
    "timestamp(node_temperature_celsius)",
    "timestamp(rate(http_requests_total[5m]))",
    "scalar(sum(queue_depth)) * queue_depth",
    "vector(time()) - timestamp(queue_depth)",
    "hour(timestamp(queue_depth))",
    "minute()",
    "day_of_week()",
    "days_in_month()",
    "day_of_month(vector(1704067200 + 86400 * 45.5))",
    "asin(node_temperature_celsius / 100) + acosh(node_temperature_celsius) - atanh(node_temperature_celsius / 100)",
    "deg(node_temperature_celsius) * pi()",
    "exp(node_temperature_celsius / 100) + ln(queue_depth) + log2(queue_depth) - log10(queue_depth)",
    "sqrt(queue_depth) * sgn(node_temperature_celsius - 55)",
    "node_temperature_celsius atan2 10",
    "node_temperature_celsius atan2 on(instance, sensor) node_temperature_celsius",
    "sort_desc(rate(http_requests_total[5m]))",
    "histogram_quantile(0.5, request_duration_seconds_bucket{le=~\"0.1|\\\\+Inf\"})",
    "histogram_quantile(0, rate(request_duration_seconds_bucket[5m]))",
    "histogram_quantile(1, rate(request_duration_seconds_bucket[5m]))",
    # NaN and infinities.
    "queue_depth / 0",
    "(queue_depth - queue_depth) / 0",
    "queue_depth % -7",
    "(queue_depth - queue_depth) / 0 != bool 1",
    "max((queue_depth - queue_depth) / 0)",
    "sum((queue_depth - queue_depth) / 0)",
    "clamp(queue_depth, 10, 5)",
]

ERRORS = [
    "http_requests_total / on(job) http_requests_total",
    "sum by (job) (http_requests_total) / on(job) group_left http_requests_total",
    'label_replace(http_requests_total, "code", "", "code", ".*")',
    'label_replace(http_requests_total, "1bad", "x", "code", ".*")',
    'label_replace(http_requests_total, "x", "$1", "code", "(")',
    'count_values("bad-label", queue_depth)',
    "topk(scalar(count(queue_depth)) - 1, queue_depth)",
    "holt_winters(queue_depth[5m], 1, 0.5)",
    "holt_winters(queue_depth[5m], 0.5, 0)",
]


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_query_range_answers_as_prometheus_does(synthetic_prometheus, expr, window):
    assert_answers_as_prometheus(synthetic_prometheus, expr, window)


@pytest.mark.parametrize("expr", ERRORS)
def test_execution_errors_say_what_prometheus_says(synthetic_prometheus, expr):
    start_ms, end_ms, step_ms = WINDOWS["minute-steps"]
    with pytest.raises(AssertionError, match="answered 422") as refused:
        synthetic_prometheus.client.query_range(expr, start_ms=start_ms, end_ms=end_ms, step_ms=step_ms)
    theirs = json.loads(str(refused.value).split("answered 422: ", 1)[1])
    assert theirs["errorType"] == "execution"
    with pytest.raises(ExecutionError) as ours:
        query_range(expr, in_memory_fetch(synthetic_prometheus.series),
                    start_ms=start_ms, end_ms=end_ms, step_ms=step_ms)
    assert str(ours.value) == theirs["error"]
