"""The harness itself: Prometheus serves exactly the synthetic samples, so a difference the engine's comparison
finds is one of semantics."""
import numpy as np

from promql.tests.prometheus_harness import SPAN_MS, START_MS, parse_matrix


def test_prometheus_holds_exactly_the_synthetic_samples(synthetic_prometheus):
    # An instant query of a range selector answers the raw samples in its window.
    end_ms = START_MS + SPAN_MS + 1
    data = synthetic_prometheus.client.query_instant('{__name__=~".+"}[3h]', time_ms=end_ms)
    assert data["resultType"] == "matrix"
    stored = parse_matrix(data["result"])
    written = {tuple(sorted(s.labels.items())): s for s in synthetic_prometheus.series}
    assert set(stored) == set(written)
    for labels, (ts_ms, values) in stored.items():
        np.testing.assert_array_equal(ts_ms, written[labels].ts_ms, err_msg=str(labels))
        np.testing.assert_array_equal(values, written[labels].values, err_msg=str(labels))


def test_the_synthetic_series_hold_the_edges_the_comparison_needs():
    from promql.tests.prometheus_harness import synthetic_series

    series = synthetic_series()
    on_grid = [s for s in series if np.any(s.ts_ms % 60_000 == 0)]
    long_gaps = [s for s in series if np.any(np.diff(s.ts_ms) > 300_000)]
    resets = [s for s in series if s.labels["__name__"].endswith("_total") and np.any(np.diff(s.values) < 0)]
    irregular = [s for s in series if len(set(np.diff(s.ts_ms).tolist())) > 50]
    buckets = {s.labels.get("le") for s in series} - {None}
    assert on_grid and len(long_gaps) >= 3 and len(resets) >= 3 and len(irregular) >= 3
    assert "+Inf" in buckets and len(buckets) >= 5
    assert len({(s.labels["job"], s.labels["instance"]) for s in series}) >= 6
    assert all(np.all(np.diff(s.ts_ms) > 0) for s in series)
    assert min(s.ts_ms[0] for s in series) >= START_MS
