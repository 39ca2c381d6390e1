"""Reason sentences, built only from an anomaly's stored fields, so they can be rebuilt any time."""
from __future__ import annotations


def _num(value: float) -> str:
    return f"{value:.6g}"


def reason_sentence(*, value: float, expected: float, lower: float, upper: float, detector: str, baseline: dict) -> str:
    """One sentence: what was observed, against what baseline, by how much."""
    direction = "above" if value > expected else "below"
    sigma = baseline.get("deviation_sigma")
    samples = baseline.get("samples")
    relative = ""
    if expected:
        relative = f" ({_num(abs(value - expected) / abs(expected) * 100)}% {direction} it)"
    if detector == "robust_zscore":
        return (
            f"Value {_num(value)} is {_num(sigma)} robust standard deviations {direction} the baseline median "
            f"{_num(expected)} of {samples} recent points{relative}, outside the expected band "
            f"{_num(lower)} to {_num(upper)}."
        )
    return f"Value {_num(value)} is {direction} the expected {_num(expected)}, outside the band {_num(lower)} to {_num(upper)}."
