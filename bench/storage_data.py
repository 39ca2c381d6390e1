"""The benchmark data of bench/storage.py: series of real-looking shapes at a fixed step.

A mix per series number: NAB corpus series replayed (from a per-series offset, scaled by a round
factor and kept at the source file's decimals, as an agent would report them), integer counters
(a cumulative sum of Poisson counts with an occasional restart) and constant series.
"""
from __future__ import annotations

import csv
import glob
import os

import numpy as np

NAB_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "bench", "nab", "data")
SCALES = (1.0, 2.0, 10.0, 0.5, 100.0)


def _nab_series() -> list[tuple[np.ndarray, int]]:
    series = []
    for path in sorted(glob.glob(os.path.join(NAB_DATA, "*", "*.csv"))):
        with open(path) as handle:
            texts = [row["value"] for row in csv.DictReader(handle)]
        decimals = max((len(t.split(".")[1]) if "." in t else 0) for t in texts[:500])
        series.append((np.array([float(t) for t in texts]), decimals))
    return series


class ShapeMix:
    """values(k, n): the n values of series number k (deterministic)."""

    def __init__(self):
        self.nab = _nab_series()

    def kind(self, k: int) -> str:
        # 70 % NAB replays, 20 % counters, 10 % constants
        return "constant" if k % 10 == 9 else "counter" if k % 10 in (7, 8) else "nab"

    def values(self, k: int, n: int) -> np.ndarray:
        rng = np.random.default_rng(k)
        kind = self.kind(k)
        if kind == "constant":
            return np.full(n, float(rng.choice([0, 1, 100, 42.5])))
        if kind == "counter":
            counts = rng.poisson(rng.uniform(1, 500), n).astype(np.float64)
            total = np.cumsum(counts)
            restart = int(rng.integers(n // 2, n))
            total[restart:] -= total[restart - 1]  # a process restart
            return total
        source, decimals = self.nab[k % len(self.nab)]
        offset = int(rng.integers(0, len(source)))
        replay = np.resize(np.roll(source, -offset), n)
        scale = SCALES[(k // len(self.nab)) % len(SCALES)]
        return np.round(replay * scale, decimals)
