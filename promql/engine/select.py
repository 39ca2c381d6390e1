"""Selectors: fetch a selector's samples once, then find every (series, step) sample or window with one
searchsorted over all series at once (each series' times shifted into its own band of one int64 key)."""
import numpy as np

from promql.engine import semantics
from promql.engine.arrays import Raw, Steps, Windows
from promql.engine.values import STALE_NAN_BITS, ExecutionError

TOO_MANY_SAMPLES = "query processing would load too many samples into memory in query execution"


def reference_times(ctx, select) -> np.ndarray:
    """The time each step reads at: the step (or the @ time), minus the offset."""
    if select.at is None:
        times = ctx.steps
    else:
        at_ms = {"start": ctx.start_ms, "end": ctx.end_ms}.get(select.at.which, select.at.time_ms)
        times = np.full(len(ctx.steps), at_ms, dtype=np.int64)
    return times - select.offset_ms


def load(ctx, select, refs: np.ndarray) -> Raw:
    """The selector's series, sorted by labels as Prometheus' storage returns them, over
    [min(refs) - max(range, lookback), max(refs)]."""
    width = max(select.range_ms or 0, ctx.lookback_ms)
    low, high = int(refs.min()) - width, int(refs.max())
    key = (select.matchers, low, high)
    if key not in ctx.fetched:
        ctx.fetched[key] = _raw(ctx, ctx.fetch(select.matchers, low, high), low, high)
    return ctx.fetched[key]


def _raw(ctx, series_list, low: int, high: int) -> Raw:
    series_list = sorted(series_list, key=lambda s: tuple(sorted(s.labels)))
    parts_ts, parts_v, lengths = [], [], [0]
    for series in series_list:
        ts = np.asarray(series.ts_ms, dtype=np.int64)
        values = np.asarray(series.values, dtype=np.float64)
        if len(ts) and (ts[0] < low or ts[-1] > high):  # fetch may hand back more than asked: keep the span
            first, last = np.searchsorted(ts, [low, high], side="left")[0], np.searchsorted(ts, high, "right")
            ts, values = ts[first:last], values[first:last]
        parts_ts.append(ts)
        parts_v.append(values)
        lengths.append(len(ts))
    ctx.count_samples(sum(lengths))
    offsets = np.cumsum(lengths, dtype=np.int64)
    ts = np.concatenate(parts_ts) if parts_ts else np.zeros(0, np.int64)
    values = np.concatenate(parts_v) if parts_v else np.zeros(0)
    labels = [tuple(sorted(s.labels)) for s in series_list]
    return Raw(labels, offsets, ts, values)


def _search(raw: Raw, times: np.ndarray, side: str) -> np.ndarray:
    """idx[i, j] = searchsorted(series i's times, times[j], side), as an index into raw.ts. One search per series:
    faster than one search over all series on a combined key (28 ms against 85 ms for 1,000 series x 5,760
    samples x 1,441 steps, and 6x slower at 5,000 series), and no key to build."""
    starts = raw.offsets[:-1]
    out = np.empty((len(raw.labels), len(times)), dtype=np.int64)
    for i, start in enumerate(starts.tolist()):
        out[i] = np.searchsorted(raw.ts[start:raw.offsets[i + 1]], times, side=side)
    out += starts[:, None]
    return out


def _is_stale(values: np.ndarray) -> np.ndarray:
    return values.view(np.int64) == np.int64(STALE_NAN_BITS)


def instant(ctx, select) -> Steps:
    """The newest sample at or before each reference time, if within the lookback and not a stale marker."""
    refs = reference_times(ctx, select)
    raw = load(ctx, select, refs)
    n, k = len(raw.labels), len(refs)
    ctx.check_cells(n * k)
    if len(raw.ts) == 0:
        return Steps(raw.labels, np.zeros((n, k)), np.zeros((n, k), dtype=bool), np.zeros((n, k), np.int64))
    index = _search(raw, refs, "right") - 1
    present = index >= raw.offsets[:-1, None]
    index = np.where(present, index, 0)
    sample_ts, values = raw.ts[index], raw.values[index]
    oldest = refs - ctx.lookback_ms
    present &= (sample_ts >= oldest) if semantics.LOOKBACK_LOWER_BOUND_INCLUSIVE else (sample_ts > oldest)
    present &= ~_is_stale(values)
    return Steps(raw.labels, values, present, sample_ts)


def windows(ctx, select) -> Windows:
    refs = reference_times(ctx, select)
    raw = load(ctx, select, refs)
    stale = _is_stale(raw.values)
    if stale.any():
        kept = np.cumsum(np.concatenate([[0], ~stale]), dtype=np.int64)
        raw = Raw(raw.labels, kept[raw.offsets], raw.ts[~stale], raw.values[~stale])
    # With @ the expression is step-invariant: 2.42 evaluates it once, at the evaluator's first step.
    evaluated = ctx.steps if select.at is None else np.full(len(refs), ctx.steps[0], dtype=np.int64)
    return windows_over(ctx, raw, refs, select.range_ms, evaluated)


def windows_over(ctx, raw: Raw, refs: np.ndarray, range_ms: int, evaluated: np.ndarray) -> Windows:
    ctx.check_cells(len(raw.labels) * len(refs))
    side = "left" if semantics.RANGE_LOWER_BOUND_INCLUSIVE else "right"
    lo = _search(raw, refs - range_ms, side)
    hi = _search(raw, refs, "right")
    return Windows(raw, lo, hi, refs, range_ms, evaluated)


def subquery_steps(ctx, subquery) -> np.ndarray:
    """The inner steps: multiples of the subquery's step from the first at or after start - offset - range,
    to end - offset (Prometheus aligns them to the epoch, not to the query)."""
    first = int(ctx.steps[0]) - subquery.offset_ms - subquery.range_ms
    aligned = -(-first // subquery.step_ms) * subquery.step_ms
    last = int(ctx.steps[-1]) - subquery.offset_ms
    # Every inner step is at least one sample of the inner result: counted before any array is made.
    ctx.check_cells(max(0, (last - aligned) // subquery.step_ms + 1))
    return np.arange(aligned, last + 1, subquery.step_ms, dtype=np.int64)


def subquery_windows(ctx, subquery, inner: Steps, inner_steps: np.ndarray) -> Windows:
    """A subquery's result as a range vector: each inner series' points, windowed like a range selector's."""
    rows = [i for i in range(inner.n) if inner.present[i].any()]
    present = inner.present[rows]
    lengths = present.sum(axis=1)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    ts = np.broadcast_to(inner_steps, present.shape)[present]
    raw = Raw([inner.labels[i] for i in rows], offsets, ts, inner.values[rows][present])
    return windows_over(ctx, raw, ctx.steps - subquery.offset_ms, subquery.range_ms, ctx.steps)


def check_limit(count: int, limit: int) -> None:
    if count > limit:
        raise ExecutionError(TOO_MANY_SAMPLES)
