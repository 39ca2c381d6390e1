"""A deterministic, explainable ensemble of five detectors with suppression expressed in time.

Each point is compared, in timestamp order, with a baseline refreshed at the first point of
every hour of data from the `window_points` points before it. The detectors:

- range:     the value leaves [lowest − tol·range, highest + tol·range] of everything seen so far;
- residual:  robust z of the value against the expected value: the median of the same time
             1–3 days (or weeks) earlier when that period explains the series clearly better than
             its plain median (the period is chosen from the data, never assumed), else the
             trailing median;
- cusum:     two-sided CUSUM of the clipped z, reset at each UTC day and after each alert
             (slow drifts and level shifts that stay inside the band);
- variance:  the mean |z| of the last `variance_points` points (a shift of spread or level);
- flatline:  a run of identical values longer than any seen recently (a stuck sensor).

Each detector gives an evidence ratio (≥ 1 votes). After an alert the thresholds of all but the
range detector are multiplied by `gain_factor`, decaying back with `gain_half_life_seconds`, and
no alert is raised for `cooldown_seconds` (one alert per incident). Nothing is raised before
`min_points` points spanning `min_span_seconds`; gaps are gaps, never zeros.

Determinism: the state after a point depends only on the points (and alerts) before it. At a
UTC day boundary it can be rebuilt from history alone (`state_from_history`), which is where
any re-evaluation restarts (`restart_at`), so the output never depends on batch boundaries.

This module is the scan (the per-batch update and its entry points: detect, state_from_history,
expected_band, baseline_snapshot); the band it draws and stores is cut in band.py, recurring
excursions are recognised and listed in patterns.py.
"""
from __future__ import annotations

import bisect
import copy
import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from anomalies.engine.band import display_band, display_band_at, window_extremes
from anomalies.engine.config import DAY_US, DETECTORS, MAD_TO_SIGMA, WEEK_US, DetectionConfig
from anomalies.engine.explain import reason_sentence
from anomalies.engine.patterns import (
    KEPT_SLOTS,
    SLOT_US,
    excursions_merge,
    excursions_of,
    recurring_deviations,
    recurring_patterns,
)
from anomalies.engine.state import SeriesState


def _median(values: np.ndarray, owned: bool = False) -> float:
    """np.median's result (the mean of the middle two for an even count) with one partition; `owned`
    arrays are partitioned in place. Two kth positions even for an odd count: numpy partitions
    around a single kth with a vectorised quickselect that is three times slower on windows this size."""
    middle = len(values) // 2
    scratch = values if owned else values.copy()
    if len(values) % 2:
        scratch.partition((middle, middle))
        return float(scratch[middle])
    scratch.partition((middle - 1, middle))
    return float((scratch[middle - 1] + scratch[middle]) / 2)


@dataclass(frozen=True)
class BaselineSnapshot:
    """The baseline in effect after the last processed point (what the API and admin show)."""

    status: str  # "warming" or "ready"
    samples: int
    median: float | None
    mad: float | None
    scale: float | None
    lower: float | None
    upper: float | None
    seasonal: bool = False
    recurring: tuple = ()  # the recurring excursions recognised (recurring_patterns)
    state: str = "warming"  # "warming", "ok" or "alarm"
    state_since_us: int | None = None
    out_of_band: bool = False  # the newest point is outside the model band
    interval_us: int | None = None  # the median step between the window's points
    alarms_ended: tuple = ()  # (began, ended) µs of each alarm that ended in the batch


@dataclass(frozen=True)
class Finding:
    ts_us: int
    value: float
    expected: float
    lower: float
    upper: float
    score: float
    detector: str
    parameters: dict
    baseline: dict
    suppression: dict
    reason: str
    escalation: bool = False  # raised inside an alarm because it went markedly beyond the alarm's peak
    alarm_since_us: int | None = None  # when the alarm it belongs to began (its own time for an opening)


# Screening margin: a point is evaluated exactly (in Python, as the explanation needs) when numpy's
# evidence reaches 1 − this; numpy and Python agree to a few ulps, so no vote is ever missed.
_SCREEN = 1.0 - 1e-9


def _gain(gain_at_alert: float, last_alert_us: int, t, half_life_us: int):
    """The threshold multiplier at `t` (a time or an array of times) after an alert that left it at
    `gain_at_alert`: a closed form of the decay, so it never depends on how often it is read."""
    return 1.0 + (gain_at_alert - 1.0) * 0.5 ** ((t - last_alert_us) / half_life_us)


# A deviation of residual_ceiling σ that no more than this many 5-minute slots of the last three
# weeks reached is seen whatever the gain.
CLEAR_AT_MOST = 2


def _residual_gain_cap(config: DetectionConfig) -> float:
    """The most the alert gain raises the residual threshold: up to residual_ceiling σ."""
    return max(config.residual_ceiling / config.residual_threshold, 1.0)


def _lagged(times: np.ndarray, values: np.ndarray, at: np.ndarray, window_from: np.ndarray, period_us: int):
    """Per point: the median of the values one, two and three periods earlier that are in its window
    (the mean of two, or the one; NaN: none). One is enough, so a seasonal series is understood after
    one period, as Grafana's 1 d / 1 w offset bands are."""
    earlier = []
    for k in (1, 2, 3):
        target = times[at] - k * period_us
        found = np.minimum(np.searchsorted(times, target), len(times) - 1)
        present = (found >= window_from) & (times[found] == target)
        earlier.append(np.where(present, values[found], math.nan))
    a, b, c = earlier
    has_a, has_b, has_c = ~np.isnan(a), ~np.isnan(b), ~np.isnan(c)
    present_count = has_a.astype(np.int8) + has_b + has_c
    middle = np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c))  # sorted((a, b, c))[1]
    pair = np.where(has_a & has_b, a + b, np.where(has_a & has_c, a + c, b + c)) / 2
    single = np.where(has_a, a, np.where(has_b, b, c))
    return np.select([present_count == 3, present_count == 2, present_count == 1], [middle, pair, single], math.nan)


_NEVER = -(2**62)  # "no such point" in arrays of µs
# Severity: how rare a deviation is over the last three weeks, scored on four decades of chance.
_RARITY_US = 3 * WEEK_US
_RARITY_DECADES = 4.0


class _Baseline:
    """The baseline computed at a refresh, in effect until the next one."""

    __slots__ = ("median", "plain_mad", "period_days", "scale", "run_reference", "longest_run")

    def __init__(self, median, plain_mad, period_days, scale, run_reference, longest_run=-1):
        self.median, self.plain_mad, self.period_days, self.scale = median, plain_mad, period_days, scale
        self.run_reference, self.longest_run = run_reference, longest_run

    def longest(self) -> int:
        """The longest run of equal values in the window at the refresh, leaving out the run then going
        on (or a flatline would hide itself); computed once, when first asked."""
        if self.longest_run < 0:
            reference = self.run_reference
            changes = np.flatnonzero(np.diff(reference) != 0)
            bounds = np.concatenate([[-1], changes, [len(reference) - 1]])
            self.longest_run = int(np.max(np.diff(bounds))) if len(reference) else 0
            self.run_reference = None
        return self.longest_run


class _Batch:
    """Everything about a batch of points that does not depend on alerts, computed with numpy."""

    __slots__ = ("ts", "xs", "expected", "z", "scale", "eligible", "count_before", "lowest_before",
                 "highest_before", "run_length", "run_id", "recent", "recent_end", "baselines", "baseline_of",
                 "days", "times", "values", "band_from", "at", "recognised", "summed_z", "excursion_keys",
                 "excursion_peaks", "out", "last_out")


class _Series:
    """The per-batch update, shared by detection, rebuilding a state from history and band drawing.

    Every quantity that does not depend on alerts (windows, lagged values, baselines, z, runs,
    extremes) is computed for the whole batch with numpy, element by element with the same
    arithmetic as one point at a time, so the result never depends on batch boundaries. Only the
    CUSUM and the alerts go point by point, and only points whose screened evidence could reach a
    vote are evaluated exactly.
    """

    __slots__ = ("s", "c", "width", "window_ts", "window_values", "window_residuals", "window_weekly",
                 "recent", "refresh_us", "cooldown_us", "min_span_us", "half_life_us", "recovery_us", "alerts", "alarms_ended")

    def __init__(self, state: SeriesState, config: DetectionConfig):
        self.s = state
        self.c = config
        width = self.width = config.window_points
        self.window_ts = np.asarray(state.window_ts, np.int64)[-width:]
        self.window_values = np.asarray(state.window_values, np.float64)[-width:]
        self.window_residuals = np.asarray(state.window_residuals, np.float64)[-width:]
        self.window_weekly = np.asarray(state.window_weekly_residuals, np.float64)[-width:]
        self.recent = list(state.recent_abs_z)[-config.variance_points:]
        self.refresh_us = config.refresh_seconds * 1_000_000
        self.cooldown_us = config.cooldown_seconds * 1_000_000
        self.min_span_us = config.min_span_seconds * 1_000_000
        self.half_life_us = config.gain_half_life_seconds * 1_000_000
        self.recovery_us = config.recovery_seconds * 1_000_000
        self.alerts = []  # (ts_us, gain before it) of the alerts raised by this object, in order
        self.alarms_ended = []  # (began, ended) µs of the alarms that ended in this object's points

    def gain(self, t: int) -> float:
        s = self.s
        if s.last_alert_us is None:
            return 1.0
        return _gain(s.gain_at_alert, s.last_alert_us, t, self.half_life_us)

    def _refresh(self, values, residuals, weekly_residuals, residual_counts, lowest, highest, run_length) -> _Baseline:
        c = self.c
        median = _median(values)
        plain_mad = _median(np.abs(values - median), owned=True)
        mad = plain_mad
        # The period in use is the one (daily or weekly) whose residuals are the tightest, if they
        # are clearly tighter than the spread around the plain median: found from the data.
        period_days = 0
        for period, buffer, present_count in ((1, residuals, residual_counts[0]), (7, weekly_residuals, residual_counts[1])):
            if present_count >= c.min_points:
                present = buffer[~np.isnan(buffer)]
                seasonal_mad = _median(np.abs(present - _median(present, owned=True)), owned=True)
                if seasonal_mad < c.seasonal_improvement * plain_mad and seasonal_mad < mad:
                    period_days, mad = period, seasonal_mad
        value_range = highest - lowest if highest > lowest else 0.0
        scale = max(MAD_TO_SIGMA * mad, 0.01 * value_range, 1e-3 * abs(median), 1e-9)
        return _Baseline(median, plain_mad, period_days, scale, values[: max(len(values) - run_length, 0)])

    def prepare(self, ts: np.ndarray, xs: np.ndarray) -> _Batch:
        """Compute the batch's alert-independent quantities and move the window past it."""
        s, width = self.s, self.width
        held = len(self.window_ts)
        times = np.concatenate((self.window_ts, ts))
        values = np.concatenate((self.window_values, xs))
        at = np.arange(held, held + len(ts))  # each new point's index in times/values
        window_from = np.maximum(at - width, 0)  # its window is times[window_from:at]
        if s.first_ts_us is None:
            s.first_ts_us = int(ts[0])
        daily = _lagged(times, values, at, window_from, DAY_US)
        weekly = _lagged(times, values, at, window_from, WEEK_US)
        residuals = np.concatenate((self.window_residuals, xs - daily))
        weekly_residuals = np.concatenate((self.window_weekly, xs - weekly))
        batch = _Batch()
        batch.ts, batch.xs, batch.days = ts, xs, ts // DAY_US
        # For each point's band: the values of its window that are at most a week old.
        batch.times, batch.values, batch.at = times, values, at
        batch.band_from = np.maximum(window_from, np.searchsorted(times, times[at] - WEEK_US))
        batch.lowest_before = np.minimum.accumulate(np.concatenate(([s.lowest], xs[:-1])))
        batch.highest_before = np.maximum.accumulate(np.concatenate(([s.highest], xs[:-1])))
        batch.run_id, batch.run_length = self._runs(xs, values, held)
        buckets = ts // self.refresh_us
        self._refreshes(batch, buckets, values, residuals, weekly_residuals, held)
        self._deviations(batch, daily, weekly, at)
        self._advance(batch, buckets, times, values, residuals, weekly_residuals)
        return batch

    def _runs(self, xs: np.ndarray, values: np.ndarray, held: int) -> tuple[np.ndarray, np.ndarray]:
        """Runs of equal values: each point's run id (−1 for a run going on before the batch) and length."""
        previous = np.concatenate((values[held - 1:held] if held else [math.nan], xs[:-1]))
        index = np.arange(len(xs))
        run_id = np.maximum.accumulate(np.where(xs == previous, -1, index))
        run_length = np.where(run_id >= 0, index - run_id + 1, self.s.run_length + index + 1)
        return run_id, run_length

    def _refreshes(self, b: _Batch, buckets, values, residuals, weekly_residuals, held: int) -> None:
        """The baselines in force over the batch: a refresh at the first point of each new bucket,
        from the window before that point (b.baselines, and b.baseline_of for each point)."""
        s, width = self.s, self.width
        starts = np.flatnonzero(buckets != np.concatenate(([s.bucket], buckets[:-1])))
        baselines = [_Baseline(s.median, s.plain_mad, s.period_days, s.scale, None, s.longest_run)]
        # How many residuals of each period any window holds, so a refresh skips a period with too few.
        residuals_seen = np.concatenate(([0], np.cumsum(~np.isnan(residuals))))
        weekly_seen = np.concatenate(([0], np.cumsum(~np.isnan(weekly_residuals))))
        refreshed_at = []
        for i in starts.tolist():
            g = held + i
            if g == 0:
                continue  # nothing to learn from yet
            lo = max(g - width, 0)
            before = int(b.run_length[i - 1]) if i else s.run_length
            counts = (int(residuals_seen[g] - residuals_seen[lo]), int(weekly_seen[g] - weekly_seen[lo]))
            baselines.append(self._refresh(values[lo:g], residuals[lo:g], weekly_residuals[lo:g], counts,
                                           float(b.lowest_before[i]), float(b.highest_before[i]), before))
            refreshed_at.append(i)
        b.baselines = baselines
        b.baseline_of = np.searchsorted(np.asarray(refreshed_at, np.int64), np.arange(len(b.ts)), side="right")

    def _deviations(self, b: _Batch, daily, weekly, at) -> None:
        """Each point's expected value, scale, z, recent |z| and eligibility under its baseline."""
        s, c = self.s, self.c
        median = np.array([x.median for x in b.baselines])[b.baseline_of]
        scale = np.array([x.scale for x in b.baselines])[b.baseline_of]
        period = np.array([x.period_days for x in b.baselines])[b.baseline_of]
        lagged = np.where(period == 1, daily, np.where(period == 7, weekly, math.nan))
        expected = np.where(np.isnan(lagged), median, lagged)
        has_baseline = ~np.isnan(scale)
        with np.errstate(over="ignore"):  # values near the float limit over a tiny scale: an infinite z, as it is
            z = (b.xs - expected) / scale
        # A recurring deviation raises nothing and adds to no sum (CUSUM, variance) beyond the CUSUM's
        # drift; the batch's own excursions count for its later points.
        new_keys, new_peaks = excursions_of(b.ts, z, has_baseline, c.residual_threshold / c.sensitivity)
        keys, peaks = s.excursion_keys, s.excursion_peaks
        if len(new_keys):
            keys, peaks = excursions_merge(np.concatenate((keys, new_keys)), np.concatenate((peaks, new_peaks)))
        candidates = has_baseline & (np.abs(z) > c.cusum_drift)
        recognised = recurring_deviations(b.ts, z, candidates, keys, peaks, c)
        summed_z = np.where(recognised, np.clip(z, -c.cusum_drift, c.cusum_drift), z)
        b.recognised, b.summed_z, b.excursion_keys, b.excursion_peaks = recognised, summed_z, keys, peaks
        # The |z| of the points with a baseline; each point's recent ones are the last `variance_points`.
        recent = np.concatenate((np.asarray(self.recent, np.float64), np.abs(summed_z[has_baseline])))
        recent_end = np.full(len(b.ts), -1, np.int64)  # each point's last entry in `recent` (exclusive end)
        recent_end[has_baseline] = len(self.recent) + np.arange(1, int(has_baseline.sum()) + 1)
        count_before = np.minimum(at, self.width)
        eligible = has_baseline & (count_before >= c.min_points) & (b.ts - s.first_ts_us >= self.min_span_us)
        b.expected, b.z, b.scale, b.eligible, b.count_before = expected, z, scale, eligible, count_before
        b.recent, b.recent_end = recent, recent_end
        b.out = self._out_of_band(b, has_baseline, recognised)
        seed = _NEVER if s.last_out_us is None else s.last_out_us
        b.last_out = np.maximum.accumulate(np.concatenate(([seed], np.where(b.out, b.ts, _NEVER))))[1:]

    def _out_of_band(self, b: _Batch, has_baseline: np.ndarray, recognised: np.ndarray) -> np.ndarray:
        """Per point: outside the model band (expected ± residual_threshold σ, no alert gain), or beyond
        the range detector's limits, in a direction the configuration watches. A recurring deviation
        is expected, so inside."""
        c = self.c
        with np.errstate(invalid="ignore"):
            bar = c.residual_threshold / c.sensitivity
            spread = b.highest_before - b.lowest_before
            ranged = np.isfinite(spread) & (spread > 0)
            tolerance = c.range_tolerance * np.where(ranged, spread, 0.0)
            up = has_baseline & ~recognised & (b.z > bar) | ranged & (b.xs >= b.highest_before + tolerance)
            down = has_baseline & ~recognised & (b.z < -bar) | ranged & (b.xs <= b.lowest_before - tolerance)
        if c.direction == "above":
            return up
        if c.direction == "below":
            return down
        return up | down

    def _advance(self, b: _Batch, buckets, times, values, residuals, weekly_residuals) -> None:
        """The state after the batch, except CUSUM and alerts (see scan)."""
        s, width = self.s, self.width
        last = b.baselines[-1]
        if len(b.baselines) > 1:
            s.median, s.plain_mad, s.period_days, s.scale = last.median, last.plain_mad, last.period_days, last.scale
            s.longest_run = last.longest()
        s.bucket = int(buckets[-1])
        s.run_length = int(b.run_length[-1])
        s.lowest, s.highest = min(s.lowest, float(b.xs.min())), max(s.highest, float(b.xs.max()))
        if b.last_out[-1] != _NEVER:
            s.last_out_us = int(b.last_out[-1])
        kept = (b.excursion_keys >> 1) >= int(b.ts[-1]) // SLOT_US - KEPT_SLOTS
        s.excursion_keys, s.excursion_peaks = b.excursion_keys[kept], b.excursion_peaks[kept]
        self.window_ts, self.window_values = times[-width:], values[-width:]
        self.window_residuals, self.window_weekly = residuals[-width:], weekly_residuals[-width:]
        self.recent = b.recent[-self.c.variance_points:].tolist()

    def _screen_inputs(self, b: _Batch, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For `points` (eligible, ascending), what does not depend on alerts: whether the range
        detector votes, and the threshold (in units of the alert gain) the strongest of the
        residual, variance and flatline detectors reaches."""
        c = self.c
        xs, lowest, highest = b.xs[points], b.lowest_before[points], b.highest_before[points]
        value_range = highest - lowest
        tolerance = c.range_tolerance * value_range
        recognised = b.recognised[points]
        range_votes = (value_range > 0) & (np.maximum(xs - (highest + tolerance), (lowest - tolerance) - xs) >= 0)
        reach = np.where(recognised, 0.0, np.abs(b.z[points]) / c.residual_threshold)
        # However high the gain, a deviation of residual_ceiling σ votes (no deafness after alerts).
        range_votes = range_votes | (reach >= _residual_gain_cap(c) / c.sensitivity * _SCREEN)
        end = b.recent_end[points]
        full = end >= c.variance_points
        if full.any():
            total = np.zeros(len(points))
            for k in range(c.variance_points, 0, -1):
                total += b.recent[np.where(full, end - k, 0)]
            reach = np.maximum(reach, np.where(full, total / c.variance_points / c.variance_threshold, 0.0))
        plain_mad = np.array([base.plain_mad for base in b.baselines])[b.baseline_of[points]]
        flat = np.where(plain_mad > 0, b.run_length[points] / c.flatline_min_points, 0.0)
        return range_votes, np.maximum(reach, flat)

    def _screen(self, b: _Batch, points: np.ndarray, range_votes: np.ndarray, reach: np.ndarray):
        """Whether a detector other than CUSUM could vote at `points`, and the CUSUM level that
        could, with the thresholds of the current alert state."""
        s, c = self.s, self.c
        if s.last_alert_us is None:
            threshold = np.full(len(points), 1.0 / c.sensitivity)
        else:
            gain = _gain(s.gain_at_alert, s.last_alert_us, b.ts[points], self.half_life_us)
            threshold = gain / c.sensitivity
        limit = threshold * _SCREEN
        return range_votes | (reach >= limit), c.cusum_threshold * limit

    def scan(self, b: _Batch, emit: bool) -> list[Finding]:
        """CUSUM and alerts, point by point over the eligible points; exact evaluation where screened."""
        s, c = self.s, self.c
        findings = []
        points = np.flatnonzero(b.eligible)
        days = b.days
        up, down = s.cusum_up, s.cusum_down
        # Where each excursion began: the eligible point after the last one at zero (None: before
        # this batch, at the state's time); only read when something is explained.
        up_zero = down_zero = None
        alerted_run = -1 if s.run_alerted else None  # the run a flatline alert was raised in
        if len(points):
            new_day, clipped = self._cusum_inputs(b, points)
            point_ts = b.ts[points]
            drift = c.cusum_drift
            range_votes, reach = self._screen_inputs(b, points)
            first = 0
            while first < len(points):
                votes, limits, worse, recovers_at = self._segment_screen(b, points, first, range_votes, reach,
                                                                         alerted_run)
                alerted = None
                for k in range(first, len(points)):
                    if k == recovers_at:
                        self._alarm_end(int(point_ts[k]))
                    # The CUSUMs restart with each day, and when an alarm ends: what they summed while
                    # the alarm held their alerts back was the alarm's.
                    if new_day[k] or k == recovers_at:
                        up = down = 0.0
                        up_zero = down_zero = k - 1
                    z = clipped[k]
                    up = up + z - drift
                    if not up > 0.0:  # (a NaN counts as zero, as it always did)
                        up, up_zero = 0.0, k
                    down = down - z - drift
                    if not down > 0.0:
                        down, down_zero = 0.0, k
                    j = k - first
                    if votes[j] or up >= limits[j] or down >= limits[j] or worse[j]:
                        i = int(points[k])
                        run_alerted = alerted_run is not None and alerted_run == int(b.run_id[i])
                        since = self._excursion_start(point_ts, *((up_zero, s.cusum_up_since) if up > down
                                                                   else (down_zero, s.cusum_down_since)))
                        outcome = self.evaluate(b, i, up, down, run_alerted, emit, since)
                        if outcome is not None:
                            finding, flatline = outcome
                            if finding is not None:
                                findings.append(finding)
                            if flatline:
                                alerted_run = int(b.run_id[i])
                            up = down = 0.0
                            up_zero = down_zero = k
                            alerted = k
                            break
                first = len(points) if alerted is None else alerted + 1
            last_seen = int(days[points[-1]])
        else:
            last_seen = s.cusum_day
        self._cusum_keep(up, down, point_ts if len(points) else None, up_zero, down_zero, int(days[-1]), last_seen)
        s.run_alerted = alerted_run is not None and alerted_run == int(b.run_id[-1])
        return findings

    def _cusum_inputs(self, b: _Batch, points: np.ndarray) -> tuple[list, list]:
        """Per eligible point: does the CUSUM restart there (its UTC day differs from the day of the
        point the CUSUM last saw), and the z it adds (clipped at ±4)."""
        seen_day = np.concatenate(([self.s.cusum_day], b.days[points[:-1]]))
        return (b.days[points] != seen_day).tolist(), np.clip(b.summed_z[points], -4.0, 4.0).tolist()

    def _segment_screen(self, b: _Batch, points: np.ndarray, first: int, range_votes, reach,
                        alerted_run: int | None) -> tuple:
        """For the eligible points from `first` on (until an alert changes the state): the screened
        votes, the CUSUM limits, the escalation candidates, and where the alarm going on ends."""
        votes, limits = self._screen(b, points[first:], range_votes[first:], reach[first:])
        return (votes.tolist(), limits.tolist(), self._escalation_candidates(b, points[first:]),
                self._recovery_index(b, points, first, alerted_run))

    def _escalation_candidates(self, b: _Batch, points: np.ndarray) -> list:
        """Per point: out of band and at least `escalation_factor` times as far from its expected value
        as the peak of the last alarm (what may escalate an alarm, or break through the cooldown)."""
        peak, c = self.s.alarm_peak, self.c
        if math.isnan(peak):
            return [False] * len(points)
        far = np.abs(b.xs[points] - b.expected[points]) >= c.escalation_factor * abs(peak)
        clear = np.abs(b.z[points]) >= c.residual_ceiling / c.sensitivity  # (its rarity is read when evaluated)
        return (b.out[points] & (far | clear)).tolist()

    def _recovery_index(self, b: _Batch, points: np.ndarray, first: int, alerted_run: int | None) -> int:
        """The index (into `points`, from `first`) of the point at which the alarm going on ends: the
        first one at least the recovery time after the last point outside the band (and after the
        alarm began), and no longer in a run of equal values a flatline alert was raised in (a
        stuck sensor stays in alarm while it is stuck); len(points) when it does not end in the
        batch, or none is going on."""
        since = self.s.alarm_since_us
        if since is None:
            return len(points)
        chosen = points[first:]
        quiet = b.ts[chosen] - np.maximum(b.last_out[chosen], since) >= self.recovery_us
        if alerted_run is not None:
            quiet &= b.run_id[chosen] != alerted_run
        hits = np.flatnonzero(quiet)
        return first + int(hits[0]) if len(hits) else len(points)

    def _alarm_end(self, t: int) -> None:
        s = self.s
        self.alarms_ended.append((s.alarm_since_us, t))
        s.alarm_since_us, s.recovered_us = None, t

    def _cusum_keep(self, up: float, down: float, point_ts, up_zero, down_zero, last_day: int, last_seen: int) -> None:
        """The CUSUMs and where their excursions began, as the batch leaves them."""
        s = self.s
        up_since, down_since = s.cusum_up_since, s.cusum_down_since
        if point_ts is not None:
            up_since = self._excursion_start(point_ts, up_zero, up_since)
            down_since = self._excursion_start(point_ts, down_zero, down_since)
        if last_day != last_seen:
            up = down = 0.0  # a day began after the last point the CUSUM saw
        s.cusum_up, s.cusum_down, s.cusum_day = up, down, last_day
        s.cusum_up_since = up_since if up > 0.0 else None
        s.cusum_down_since = down_since if down > 0.0 else None

    @staticmethod
    def _excursion_start(point_ts: np.ndarray, last_zero: int | None, before: int | None) -> int | None:
        """The time of the first eligible point after `last_zero` (an index into point_ts); with None,
        the excursion began before the batch, at `before`."""
        if last_zero is None:
            return before
        return int(point_ts[last_zero + 1]) if last_zero + 1 < len(point_ts) else None

    def run(self, ts: np.ndarray, xs: np.ndarray, emit: bool) -> list[Finding]:
        """Process points (ascending, after the window's last) in order."""
        if not len(ts):
            return []
        return self.scan(self.prepare(ts, xs), emit)

    def flatline_evidence(self, baseline: _Baseline, run_length: int, threshold: float) -> float:
        needed = max(self.c.flatline_min_points, self.c.flatline_factor * baseline.longest())
        return run_length / (needed * threshold)

    def evaluate(self, b: _Batch, i: int, up: float, down: float, run_alerted: bool, emit: bool,
                 drift_since: int | None = None):
        """The exact evidence at point i; None without an alert, else (finding or None, flatline?).

        While an alarm goes on, or in the cooldown after an alert, only a point markedly beyond the
        alarm's peak alerts (at the thresholds without gain): inside the alarm it escalates it, after
        it it opens a new one."""
        s, c = self.s, self.c
        t, x, z, expected = int(b.ts[i]), float(b.xs[i]), float(b.z[i]), float(b.expected[i])
        in_alarm = s.alarm_since_us is not None
        held = in_alarm or (s.last_alert_us is not None and t - s.last_alert_us < self.cooldown_us)
        breaks_through = held and bool(b.out[i]) and (
            abs(x - expected) >= c.escalation_factor * abs(s.alarm_peak)
            or not in_alarm and self._clear_and_rare(b, i))  # after an alarm, the cooldown hides no clear deviation
        if held and not breaks_through:
            return None
        baseline = b.baselines[int(b.baseline_of[i])]
        lowest, highest, run_length = float(b.lowest_before[i]), float(b.highest_before[i]), int(b.run_length[i])
        end = int(b.recent_end[i])
        recent = b.recent[max(end - c.variance_points, 0):end].tolist()
        gain_now = self.gain(t)
        gain = 1.0 if breaks_through else gain_now
        evidence, tolerance = self._evidence(b, i, up, down, recent, baseline, run_alerted, gain)
        best = max(evidence)
        if best < 1.0:
            return None
        strongest = evidence.index(best)
        above = up > down if DETECTORS[strongest] == "cusum" else x > expected
        if not breaks_through and c.direction != "both" and above != (c.direction == "above"):
            return None
        escalation = breaks_through and in_alarm
        previous_alert, previous_peak = s.last_alert_us, s.alarm_peak
        if not escalation:
            s.last_alert_us, s.gain_at_alert, s.alarm_since_us = t, gain_now * c.gain_factor, t
            self.alerts.append((t, gain_now))
        s.alarm_peak = x - expected
        flatline = strongest == DETECTORS.index("flatline")
        if not emit:
            return None, flatline
        window = b.values[int(b.band_from[i]):int(b.at[i])]
        comparable, opportunities, looked_back = self._rarity_counts(b, i, DETECTORS[strongest])
        since_index = self._evidence_start(b, i, DETECTORS[evidence.index(best)], drift_since, run_length)
        point = {"lowest": lowest, "highest": highest, "run_length": run_length, "recent": recent,
                 "samples": int(b.count_before[i]), "cusum": max(up, down), "index": int(b.at[i]),
                 "times": b.times, "values": b.values,
                 "since_index": since_index, "drift_since": drift_since,
                 "comparable": comparable, "opportunities": opportunities, "looked_back": looked_back,
                 "window_low": float(window.min()) if len(window) else math.nan,
                 "window_high": float(window.max()) if len(window) else math.nan,
                 "escalates": previous_peak if escalation else None}
        finding = self.finding(t, x, z, expected, evidence, strongest, gain, tolerance, previous_alert, baseline,
                               point, gain_now)
        return dataclasses.replace(finding, escalation=escalation, alarm_since_us=s.alarm_since_us), flatline

    def _evidence(self, b: _Batch, i: int, up: float, down: float, recent: list, baseline: _Baseline,
                  run_alerted: bool, gain: float) -> tuple[tuple, float]:
        """Each detector's evidence at point i against its threshold times `gain` (≥ 1 votes), and the
        range detector's tolerance."""
        c = self.c
        x, z = float(b.xs[i]), float(b.z[i])
        lowest, highest = float(b.lowest_before[i]), float(b.highest_before[i])
        threshold = gain / c.sensitivity
        value_range = highest - lowest
        tolerance = c.range_tolerance * value_range
        range_evidence = residual_evidence = 0.0
        if value_range > 0:
            reach = max(x - (highest + tolerance), (lowest - tolerance) - x)
            if reach >= 0:
                range_evidence = 1.0 + reach / max(tolerance, 1e-12)
        if not b.recognised[i]:  # a recurring deviation is expected (a new extreme never is)
            residual_evidence = abs(z) / (c.residual_threshold * threshold)
            clear = c.residual_threshold * min(gain, _residual_gain_cap(c)) / c.sensitivity
            if residual_evidence < 1.0 and abs(z) >= clear and self._rare(b, i):
                residual_evidence = abs(z) / clear  # clear and rare: the gain does not hide it
        cusum_evidence = (up if up > down else down) / (c.cusum_threshold * threshold)
        variance_evidence = 0.0
        if len(recent) == c.variance_points and not self._recent_recovery(b, i):
            variance_evidence = (sum(recent) / c.variance_points) / (c.variance_threshold * threshold)
        flatline_evidence = 0.0
        if baseline.plain_mad > 0 and not run_alerted:
            flatline_evidence = self.flatline_evidence(baseline, int(b.run_length[i]), threshold)
        return (range_evidence, residual_evidence, cusum_evidence, variance_evidence, flatline_evidence), tolerance

    def _clear_and_rare(self, b: _Batch, i: int) -> bool:
        """Is point i's deviation clear (residual_ceiling σ) and rare (no more than CLEAR_AT_MOST
        five-minute slots of the last three weeks went as far)? Such a deviation is always seen."""
        c = self.c
        return not b.recognised[i] and abs(float(b.z[i])) >= c.residual_ceiling / c.sensitivity and self._rare(b, i)

    def _rare(self, b: _Batch, i: int) -> bool:
        return self._rarity_counts(b, i, "residual")[0] <= CLEAR_AT_MOST

    def _recent_recovery(self, b: _Batch, i: int) -> bool:
        """Did an alarm end within the variance detector's last points? Their deviations were the alarm's."""
        recovered = self.s.recovered_us
        if recovered is None:
            return False
        index = int(b.at[i])
        return index - int(np.searchsorted(b.times[:index + 1], recovered)) < self.c.variance_points

    def _rarity_counts(self, b: _Batch, i: int, detector: str) -> tuple[int, int, int]:
        """How rare the point's deviation is in the series' last three weeks: (the 5-minute slots that
        held a deviation at least as large, in either direction; the slots, or points when they are
        sparser, the series could have had one in; the µs looked back). A new extreme (range) and a
        run longer than any recent one (flatline) were never reached before."""
        t = int(b.ts[i])
        since = max(t - _RARITY_US, self.s.first_ts_us)
        start, at = int(b.band_from[i]), int(b.at[i])
        step = (t - int(b.times[start])) / (at - start) if at > start else SLOT_US
        opportunities = int((t - since) // max(step, SLOT_US))
        if detector in ("range", "flatline"):
            return 0, opportunities, t - since
        slot, slots = t // SLOT_US, b.excursion_keys >> 1
        first, end = np.searchsorted(slots, since // SLOT_US), np.searchsorted(slots, slot)
        return int(np.count_nonzero(b.excursion_peaks[first:end] >= abs(float(b.z[i])))), opportunities, t - since

    def _evidence_start(self, b: _Batch, i: int, detector: str, drift_since: int | None, run_length: int) -> int | None:
        """Where the evidence of a detector that sums up points began, as an index into b.times: the
        CUSUM's excursion, the variance detector's last points, the flatline's run (as far back as
        the window reaches). None for the point detectors."""
        index = int(b.at[i])
        if detector == "cusum" and drift_since is not None:
            return int(np.searchsorted(b.times[:index + 1], drift_since))
        if detector == "variance":
            return max(index - self.c.variance_points + 1, 0)
        if detector == "flatline":
            return max(index - run_length + 1, 0)
        return None

    def finding(self, t, x, z, expected, evidence, strongest, gain, tolerance, previous_alert, base, point,
                alert_gain) -> Finding:
        """The finding at a point: `gain` is the multiplier its evidence was measured against (1 for
        a point past the alarm's peak), `alert_gain` the one in force (the alert threshold drawn)."""
        s, c = self.s, self.c
        detector = DETECTORS[strongest]
        # The model's band (no alert gain), and the raised alert threshold apart from it.
        half = c.residual_threshold / c.sensitivity * base.scale
        lower, upper = display_band_at(expected, half, point["lowest"], point["highest"], point["window_low"],
                                       point["window_high"], c.range_tolerance)
        alert_half = half * min(alert_gain, _residual_gain_cap(c))
        alert_lower, alert_upper = display_band_at(expected, alert_half, point["lowest"], point["highest"],
                                                   point["window_low"], point["window_high"], c.range_tolerance)
        parameters = {
            "range_tolerance": c.range_tolerance, "residual_threshold": c.residual_threshold,
            "cusum_drift": c.cusum_drift, "cusum_threshold": c.cusum_threshold,
            "variance_points": c.variance_points, "variance_threshold": c.variance_threshold,
            "flatline_min_points": c.flatline_min_points, "flatline_factor": c.flatline_factor,
            "sensitivity": c.sensitivity, "window_points": c.window_points, "refresh_seconds": c.refresh_seconds,
        }
        recent = point["recent"]
        baseline = {
            "method": {1: "daily_seasonal_median", 7: "weekly_seasonal_median"}.get(base.period_days, "trailing_median"),
            "expected": expected, "median": base.median, "scale": base.scale, "mad": base.plain_mad,
            "samples": point["samples"], "lowest_seen": point["lowest"], "highest_seen": point["highest"],
            # What the CUSUM had reached (it restarts after this alert), in the explanation's terms.
            "deviation_sigma": z, "cusum_sigma": evidence[2] * c.cusum_threshold * gain / c.sensitivity,
            "recent_mean_abs_sigma": sum(recent) / max(len(recent), 1),
            "run_length": point["run_length"], "longest_recent_run": base.longest(),
            "evidence": {name: round(value, 6) for name, value in zip(DETECTORS, evidence)},
        }
        if point["since_index"] is not None:
            # What the summing detector added up: from when, how many points, their mean.
            summed = point["values"][point["since_index"]:point["index"] + 1]
            started = point["drift_since"] if detector == "cusum" else int(point["times"][point["since_index"]])
            baseline.update(drift_started_us=int(started), drift_points=len(summed), drift_mean=float(summed.mean()))
        suppression = {
            "cooldown_seconds": c.cooldown_seconds, "previous_alert_us": previous_alert,
            "threshold_multiplier": gain, "next_threshold_multiplier": s.gain_at_alert,
            "gain_half_life_seconds": c.gain_half_life_seconds, "alert_lower": alert_lower, "alert_upper": alert_upper,
        }
        if point["escalates"] is not None:
            # Raised inside an alarm: how far beyond the alarm's peak so far it went.
            suppression["escalates"] = {"alarm_since_us": s.alarm_since_us, "peak_deviation": point["escalates"],
                                        "escalation_factor": c.escalation_factor}
        # One scale for every detector: the chance of a deviation this large in a 5-minute slot of
        # the series' last three weeks, (1 + slots that had one) / (1 + slots), as a share of 10⁻⁴
        # on a log scale. Medium from 1 in 100 (a new extreme after 8 hours of 5-minute slots),
        # high from about 1 in 1,600 (after 5.5 days). The magnitude itself is in the sentence.
        chance = (1 + point["comparable"]) / (1 + point["opportunities"])
        score = min(1.0, -math.log10(chance) / _RARITY_DECADES)
        baseline.update(comparable_slots=point["comparable"], slots_seen=point["opportunities"], chance=chance,
                        rarity_seconds=point["looked_back"] // 1_000_000)
        reason = reason_sentence(value=x, expected=expected, lower=lower, upper=upper, detector=detector, at_us=t,
                                 baseline=baseline, parameters=parameters, suppression=suppression)
        return Finding(t, x, expected, lower, upper, score, detector, parameters, baseline, suppression, reason)

    def state(self) -> SeriesState:
        s = self.s
        # Copies, so the state does not keep the batch's arrays alive.
        s.window_ts = self.window_ts.copy()
        s.window_values = self.window_values.copy()
        s.window_residuals = self.window_residuals.copy()
        s.window_weekly_residuals = self.window_weekly.copy()
        s.recent_abs_z = np.array(self.recent)
        # An out-of-band point older than the window is forgotten: a state rebuilt from history knows
        # only the window's, and recovery looks back minutes.
        if s.last_out_us is not None and (not len(s.window_ts) or s.last_out_us < s.window_ts[0]):
            s.last_out_us = None
        return s


def _arrays(ts_us, values) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(ts_us, dtype=np.int64), np.asarray(values, dtype=np.float64)


def detect(
    state: SeriesState, ts_us, values, config: DetectionConfig
) -> tuple[list[Finding], SeriesState, BaselineSnapshot]:
    """Evaluate new points (strictly after the state's last one, ascending); returns findings and the new state."""
    series = _Series(copy.copy(state), config)  # the series changes its state's scalars, never its arrays
    findings = series.run(*_arrays(ts_us, values), emit=True)
    new_state = series.state()
    return findings, new_state, baseline_snapshot(new_state, config, tuple(series.alarms_ended))


def state_from_history(
    *,
    history_ts,
    history_values,
    first_ts_us: int | None,
    lowest_before: float,
    highest_before: float,
    alerts_before: list[int],
    config: DetectionConfig,
    excursions_from: SeriesState | None = None,
    alarm_since_us: int | None = None,
    alarm_peak: float = math.nan,
    recovered_us: int | None = None,
) -> SeriesState:
    """The state at a UTC day boundary, rebuilt from the points before it (at least 2 × window_points
    of them when the series has that many), the extremes before those points, the alert times
    (escalations are not alerts), the excursions a later state of the series (its checkpoint)
    remembers from before the boundary: they reach back weeks, further than the history, and never
    change once their day has passed (a checkpoint of an earlier format kept none: those of the
    history are used), and the alarm as recorded: the one going on at the boundary (its start), the
    deviation of the last alert or escalation, when the last alarm ended. The newest point outside
    the band is the history's (recovery looks back minutes, well inside it)."""
    state = SeriesState(first_ts_us=first_ts_us, lowest=lowest_before, highest=highest_before)
    ts, xs = _arrays(history_ts, history_values)
    remembered_until = None
    if excursions_from is not None and excursions_from.excursions_known and len(excursions_from.window_ts):
        # Up to the later state's newest point, its excursions before the history's end are the ones
        # the series had; any after that point are found again from the history.
        remembered_until = min(int(excursions_from.window_ts[-1]), int(ts[-1]) if len(ts) else -1)
        remembered = (excursions_from.excursion_keys >> 1) <= remembered_until // SLOT_US
        state.excursion_keys = excursions_from.excursion_keys[remembered]
        state.excursion_peaks = excursions_from.excursion_peaks[remembered]
    series = _Series(state, config)
    series.run(ts, xs, emit=False)
    state = series.state()
    if remembered_until is not None:
        found_later = (state.excursion_keys >> 1) > remembered_until // SLOT_US
        state.excursion_keys, state.excursion_peaks = excursions_merge(
            np.concatenate((excursions_from.excursion_keys[remembered], state.excursion_keys[found_later])),
            np.concatenate((excursions_from.excursion_peaks[remembered], state.excursion_peaks[found_later])))
        if len(ts):
            kept = (state.excursion_keys >> 1) >= int(ts[-1]) // SLOT_US - KEPT_SLOTS
            state.excursion_keys, state.excursion_peaks = state.excursion_keys[kept], state.excursion_peaks[kept]
    # Suppression comes from the alerts actually recorded, replayed with the same arithmetic.
    state.last_alert_us, state.gain_at_alert = None, 1.0
    for alert in alerts_before:
        gain = _Series(state, config).gain(alert)
        state.last_alert_us, state.gain_at_alert = alert, gain * config.gain_factor
    state.cusum_up = state.cusum_down = 0.0
    state.cusum_up_since = state.cusum_down_since = None
    state.alarm_since_us, state.alarm_peak, state.recovered_us = alarm_since_us, alarm_peak, recovered_us
    return state


def expected_band(state: SeriesState, ts_us, values, config: DetectionConfig):
    """Per point: (expected, lower, upper, warm, alert_lower, alert_upper) for drawing: the model's band
    (expected ± residual_threshold σ, cut as display_band does) and the alert threshold, the band
    widened by the post-alert gain as the residual detector had it."""
    ts, xs = _arrays(ts_us, values)
    if not len(ts):
        empty = np.array([])
        return empty, empty, empty, np.array([], bool)
    series = _Series(copy.copy(state), config)
    before = (series.s.last_alert_us, series.s.gain_at_alert)
    batch = series.prepare(ts, xs)
    series.scan(batch, emit=False)
    # The gain at each point follows the alerts raised before it.
    alert_times = [t for t, _ in series.alerts]
    alert_gains = [gain * config.gain_factor for _, gain in series.alerts]
    gains = []
    for t in ts.tolist():
        k = bisect.bisect_left(alert_times, t)
        last, at_alert = (alert_times[k - 1], alert_gains[k - 1]) if k else before
        gains.append(1.0 if last is None else _gain(at_alert, last, t, series.half_life_us))
    half = config.residual_threshold / config.sensitivity * batch.scale
    window_low, window_high = window_extremes(batch.values, batch.band_from, batch.at)
    cut = (batch.lowest_before, batch.highest_before, window_low, window_high, config.range_tolerance)
    lower, upper = display_band(batch.expected, half, *cut)
    alert_lower, alert_upper = display_band(batch.expected, half * np.minimum(gains, _residual_gain_cap(config)), *cut)
    return batch.expected, lower, upper, batch.eligible.copy(), alert_lower, alert_upper


def baseline_snapshot(state: SeriesState, config: DetectionConfig, alarms_ended: tuple = ()) -> BaselineSnapshot:
    """The baseline in effect after the last processed point, and the series' alarm state then."""
    samples = len(state.window_values)
    interval = int(np.median(np.diff(state.window_ts[-100:]))) if samples > 1 else None
    if math.isnan(state.median):
        return BaselineSnapshot("warming", samples, None, None, None, None, None, state_since_us=state.first_ts_us,
                                interval_us=interval, alarms_ended=alarms_ended)
    span_ok = (state.first_ts_us is not None and samples
               and state.window_ts[-1] - state.first_ts_us >= config.min_span_seconds * 1_000_000)
    status = "ready" if samples >= config.min_points and span_ok else "warming"
    band = config.residual_threshold / config.sensitivity * state.scale
    newest = int(state.window_ts[-1]) if samples else None
    if state.alarm_since_us is not None:
        alarm_state, since = "alarm", state.alarm_since_us
    elif status == "ready":
        ready_since = state.first_ts_us + config.min_span_seconds * 1_000_000
        alarm_state, since = "ok", state.recovered_us if state.recovered_us is not None else ready_since
    else:
        alarm_state, since = "warming", state.first_ts_us
    return BaselineSnapshot(status, samples, state.median, state.plain_mad, state.scale,
                            state.median - band, state.median + band, state.period_days > 0,
                            tuple(recurring_patterns(state, config)), alarm_state, since,
                            newest is not None and state.last_out_us == newest, interval, alarms_ended)
