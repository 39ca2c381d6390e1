"""The NAB scoring rules (Lavin & Ahmad 2015; numenta/NAB nab/sweeper.py), for binary detections.

`file_score` scores one file's per-row detections against its label windows under a cost
profile; `normalized` turns summed raw scores into NAB's 0–100 scale.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    tp: float
    fp: float
    fn: float


PROFILES = [
    Profile("standard", 1.0, 0.11, 1.0),
    Profile("reward_low_FP_rate", 1.0, 0.22, 1.0),
    Profile("reward_low_FN_rate", 1.0, 0.11, 2.0),
]


def scaled_sigmoid(position: float) -> float:
    """NAB's σ: 1 at −1 (a window's left edge), 0 at its right edge, −1 far after it."""
    if position > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


def probation_rows(rows: int) -> int:
    return min(int(math.floor(0.15 * rows)), 750)


def file_score(detections: list[bool], windows: list[tuple[int, int]], profile: Profile) -> tuple[float, dict]:
    """Raw score of one file; `windows` are inclusive (first_row, last_row) pairs in time order."""
    rows = len(detections)
    probation = probation_rows(rows)
    window_of = [None] * rows
    for number, (left, right) in enumerate(windows):
        for i in range(left, right + 1):
            window_of[i] = number
    detected: dict[int, float] = {}
    false_positive_cost = 0.0
    false_positives = 0
    previous_window = None
    for i in range(rows):
        number = window_of[i]
        if number is not None:
            previous_window = number
        if not detections[i] or i < probation:
            continue
        if number is not None:
            if number not in detected:  # only the earliest detection in a window counts
                left, right = windows[number]
                width = right - left + 1
                position = -(right - i + 1) / width
                detected[number] = profile.tp * scaled_sigmoid(position) / scaled_sigmoid(-1.0)
        else:
            if previous_window is None:
                weight = -1.0
            else:
                left, right = windows[previous_window]
                width = right - left + 1
                weight = scaled_sigmoid(abs(right - i) / (width - 1)) if width > 1 else -1.0
            false_positive_cost += weight * profile.fp
            false_positives += 1
    missed = len(windows) - len(detected)
    score = sum(detected.values()) + false_positive_cost - missed * profile.fn
    return score, {"detected": len(detected), "missed": missed, "false_positives": false_positives}


def normalized(raw: float, windows: int, profile: Profile) -> float:
    """100 × (S − S_null) / (S_perfect − S_null): never firing scores 0, perfect scores 100."""
    null, perfect = -profile.fn * windows, profile.tp * windows
    return 100.0 * (raw - null) / (perfect - null) if perfect != null else 0.0
