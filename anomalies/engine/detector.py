"""Robust trailing-window detector (median / MAD), cold-start safe, with a time-based cooldown.

The baseline is refreshed at the first point of each `refresh_seconds` bucket of time (hourly
by default) from the `window_points` points before it: expected = their median, scale =
1.4826 × MAD floored (a flat series has MAD 0), band = expected ± threshold × scale. Every
point of the bucket is compared with that baseline, so the cost per point is a few vector
operations and the medians are computed once per bucket, not once per point.
A point outside the band is a finding unless the series is still warming (too few points or
too short a history) or an alert fired less than `cooldown_seconds` earlier (one alert per
incident). The state after a point is (the last `window_points` points, the series' first
timestamp, the last alert's timestamp, the baseline in effect); at a bucket boundary it is
derivable from history alone, which is where a re-evaluation restarts (`restart_at`).
"""
from __future__ import annotations

import math
import struct
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np

from anomalies.engine.explain import reason_sentence

DETECTOR_NAME = "robust_zscore"
MAD_TO_SIGMA = 1.4826
_CHUNK_ROWS = 4096


@dataclass(frozen=True)
class DetectionConfig:
    window_points: int = 360
    threshold: float = 6.0  # robust σ
    min_points: int = 60
    min_span_seconds: int = 3600
    cooldown_seconds: int = 1800
    refresh_seconds: int = 3600  # the baseline is recomputed at the first point of each such bucket
    range_floor: float = 0.01  # scale ≥ this share of the window's range
    relative_floor: float = 0.001  # scale ≥ this share of |median|
    absolute_floor: float = 1e-9

    @classmethod
    def from_overrides(cls, overrides: dict | None) -> "DetectionConfig":
        """The defaults with a tenant's overrides applied; unknown keys raise ValueError."""
        if not overrides:
            return cls()
        known = {f.name: f.type for f in fields(cls)}
        unknown = set(overrides) - set(known)
        if unknown:
            raise ValueError(f"unknown detection setting(s): {', '.join(sorted(unknown))}")
        default = cls()
        cast = {name: type(getattr(default, name)) for name in overrides}
        return replace(default, **{name: cast[name](value) for name, value in overrides.items()})

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class SeriesState:
    """What a series carries from one point to the next."""

    first_ts_us: int | None = None
    last_alert_us: int | None = None
    window_ts: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    window_values: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.float64))
    # The baseline in effect since the last refresh (NaN before the first one with any history).
    median: float = math.nan
    mad: float = math.nan
    scale: float = math.nan
    samples: int = 0

    _HEADER = struct.Struct("<qqdddII")
    _NONE = -(2**63)

    def to_bytes(self) -> bytes:
        header = self._HEADER.pack(
            self._NONE if self.first_ts_us is None else self.first_ts_us,
            self._NONE if self.last_alert_us is None else self.last_alert_us,
            self.median, self.mad, self.scale, self.samples,
            len(self.window_ts),
        )
        return header + self.window_ts.astype("<i8").tobytes() + self.window_values.astype("<f8").tobytes()

    @classmethod
    def from_bytes(cls, blob: bytes | None) -> "SeriesState":
        if not blob:
            return cls()
        blob = bytes(blob)
        first, last_alert, median, mad, scale, samples, count = cls._HEADER.unpack_from(blob)
        offset = cls._HEADER.size
        window_ts = np.frombuffer(blob, dtype="<i8", count=count, offset=offset).astype(np.int64)
        window_values = np.frombuffer(blob, dtype="<f8", count=count, offset=offset + 8 * count).astype(np.float64)
        return cls(
            first_ts_us=None if first == cls._NONE else first,
            last_alert_us=None if last_alert == cls._NONE else last_alert,
            window_ts=window_ts,
            window_values=window_values,
            median=median, mad=mad, scale=scale, samples=samples,
        )


@dataclass(frozen=True)
class BaselineSnapshot:
    """The baseline as of the last processed point (what the API and admin show)."""

    status: str  # "warming" or "ready"
    samples: int
    median: float | None
    mad: float | None
    scale: float | None
    lower: float | None
    upper: float | None


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


def _robust_stats(reference: np.ndarray, config: DetectionConfig):
    """Median, MAD and floored scale of each row of a 2-D reference array."""
    median = np.median(reference, axis=1)
    mad = np.median(np.abs(reference - median[:, None]), axis=1)
    value_range = reference.max(axis=1) - reference.min(axis=1)
    scale = np.maximum.reduce([
        MAD_TO_SIGMA * mad,
        config.range_floor * value_range,
        config.relative_floor * np.abs(median),
        np.full_like(median, config.absolute_floor),
    ])
    return median, mad, scale


def restart_at(ts_us: int, config: DetectionConfig) -> int:
    """Where a re-evaluation that must cover `ts_us` starts: the beginning of its refresh bucket."""
    refresh_us = config.refresh_seconds * 1_000_000
    return ts_us // refresh_us * refresh_us


def _baselines(state: SeriesState, ts_us: np.ndarray, values: np.ndarray, config: DetectionConfig):
    """Per new point: the (median, mad, scale, samples) of the baseline it is compared with."""
    width = config.window_points
    refresh_us = config.refresh_seconds * 1_000_000
    offset = len(state.window_values)
    all_values = np.concatenate([state.window_values, values])
    buckets = ts_us // refresh_us
    refresh = np.empty(len(ts_us), bool)
    refresh[0] = offset == 0 or buckets[0] != int(state.window_ts[-1]) // refresh_us
    refresh[1:] = buckets[1:] != buckets[:-1]
    at = np.flatnonzero(refresh)
    positions = at + offset
    sizes = np.minimum(positions, width)
    r_median = np.full(len(at), np.nan)
    r_mad = np.full(len(at), np.nan)
    r_scale = np.full(len(at), np.nan)
    full = np.flatnonzero(positions >= width)
    if len(full):
        windows = np.lib.stride_tricks.sliding_window_view(all_values, width)
        for start in range(0, len(full), _CHUNK_ROWS):
            chunk = full[start:start + _CHUNK_ROWS]
            r_median[chunk], r_mad[chunk], r_scale[chunk] = _robust_stats(windows[positions[chunk] - width], config)
    for k in np.flatnonzero((positions < width) & (positions > 0)):
        m, d, sc = _robust_stats(all_values[: positions[k]][None, :], config)
        r_median[k], r_mad[k], r_scale[k] = m[0], d[0], sc[0]
    # Each point takes the latest refresh at or before it; points before the first refresh of this
    # batch continue the baseline carried in the state.
    which = np.cumsum(refresh) - 1
    carried = which < 0
    pick = np.where(carried, 0, which)

    def spread(per_refresh, carried_value):
        if len(at) == 0:
            return np.full(len(ts_us), carried_value, dtype=np.float64)
        return np.where(carried, carried_value, per_refresh[pick])

    return (spread(r_median, state.median), spread(r_mad, state.mad), spread(r_scale, state.scale),
            spread(sizes.astype(np.float64), float(state.samples)).astype(np.int64))


def detect(
    state: SeriesState, ts_us: np.ndarray, values: np.ndarray, config: DetectionConfig
) -> tuple[list[Finding], SeriesState, BaselineSnapshot]:
    """Evaluate new points (strictly after the state's window, ascending) and return findings and the new state."""
    ts_us = np.asarray(ts_us, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    if len(ts_us) == 0:
        return [], state, baseline_snapshot(state, config)
    first_ts = state.first_ts_us if state.first_ts_us is not None else int(ts_us[0])
    median, mad, scale, samples = _baselines(state, ts_us, values, config)
    warm = (samples >= config.min_points) & (ts_us - first_ts >= config.min_span_seconds * 1_000_000)

    findings: list[Finding] = []
    last_alert = state.last_alert_us
    cooldown_us = config.cooldown_seconds * 1_000_000
    with np.errstate(invalid="ignore"):
        z = np.abs(values - median) / scale
    for i in np.flatnonzero(warm & (z >= config.threshold)):
        t = int(ts_us[i])
        if last_alert is not None and t - last_alert < cooldown_us:
            continue
        findings.append(_finding(t, float(values[i]), float(median[i]), float(mad[i]), float(scale[i]),
                                 float(z[i]), int(samples[i]), last_alert, config))
        last_alert = t

    all_ts = np.concatenate([state.window_ts, ts_us])
    all_values = np.concatenate([state.window_values, values])
    keep = max(len(all_ts) - config.window_points, 0)
    new_state = SeriesState(
        first_ts_us=first_ts,
        last_alert_us=last_alert,
        window_ts=all_ts[keep:].copy(),
        window_values=all_values[keep:].copy(),
        median=float(median[-1]), mad=float(mad[-1]), scale=float(scale[-1]), samples=int(samples[-1]),
    )
    return findings, new_state, baseline_snapshot(new_state, config)


def expected_band(state: SeriesState, ts_us: np.ndarray, values: np.ndarray, config: DetectionConfig):
    """Per point: (expected, lower, upper, warm) as detection compared it, for drawing the band."""
    ts_us = np.asarray(ts_us, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    if len(ts_us) == 0:
        empty = np.empty(0)
        return empty, empty, empty, np.empty(0, bool)
    first_ts = state.first_ts_us if state.first_ts_us is not None else int(ts_us[0])
    median, _, scale, samples = _baselines(state, ts_us, values, config)
    warm = (samples >= config.min_points) & (ts_us - first_ts >= config.min_span_seconds * 1_000_000)
    band = config.threshold * scale
    return median, median - band, median + band, warm


def baseline_snapshot(state: SeriesState, config: DetectionConfig) -> BaselineSnapshot:
    """The baseline in effect after the last processed point."""
    if math.isnan(state.median):
        return BaselineSnapshot("warming", state.samples, None, None, None, None, None)
    span_ok = (state.first_ts_us is not None and len(state.window_ts)
               and int(state.window_ts[-1]) - state.first_ts_us >= config.min_span_seconds * 1_000_000)
    status = "ready" if state.samples >= config.min_points and span_ok else "warming"
    band = config.threshold * state.scale
    return BaselineSnapshot(status, state.samples, state.median, state.mad, state.scale,
                            state.median - band, state.median + band)


def _finding(ts_us, value, median, mad, scale, z, samples, last_alert, config: DetectionConfig) -> Finding:
    band = config.threshold * scale
    lower, upper = median - band, median + band
    score = min(1.0, z / (3.0 * config.threshold))
    parameters = {
        "threshold_sigma": config.threshold,
        "window_points": config.window_points,
        "min_points": config.min_points,
        "min_span_seconds": config.min_span_seconds,
        "cooldown_seconds": config.cooldown_seconds,
        "refresh_seconds": config.refresh_seconds,
    }
    baseline = {"method": "median_mad", "median": median, "mad": mad, "scale": scale, "samples": samples,
                "deviation_sigma": z}
    suppression = {
        "cooldown_seconds": config.cooldown_seconds,
        "previous_alert_us": last_alert,
    }
    reason = reason_sentence(value=value, expected=median, lower=lower, upper=upper, detector=DETECTOR_NAME,
                             baseline=baseline)
    return Finding(ts_us, value, median, lower, upper, score, DETECTOR_NAME, parameters, baseline, suppression, reason)
