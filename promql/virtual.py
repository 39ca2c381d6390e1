"""The cwd_* series: what detection knows of a stored series, selectable by PromQL as if stored (README,
"Anomaly detection in Grafana"), so a Grafana panel draws a metric with its band and its anomalies.

    cwd_value                                      the value detection evaluates at each stored point: the
                                                   stored value, a counter's rate per second (what its band is of)
    cwd_expected, cwd_band_lower, cwd_band_upper   the model's expected value and band at each stored point,
    cwd_alert_lower, cwd_alert_upper               and the alert threshold (the band widened after recent
                                                   alerts): exactly what the console draws (baseline_band)
    cwd_anomaly_score                              the score (0-1) at each anomaly's time
    cwd_anomaly                                    1 at each anomaly's time (an annotation query's input)
    cwd_incident_open                              1 while an incident of the series is open, else 0

Each carries the labels of the series it describes (promql/labels.py) with `__name__` replaced and
`cwd_metric` holding the series' own name: `cwd_band_upper{cwd_metric="node_load1", instance="a"}`. A
counter's band is of its rate per second, as detection evaluates it: draw cwd_value against it, for either kind.

Only a selector that names cwd_ in a `__name__` matcher (`=` or `=~`) reads these: `{job="x"}` or
`{__name__=~".+"}` read stored series only, so a broad selector never replays a band. A band is replayed
by the detection engine from the UTC day before the window, which costs a series' points since then: one
selector may touch at most PROMQL_BAND_MAX_SERIES series, each with at most PROMQL_BAND_MAX_POINTS points
in that replay. Anomalies and incidents are rows: one selector reads at most VIRTUAL_MAX_ROWS of them."""
from __future__ import annotations

import math
import time
from collections.abc import Iterable

import numpy as np
from django.conf import settings

from anomalies import selectors as anomaly_selectors
from promql.engine import BadData, ExecutionError, Matcher, Series, labels_match
from promql.labels import series_labels
from promql.selectors import series_matching
from tenants.models import Tenant

PREFIX = "cwd_"
BAND_NAMES = {"cwd_value": "values", "cwd_expected": "expected", "cwd_band_lower": "lower",
              "cwd_band_upper": "upper", "cwd_alert_lower": "alert_lower", "cwd_alert_upper": "alert_upper"}
ROW_NAMES = ("cwd_anomaly", "cwd_anomaly_score", "cwd_incident_open")
VIRTUAL_NAMES = (*BAND_NAMES, *ROW_NAMES)
# The label a cwd_* series names its stored series by.
METRIC_LABEL = "cwd_metric"
VIRTUAL_MAX_ROWS = 200_000
# cwd_incident_open has a point at every change and at least this often between, so any lookback of 5
# minutes (Prometheus' default) finds one: each minute for ranges up to about a week, sparser beyond.
_GRID_MIN_MS, _GRID_MAX_MS, _GRID_POINTS = 60_000, 240_000, 10_000
# What PostgreSQL's timestamps can hold (µs), years 1 to 9999.
_LOWEST_US, _HIGHEST_US = -62_135_596_800_000_000, 253_402_300_799_999_999


def virtual_series(tenant: Tenant, matchers: tuple[Matcher, ...], low_ms: int, high_ms: int) -> list[Series]:
    """The cwd_* series of the tenant that `matchers` select, with their samples in [low_ms, high_ms];
    [] at once when the matchers name no cwd_ series."""
    names = names_selected(matchers)
    if not names:
        return []
    described = _described_matchers(matchers)
    low_us = min(max(low_ms * 1000, _LOWEST_US), _HIGHEST_US)
    high_us = min(max(high_ms * 1000 + 999, _LOWEST_US), _HIGHEST_US)  # a point's ms is its µs floored
    found: list[Series] = []
    band_names = [name for name in names if name in BAND_NAMES]
    if band_names:
        found += _band_series(tenant, band_names, described, low_us, high_us)
    if {"cwd_anomaly", "cwd_anomaly_score"} & set(names):
        found += _anomaly_series(tenant, names, described, low_us, high_us)
    if "cwd_incident_open" in names:
        found += _incident_series(tenant, described, low_ms, high_ms, low_us, high_us)
    return found


def names_selected(matchers: Iterable[Matcher]) -> list[str]:
    """The cwd_* names the selector's `__name__` matchers select; none unless one of them names cwd_."""
    on_name = [matcher for matcher in matchers if matcher.name == "__name__"]
    if not any(matcher.op in ("=", "=~") and PREFIX in matcher.value for matcher in on_name):
        return []
    return [name for name in VIRTUAL_NAMES if all(matcher.matches(name) for matcher in on_name)]


def _described_matchers(matchers: Iterable[Matcher]) -> tuple[Matcher, ...]:
    """The matchers a described (stored) series must match: cwd_metric is its __name__, the rest as given."""
    return tuple(Matcher("__name__", matcher.op, matcher.value) if matcher.name == METRIC_LABEL else matcher
                 for matcher in matchers if matcher.name != "__name__")


def _metric_names(described: tuple[Matcher, ...]) -> list[str] | None:
    """The one metric name the described series must have, when a matcher says it with `=`."""
    for matcher in described:
        if matcher.name == "__name__" and matcher.op == "=":
            return [matcher.value]
    return None


def _labels(name: str, described: dict[str, str]) -> tuple[tuple[str, str], ...]:
    labels = dict(described)
    labels[METRIC_LABEL] = labels.pop("__name__")
    labels["__name__"] = name
    return tuple(sorted(labels.items()))


def _in_ms(ts_us: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Samples at ms (floored), as stored series read: of points within one ms, the later one."""
    ts_ms = ts_us // 1000
    keep = np.r_[ts_ms[1:] != ts_ms[:-1], True] if len(ts_ms) else np.empty(0, bool)
    return ts_ms[keep], values[keep]


def _band_series(tenant: Tenant, names: list[str], described: tuple[Matcher, ...], low_us: int,
                 high_us: int) -> list[Series]:
    matched = series_matching(tenant=tenant, matchers=described)
    cap = settings.CLOUDWATCHDOG["PROMQL_BAND_MAX_SERIES"]
    if len(matched) > cap:
        raise BadData(f"{names[0]} selects {len(matched)} series, and a band is replayed for each: at most {cap} "
                      f"(PROMQL_BAND_MAX_SERIES); narrow it with label matchers, e.g. {METRIC_LABEL}=\"...\"")
    if not matched:
        return []
    max_points = settings.CLOUDWATCHDOG["PROMQL_BAND_MAX_POINTS"]
    try:
        bands = anomaly_selectors.baseline_bands(tenant=tenant, series_ids=[sid for sid, _ in matched],
                                                 low_us=low_us, high_us=high_us, max_points=max_points)
    except anomaly_selectors.BandTooLong as too_long:
        raise ExecutionError(f"{names[0]}: {too_long} (PROMQL_BAND_MAX_POINTS); query a shorter range") from None
    found = []
    for series_id, labels in matched:
        along = bands.get(series_id)
        if along is None:
            continue
        for name in names:
            values = getattr(along, BAND_NAMES[name])
            known = ~np.isnan(values)  # no band while the model warms up
            ts_ms, drawn = _in_ms(along.ts_us[known], values[known].astype(np.float64))
            if len(ts_ms):
                found.append(Series(labels=_labels(name, labels), ts_ms=ts_ms, values=drawn))
    return found


def _rows_too_many(what: str) -> ExecutionError:
    return ExecutionError(f"more than {VIRTUAL_MAX_ROWS} {what} in the range; query a shorter range or narrow it "
                          f"with {METRIC_LABEL}=\"...\"")


def _described_labels(identities: dict, described: tuple[Matcher, ...]) -> dict[int, dict[str, str]]:
    """The labels of each series (by id) whose labels match the described matchers."""
    labels = {}
    for series_id, (metric_name, service, resource_id, tags) in identities.items():
        one = series_labels(metric_name=metric_name, service=service, resource_id=resource_id, tags=tags)
        if labels_match(described, one):
            labels[series_id] = one
    return labels


def _anomaly_series(tenant: Tenant, names: list[str], described: tuple[Matcher, ...], low_us: int,
                    high_us: int) -> list[Series]:
    identities, scores = anomaly_selectors.anomaly_scores(
        tenant=tenant, low_us=low_us, high_us=high_us, metric_names=_metric_names(described),
        limit=VIRTUAL_MAX_ROWS + 1)
    if len(scores) > VIRTUAL_MAX_ROWS:
        raise _rows_too_many("anomalies")
    labels_of = _described_labels(identities, described)
    by_series: dict[int, tuple[list[int], list[float]]] = {}
    for series_id, ts_us, score in scores:
        if series_id in labels_of:
            times, values = by_series.setdefault(series_id, ([], []))
            times.append(ts_us)
            values.append(score)
    found = []
    for series_id, (times, values) in by_series.items():
        ts_ms, score = _in_ms(np.array(times, np.int64), np.array(values, np.float64))
        if "cwd_anomaly_score" in names:
            found.append(Series(_labels("cwd_anomaly_score", labels_of[series_id]), ts_ms, score))
        if "cwd_anomaly" in names:
            found.append(Series(_labels("cwd_anomaly", labels_of[series_id]), ts_ms, np.ones(len(ts_ms))))
    return found


def _incident_series(tenant: Tenant, described: tuple[Matcher, ...], low_ms: int, high_ms: int, low_us: int,
                     high_us: int) -> list[Series]:
    """cwd_incident_open of each series with an incident open at some time in the window, up to now."""
    high_ms = min(high_ms, int(time.time() * 1000))
    if high_ms < low_ms:
        return []
    identities, spans = anomaly_selectors.incident_spans(
        tenant=tenant, low_us=low_us, high_us=min(high_us, high_ms * 1000 + 999),
        metric_names=_metric_names(described), limit=VIRTUAL_MAX_ROWS + 1)
    if len(spans) > VIRTUAL_MAX_ROWS:
        raise _rows_too_many("incidents")
    labels_of = _described_labels(identities, described)
    grid_ms = min(max(_GRID_MIN_MS, math.ceil((high_ms - low_ms) / _GRID_POINTS / 1000) * 1000), _GRID_MAX_MS)
    grid = np.arange(-(-low_ms // grid_ms) * grid_ms, high_ms + 1, grid_ms, dtype=np.int64)
    by_series: dict[int, list[tuple[int, int | None]]] = {}
    for series_id, started_us, resolved_us in spans:
        if series_id in labels_of:
            # Open from its start's ms to its resolution's, floored as the points they are the times of.
            by_series.setdefault(series_id, []).append(
                (started_us // 1000, None if resolved_us is None else resolved_us // 1000))
    found = []
    for series_id, opened in by_series.items():
        changes = [at for span in opened for at in span if at is not None and low_ms <= at <= high_ms]
        times = np.union1d(grid, np.array(changes, np.int64))
        is_open = np.zeros(len(times), bool)
        for started_ms, resolved_ms in opened:
            is_open |= (times >= started_ms) & (times < (resolved_ms if resolved_ms is not None else np.iinfo(
                np.int64).max))
        found.append(Series(_labels("cwd_incident_open", labels_of[series_id]), times, is_open.astype(np.float64)))
    return found
