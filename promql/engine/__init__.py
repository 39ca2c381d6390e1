"""PromQL evaluated on arrays: no Django, no database. The caller hands in `fetch`, which returns the raw samples
of the series a selector matches; the engine never reads storage itself, so it is tested against real
Prometheus on the same arrays (promql/tests/) and benchmarked without a server.

The contract, which the Django side (promql/selectors.py, promql/views.py) and the tests build on:

    fetch(matchers: tuple[Matcher, ...], low_ms: int, high_ms: int) -> list[Series]
        every series whose labels match all `matchers` (labels_match), with its samples low_ms <= t <= high_ms
        in ascending time. A value whose bits are STALE_NAN_BITS is a staleness marker.

    query_range(text, fetch, *, start_ms, end_ms, step_ms, lookback_ms=LOOKBACK_MS, max_samples=...) -> Result
    query_instant(text, fetch, *, time_ms, lookback_ms=LOOKBACK_MS, max_samples=...) -> Result
        raise BadData (the query or its parameters are wrong: HTTP 400 `bad_data`) or ExecutionError (it cannot
        be answered: HTTP 422 `execution`, e.g. too many samples, duplicate label sets).
"""
from promql.engine.evaluate import query_instant, query_range
from promql.engine.values import (
    LOOKBACK_MS,
    STALE_NAN_BITS,
    BadData,
    ExecutionError,
    Matcher,
    Result,
    Series,
    labels_match,
)

__all__ = ["LOOKBACK_MS", "STALE_NAN_BITS", "BadData", "ExecutionError", "Matcher", "Result", "Series",
           "labels_match", "query_instant", "query_range"]
