"""Recurring excursions: the deviations a series had, remembered by 5-minute slot for four weeks;
`recurring_deviations` tells which deviations of a batch recur at the same time of earlier days or
weeks (they are expected, so they raise nothing), and `recurring_patterns` lists those a series has
now, as its baseline shows them. No Django.
"""
from __future__ import annotations

import numpy as np

from anomalies.engine.band import window_extremes
from anomalies.engine.config import DAY_US, WEEK_US, DetectionConfig
from anomalies.engine.state import SeriesState

# Excursions are remembered by 5-minute slot (a day is 288 of them), for four weeks: the three weeks
# a weekly pattern is recognised from, and a week of re-evaluations before the newest point.
SLOT_US = 300_000_000
_DAY_SLOTS = DAY_US // SLOT_US
_WEEK_SLOTS = WEEK_US // SLOT_US
KEPT_SLOTS = 4 * _WEEK_SLOTS


def excursions_merge(keys: np.ndarray, peaks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keys sorted and unique, each with its largest peak."""
    if not len(keys):
        return keys, peaks
    order = np.argsort(keys, kind="stable")
    keys, peaks = keys[order], peaks[order]
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    return keys[starts], np.maximum.reduceat(peaks, starts)


def excursions_of(ts: np.ndarray, z: np.ndarray, has_baseline: np.ndarray, bar: float):
    """The raw excursions among points: |z| at or over `bar` (the residual threshold at gain 1), as
    (slot × 2 + above, |z|)."""
    hit = has_baseline & (np.abs(z) >= bar)  # (NaN compares False)
    return (ts[hit] // SLOT_US) * 2 + (z[hit] > 0), np.abs(z[hit])


def recurring_deviations(ts: np.ndarray, z: np.ndarray, candidates: np.ndarray, keys: np.ndarray,
                         peaks: np.ndarray, config: DetectionConfig) -> np.ndarray:
    """Per point: is its deviation a recurring one? It is when, in its direction, an excursion lies
    within the jitter of the same time on `recurring_occurrences` of the previous three days (or
    weeks), and it is at most `recurring_peak_factor` times the largest of them. Only excursions at
    least a period minus the jitter before the point are read, so batches never see the future."""
    recognised = np.zeros(len(ts), bool)
    chosen_points = np.flatnonzero(candidates)
    if not len(chosen_points) or len(keys) < config.recurring_occurrences:
        return recognised
    jitter = -(-config.recurring_jitter_seconds * 1_000_000 // SLOT_US)
    above = z[chosen_points] > 0
    for direction in (False, True):
        points = chosen_points[above == direction]
        in_direction = (keys & 1) == int(direction)
        slots, slot_peaks = keys[in_direction] >> 1, peaks[in_direction]
        if not len(points) or len(slots) < config.recurring_occurrences:
            continue
        at = ts[points] // SLOT_US
        largest = np.zeros(len(points))
        for period in (_DAY_SLOTS, _WEEK_SLOTS):
            seen = np.zeros(len(points), np.int64)
            period_largest = np.zeros(len(points))
            for k in (1, 2, 3):
                first = np.searchsorted(slots, at - k * period - jitter, "left")
                end = np.searchsorted(slots, at - k * period + jitter, "right")
                seen += end > first
                _, high = window_extremes(slot_peaks, first, end)
                period_largest = np.fmax(period_largest, high)
            largest = np.where(seen >= config.recurring_occurrences, np.fmax(largest, period_largest), largest)
        recognised[points] = (largest > 0) & (np.abs(z[points]) <= config.recurring_peak_factor * largest)
    return recognised


_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _slot_clock(slot_of_period: int, period: int) -> str:
    """HH:MM UTC of a slot of the day, or "weekday HH:MM" of one of the week; a period's end is 24:00."""
    if slot_of_period == period and period == _DAY_SLOTS:
        return "24:00"
    slot_of_period %= period
    minutes = slot_of_period * SLOT_US // 60_000_000
    clock = f"{minutes // 60 % 24:02d}:{minutes % 60:02d}"
    # Day 0 of the epoch was a Thursday; a weekly position counts from the epoch's weeks.
    return clock if period == _DAY_SLOTS else f"{_WEEKDAYS[(minutes // 1440 + 3) % 7]} {clock}"


def recurring_patterns(state: SeriesState, config: DetectionConfig) -> list[dict]:
    """The recurring excursions the series has now, as the baseline shows them: for each period and
    direction, the times (UTC, 5-minute slots) where excursions fell within the jitter of each other
    on `recurring_occurrences` of the last three days (weeks), in time order; a cluster around
    midnight (the week's start) is one, ending after it starts, and one that leaves no gap longer than
    the jitter is the whole day (week). A weekly one at the time of a daily one is left out (the
    daily one says it). Plain Python: it runs for every series on every pass, over a few keys."""
    if len(state.excursion_keys) < config.recurring_occurrences or not len(state.window_ts):
        return []
    keys = state.excursion_keys.tolist()
    now = int(state.window_ts[-1]) // SLOT_US
    jitter = -(-config.recurring_jitter_seconds * 1_000_000 // SLOT_US)
    patterns, daily_spans = [], {}
    for period, name in ((_DAY_SLOTS, "daily"), (_WEEK_SLOTS, "weekly")):
        for direction, word in ((1, "above"), (0, "below")):
            # (position in the period, how many periods back) of each excursion of the last three
            seen_at = sorted(((key >> 1) % period, (now - (key >> 1)) // period) for key in keys
                             if key & 1 == direction and 0 <= now - (key >> 1) < 3 * period)
            clusters = []
            for position, back in seen_at:
                if clusters and position - clusters[-1][-1][0] <= jitter:
                    clusters[-1].append((position, back))
                else:
                    clusters.append([(position, back)])
            whole = False
            if len(clusters) > 1 and clusters[0][0][0] + period - clusters[-1][-1][0] <= jitter:
                clusters[0] = clusters.pop() + clusters[0]  # across midnight (the week's start)
            elif len(clusters) == 1 and clusters[0][0][0] + period - clusters[0][-1][0] <= jitter:
                whole = True
            for cluster in clusters:
                first, last = cluster[0][0], cluster[-1][0] + 1
                seen = len({back for _, back in cluster})
                if seen < config.recurring_occurrences:
                    continue
                if whole:
                    first, last = 0, period
                if name == "daily":
                    daily_spans.setdefault(word, []).append((first, last))
                elif any(_within(first % _DAY_SLOTS, a, b) for a, b in daily_spans.get(word, [])):
                    continue
                patterns.append({"period": name, "direction": word, "start": _slot_clock(first, period),
                                 "end": _slot_clock(last, period), "seen": seen, "of": 3})
    return patterns


def _within(position: int, first: int, last: int) -> bool:
    """Is a position of the day inside [first, last), a span that may run past midnight?"""
    if last - first >= _DAY_SLOTS:
        return True
    first, last = first % _DAY_SLOTS, last % _DAY_SLOTS
    return first <= position < last if first < last else position >= first or position < last
