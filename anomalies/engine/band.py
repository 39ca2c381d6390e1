"""The band drawn around a series and stored with its anomalies: `display_band` cuts it along points
(what `expected_band` in scan.py draws), `display_band_at` gives the same bits for one anomaly's
point, `window_extremes` the range of each point's window it is cut to. No Django.
"""
from __future__ import annotations

import math

import numpy as np

# The band drawn and stored never reaches further from the values of the point's window (its last
# week) than this many times their range (a band widened by the alert gain would otherwise span
# nonsense: −1,088 to 1,264 around a temperature of 88).
_WINDOW_REACH = 4.0


def display_band(expected, half, lowest, highest, window_low, window_high, range_tolerance: float):
    """The band a series has at a point, drawn by the baselines endpoint and stored with anomalies:
    the residual band (expected ± half, half including the alert gain) cut to what the range detector
    allows (the extremes seen so far ± the tolerance), to `_WINDOW_REACH` ranges of the point's
    window around it, and at zero when the series has never been negative. Range and residual
    anomalies lie outside it by construction: it is inside both their limits. Numbers or arrays."""
    expected, half = np.asarray(expected, np.float64), np.asarray(half, np.float64)
    lowest, highest = np.asarray(lowest, np.float64), np.asarray(highest, np.float64)
    window_low, window_high = np.asarray(window_low, np.float64), np.asarray(window_high, np.float64)
    lower, upper = expected - half, expected + half
    spread = highest - lowest
    with np.errstate(invalid="ignore"):
        ranged = np.isfinite(spread) & (spread > 0)
        tolerance = range_tolerance * np.where(ranged, spread, 0.0)
        lower = np.where(ranged, np.maximum(lower, lowest - tolerance), lower)
        upper = np.where(ranged, np.minimum(upper, highest + tolerance), upper)
        reach = window_high - window_low
        windowed = np.isfinite(reach) & (reach > 0)
        lower = np.where(windowed, np.maximum(lower, window_low - _WINDOW_REACH * reach), lower)
        upper = np.where(windowed, np.minimum(upper, window_high + _WINDOW_REACH * reach), upper)
        lower = np.where(lowest >= 0, np.maximum(lower, 0.0), lower)
    return lower, upper


def display_band_at(expected: float, half: float, lowest: float, highest: float, window_low: float,
                     window_high: float, range_tolerance: float) -> tuple[float, float]:
    """display_band for one point in plain floats (an anomaly's band: numpy per scalar cost more than
    the rest of explaining it), the same operations in the same order, so the same bits."""
    lower, upper = expected - half, expected + half
    spread = highest - lowest
    if math.isfinite(spread) and spread > 0:
        tolerance = range_tolerance * spread
        lower, upper = max(lower, lowest - tolerance), min(upper, highest + tolerance)
    reach = window_high - window_low
    if math.isfinite(reach) and reach > 0:
        lower = max(lower, window_low - _WINDOW_REACH * reach)
        upper = min(upper, window_high + _WINDOW_REACH * reach)
    if lowest >= 0:
        lower = max(lower, 0.0)
    return lower, upper


def window_extremes(values: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """min and max of values[start:end] for each pair (NaN where empty), by a sparse table: two
    overlapping power-of-two blocks per range, O(n log n) in numpy."""
    count = len(starts)
    low, high = np.full(count, math.nan), np.full(count, math.nan)
    lengths = ends - starts
    present = lengths > 0
    if not present.any() or not len(values):
        return low, high
    levels_low, levels_high = [values], [values]
    size = 1
    while size * 2 <= int(lengths.max()):
        previous_low, previous_high = levels_low[-1], levels_high[-1]
        levels_low.append(np.minimum(previous_low[:-size], previous_low[size:]))
        levels_high.append(np.maximum(previous_high[:-size], previous_high[size:]))
        size *= 2
    s, e = starts[present], ends[present]
    level = np.floor(np.log2(e - s)).astype(np.int64)
    for k in np.unique(level).tolist():
        chosen = level == k
        block = 1 << k
        first, last = s[chosen], e[chosen] - block
        index = np.flatnonzero(present)[chosen]
        low[index] = np.minimum(levels_low[k][first], levels_low[k][last])
        high[index] = np.maximum(levels_high[k][first], levels_high[k][last])
    return low, high
