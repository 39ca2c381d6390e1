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
"""
from __future__ import annotations

import math
import struct
import zlib
from collections import deque
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np

from anomalies.engine.explain import reason_sentence

DAY_US = 86_400_000_000
WEEK_US = 7 * DAY_US
MAD_TO_SIGMA = 1.4826
DETECTORS = ("range", "residual", "cusum", "variance", "flatline")


@dataclass(frozen=True)
class DetectionConfig:
    window_points: int = 1000
    refresh_seconds: int = 3600
    min_points: int = 288
    min_span_seconds: int = 86_400
    sensitivity: float = 1.0  # > 1 makes every detector but range more sensitive, < 1 less
    range_tolerance: float = 0.05
    residual_threshold: float = 6.0  # robust σ
    cusum_drift: float = 1.0  # σ per point
    cusum_threshold: float = 30.0  # σ
    variance_points: int = 12
    variance_threshold: float = 4.0  # mean |z|
    flatline_min_points: int = 12
    flatline_factor: float = 3.0
    seasonal_improvement: float = 0.7  # seasonal residual MAD must be below this share of the plain MAD
    cooldown_seconds: int = 21_600
    gain_factor: float = 2.0
    gain_half_life_seconds: int = 432_000

    @classmethod
    def from_overrides(cls, overrides: dict | None) -> "DetectionConfig":
        """The defaults with a tenant's overrides applied; unknown keys or bad values raise ValueError."""
        if not overrides:
            return cls()
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(f"unknown detection setting(s): {', '.join(sorted(unknown))}")
        default = cls()
        values = {}
        for name, value in overrides.items():
            kind = type(getattr(default, name))
            try:
                values[name] = kind(value)
            except (TypeError, ValueError):
                raise ValueError(f"detection setting {name} must be a {kind.__name__}") from None
            if values[name] <= 0 and name != "range_tolerance":
                raise ValueError(f"detection setting {name} must be positive")
        return replace(default, **values)

    def as_dict(self) -> dict:
        return asdict(self)


def _lagged_median(a: float | None, b: float | None, c: float | None) -> float | None:
    """The median of the values one, two and three periods earlier that exist (one is enough, so a
    seasonal series is understood after one period, as Grafana's 1 d / 1 w offset bands are)."""
    present = [v for v in (a, b, c) if v is not None]
    if len(present) == 3:
        return sorted(present)[1]
    if len(present) == 2:
        return (present[0] + present[1]) / 2
    return present[0] if present else None


def _median(values: np.ndarray) -> float:
    """np.median's result (the mean of the middle two for an even count) with one partition, no overhead."""
    middle = len(values) // 2
    if len(values) % 2:
        return float(np.partition(values, middle)[middle])
    low, high = np.partition(values, (middle - 1, middle))[middle - 1:middle + 1]
    return float((low + high) / 2)


def restart_at(ts_us: int, config: DetectionConfig) -> int:
    """Where a re-evaluation that must cover `ts_us` starts: the UTC day it falls in."""
    return ts_us // DAY_US * DAY_US


@dataclass(slots=True)  # slots: attribute reads are on the per-point hot path
class SeriesState:
    """Everything a series carries from one point to the next."""

    first_ts_us: int | None = None
    window_ts: list = field(default_factory=list)
    window_values: list = field(default_factory=list)
    window_residuals: list = field(default_factory=list)  # residual against the same time 1-3 days earlier (NaN: none)
    window_weekly_residuals: list = field(default_factory=list)  # ... and against the same time 1-3 weeks earlier
    lowest: float = math.inf
    highest: float = -math.inf
    last_alert_us: int | None = None
    gain_at_alert: float = 1.0
    cusum_up: float = 0.0
    cusum_down: float = 0.0
    cusum_day: int = -(2**62)
    run_length: int = 0
    run_alerted: bool = False  # a flatline alerts once per run, however long it lasts
    recent_abs_z: list = field(default_factory=list)
    # The baseline in effect since the last refresh.
    bucket: int = -(2**62)
    median: float = math.nan
    scale: float = math.nan
    plain_mad: float = math.nan
    period_days: int = 0  # the seasonal period in use: 0 (none), 1 (daily) or 7 (weekly)
    longest_run: int = 0

    _SCALARS = struct.Struct("<qddqdddqqqdddqqqII")
    _NONE = -(2**63)

    def to_bytes(self) -> bytes:
        none = self._NONE
        head = self._SCALARS.pack(
            none if self.first_ts_us is None else self.first_ts_us, self.lowest, self.highest,
            none if self.last_alert_us is None else self.last_alert_us, self.gain_at_alert, self.cusum_up,
            self.cusum_down, self.cusum_day, self.run_length, self.bucket, self.median, self.scale, self.plain_mad,
            self.period_days, self.longest_run, int(self.run_alerted), len(self.window_ts), len(self.recent_abs_z),
        )
        # Compressed: regular timestamps and unfilled residuals shrink a lot, and the checkpoint
        # of every series is written on every run.
        return zlib.compress(head + np.asarray(self.window_ts, "<i8").tobytes() + np.asarray(self.window_values, "<f8").tobytes()
                + np.asarray(self.window_residuals, "<f8").tobytes()
                + np.asarray(self.window_weekly_residuals, "<f8").tobytes()
                + np.asarray(self.recent_abs_z, "<f8").tobytes(), 1)

    @classmethod
    def from_bytes(cls, blob: bytes | None) -> "SeriesState":
        if not blob:
            return cls()
        blob = zlib.decompress(bytes(blob))
        (first, lowest, highest, last_alert, gain, up, down, day, run, bucket, median, scale, plain_mad, period,
         longest, run_alerted, count, recent) = cls._SCALARS.unpack_from(blob)
        offset = cls._SCALARS.size
        arrays = []
        for dtype, size in (("<i8", count), ("<f8", count), ("<f8", count), ("<f8", count), ("<f8", recent)):
            arrays.append(np.frombuffer(blob, dtype=dtype, count=size, offset=offset).tolist())
            offset += 8 * size
        return cls(
            first_ts_us=None if first == cls._NONE else first, window_ts=arrays[0], window_values=arrays[1],
            window_residuals=arrays[2], window_weekly_residuals=arrays[3], lowest=lowest, highest=highest,
            last_alert_us=None if last_alert == cls._NONE else last_alert, gain_at_alert=gain, cusum_up=up,
            cusum_down=down, cusum_day=day, run_length=run, run_alerted=bool(run_alerted), recent_abs_z=arrays[4], bucket=bucket, median=median,
            scale=scale, plain_mad=plain_mad, period_days=period, longest_run=longest,
        )


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


class _Series:
    """The per-point update, shared by detection and by rebuilding a state from history."""

    __slots__ = ("s", "c", "width", "count", "pos", "tbuf", "vbuf", "rbuf", "wbuf", "last_value", "by_ts",
                 "residual_counts", "run_reference", "recent", "refresh_us", "cooldown_us", "min_span_us",
                 "half_life_us")

    def __init__(self, state: SeriesState, config: DetectionConfig):
        self.s = state
        self.c = config
        # The window as ring buffers: order only matters for runs and for the saved state.
        width = self.width = config.window_points
        count = self.count = len(state.window_ts)
        self.pos = count % width
        self.tbuf = np.zeros(width, np.int64)
        self.vbuf = np.zeros(width)
        self.rbuf = np.full(width, math.nan)
        self.wbuf = np.full(width, math.nan)
        self.tbuf[:count] = state.window_ts
        self.vbuf[:count] = state.window_values
        self.rbuf[:count] = state.window_residuals
        self.wbuf[:count] = state.window_weekly_residuals
        # How many residuals of each period the window holds, so a refresh skips a period with too few.
        self.residual_counts = {1: int(np.count_nonzero(~np.isnan(self.rbuf[:count]))),
                                7: int(np.count_nonzero(~np.isnan(self.wbuf[:count])))}
        self.run_reference = None  # the window a pending longest-run computation refers to
        self.last_value = state.window_values[-1] if count else None
        self.by_ts = dict(zip(state.window_ts, state.window_values))
        self.recent = deque(state.recent_abs_z, maxlen=config.variance_points)
        self.refresh_us = config.refresh_seconds * 1_000_000
        self.cooldown_us = config.cooldown_seconds * 1_000_000
        self.min_span_us = config.min_span_seconds * 1_000_000
        self.half_life_us = config.gain_half_life_seconds * 1_000_000

    def gain(self, t: int) -> float:
        s = self.s
        if s.last_alert_us is None:
            return 1.0
        # A closed form of the decay since the last alert, so it never depends on how often it is read.
        return 1.0 + (s.gain_at_alert - 1.0) * 0.5 ** ((t - s.last_alert_us) / self.half_life_us)

    def ordered(self, buffer: np.ndarray) -> np.ndarray:
        if self.count < self.width:
            return buffer[: self.count]
        return np.concatenate((buffer[self.pos:], buffer[: self.pos]))

    def refresh(self) -> None:
        s, c = self.s, self.c
        values = self.vbuf[: self.count]
        s.median = _median(values)
        s.plain_mad = _median(np.abs(values - s.median))
        mad = s.plain_mad
        # The period in use is the one (daily or weekly) whose residuals are the tightest, if they
        # are clearly tighter than the spread around the plain median: found from the data.
        s.period_days = 0
        for period, buffer in ((1, self.rbuf), (7, self.wbuf)):
            if self.residual_counts[period] < c.min_points:
                continue
            residuals = buffer[: self.count]
            residuals = residuals[~np.isnan(residuals)]
            if len(residuals) >= c.min_points:
                seasonal_mad = _median(np.abs(residuals - _median(residuals)))
                if seasonal_mad < c.seasonal_improvement * s.plain_mad and seasonal_mad < mad:
                    s.period_days, mad = period, seasonal_mad
        value_range = s.highest - s.lowest if s.highest > s.lowest else 0.0
        s.scale = max(MAD_TO_SIGMA * mad, 0.01 * value_range, 1e-3 * abs(s.median), 1e-9)
        # The reference run length leaves out the run still going on, or a flatline would hide itself.
        # It is only needed when a run gets long, so it is computed from this copy on demand.
        ordered = self.ordered(self.vbuf)
        self.run_reference = ordered[: max(len(ordered) - s.run_length, 0)].copy()
        s.longest_run = -1

    def longest_run(self) -> int:
        """The longest run of equal values in the window at the last refresh (computed once, when asked)."""
        s = self.s
        if s.longest_run < 0:
            reference = self.run_reference
            changes = np.flatnonzero(np.diff(reference) != 0)
            bounds = np.concatenate([[-1], changes, [len(reference) - 1]])
            s.longest_run = int(np.max(np.diff(bounds))) if len(reference) else 0
            self.run_reference = None
        return s.longest_run

    def run(self, ts_list: list, values_list: list, emit: bool) -> list[Finding]:
        """Process points in order; the one loop both detection and rebuilding from history use.

        Hot loop: attributes are read into locals once and written back at the end.
        """
        s, c = self.s, self.c
        findings = []
        tbuf, vbuf, rbuf, wbuf, by_ts, recent = self.tbuf, self.vbuf, self.rbuf, self.wbuf, self.by_ts, self.recent
        residual_counts = self.residual_counts
        width, count, pos, last = self.width, self.count, self.pos, self.last_value
        refresh_us, min_span_us, min_points = self.refresh_us, self.min_span_us, c.min_points
        get = by_ts.get
        nan = math.nan
        for t, x in zip(ts_list, values_list):
            if s.first_ts_us is None:
                s.first_ts_us = t
            bucket = t // refresh_us
            if bucket != s.bucket:
                if count:
                    self.count, self.pos = count, pos
                    self.refresh()
                s.bucket = bucket
            day = t // DAY_US
            if day != s.cusum_day:
                s.cusum_up = s.cusum_down = 0.0
                s.cusum_day = day
            # _lagged_median, skipped when no earlier period is in the window (the usual weekly case).
            a, b, d = get(t - DAY_US), get(t - 2 * DAY_US), get(t - 3 * DAY_US)
            daily = None if a is None and b is None and d is None else _lagged_median(a, b, d)
            a, b, d = get(t - WEEK_US), get(t - 2 * WEEK_US), get(t - 3 * WEEK_US)
            weekly = None if a is None and b is None and d is None else _lagged_median(a, b, d)
            period = s.period_days
            lagged = daily if period == 1 else weekly if period == 7 else None
            expected = lagged if lagged is not None else s.median
            if last is not None and x == last:
                s.run_length += 1
            else:
                s.run_length = 1
                s.run_alerted = False
            scale = s.scale
            if scale == scale:  # not NaN: a baseline exists
                z = (x - expected) / scale
                recent.append(abs(z))
                if count >= min_points and t - s.first_ts_us >= min_span_us:
                    self.count = count  # what an explanation reports as the sample count
                    finding = self.evaluate(t, x, z, expected, emit)
                    if finding is not None:
                        findings.append(finding)
            if count == width:
                del by_ts[int(tbuf[pos])]  # the point leaving the window
                if rbuf[pos] == rbuf[pos]:
                    residual_counts[1] -= 1
                if wbuf[pos] == wbuf[pos]:
                    residual_counts[7] -= 1
            else:
                count += 1
            tbuf[pos] = t
            vbuf[pos] = x
            if daily is not None:
                rbuf[pos] = x - daily
                residual_counts[1] += 1
            else:
                rbuf[pos] = nan
            if weekly is not None:
                wbuf[pos] = x - weekly
                residual_counts[7] += 1
            else:
                wbuf[pos] = nan
            pos = pos + 1 if pos + 1 < width else 0
            last = x
            by_ts[t] = x
            if x < s.lowest:
                s.lowest = x
            if x > s.highest:
                s.highest = x
        self.count, self.pos, self.last_value = count, pos, last
        return findings

    def seasonal_expected(self, t: int) -> float | None:
        """The expected value from the seasonal period in use, or None."""
        step = DAY_US if self.s.period_days == 1 else WEEK_US if self.s.period_days == 7 else None
        if step is None:
            return None
        get = self.by_ts.get
        return _lagged_median(get(t - step), get(t - 2 * step), get(t - 3 * step))

    def flatline_evidence(self, threshold: float) -> float:
        s, c = self.s, self.c
        if s.plain_mad <= 0 or s.run_alerted:
            return 0.0
        needed = max(c.flatline_min_points, c.flatline_factor * self.longest_run())
        return s.run_length / (needed * threshold)

    def evaluate(self, t: int, x: float, z: float, expected: float, emit: bool) -> Finding | None:
        s, c = self.s, self.c
        gain = self.gain(t)
        threshold = gain / c.sensitivity
        value_range = s.highest - s.lowest
        tolerance = c.range_tolerance * value_range
        range_evidence = 0.0
        if value_range > 0:
            reach = max(x - (s.highest + tolerance), (s.lowest - tolerance) - x)
            if reach >= 0:
                range_evidence = 1.0 + reach / max(tolerance, 1e-12)
        residual_evidence = abs(z) / (c.residual_threshold * threshold)
        clipped = 4.0 if z > 4.0 else -4.0 if z < -4.0 else z
        up = s.cusum_up + clipped - c.cusum_drift
        down = s.cusum_down - clipped - c.cusum_drift
        s.cusum_up = up if up > 0.0 else 0.0
        s.cusum_down = down if down > 0.0 else 0.0
        cusum_evidence = (s.cusum_up if s.cusum_up > s.cusum_down else s.cusum_down) / (c.cusum_threshold * threshold)
        variance_evidence = 0.0
        if len(self.recent) == c.variance_points:
            variance_evidence = (sum(self.recent) / c.variance_points) / (c.variance_threshold * threshold)
        flatline_evidence = 0.0
        if s.plain_mad > 0 and not s.run_alerted and s.run_length >= c.flatline_min_points * threshold:
            # Shorter runs cannot reach the threshold, whatever the reference run.
            flatline_evidence = self.flatline_evidence(threshold)
        if (range_evidence < 1.0 and residual_evidence < 1.0 and cusum_evidence < 1.0 and variance_evidence < 1.0
                and flatline_evidence < 1.0):
            return None  # the common case: no detector votes
        if flatline_evidence == 0.0 and s.plain_mad > 0 and not s.run_alerted:
            flatline_evidence = self.flatline_evidence(threshold)  # below 1; recorded exactly with the finding
        evidence = (range_evidence, residual_evidence, cusum_evidence, variance_evidence, flatline_evidence)
        best = max(evidence)
        if best < 1.0:
            return None
        strongest = evidence.index(best)
        if s.last_alert_us is not None and t - s.last_alert_us < self.cooldown_us:
            return None
        previous_alert = s.last_alert_us
        s.last_alert_us = t
        s.gain_at_alert = gain * c.gain_factor
        s.cusum_up = s.cusum_down = 0.0
        if strongest == DETECTORS.index("flatline"):
            s.run_alerted = True
        if not emit:
            return None
        return self.finding(t, x, z, expected, evidence, strongest, gain, tolerance, previous_alert)

    def finding(self, t, x, z, expected, evidence, strongest, gain, tolerance, previous_alert) -> Finding:
        s, c = self.s, self.c
        detector = DETECTORS[strongest]
        band = c.residual_threshold * gain / c.sensitivity * s.scale
        if detector == "range":
            lower, upper = s.lowest - tolerance, s.highest + tolerance
        else:
            lower, upper = expected - band, expected + band
        parameters = {
            "range_tolerance": c.range_tolerance, "residual_threshold": c.residual_threshold,
            "cusum_drift": c.cusum_drift, "cusum_threshold": c.cusum_threshold,
            "variance_points": c.variance_points, "variance_threshold": c.variance_threshold,
            "flatline_min_points": c.flatline_min_points, "flatline_factor": c.flatline_factor,
            "sensitivity": c.sensitivity, "window_points": c.window_points, "refresh_seconds": c.refresh_seconds,
        }
        baseline = {
            "method": {1: "daily_seasonal_median", 7: "weekly_seasonal_median"}.get(s.period_days, "trailing_median"),
            "expected": expected, "median": s.median, "scale": s.scale, "mad": s.plain_mad,
            "samples": self.count, "lowest_seen": s.lowest, "highest_seen": s.highest,
            "deviation_sigma": z, "cusum_sigma": max(s.cusum_up, s.cusum_down),
            "recent_mean_abs_sigma": sum(self.recent) / max(len(self.recent), 1),
            "run_length": s.run_length, "longest_recent_run": self.longest_run(),
            "evidence": {name: round(value, 6) for name, value in zip(DETECTORS, evidence)},
        }
        # The CUSUM was reset by this alert; keep what it had reached for the explanation.
        baseline["cusum_sigma"] = evidence[2] * c.cusum_threshold * gain / c.sensitivity
        suppression = {
            "cooldown_seconds": c.cooldown_seconds, "previous_alert_us": previous_alert,
            "threshold_multiplier": gain, "next_threshold_multiplier": s.gain_at_alert,
            "gain_half_life_seconds": c.gain_half_life_seconds,
        }
        score = min(1.0, evidence[strongest] / 3.0)
        reason = reason_sentence(value=x, expected=expected, lower=lower, upper=upper, detector=detector,
                                 baseline=baseline, parameters=parameters, suppression=suppression)
        return Finding(t, x, expected, lower, upper, score, detector, parameters, baseline, suppression, reason)

    def state(self) -> SeriesState:
        s = self.s
        s.window_ts = self.ordered(self.tbuf).tolist()
        s.window_values = self.ordered(self.vbuf).tolist()
        s.window_residuals = self.ordered(self.rbuf).tolist()
        s.window_weekly_residuals = self.ordered(self.wbuf).tolist()
        if s.longest_run < 0:
            self.longest_run()
        s.recent_abs_z = list(self.recent)
        return s


def detect(
    state: SeriesState, ts_us, values, config: DetectionConfig
) -> tuple[list[Finding], SeriesState, BaselineSnapshot]:
    """Evaluate new points (strictly after the state's last one, ascending); returns findings and the new state."""
    series = _Series(SeriesState.from_bytes(state.to_bytes()), config)
    findings = series.run(np.asarray(ts_us, dtype=np.int64).tolist(), np.asarray(values, dtype=np.float64).tolist(),
                          emit=True)
    new_state = series.state()
    return findings, new_state, baseline_snapshot(new_state, config)


def state_from_history(
    *,
    history_ts,
    history_values,
    first_ts_us: int | None,
    lowest_before: float,
    highest_before: float,
    alerts_before: list[int],
    config: DetectionConfig,
) -> SeriesState:
    """The state at a UTC day boundary, rebuilt from the points before it (at least 2 × window_points
    of them when the series has that many), the extremes before those points, and the alert times."""
    state = SeriesState(first_ts_us=first_ts_us, lowest=lowest_before, highest=highest_before)
    series = _Series(state, config)
    series.run([int(t) for t in history_ts], [float(x) for x in history_values], emit=False)
    state = series.state()
    # Suppression comes from the alerts actually recorded, replayed with the same arithmetic.
    state.last_alert_us, state.gain_at_alert = None, 1.0
    for alert in alerts_before:
        gain = _Series(state, config).gain(alert)
        state.last_alert_us, state.gain_at_alert = alert, gain * config.gain_factor
    state.cusum_up = state.cusum_down = 0.0
    return state


def expected_band(state: SeriesState, ts_us, values, config: DetectionConfig):
    """Per point: (expected, lower, upper, warm) as the residual detector saw it, for drawing the band."""
    series = _Series(SeriesState.from_bytes(state.to_bytes()), config)
    expected, lower, upper, warm = [], [], [], []
    for t, x in zip(np.asarray(ts_us, dtype=np.int64).tolist(), np.asarray(values, dtype=np.float64).tolist()):
        s = series.s
        bucket = t // series.refresh_us
        if bucket != s.bucket and series.count:
            series.refresh()
            s.bucket = bucket
        lagged = series.seasonal_expected(t)
        centre = lagged if lagged is not None else s.median
        half = config.residual_threshold * series.gain(t) / config.sensitivity * s.scale
        expected.append(centre)
        lower.append(centre - half)
        upper.append(centre + half)
        warm.append(series.count >= config.min_points and s.first_ts_us is not None
                    and t - s.first_ts_us >= series.min_span_us and not math.isnan(s.scale))
        series.run([t], [x], emit=False)
    return np.array(expected), np.array(lower), np.array(upper), np.array(warm, bool)


def baseline_snapshot(state: SeriesState, config: DetectionConfig) -> BaselineSnapshot:
    """The baseline in effect after the last processed point."""
    samples = len(state.window_values)
    if math.isnan(state.median):
        return BaselineSnapshot("warming", samples, None, None, None, None, None)
    span_ok = (state.first_ts_us is not None and samples
               and state.window_ts[-1] - state.first_ts_us >= config.min_span_seconds * 1_000_000)
    status = "ready" if samples >= config.min_points and span_ok else "warming"
    band = config.residual_threshold / config.sensitivity * state.scale
    return BaselineSnapshot(status, samples, state.median, state.plain_mad, state.scale,
                            state.median - band, state.median + band, state.period_days > 0)
