"""Counters read by their increase: plain numpy, shared by the reads (fn=rate|increase) and detection.

A counter's stored value only goes up while its process lives; when the process restarts it
starts again from zero. So the increase from one point to the next is the difference, or, when
the value dropped, the new value itself (what was counted since the restart), never negative.
This is Prometheus' reading of a counter reset.
"""
from __future__ import annotations

import numpy as np

RATE_INPUT = "rate_per_second"  # the engine's input for a counter, as stored with its anomalies


def increases(ts_us: np.ndarray, values: np.ndarray, *, previous: tuple[int, float] | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(timestamps, increases, seconds since the point before) of each point that has a point before it.

    `ts_us` ascending; `previous` is the (ts µs, value) stored just before the first one, when there
    is one: without it the first point has nothing to be compared with and is left out.
    """
    ts_us = np.asarray(ts_us, np.int64)
    values = np.asarray(values, np.float64)
    if previous is not None:
        ts_us = np.concatenate([[previous[0]], ts_us])
        values = np.concatenate([[previous[1]], values])
    if len(ts_us) < 2:
        return np.empty(0, np.int64), np.empty(0), np.empty(0)
    before, after = values[:-1], values[1:]
    increase = np.where(after >= before, after - before, after)
    seconds = np.diff(ts_us) / 1e6
    return ts_us[1:], increase, seconds


def rates(ts_us: np.ndarray, values: np.ndarray, *, previous: tuple[int, float] | None = None
          ) -> tuple[np.ndarray, np.ndarray]:
    """(timestamps, increase per second since the point before) of a counter's points."""
    ts, increase, seconds = increases(ts_us, values, previous=previous)
    return ts, increase / seconds
