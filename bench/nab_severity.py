"""How well severity ranks the anomalies on the NAB corpus: the share of each severity's anomalies
that fall inside a labelled anomaly window (high should be the most often right, then medium, then low).

usage: .venv/bin/python bench/nab_severity.py [--data DIR]
Runs the engine over each file (as bench/nab.py does, one fixed configuration) and prints, per
severity and per detector, inside-window / all.
"""
import argparse
import json
import os
import sys
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from anomalies.engine import DetectionConfig, SeriesState, detect  # noqa: E402
from anomalies.engine.config import severity_of  # noqa: E402
from bench.nab import DEFAULT_DATA, load_file, stored_series  # noqa: E402


def _us(text: str) -> int:
    return int(datetime.strptime(text[:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc).timestamp() * 1e6)


def inside_shares(data: Path) -> dict[str, tuple[int, int]]:
    """Per severity and per detector: (anomalies inside a labelled window, anomalies)."""
    labels = json.loads((data / "labels.json").read_text())
    inside, total = Counter(), Counter()
    for name in sorted(labels):
        ts, values = stored_series(*load_file(data / "data" / name))
        windows = [(_us(a), _us(b)) for a, b in labels[name]]
        findings, _, _ = detect(SeriesState(), np.array(ts, np.int64), np.array(values), DetectionConfig())
        for finding in findings:
            hit = any(a <= finding.ts_us <= b for a, b in windows)
            for key in (severity_of(finding.score), finding.detector):
                total[key] += 1
                inside[key] += hit
    return {key: (inside[key], total[key]) for key in total}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    shares = inside_shares(args.data)
    for key in ("high", "medium", "low", "range", "residual", "cusum", "variance", "flatline"):
        if key in shares:
            hits, count = shares[key]
            print(f"{key:9s} {hits:4d} / {count:4d} = {100 * hits / count:5.1f} % inside a window")


if __name__ == "__main__":
    main()
