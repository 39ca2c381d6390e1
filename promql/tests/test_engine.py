"""The engine on arrays, against values worked out by hand from Prometheus 2.42's rules (no database)."""

import math

import numpy as np
import pytest

from promql.engine import STALE_NAN_BITS, BadData, ExecutionError, Series, labels_match, query_instant, query_range

STALE = np.array([STALE_NAN_BITS], dtype=np.int64).view(np.float64)[0]


def labels(**pairs):
    return tuple(sorted(pairs.items()))


def series(name, points, **pairs):
    ts = np.array([t for t, _ in points], dtype=np.int64)
    values = np.array([v for _, v in points], dtype=np.float64)
    return Series(labels(__name__=name, **pairs), ts, values)


class Store:
    """A dict-backed fetch that also records what it was asked for."""

    def __init__(self, *stored):
        self.stored = list(stored)
        self.calls = []

    def __call__(self, matchers, low_ms, high_ms):
        self.calls.append((matchers, low_ms, high_ms))
        out = []
        for s in self.stored:
            if labels_match(matchers, dict(s.labels)):
                inside = (s.ts_ms >= low_ms) & (s.ts_ms <= high_ms)
                out.append(Series(s.labels, s.ts_ms[inside], s.values[inside]))
        return out


def only(text, store, t_s):
    result = query_instant(text, store, time_ms=int(t_s * 1000))
    assert result.result_type == "vector", result
    assert len(result.series) == 1, result.series
    return result.series[0]


def every_15s(name, start_s, end_s, value=lambda t: t, **pairs):
    return series(name, [(t * 1000, value(t)) for t in range(start_s, end_s + 1, 15)], **pairs)


# --- selectors, lookback and staleness ------------------------------------------------------------------------

def test_lookback_lower_bound_is_inclusive_at_exactly_five_minutes():
    store = Store(series("x", [(100_000, 7.0)]))
    assert only("x", store, 400).values[0] == 7.0  # 400 s - 300 s = 100 s: still seen (2.x)
    assert query_instant("x", store, time_ms=400_001).series == []
    assert query_instant("x", store, time_ms=99_999).series == []


def test_the_newest_sample_at_or_before_the_step_is_taken_and_the_step_time_reported():
    store = Store(series("x", [(10_000, 1.0), (20_000, 2.0), (30_000, 3.0)]))
    result = query_range("x", store, start_ms=15_000, end_ms=30_000, step_ms=5_000)
    (only_series,) = result.series
    assert only_series.ts_ms.tolist() == [15_000, 20_000, 25_000, 30_000]
    assert only_series.values.tolist() == [1.0, 2.0, 2.0, 3.0]


def test_a_stale_marker_ends_the_series_at_once():
    store = Store(series("x", [(10_000, 1.0), (20_000, STALE), (40_000, 4.0)]))
    result = query_range("x", store, start_ms=10_000, end_ms=40_000, step_ms=10_000)
    assert result.series[0].ts_ms.tolist() == [10_000, 40_000]


def test_offset_and_at_move_the_reading_time():
    store = Store(series("x", [(t * 1000, float(t)) for t in range(0, 601, 60)]))
    assert only("x offset 2m", store, 600).values[0] == 480.0
    assert only("x @ 300", store, 600).values[0] == 300.0
    result = query_range("x @ end()", store, start_ms=0, end_ms=600_000, step_ms=300_000)
    assert result.series[0].values.tolist() == [600.0, 600.0, 600.0]


def test_every_matcher_kind_and_the_name_matcher():
    store = Store(series("x", [(0, 1.0)], job="a"), series("x", [(0, 2.0)], job="b"),
                  series("y", [(0, 3.0)], job="a"))
    values = lambda text: sorted(float(s.values[0]) for s in query_instant(text, store, time_ms=0).series)  # noqa: E731
    assert values('x{job="a"}') == [1.0]
    assert values('x{job!="a"}') == [2.0]
    assert values('{job=~"a|b", __name__=~"x|y"}') == [1.0, 2.0, 3.0]
    assert values('{__name__!~"x", job=~".+"}') == [3.0]
    assert values('x{job=~"a.*", job!~"b"}') == [1.0]


def test_each_selector_is_fetched_once_over_its_whole_span():
    store = Store(every_15s("x", 0, 3600))
    query_range("rate(x[10m] offset 1m)", store, start_ms=1_200_000, end_ms=3_600_000, step_ms=60_000)
    assert len(store.calls) == 1
    _, low, high = store.calls[0]
    assert (low, high) == (1_200_000 - 60_000 - 600_000, 3_600_000 - 60_000)


# --- rate and friends ----------------------------------------------------------------------------------------

def test_rate_of_a_steady_counter_covering_the_window():
    store = Store(every_15s("c", 0, 900, lambda t: 10.0 * t))
    assert only("rate(c[5m])", store, 600).values[0] == pytest.approx(10.0)
    assert only("increase(c[5m])", store, 600).values[0] == pytest.approx(3000.0)


def test_a_sample_on_the_window_start_is_inside_the_window():
    # samples at 300, 315, ..., 600: 21 samples, the first exactly on the window's start (2.x: closed).
    store = Store(every_15s("c", 300, 600, lambda t: float(t)))
    s = only("count_over_time(c[5m])", store, 600)
    assert s.values[0] == 21.0
    assert only("increase(c[5m])", store, 600).values[0] == pytest.approx(300.0)


def test_extrapolation_of_a_counter_starting_inside_the_window():
    # First sample at 500 s with value 100, then +10 each 15 s until 590 s; window [300, 600].
    store = Store(every_15s("c", 500, 590, lambda t: 100.0 + (t - 500) / 15 * 10))
    # samples at 500..590: 7 samples, result 60, sampled 90 s, avg 15 s, to start 200 s, to end 10 s.
    # durationToZero = 90 * 100/60 = 150 s < 200 s, but 150 > 16.5 threshold: extrapolate avg/2 = 7.5 s.
    # to end 10 s < 16.5: add 10. Interval 107.5 s -> 60 * 107.5 / 90.
    expected = 60 * 107.5 / 90
    assert only("increase(c[5m])", store, 600).values[0] == pytest.approx(expected)
    assert only("rate(c[5m])", store, 600).values[0] == pytest.approx(expected / 300)


def test_extrapolation_stops_at_the_counter_zero_point():
    # Counter starting at 2 at 590 s..., window [300, 600]: 590 -> 2, 595 -> 12.
    store = Store(series("c", [(585_000, 2.0), (595_000, 12.0)]))
    # result 10, sampled 10 s, avg 10 s; to start 285 s, zero point 10 * 2/10 = 2 s -> to start 2 s (< 11)
    # to end 5 s (< 11). Interval 17 s -> 10 * 17 / 10 = 17.
    assert only("increase(c[5m])", store, 600).values[0] == pytest.approx(17.0)
    # delta is not a counter: no zero clamp; to start 285 s > 11 -> +5 s; interval 10+5+5 = 20 -> 20.
    assert only("delta(c[5m])", store, 600).values[0] == pytest.approx(20.0)


def test_a_counter_reset_adds_the_value_before_it():
    store = Store(series("c", [(300_000, 10.0), (360_000, 20.0), (420_000, 5.0), (480_000, 15.0),
                               (540_000, 25.0), (600_000, 35.0)]))
    # raw increase: 35 - 10 + 20 (lost at the reset) = 45 over exactly [300, 600]: no extrapolation needed.
    assert only("increase(c[5m])", store, 600).values[0] == pytest.approx(45.0)
    assert only("resets(c[5m])", store, 600).values[0] == 1.0
    assert only("changes(c[5m])", store, 600).values[0] == 5.0
    assert only("irate(c[5m])", store, 420).values[0] == pytest.approx(5.0 / 60)  # reset: last value / interval
    assert only("idelta(c[5m])", store, 420).values[0] == pytest.approx(-15.0)


def test_rate_needs_two_samples():
    store = Store(series("c", [(590_000, 5.0)]))
    assert query_instant("rate(c[5m])", store, time_ms=600_000).series == []
    assert only("count_over_time(c[5m])", store, 600).values[0] == 1.0


def test_stale_markers_inside_a_window_are_dropped():
    store = Store(series("c", [(300_000, 1.0), (400_000, STALE), (500_000, 3.0)]))
    assert only("count_over_time(c[5m])", store, 600).values[0] == 2.0


# --- aggregation ---------------------------------------------------------------------------------------------

def test_sum_by_and_without():
    store = Store(series("x", [(0, 1.0)], job="a", instance="1"), series("x", [(0, 2.0)], job="a", instance="2"),
                  series("x", [(0, 4.0)], job="b", instance="1"))
    by_job = query_instant("sum by (job) (x)", store, time_ms=0).series
    assert {s.labels: s.values[0] for s in by_job} == {labels(job="a"): 3.0, labels(job="b"): 4.0}
    without = query_instant("sum without (instance) (x)", store, time_ms=0).series
    assert {s.labels: s.values[0] for s in without} == {labels(job="a"): 3.0, labels(job="b"): 4.0}
    assert only("sum(x)", store, 0).labels == ()


# --- binary operators ----------------------------------------------------------------------------------------

def test_arithmetic_drops_the_name_and_comparison_keeps_it():
    store = Store(series("x", [(0, 3.0)], job="a"))
    assert only("x * 2", store, 0).labels == labels(job="a")
    assert only("x > 1", store, 0).labels == labels(__name__="x", job="a")
    assert only("x > bool 1", store, 0).labels == labels(job="a")
    assert only("2 ^ x", store, 0).values[0] == 8.0
    assert only("-x", store, 0).labels == labels(job="a")


def test_scalar_results_and_range_of_a_scalar():
    result = query_instant("1 + 2 * 3", Store(), time_ms=5_000)
    assert result.result_type == "scalar" and result.scalar == (5_000, 7.0)
    matrix = query_range("time()", Store(), start_ms=0, end_ms=120_000, step_ms=60_000)
    assert matrix.result_type == "matrix"
    assert matrix.series[0].labels == () and matrix.series[0].values.tolist() == [0.0, 60.0, 120.0]


# --- refusals ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, named", [
    ("rate(x[5m:1m] @ 100)", "@ on a subquery"),
    ("sort_by_label(x)", "sort_by_label"),
    ("x + on(a) group_left fill(0) y", "fill"),
    ('x{a="1" or b="2"}', "'or'"),
    ("limitk(2, x)", "limitk"),
    ("mad_over_time(x[5m])", "mad_over_time"),
])
def test_unsupported_constructs_are_refused_by_name(text, named):
    with pytest.raises(BadData, match=named):
        query_range(text, Store(), start_ms=0, end_ms=60_000, step_ms=60_000)


def test_a_parse_error_is_bad_data():
    with pytest.raises(BadData, match="parse error"):
        query_instant("rate(x)", Store(), time_ms=0)


def test_range_query_parameters_are_checked():
    with pytest.raises(BadData, match="end timestamp must not be before start time"):
        query_range("x", Store(), start_ms=10, end_ms=0, step_ms=1)
    with pytest.raises(BadData, match="zero or negative"):
        query_range("x", Store(), start_ms=0, end_ms=10, step_ms=0)
    with pytest.raises(BadData, match="11,000"):
        query_range("x", Store(), start_ms=0, end_ms=11_001, step_ms=1)
    with pytest.raises(BadData, match='"range vector"'):
        query_range("x[5m]", Store(), start_ms=0, end_ms=10, step_ms=1)


def test_too_many_samples_is_an_execution_error():
    store = Store(every_15s("x", 0, 3600))
    with pytest.raises(ExecutionError, match="query processing would load too many samples into memory in query "
                                             "execution"):
        query_range("rate(x[5m])", store, start_ms=0, end_ms=3_600_000, step_ms=60_000, max_samples=100)




def test_topk_keeps_whole_labels_breaks_ties_by_input_order_and_ranks_nan_last():
    store = Store(series("x", [(0, 5.0)], i="a"), series("x", [(0, float("nan"))], i="b"),
                  series("x", [(0, 5.0)], i="c"), series("x", [(0, 1.0)], i="d"))
    top = query_instant("topk(1, x)", store, time_ms=0).series
    assert [s.labels for s in top] == [labels(__name__="x", i="a")]
    top3 = {dict(s.labels)["i"] for s in query_instant("topk(3, x)", store, time_ms=0).series}
    assert top3 == {"a", "c", "d"}  # NaN only when nothing else is left
    bottom2 = {dict(s.labels)["i"] for s in query_instant("bottomk(2, x)", store, time_ms=0).series}
    assert bottom2 == {"d", "a"}
    assert len(query_instant("topk(9, x)", store, time_ms=0).series) == 4
    assert query_instant("topk(0, x)", store, time_ms=0).series == []
    with pytest.raises(ExecutionError, match="Scalar value NaN overflows int64"):
        query_instant("topk(scalar(x{i='b'}), x)", store, time_ms=0)


def test_topk_in_a_range_query_shows_a_series_only_where_it_was_chosen():
    store = Store(series("x", [(0, 1.0), (60_000, 3.0)], i="a"), series("x", [(0, 2.0), (60_000, 0.0)], i="b"))
    result = query_range("topk(1, x)", store, start_ms=0, end_ms=60_000, step_ms=60_000)
    assert {dict(s.labels)["i"]: s.ts_ms.tolist() for s in result.series} == {"a": [60_000], "b": [0]}


def test_quantile_and_min_max_with_nan():
    store = Store(series("x", [(0, 1.0)], i="a"), series("x", [(0, float("nan"))], i="b"),
                  series("x", [(0, 3.0)], i="c"))
    assert only("max(x)", store, 0).values[0] == 3.0  # NaN is replaced by any number
    assert only("min(x)", store, 0).values[0] == 1.0
    # NaN sorts first: [NaN, 1, 3]; rank 0.5 * 2 = 1 -> 1.
    assert only("quantile(0.5, x)", store, 0).values[0] == 1.0
    assert only("quantile(0.75, x)", store, 0).values[0] == 2.0
    assert only("quantile(2, x)", store, 0).values[0] == math.inf
    assert only("quantile(-1, x)", store, 0).values[0] == -math.inf
    assert math.isnan(only("sum(x)", store, 0).values[0])
    assert only("count(x)", store, 0).values[0] == 3.0


def test_comparisons_with_nan_are_false():
    store = Store(series("x", [(0, float("nan"))], i="a"), series("y", [(0, float("nan"))], i="a"))
    assert query_instant("x == x", store, time_ms=0).series == []
    assert query_instant("x > 0", store, time_ms=0).series == []
    assert only("x != bool 0", store, 0).values[0] == 1.0  # NaN != anything
    assert only("x == bool y", store, 0).values[0] == 0.0
    assert only("x == bool y", store, 0).labels == labels(i="a")


def test_division_by_zero_and_modulo_follow_go():
    store = Store(series("x", [(0, -7.0)]), series("z", [(0, 0.0)]))
    assert only("x / 0", store, 0).values[0] == -math.inf
    assert math.isnan(only("z / 0", store, 0).values[0])
    assert only("x % 3", store, 0).values[0] == -1.0  # the sign of the dividend, as math.Mod
    assert math.isnan(only("x % 0", store, 0).values[0])


def test_one_to_one_matching_and_its_duplicate_errors():
    store = Store(series("a", [(0, 10.0)], job="j", instance="1"), series("a", [(0, 20.0)], job="j", instance="2"),
                  series("b", [(0, 2.0)], job="j", instance="1"), series("b", [(0, 4.0)], job="j", instance="2"))
    result = query_instant("a / b", store, time_ms=0).series
    assert {s.labels: s.values[0] for s in result} == {labels(job="j", instance="1"): 5.0,
                                                        labels(job="j", instance="2"): 5.0}
    assert {s.labels for s in query_instant("a / ignoring(instance) group_left b{instance='1'}", store,
                                            time_ms=0).series} == {labels(job="j", instance="1"),
                                                                   labels(job="j", instance="2")}
    with pytest.raises(ExecutionError, match="found duplicate series for the match group .job=\"j\". on the right "
                                             "hand-side.*many-to-many matching not allowed"):
        query_instant("a / on(job) b", store, time_ms=0)
    with pytest.raises(ExecutionError, match="multiple matches for labels: many-to-one matching must be explicit"):
        query_instant("a / on(job) sum by (job) (b)", store, time_ms=0)
    assert query_instant("nothing / on(job) b", store, time_ms=0).series == []  # an empty side checks nothing
    assert {s.values[0] for s in query_instant("a / on(job) group_left sum by (job) (b)", store,
                                               time_ms=0).series} == {10 / 6, 20 / 6}


def test_set_operators_match_many_to_many():
    store = Store(series("a", [(0, 1.0)], i="1"), series("a", [(0, 2.0)], i="2"), series("b", [(0, 9.0)], i="2"),
                  series("b", [(0, 8.0)], i="3"))
    values = lambda text: sorted(s.values[0] for s in query_instant(text, store, time_ms=0).series)  # noqa: E731
    assert values("a and b") == [2.0]
    assert values("a unless b") == [1.0]
    assert values("a or b") == [1.0, 2.0, 8.0]
    assert values("a and on() b") == [1.0, 2.0]


def test_functions_drop_the_name_except_last_over_time_and_label_functions():
    store = Store(series("x", [(0, 1.5)], job="a"))
    assert only("abs(x)", store, 0).labels == labels(job="a")
    assert only("last_over_time(x[1m])", store, 0).labels == labels(__name__="x", job="a")
    assert only("sort(x)", store, 0).labels == labels(__name__="x", job="a")
    assert only('label_replace(x, "dst", "$1-$$-${1}", "job", "(.*)")', store, 0).labels == \
        labels(__name__="x", job="a", dst="a-$-a")
    assert only('label_join(x, "dst", ",", "job", "__name__")', store, 0).labels == \
        labels(__name__="x", job="a", dst="a,x")
    assert only("round(x)", store, 0).values[0] == 2.0
    assert only("round(x, 0.25)", store, 0).values[0] == 1.5


def test_functions_that_drop_the_name_refuse_to_merge_two_series():
    store = Store(series("x", [(0, 1.0)], job="a"), series("y", [(0, 2.0)], job="a"))
    with pytest.raises(ExecutionError, match="vector cannot contain metrics with the same labelset"):
        query_instant('rate({job="a"}[5m])', Store(series("x", [(0, 1.0), (1, 2.0)], job="a"),
                                                  series("y", [(0, 1.0), (1, 2.0)], job="a")), time_ms=60_000)
    with pytest.raises(ExecutionError, match="vector cannot contain metrics with the same labelset"):
        query_instant('abs({job="a"})', store, time_ms=0)
    with pytest.raises(ExecutionError, match="invalid destination label name in label_replace"):
        query_instant('label_replace(x, "1x", "", "job", "")', store, time_ms=0)


def bucket_store(counts, bounds=("0.1", "0.5", "1", "+Inf"), **extra):
    return Store(*(series("h_bucket", [(0, float(c))], le=b, **extra) for b, c in zip(bounds, counts)))


@pytest.mark.parametrize("q, counts, bounds, expected", [
    (0.5, [10, 20, 30, 40], ("0.1", "0.5", "1", "+Inf"), 0.5),  # rank 20: the end of the second bucket
    (0.25, [10, 20, 30, 40], ("0.1", "0.5", "1", "+Inf"), 0.1),
    (0.3, [10, 20, 30, 40], ("0.1", "0.5", "1", "+Inf"), 0.1 + 0.4 * 2 / 10),
    (0.1, [10, 20, 30, 40], ("0.1", "0.5", "1", "+Inf"), 0.04),  # first bucket: from 0
    (0.99, [10, 20, 30, 40], ("0.1", "0.5", "1", "+Inf"), 1.0),  # in +Inf: the last finite bound
    (0.5, [10, 20, 30, 40], ("0.1", "0.5", "1", "2"), math.nan),  # no +Inf bucket
    (0.5, [0, 0, 0, 0], ("0.1", "0.5", "1", "+Inf"), math.nan),  # no observations
    (0.5, [7], ("+Inf",), math.nan),  # fewer than two buckets
    (0.5, [10, 5, 30, 40], ("0.1", "0.5", "1", "+Inf"), 0.5 + 0.5 * 10 / 20),  # made monotonic: 10, 10, 30
    (0.1, [10, 20, 30, 40], ("-1", "0.5", "1", "+Inf"), -1.0),  # first bound <= 0 is the answer
    (-0.5, [10, 20, 30, 40], ("0.1", "0.5", "1", "+Inf"), -math.inf),
    (1.5, [10, 20, 30, 40], ("0.1", "0.5", "1", "+Inf"), math.inf),
])
def test_histogram_quantile(q, counts, bounds, expected):
    value = only(f"histogram_quantile({q}, h_bucket)", bucket_store(counts, bounds), 0)
    assert value.labels == ()
    if math.isnan(expected):
        assert math.isnan(value.values[0])
    else:
        assert value.values[0] == pytest.approx(expected)


def test_histogram_quantile_groups_by_the_labels_without_le_and_coalesces_equal_bounds():
    store = bucket_store([10, 20, 30, 40], job="a")
    store.stored += bucket_store([0, 40, 40, 40], job="b").stored
    store.stored.append(series("h_bucket", [(0, 0.0)], le="0.50", job="b"))  # 0.5 again: counts add up
    result = query_instant("histogram_quantile(0.5, h_bucket)", store, time_ms=0).series
    values = {dict(s.labels)["job"]: s.values[0] for s in result}
    assert values["a"] == pytest.approx(0.5)
    assert values["b"] == pytest.approx(0.1 + 0.4 * 20 / 40)


def test_count_values_and_absent():
    store = Store(series("x", [(0, 1.0)], i="a"), series("x", [(0, 1.0)], i="b"), series("x", [(0, 2.5)], i="c"))
    counted = {dict(s.labels)["v"]: s.values[0] for s in query_instant('count_values("v", x)', store,
                                                                         time_ms=0).series}
    assert counted == {"1": 2.0, "2.5": 1.0}
    assert query_instant("absent(x)", store, time_ms=0).series == []
    assert only('absent(y{job="a", i=~"b", k="v", k="w"})', store, 0).labels == labels(job="a")


def test_instant_query_of_a_range_selector_answers_raw_samples():
    store = Store(series("x", [(t, float(t)) for t in (0, 30_000, 60_000, 90_000)]))
    result = query_instant("x[1m]", store, time_ms=90_000)
    assert result.result_type == "matrix"
    assert result.series[0].ts_ms.tolist() == [30_000, 60_000, 90_000]  # the window's start included
    assert result.series[0].labels == labels(__name__="x")
    assert query_instant('"text"', store, time_ms=5).string == (5, "text")


def test_a_subquery_steps_on_the_epoch_grid_and_its_windows_close_at_both_ends():
    store = Store(series("x", [(t * 1000, float(t)) for t in range(0, 601, 10)]))
    # At 590 s, x[2m:1m] evaluates x at 480, 540 (multiples of 60 s from 470 s on): the window [470, 590].
    result = query_instant("x[2m:1m]", store, time_ms=590_000)
    assert result.result_type == "matrix"
    assert result.series[0].ts_ms.tolist() == [480_000, 540_000]
    assert result.series[0].values.tolist() == [480.0, 540.0]
    # At 600 s the window [480, 600] holds 480, 540 and 600: both ends are inside (2.x).
    assert only("count_over_time(x[2m:1m])", store, 600).values[0] == 3.0
    assert only("max_over_time(x[10m:1m] offset 1m)", store, 600).values[0] == 540.0
    assert only("sum_over_time(vector(time())[2m:1m])", store, 600).values[0] == 480.0 + 540.0 + 600.0


def test_a_regex_re2_refuses_is_bad_data_naming_it():
    with pytest.raises(BadData, match=r"invalid regular expression 'a\{1001\}'.*invalid repetition size"):
        query_instant('x{a=~"a{1001}"}', Store(), time_ms=0)


def test_histogram_quantile_uses_the_buckets_present_at_each_step():
    store = Store(series("h_bucket", [(0, 10.0), (60_000, 10.0)], le="0.1"),
                  series("h_bucket", [(0, 20.0)], le="0.5"),
                  series("h_bucket", [(0, 30.0), (60_000, 30.0)], le="1"),
                  series("h_bucket", [(0, 40.0), (60_000, 40.0)], le="+Inf"))
    result = query_range("histogram_quantile(0.5, h_bucket)", store, start_ms=0, end_ms=60_000, step_ms=60_000,
                         lookback_ms=30_000)
    assert result.series[0].values.tolist() == pytest.approx([0.5, 0.1 + 0.9 * 10 / 20])


# --- bounds on a query's shape, time and work (a worker must never crash or 500) ---------------------------------

def _nested(opening: str, inner: str, closing: str, depth: int) -> str:
    return opening * depth + inner + closing * depth


@pytest.mark.parametrize("text, words", [
    (_nested("(", "1", ")", 10_000), "query nests 10000 deep: the limit is 256"),
    (_nested("(", "1", ")", 1_000), "query nests 1000 deep: the limit is 256"),
    (_nested("abs(", "up", ")", 600), "query nests 600 deep: the limit is 256"),
    ("+".join(["up"] * 500), "query nests over 256 deep: the limit is 256"),
    ("-" * 300 + "up", "query nests over 256 deep"),
    ("-" * 600 + "up", "query has 600 operators: the limit is 512"),
    ("+".join(["up"] * 100_000), "query has 99999 operators: the limit is 512"),
    (_nested("sum(", "up", ")", 255) + "+" + "+".join(["up"] * 20), "query nests over 256 deep"),
])
def test_a_query_nesting_past_the_limit_is_refused_before_it_can_crash_the_parser(text, words):
    with pytest.raises(BadData, match=words.replace("(", r"\(")):
        query_instant(text, Store(), time_ms=0)


def test_a_query_at_the_depth_limit_is_answered_and_brackets_in_strings_or_braces_do_not_count():
    store = Store(series("up", [(0, 2.0)]))
    assert only(_nested("abs(", "up", ")", 255), store, 0).values[0] == 2.0
    assert only("+".join(["up"] * 256), store, 0).values[0] == 512.0
    assert only('up{job!="' + "(" * 300 + '"} # ' + "(" * 300, store, 0).values[0] == 2.0
    # Long flat queries parse in linear time and memory: 1 MB of matchers, a 100,000-label `by`.
    wide = "up{" + ",".join(f'l{i}!="v"' for i in range(50_000)) + "}"
    assert len(wide) > 500_000 and only(wide, store, 0).values[0] == 2.0
    assert only("sum by (" + ",".join(f"l{i}" for i in range(100_000)) + ") (up)", store, 0).values[0] == 2.0


@pytest.mark.parametrize("text", ["max_over_time(up[100y:1ms])", "max_over_time(up[1d:1ms])",
                                  "max_over_time(vector(1)[1d:1ms])"])
def test_a_subquery_with_more_steps_than_max_samples_is_refused_before_its_steps_are_made(text):
    with pytest.raises(ExecutionError, match="query processing would load too many samples into memory"):
        query_instant(text, Store(series("up", [(0, 1.0)])), time_ms=0)


def test_a_subquery_of_exactly_max_samples_steps_is_answered():
    result = query_instant("count_over_time(vector(1)[10s:1ms])", Store(), time_ms=0, max_samples=10_001)
    assert result.series[0].values[0] == 10_001
    with pytest.raises(ExecutionError, match="too many samples"):
        query_instant("count_over_time(vector(1)[10s:1ms])", Store(), time_ms=0, max_samples=10_000)


@pytest.mark.parametrize("text, words", [
    ("up @ 1e20", "timestamp out of bounds for @ modifier"),
    ("up @ -100", "@ times before 1970 are not supported"),  # the parser's binding panics on them
    ("up offset 200000y", "duration out of range"),
    ("up offset -300y", "duration out of range"),
    ("max_over_time(up[1000y])", "duration out of range"),
    ("max_over_time(up[300000000y])", "duration out of range"),
    ("max_over_time((up)[1h:1000y])", "duration out of range"),
    ("1e400", 'parsing "1e400": value out of range'),  # Prometheus' words
    ("-1e400 + up", 'parsing "1e400": value out of range'),
])
def test_times_durations_and_numbers_beyond_their_range_are_bad_data(text, words):
    with pytest.raises(BadData, match=words):
        query_instant(text, Store(series("up", [(0, 1.0)])), time_ms=0)


def test_at_times_past_python_datetimes_and_durations_up_to_292_years_are_answered():
    store = Store(series("up", [(0, 1.0)]))
    assert query_instant("up @ 9e15", store, time_ms=0).series == []  # year ~285 million: nothing stored then
    assert only("up @ 12.3456", store, 0).values[0] == 1.0
    assert only("max_over_time(up[292y])", store, 0).values[0] == 1.0
    assert query_instant("Inf", store, time_ms=0).scalar == (0, math.inf)


@pytest.mark.parametrize("call", [
    lambda: query_instant("up", Store(), time_ms=2**63 - 1),
    lambda: query_instant("up", Store(), time_ms=-(2**63)),
    lambda: query_range("up", Store(), start_ms=10**23, end_ms=10**23, step_ms=1),
])
def test_evaluation_times_beyond_int64_milliseconds_are_bad_data(call):
    with pytest.raises(BadData, match="out of range"):
        call()


@pytest.mark.parametrize("text", ["ln(-1)", "log2(-2)", "log10(-10)", "ln(- 1)"])
def test_a_negative_number_literal_is_not_an_instant_vector_argument(text):
    # The parser's own check lets `ln(-1)` through (and refuses `ln(1)`): compile.py checks again.
    name = text.split("(")[0]
    with pytest.raises(BadData, match=f'expected type instant vector in call to function "{name}", got scalar'):
        query_instant(text, Store(), time_ms=0)


def test_every_function_with_scalar_string_or_wrongly_placed_arguments_is_bad_data_or_an_answer():
    from promql.engine.functions import SUPPORTED_FUNCTIONS

    store = Store(series("up", [(0, 1.0)]))
    argument_lists = ["-1", "1", "-1, -1", "-1, -1, -1", "-1, 1, 1", '"a"', "up, -1", "-1, up", "up[5m], -1",
                      "-1, up[5m]", "up, -1, -1", 'up, "a", "b", "c", -1', '-1, "a", "b", "c"']
    for name in sorted(SUPPORTED_FUNCTIONS):
        for arguments in argument_lists:
            try:
                query_instant(f"{name}({arguments})", store, time_ms=0)
            except BadData:
                pass
