"""The API's parameters and value formats as Prometheus 2.42 parses and writes them (pure; no database)."""
import math

import numpy as np
import orjson
import pytest

from promql import params
from promql.engine import BadData, Result, Series
from promql.responses import format_time, format_value, result_data


@pytest.mark.parametrize("text, ms", [
    ("1700000000", 1_700_000_000_000),
    ("1700000000.123", 1_700_000_000_123),
    ("1700000000.1235", 1_700_000_000_124),  # the fraction rounded to the ms, half away from zero
    ("0.0005", 1), ("-0.0005", -1),
    ("-1.5", -1500),
    ("1e3", 1_000_000),
    ("2023-11-14T22:13:20Z", 1_700_000_000_000),
    ("2023-11-14T22:13:20.123999999Z", 1_700_000_000_123),  # RFC 3339 is truncated below the ms
    ("2023-11-15T00:13:20+02:00", 1_700_000_000_000),
    ("-292273086-05-16T16:47:06Z", params.MIN_TIME_MS),
    ("292277025-08-18T07:12:54.999999999Z", params.MAX_TIME_MS),
])
def test_times_parse_as_prometheus_parses_them(text, ms):
    assert params.time_ms("time", text) == ms


@pytest.mark.parametrize("text", ["", "yesterday", "NaN", "Inf", "2023-11-14 22:13:20", "2023-02-30T00:00:00Z"])
def test_a_bad_time_names_its_parameter(text):
    with pytest.raises(BadData, match='^invalid parameter "start": cannot parse ".*" to a valid timestamp$'):
        params.time_ms("start", text)


@pytest.mark.parametrize("text, ms", [("15", 15_000), ("0.5", 500), ("1m30s", 90_000), ("1h", 3_600_000),
                                      ("1d", 86_400_000), ("100ms", 100), ("1w", 604_800_000), ("0", 0)])
def test_durations_are_seconds_or_prometheus_durations(text, ms):
    assert params.duration_ms("step", text) == ms


@pytest.mark.parametrize("text", ["", "1.5h", "1s1m", "m", "-", "5 m"])
def test_a_bad_duration_names_its_parameter(text):
    with pytest.raises(BadData, match='^invalid parameter "step": cannot parse'):
        params.duration_ms("step", text)


def test_range_checks_speak_prometheus_words():
    with pytest.raises(BadData, match="^end timestamp must not be before start time$"):
        params.range_window(start_ms=2, end_ms=1)
    with pytest.raises(BadData, match="^zero or negative query resolution step widths are not accepted"):
        params.range_steps(start_ms=0, end_ms=1, step_ms=0)
    params.range_steps(start_ms=0, end_ms=11_000_000, step_ms=1000)
    with pytest.raises(BadData, match="^exceeded maximum resolution of 11,000 points per timeseries"):
        params.range_steps(start_ms=0, end_ms=11_001_000, step_ms=1000)


def test_a_selector_becomes_the_engines_matchers_with_its_name_first():
    matchers = params.series_selector('up{job=~"a|b", code!="5", x!~"y"}')
    assert [(m.name, m.op, m.value) for m in matchers] == [
        ("__name__", "=", "up"), ("job", "=~", "a|b"), ("code", "!=", "5"), ("x", "!~", "y")]


@pytest.mark.parametrize("value, text", [
    (1.0, "1"), (0.1, "0.1"), (-0.0, "-0"), (1e16, "10000000000000000"), (1.5e-7, "0.00000015"),
    (123456789.125, "123456789.125"), (1e21, "1000000000000000000000"), (float("nan"), "NaN"),
    (math.inf, "+Inf"), (-math.inf, "-Inf"), (2.0 ** 70, "1180591620717411300000"),
])
def test_values_are_written_as_go_formatfloat_f_minus_1(value, text):
    assert format_value(value) == text


def test_result_shapes_and_times():
    assert (format_time(1_700_000_000_000), format_time(1_700_000_000_120)) == (1_700_000_000, 1_700_000_000.12)
    series = Series(labels=(("__name__", "up"), ("job", "a")), ts_ms=np.array([1000, 2500]),
                    values=np.array([1.0, np.nan]))
    # As JSON: a matrix is written as JSON text at once (cheaper by the million).
    assert orjson.loads(orjson.dumps(result_data(Result("matrix", series=[series])))) == {"resultType": "matrix", "result": [
        {"metric": {"__name__": "up", "job": "a"}, "values": [[1, "1"], [2.5, "NaN"]]}]}
    instant = Series(labels=(), ts_ms=np.array([2000]), values=np.array([0.25]))
    assert result_data(Result("vector", series=[instant])) == {"resultType": "vector", "result": [
        {"metric": {}, "value": [2, "0.25"]}]}
    assert result_data(Result("scalar", scalar=(3000, 2.0))) == {"resultType": "scalar", "result": [3, "2"]}
    assert result_data(Result("string", string=(3000, "hi"))) == {"resultType": "string", "result": [3, "hi"]}


def test_values_formatted_in_bulk_read_as_one_by_one():
    rng = np.random.default_rng(7)
    values = np.concatenate([rng.random(20_000) * 10.0 ** rng.integers(-30, 30, 20_000),
                             [0.0, -0.0, np.nan, np.inf, -np.inf, 1e16, 1e-4, 9.999e-5, 5.0, -3.0, 1e15, -2e-7]])
    from promql.responses import format_values
    assert format_values(values) == [format_value(v).encode() for v in values]
