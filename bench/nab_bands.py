"""Issue 15's band checks on every NAB file, on the engine's arrays: each anomaly's lower/upper equal
the model's band `expected_band` (what GET /api/v1/baselines draws) gives at its time, and its alert
threshold (suppression alert_lower/alert_upper) the alert band; range and residual anomalies lie
outside the band; no band is wider than ten times the range of the previous week's values;
a series never negative before a point has no negative lower bound there.

usage: .venv/bin/python bench/nab_bands.py [--data ../shared/bench/nab]
"""
import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from anomalies.engine import DetectionConfig, SeriesState, detect, expected_band  # noqa: E402
from bench.nab import DEFAULT_DATA, load_file  # noqa: E402

WEEK_US = 7 * 86_400_000_000


def check(ts: np.ndarray, xs: np.ndarray, config: DetectionConfig) -> dict:
    findings, _, _ = detect(SeriesState(), ts, xs, config)
    expected, lower, upper, warm, alert_lower, alert_upper = expected_band(SeriesState(), ts, xs, config)
    problems = {"mismatch": 0, "alert_mismatch": 0, "inside": 0, "too_wide": 0, "negative": 0}
    index = {int(t): i for i, t in enumerate(ts.tolist())}
    for finding in findings:
        i = index[finding.ts_us]
        if (finding.lower, finding.upper) != (float(lower[i]), float(upper[i])):
            problems["mismatch"] += 1
        alert = (finding.suppression["alert_lower"], finding.suppression["alert_upper"])
        if alert != (float(alert_lower[i]), float(alert_upper[i])):
            problems["alert_mismatch"] += 1
        if finding.detector in ("range", "residual") and lower[i] <= finding.value <= upper[i]:
            problems["inside"] += 1
    week_start = np.searchsorted(ts, ts - WEEK_US)
    for i in np.flatnonzero(warm).tolist():
        previous = xs[week_start[i]:i]
        if len(previous) and upper[i] - lower[i] > 10 * (previous.max() - previous.min()) > 0:
            problems["too_wide"] += 1
        if xs[:i].min() >= 0 > lower[i]:
            problems["negative"] += 1
    return {"anomalies": len(findings), **problems}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    config = DetectionConfig()
    totals = {}
    for path in sorted((args.data / "data").glob("*/*.csv")):
        stamps, values = load_file(path)
        ts, first = np.unique(np.asarray(stamps, np.int64), return_index=True)  # a shared timestamp keeps its first row
        result = check(ts, np.asarray(values, np.float64)[first], config)
        print(f"{path.parent.name}/{path.name}: {result}")
        for name, count in result.items():
            totals[name] = totals.get(name, 0) + count
    print(f"all: {totals}")


if __name__ == "__main__":
    main()
