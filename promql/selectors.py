"""What the Prometheus API reads, always for one tenant: the series whose labels (promql/labels.py) match a
selector, their label names and values, metric metadata, and `fetch`, the engine's one way to storage.

Matching narrows in SQL first, where a matcher allows it exactly (`__name__` by `=` or a plain alternation
`=~"a|b"`, `job` and `instance` by `=` on the service and resource id, each a superset of the answer), then
checks every matcher on the derived labels in Python with RE2 (linear time, whatever regex a tenant sends).
Points are read through the store's face, capped in all by PROMQL_MAX_SAMPLES."""
from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable, Iterable

import numpy as np
from django.conf import settings
from django.db import connection, transaction

from metrics import selectors as metric_selectors
from metrics import storage
from metrics.protocols import UNKNOWN_RESOURCE, UNKNOWN_SERVICE
from promql import engine
from promql.engine import BadData, ExecutionError, Matcher, Result, Series, labels_match
from promql.labels import series_labels, tag_label_name
from promql.params import MAX_TIME_MS, MIN_TIME_MS
from tenants.models import Tenant

# Prometheus' own words when a query would load more than --query.max-samples.
TOO_MANY_SAMPLES = "query processing would load too many samples into memory in query execution"
# A regex that is only names joined by | selects exactly those names (no metacharacter, so anchoring adds
# nothing): SQL can narrow by them.
_PLAIN_ALTERNATION = re.compile(r"^[a-zA-Z0-9_:-]+(?:\|[a-zA-Z0-9_:-]+)*$")
# The store keeps timestamps PostgreSQL can hold; Prometheus' "no bound" times are clamped to these (µs).
_LOWEST_US, _HIGHEST_US = -62_135_596_800_000_000, 253_402_300_799_999_999

Fetch = Callable[[tuple[Matcher, ...], int, int], list[Series]]


def max_samples() -> int:
    return settings.CLOUDWATCHDOG["PROMQL_MAX_SAMPLES"]


def _narrowing(matchers: Iterable[Matcher]) -> dict:
    """series_identities' filters that keep every series the matchers could select."""
    narrow: dict = {}
    for matcher in matchers:
        if matcher.name == "__name__" and "metric_names" not in narrow:
            if matcher.op == "=":
                narrow["metric_names"] = [matcher.value]
            elif matcher.op == "=~" and _PLAIN_ALTERNATION.match(matcher.value):
                narrow["metric_names"] = matcher.value.split("|")
        # An empty value selects series without the label, which SQL cannot tell from one named "".
        elif matcher.op == "=" and matcher.value and matcher.name in ("job", "instance"):
            narrow["service" if matcher.name == "job" else "resource_id"] = matcher.value
    return narrow


def series_matching(*, tenant: Tenant, matchers: tuple[Matcher, ...]) -> list[tuple[int, dict[str, str]]]:
    """(series id, labels) of each of the tenant's series whose labels match every matcher, in id order."""
    matched = []
    for series_id, metric_name, service, resource_id, tags in metric_selectors.series_identities(
            tenant=tenant, **_narrowing(matchers)):
        labels = series_labels(metric_name=metric_name, service=service, resource_id=resource_id, tags=tags)
        if labels_match(matchers, labels):
            matched.append((series_id, labels))
    return matched


def _bounded(low_ms: int, high_ms: int) -> bool:
    return low_ms > MIN_TIME_MS or high_ms < MAX_TIME_MS


def _us(ms: int, *, high: bool = False) -> int:
    # A point stored at a fraction of a ms reads as that ms (floored), so the high bound takes the whole ms.
    return min(max(ms * 1000 + (999 if high else 0), _LOWEST_US), _HIGHEST_US)


def series_selected(*, tenant: Tenant, selectors: list[tuple[Matcher, ...]], low_ms: int = MIN_TIME_MS,
                    high_ms: int = MAX_TIME_MS) -> list[dict[str, str]]:
    """The labels of each series any selector matches (every series when there is none) that has points in
    [low_ms, high_ms] (checked only when the window is bounded), sorted by labels as Prometheus lists them."""
    found: dict[int, dict[str, str]] = {}
    for matchers in selectors or [()]:
        found.update(series_matching(tenant=tenant, matchers=matchers))
    if found and _bounded(low_ms, high_ms):
        with_points = storage.series_with_points(tenant=tenant, series_ids=list(found), low_us=_us(low_ms),
                                                 high_us=_us(high_ms, high=True))
        found = {series_id: labels for series_id, labels in found.items() if series_id in with_points}
    return sorted(found.values(), key=lambda labels: sorted(labels.items()))


def label_names(*, tenant: Tenant, selectors: list[tuple[Matcher, ...]], low_ms: int = MIN_TIME_MS,
                high_ms: int = MAX_TIME_MS) -> list[str]:
    """The label names of the selected series, sorted (`__name__` included); without a selector, of the whole
    catalogue whatever the window (read in SQL: Grafana asks on every editor it opens)."""
    if not selectors:
        return _catalogue_label_names(tenant)
    names = set()
    for labels in series_selected(tenant=tenant, selectors=selectors, low_ms=low_ms, high_ms=high_ms):
        names.update(labels)
    return sorted(names)


def label_values(*, tenant: Tenant, name: str, selectors: list[tuple[Matcher, ...]], low_ms: int = MIN_TIME_MS,
                 high_ms: int = MAX_TIME_MS) -> list[str]:
    """The values label `name` takes among the selected series, sorted; for __name__, job and instance without
    a selector, of the whole catalogue whatever the window (read in SQL)."""
    if not selectors and name in _FIELD_OF_LABEL:
        field, absent = _FIELD_OF_LABEL[name]
        return [value for value in metric_selectors.series_distinct(tenant=tenant, field=field) if value != absent]
    values = {labels[name] for labels in series_selected(tenant=tenant, selectors=selectors, low_ms=low_ms,
                                                         high_ms=high_ms) if name in labels}
    return sorted(values)


# The labels a series' own fields give, and the placeholder that stands for the label's absence.
_FIELD_OF_LABEL = {"__name__": ("metric_name", None), "job": ("service", UNKNOWN_SERVICE),
                   "instance": ("resource_id", UNKNOWN_RESOURCE)}


def _catalogue_label_names(tenant: Tenant) -> list[str]:
    names = {tag_label_name(tag) for tag in metric_selectors.series_tag_names(tenant=tenant)}
    for label, (field, absent) in _FIELD_OF_LABEL.items():
        if metric_selectors.series_field_other_than(tenant=tenant, field=field, value=absent):
            names.add(label)
    return sorted(names)


def metric_metadata(*, tenant: Tenant, metric: str | None = None, limit: int | None = None) -> dict[str, list]:
    """Prometheus' metadata by metric name: each name's type (counter or gauge) and unit as stored; no help."""
    metadata: dict[str, list] = {}
    for metric_name, kind, unit in metric_selectors.series_kinds(
            tenant=tenant, metric_names=[metric] if metric else None):
        if limit is not None and metric_name not in metadata and len(metadata) >= limit:
            break
        metadata.setdefault(metric_name, []).append({"type": kind, "help": "", "unit": unit})
    return metadata


def tenant_fetch(*, tenant: Tenant, max_points: int | None = None) -> Fetch:
    """The engine's `fetch` for one query of this tenant: each call's series with their points in
    [low_ms, high_ms], the points of all calls together capped at `max_points` (PROMQL_MAX_SAMPLES), past
    which the query fails as Prometheus' does (an execution error)."""
    remaining = [max_samples() if max_points is None else max_points]
    matched_cache: dict[tuple[Matcher, ...], list[tuple[int, dict[str, str]]]] = {}

    def fetch(matchers: tuple[Matcher, ...], low_ms: int, high_ms: int) -> list[Series]:
        matchers = tuple(matchers)
        if matchers not in matched_cache:
            matched_cache[matchers] = series_matching(tenant=tenant, matchers=matchers)
        stored = _stored_series(tenant, matched_cache[matchers], low_ms, high_ms, remaining)
        return stored + _virtual_series(tenant, matchers, low_ms, high_ms)

    return fetch


def query_range(*, tenant: Tenant, text: str, start_ms: int, end_ms: int, step_ms: int,
                timeout_ms: int | None = None) -> Result:
    """A PromQL range query over the tenant's series (and the computed ones), at start + k*step up to end."""
    return _evaluated(tenant, timeout_ms, lambda fetch: engine.query_range(
        text, fetch, start_ms=start_ms, end_ms=end_ms, step_ms=step_ms, max_samples=max_samples()))


def query_instant(*, tenant: Tenant, text: str, time_ms: int, timeout_ms: int | None = None) -> Result:
    """A PromQL instant query over the tenant's series (and the computed ones) at time_ms."""
    return _evaluated(tenant, timeout_ms, lambda fetch: engine.query_instant(
        text, fetch, time_ms=time_ms, max_samples=max_samples()))


class QueryTimedOut(Exception):
    """The query's own `timeout` ran out before it was evaluated (Prometheus' 503 `timeout`)."""


def _expired(*_) -> list[Series]:
    raise QueryTimedOut


def _evaluated(tenant: Tenant, timeout_ms: int | None, evaluate: Callable[[Fetch], Result]) -> Result:
    if timeout_ms is not None and timeout_ms <= 0:
        # Prometheus' context has expired before evaluation: the query is still parsed (a bad one is bad_data),
        # then it times out, whether or not it would read anything. Nothing is read here.
        _engine_answer(evaluate, _expired)
        raise QueryTimedOut
    # One transaction, so a query's `timeout` bounds each of its reads (SET LOCAL ends with it); never longer
    # than the server's own statement_timeout. A read it cancels is answered 503 `timeout` (views.py).
    with transaction.atomic():
        if timeout_ms is not None:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT set_config('statement_timeout', LEAST(NULLIF((SELECT setting::bigint FROM pg_settings "
                    "WHERE name = 'statement_timeout'), 0), %s)::text, true)", [int(timeout_ms)])
        return _engine_answer(evaluate, tenant_fetch(tenant=tenant))


def _engine_answer(evaluate: Callable[[Fetch], Result], fetch: Fetch) -> Result:
    try:
        return evaluate(fetch)
    except BadData as error:
        # Prometheus words a query the engine refuses (parse, types, what is unsupported) so.
        raise BadData(f'invalid parameter "query": {error}') from None


def _stored_series(tenant: Tenant, matched, low_ms: int, high_ms: int, remaining: list[int]) -> list[Series]:
    if not matched:
        return []
    try:
        ids, ts_us, values = storage.points_window(
            tenant=tenant, series_ids=[series_id for series_id, _ in matched], low_us=_us(low_ms),
            high_us=_us(high_ms, high=True), max_points=remaining[0])
    except storage.TooManyPoints:
        raise ExecutionError(TOO_MANY_SAMPLES) from None
    remaining[0] -= len(ids)
    labels_of = dict(matched)
    ts_ms = ts_us // 1000
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.empty(0, np.int64)
    series = []
    for start, end in zip(starts.tolist(), [*starts[1:].tolist(), len(ids)]):
        times, points = ts_ms[start:end], values[start:end]
        # Points a fraction of a ms apart (JSON ingest keeps µs) read as one ms: the later one is the sample.
        keep = np.r_[times[1:] != times[:-1], True]
        if not keep.all():
            times, points = times[keep], points[keep]
        labels = labels_of[int(ids[start])]
        series.append(Series(labels=tuple(labels.items()), ts_ms=times, values=points))
    return series


def _virtual_series(tenant: Tenant, matchers: tuple[Matcher, ...], low_ms: int, high_ms: int) -> list[Series]:
    """The computed series (cwd_* anomaly bands, promql/virtual.py) that the matchers select, if any."""
    if _virtual is None:
        return []
    return _virtual.virtual_series(tenant, matchers, low_ms, high_ms)


# promql/virtual.py (the anomaly-band series) is optional to this module: fetch unions it when it is there.
_virtual = importlib.import_module("promql.virtual") if importlib.util.find_spec("promql.virtual") else None
