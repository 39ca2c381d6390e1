"""The engine's settings (DetectionConfig, with a tenant's overrides), its time units and where a
re-evaluation restarts."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

DAY_US = 86_400_000_000
WEEK_US = 7 * DAY_US
MAD_TO_SIGMA = 1.4826
DETECTORS = ("range", "residual", "cusum", "variance", "flatline")


# A recurring excursion is looked for within the jitter of the same time a day earlier; a jitter of
# half a day or more would reach the point itself.
_AT_MOST = {"recurring_jitter_seconds": 6 * 3600, "recovery_seconds": 7 * 86_400}
# What the engine can run with: a window of a billion points or a sensitivity of 1e-300 would stop
# every run of the tenant (an overflow, a query past bigint), so a setting is refused outside these.
_DAY = 86_400
_WITHIN = {
    "window_points": (10, 100_000), "refresh_seconds": (60, 7 * _DAY), "min_points": (1, 100_000),
    "min_span_seconds": (1, 90 * _DAY), "sensitivity": (0.001, 1000), "range_tolerance": (0, 1e6),
    "residual_threshold": (0.1, 1000), "cusum_drift": (0.01, 100), "cusum_threshold": (0.1, 1e6),
    "variance_points": (1, 10_000), "variance_threshold": (0.01, 1e6), "flatline_min_points": (1, 100_000),
    "flatline_factor": (0.01, 1000), "seasonal_improvement": (0.01, 1), "cooldown_seconds": (1, 30 * _DAY),
    "gain_factor": (1, 100), "gain_half_life_seconds": (1, 365 * _DAY), "residual_ceiling": (0.1, 1e6),
    "recurring_occurrences": (1, 4), "recurring_peak_factor": (0.01, 1000), "escalation_factor": (1, 1000),
}
DIRECTIONS = ("both", "above", "below")


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
    cooldown_seconds: int = 7_200
    gain_factor: float = 2.0
    gain_half_life_seconds: int = 432_000
    # The gain never raises the residual threshold beyond this (σ): a clear deviation is always seen.
    residual_ceiling: float = 10.0
    # A recurring excursion (a nightly job) is expected: one within this distance of the same time of
    # day (week) on `recurring_occurrences` of the previous three days (weeks), no more than
    # `recurring_peak_factor` times their largest, raises nothing.
    recurring_jitter_seconds: int = 2700
    recurring_occurrences: int = 2
    recurring_peak_factor: float = 2.0
    # Alarm state: a series in alarm returns to ok once its points have stayed inside the model band
    # for this long; while in alarm (or in the cooldown after an alert) a point at least
    # `escalation_factor` times as far from its expected value as the alarm's peak escalates it.
    recovery_seconds: int = 900
    escalation_factor: float = 2.0
    # Which deviations alert: "both", "above" (only values above the expected) or "below".
    direction: str = "both"

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
            if kind is str:
                if value not in DIRECTIONS:
                    raise ValueError(f"detection setting {name} must be one of {', '.join(DIRECTIONS)}")
                values[name] = value
                continue
            try:
                values[name] = kind(value)
            except (TypeError, ValueError, OverflowError):
                raise ValueError(f"detection setting {name} must be a {kind.__name__}") from None
            if not math.isfinite(values[name]):
                raise ValueError(f"detection setting {name} must be a finite number")
            if values[name] <= 0 and name != "range_tolerance":
                raise ValueError(f"detection setting {name} must be positive")
            if name in _AT_MOST and values[name] > _AT_MOST[name]:
                raise ValueError(f"detection setting {name} must be at most {_AT_MOST[name]}")
            low, high = _WITHIN.get(name, (-math.inf, math.inf))
            if not low <= values[name] <= high:
                raise ValueError(f"detection setting {name} must be from {low:g} to {high:g}")
        return replace(default, **values)

    def as_dict(self) -> dict:
        return asdict(self)


def setting_limits() -> dict[str, tuple[float, float]]:
    """Each numeric setting's lowest and highest value from_overrides accepts (for a form's inputs)."""
    limits = {}
    for setting in fields(DetectionConfig):
        kind = type(setting.default)
        if kind is str:
            continue
        # Outside _WITHIN a setting need only be positive: a whole one is then at least 1.
        low, high = _WITHIN.get(setting.name, (1 if kind is int else 0.0, math.inf))
        limits[setting.name] = (low, min(high, _AT_MOST.get(setting.name, math.inf)))
    return limits


def severity_of(score: float) -> str:
    """The severity a score means: high from 0.8 (a deviation rarer than about 1 in 1,600 five-minute
    slots), medium from 0.5 (1 in 100), else low."""
    if score >= 0.8:
        return "high"
    if score >= 0.5:
        return "medium"
    return "low"


def restart_at(ts_us: int) -> int:
    """Where a re-evaluation that must cover `ts_us` starts: the UTC day it falls in."""
    return ts_us // DAY_US * DAY_US
