"""Robust trailing-window detector (median / MAD), cold-start safe, with a time-based cooldown.

Each point is compared with the `window_points` points before it: expected = their median,
scale = 1.4826 × MAD floored (a flat series has MAD 0), band = expected ± threshold × scale.
A point outside the band is a finding unless the series is still warming (too few points or
too short a history) or an alert fired less than `cooldown_seconds` earlier (one alert per
incident). The state after a point is exactly (the last `window_points` points, the series'
first timestamp, the last alert's timestamp), so it can be checkpointed or rebuilt from
history with the same result.
"""
from __future__ import annotations

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

    _HEADER = struct.Struct("<qqI")
    _NONE = -(2**63)

    def to_bytes(self) -> bytes:
        header = self._HEADER.pack(
            self._NONE if self.first_ts_us is None else self.first_ts_us,
            self._NONE if self.last_alert_us is None else self.last_alert_us,
            len(self.window_ts),
        )
        return header + self.window_ts.astype("<i8").tobytes() + self.window_values.astype("<f8").tobytes()

    @classmethod
    def from_bytes(cls, blob: bytes | None) -> "SeriesState":
        if not blob:
            return cls()
        blob = bytes(blob)
        first, last_alert, count = cls._HEADER.unpack_from(blob)
        offset = cls._HEADER.size
        window_ts = np.frombuffer(blob, dtype="<i8", count=count, offset=offset).astype(np.int64)
        window_values = np.frombuffer(blob, dtype="<f8", count=count, offset=offset + 8 * count).astype(np.float64)
        return cls(
            first_ts_us=None if first == cls._NONE else first,
            last_alert_us=None if last_alert == cls._NONE else last_alert,
            window_ts=window_ts,
            window_values=window_values,
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


def detect(
    state: SeriesState, ts_us: np.ndarray, values: np.ndarray, config: DetectionConfig
) -> tuple[list[Finding], SeriesState, BaselineSnapshot]:
    """Evaluate new points (strictly after the state's window, ascending) and return findings and the new state."""
    ts_us = np.asarray(ts_us, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    width = config.window_points
    all_ts = np.concatenate([state.window_ts, ts_us])
    all_values = np.concatenate([state.window_values, values])
    offset = len(state.window_ts)
    first_ts = state.first_ts_us if state.first_ts_us is not None else (int(ts_us[0]) if len(ts_us) else None)
    min_span_us = config.min_span_seconds * 1_000_000

    # Which new points are warm: enough reference points and enough history behind them.
    positions = np.arange(offset, offset + len(values))
    ref_sizes = np.minimum(positions, width)
    warm = (ref_sizes >= config.min_points) & (ts_us - (first_ts or 0) >= min_span_us) if len(values) else np.zeros(0, bool)

    median = np.full(len(values), np.nan)
    mad = np.full(len(values), np.nan)
    scale = np.full(len(values), np.nan)
    warm_idx = np.flatnonzero(warm)
    full_idx = warm_idx[positions[warm_idx] >= width]
    partial_idx = warm_idx[positions[warm_idx] < width]
    if len(full_idx):
        windows = np.lib.stride_tricks.sliding_window_view(all_values, width)
        for start in range(0, len(full_idx), _CHUNK_ROWS):
            chunk = full_idx[start:start + _CHUNK_ROWS]
            reference = windows[positions[chunk] - width]
            median[chunk], mad[chunk], scale[chunk] = _robust_stats(reference, config)
    for i in partial_idx:
        reference = all_values[: positions[i]][None, :]
        m, d, s = _robust_stats(reference, config)
        median[i], mad[i], scale[i] = m[0], d[0], s[0]

    findings: list[Finding] = []
    last_alert = state.last_alert_us
    cooldown_us = config.cooldown_seconds * 1_000_000
    with np.errstate(invalid="ignore"):
        z = np.abs(values - median) / scale
    candidates = np.flatnonzero(warm & (z >= config.threshold))
    for i in candidates:
        t = int(ts_us[i])
        if last_alert is not None and t - last_alert < cooldown_us:
            continue
        findings.append(_finding(t, float(values[i]), float(median[i]), float(mad[i]), float(scale[i]),
                                 float(z[i]), int(ref_sizes[i]), last_alert, config))
        last_alert = t

    keep = max(len(all_ts) - width, 0)
    new_state = SeriesState(
        first_ts_us=first_ts,
        last_alert_us=last_alert,
        window_ts=all_ts[keep:].copy(),
        window_values=all_values[keep:].copy(),
    )
    return findings, new_state, baseline_snapshot(new_state, config)


def baseline_snapshot(state: SeriesState, config: DetectionConfig) -> BaselineSnapshot:
    """The baseline that the next point would be compared with."""
    samples = len(state.window_values)
    if samples == 0:
        return BaselineSnapshot("warming", 0, None, None, None, None, None)
    median, mad, scale = (float(a[0]) for a in _robust_stats(state.window_values[None, :], config))
    span_ok = state.first_ts_us is not None and int(state.window_ts[-1]) - state.first_ts_us >= config.min_span_seconds * 1_000_000
    status = "ready" if samples >= config.min_points and span_ok else "warming"
    band = config.threshold * scale
    return BaselineSnapshot(status, samples, median, mad, scale, median - band, median + band)


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
