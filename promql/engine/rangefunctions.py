"""Functions of a range vector (rate, *_over_time, ...), each over every (series, step) window at once.
Each returns (values[n, k], present[n, k])."""
import numpy as np

from promql.engine import semantics, windows
from promql.engine.arrays import Windows
from promql.engine.values import ExecutionError


def extrapolated(win: Windows, *, counter: bool, per_second: bool):
    """rate, increase and delta: Prometheus 2.42's extrapolatedRate (semantics.py names the order)."""
    first, last, count, ok = windows.first_last(win, 2)
    ts, values = win.raw.ts, win.raw.values
    with np.errstate(all="ignore"):
        result = values[last] - values[first] if len(values) else np.zeros(first.shape)
        if counter:
            result = result + _reset_correction(win, ok)
        first_t = ts[first] if len(ts) else np.zeros(first.shape, np.int64)
        last_t = ts[last] if len(ts) else np.zeros(first.shape, np.int64)
        to_start = (first_t - (win.end_ms - win.range_ms)[None, :]) / 1000
        to_end = (win.end_ms[None, :] - last_t) / 1000
        sampled = (last_t - first_t) / 1000
        average = sampled / np.maximum(count - 1, 1)
        if counter:
            first_v = values[first] if len(values) else np.zeros(first.shape)
            to_zero = sampled * (first_v / result)
            clamp = (result > 0) & (first_v >= 0) & (to_zero < to_start)
            to_start = np.where(clamp, to_zero, to_start)
        threshold = average * semantics.EXTRAPOLATION_THRESHOLD
        interval = (sampled + np.where(to_start < threshold, to_start, average / 2)
                    + np.where(to_end < threshold, to_end, average / 2))
        result = result * (interval / sampled)
        if per_second:
            result = result / (win.range_ms / 1000)
    return result, ok


def _reset_correction(win: Windows, ok: np.ndarray) -> np.ndarray:
    """For each drop v[i] < v[i-1] inside a window, v[i-1]: what a counter reset lost."""
    correction = np.zeros(win.lo.shape)
    drops = windows.flag_positions(win, np.less)
    if not len(drops):
        return correction
    with_drops = ok & (windows.pair_counts(win, np.less) > 0)
    if with_drops.any():
        if "lost" not in win.cache:
            lost = np.zeros(len(win.raw.values) + 1)  # padded, as windows.reduce wants
            lost[drops] = win.raw.values[drops - 1]
            win.cache["lost"] = lost
        lo = np.minimum(win.lo + 1, win.hi)
        correction[with_drops] = windows.reduce(np.add, win.cache["lost"], lo[with_drops], win.hi[with_drops],
                                                empty=0.0)
    return correction


def instant_value(win: Windows, *, per_second: bool):
    """irate and idelta: the last two samples."""
    _, last, _, ok = windows.first_last(win, 2)
    if not len(win.raw.values):
        return np.zeros(last.shape), ok
    previous = np.where(ok, last - 1, 0)
    v_last, v_prev = win.raw.values[last], win.raw.values[previous]
    with np.errstate(all="ignore"):
        result = v_last - v_prev
        if per_second:
            result = np.where(v_last < v_prev, v_last, result)
            result = result / ((win.raw.ts[last] - win.raw.ts[previous]) / 1000)
    return result, ok


def count_flags(win: Windows, compare):
    """changes and resets: how many neighbours in the window compare true."""
    return windows.pair_counts(win, compare).astype(np.float64), win.hi > win.lo


def changed(current, previous):
    """changes() counts a step between two NaNs as no change."""
    return (current != previous) & ~(np.isnan(current) & np.isnan(previous))


def over_time(name: str, win: Windows):
    lo, hi, values = win.lo, win.hi, win.raw.values
    present = hi > lo
    count = (hi - lo).astype(np.float64)
    with np.errstate(all="ignore"):
        if name == "count_over_time":
            return count, present
        if name == "present_over_time":
            return np.ones(lo.shape), present
        if name == "sum_over_time":
            return windows.reduce(np.add, windows.padded(win, "values", values), lo, hi), present
        if name == "avg_over_time":
            return windows.reduce(np.add, windows.padded(win, "values", values), lo, hi) / count, present
        if name == "min_over_time":
            return windows.reduce(np.fmin, windows.padded(win, "values", values), lo, hi), present
        if name == "max_over_time":
            return windows.reduce(np.fmax, windows.padded(win, "values", values), lo, hi), present
        if name == "last_over_time":
            return (values[np.where(present, hi - 1, 0)] if len(values) else count), present
    raise AssertionError(name)


def gathered(name: str, win: Windows, scalars: list[np.ndarray]):
    """The functions that need each window's values together: stddev, stdvar, quantile, deriv, predict_linear,
    holt_winters."""
    k = win.lo.shape[1]
    minimum = 2 if name in ("deriv", "predict_linear", "holt_winters") else 1
    if name == "holt_winters":
        _check_factors(win, *scalars)
    scalar = scalars[0] if scalars else None
    present = (win.hi - win.lo) >= minimum
    out = np.full(win.lo.size, np.nan)
    cells = np.flatnonzero(present.ravel())
    with np.errstate(all="ignore"):
        with_times = name in ("deriv", "predict_linear")
        for batch, values, times, valid in windows.gather(win, cells, with_times=with_times):
            step = batch % k
            if name in ("stddev_over_time", "stdvar_over_time"):
                out[batch] = _variance(values, valid, root=name == "stddev_over_time")
            elif name == "quantile_over_time":
                out[batch] = quantile_rows(scalar[step], values, valid)
            elif name == "holt_winters":
                out[batch] = _holt_winters(values, valid, scalars[0][step], scalars[1][step])
            else:
                base = win.eval_ms[step] if name == "predict_linear" else times[:, 0]
                slope, intercept = _regression(values, (times - base[:, None]) / 1000, valid)
                out[batch] = slope if name == "deriv" else intercept + slope * scalar[step]
    return out.reshape(win.lo.shape), present


def _check_factors(win: Windows, smoothing: np.ndarray, trend: np.ndarray) -> None:
    """2.42 refuses a factor outside (0, 1) at any step where a series has samples."""
    used = (win.hi > win.lo).any(axis=0)
    for name, short, factor in (("smoothing", "sf", smoothing), ("trend", "tf", trend)):
        wrong = used & ~((factor > 0) & (factor < 1))
        if wrong.any():
            raise ExecutionError(f"invalid {name} factor. Expected: 0 < {short} < 1, got: "
                                 f"{factor[wrong][0]:f}")


def _holt_winters(values, valid, smoothing, trend):
    """Double exponential smoothing over each row, as 2.42's holt_winters: the last smoothed value."""
    level_before, level = np.zeros(len(values)), values[:, 0].copy()
    slope = values[:, 1] - values[:, 0]
    for i in range(1, values.shape[1]):
        going = valid[:, i]
        if i > 1:
            slope = np.where(going, trend * (level - level_before) + (1 - trend) * slope, slope)
        smoothed = smoothing * values[:, i] + (1 - smoothing) * (level + slope)
        level_before = np.where(going, level, level_before)
        level = np.where(going, smoothed, level)
    return level


def _variance(values, valid, *, root: bool):
    count = valid.sum(axis=1)
    mean = np.where(valid, values, 0).sum(axis=1) / count
    spread = np.where(valid, (values - mean[:, None]) ** 2, 0).sum(axis=1) / count
    return np.sqrt(spread) if root else spread


def _regression(values, x, valid):
    """Least squares over each row, as Prometheus' linearRegression: a constant row has slope 0 (NaN if
    infinite)."""
    count = valid.sum(axis=1)
    x = np.where(valid, x, 0.0)
    y = np.where(valid, values, 0.0)
    mean_x, mean_y = x.sum(axis=1) / count, y.sum(axis=1) / count
    dx = np.where(valid, x - mean_x[:, None], 0.0)
    dy = np.where(valid, y - mean_y[:, None], 0.0)
    slope = (dx * dy).sum(axis=1) / (dx * dx).sum(axis=1)
    intercept = mean_y - slope * mean_x
    first = values[:, 0]
    constant = (np.where(valid, values, first[:, None]) == first[:, None]).all(axis=1)
    slope = np.where(constant, np.where(np.isinf(first), np.nan, 0.0), slope)
    intercept = np.where(constant, np.where(np.isinf(first), np.nan, first), intercept)
    return slope, intercept


def quantile_rows(q: np.ndarray, values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Prometheus' quantile over each row's valid values: NaN sorts first, linear interpolation at q*(n-1);
    -Inf below q=0, +Inf above 1, NaN for an empty row."""
    q = np.broadcast_to(np.asarray(q, dtype=np.float64), (values.shape[0],))
    nan = np.isnan(values) & valid
    # Sort NaN as -Inf and the padding as +Inf, then put the NaNs back in front (where Go's sort leaves them).
    ordered = np.sort(np.where(valid, np.where(nan, -np.inf, values), np.inf), axis=1)
    ordered[np.arange(values.shape[1])[None, :] < nan.sum(axis=1)[:, None]] = np.nan
    count = valid.sum(axis=1)
    rank = np.where(np.isnan(q), 0.0, q) * (count - 1)
    lower = np.clip(np.floor(rank), 0, np.maximum(count - 1, 0)).astype(np.int64)
    upper = np.minimum(lower + 1, np.maximum(count - 1, 0))
    weight = rank - np.floor(rank)
    rows = np.arange(values.shape[0])
    with np.errstate(all="ignore"):
        result = ordered[rows, lower] * (1 - weight) + ordered[rows, upper] * weight
    result = np.where((count == 0) | np.isnan(q), np.nan, result)
    return np.where(q < 0, -np.inf, np.where(q > 1, np.inf, result))
