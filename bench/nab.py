"""Score the shipped detector on the NAB corpus with the NAB rules (DESIGN §3).

usage:
  .venv/bin/python bench/nab.py                  # the engine on arrays, one fixed configuration
  .venv/bin/python bench/nab.py --pipeline       # the product: ingest service -> detection_run -> anomalies in PostgreSQL
  .venv/bin/python bench/nab.py --pipeline --incidents  # the same, scoring the openings of incidents instead
  [--data ../shared/bench/nab]

Each file is one series fed in its own row order, from a fresh state; the detector knows
nothing of a file beyond its past points. A row counts as a detection when the detector
flagged its timestamp (rows sharing a timestamp share the stored point, whose first value wins);
with --incidents, when an incident of the series started there (the time of its first anomaly).
Prints the per-category and total normalized scores for the three NAB profiles.
"""
import argparse
import csv
import json
import os
import sys
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.nab_scoring import PROFILES, file_score, normalized  # noqa: E402
from cloudwatchdog.timeutil import EPOCH  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "bench" / "nab"


def load_file(path: Path) -> tuple[list[int], list[float]]:
    stamps, values = [], []
    with path.open() as handle:
        for row in csv.DictReader(handle):
            moment = datetime.strptime(row["timestamp"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
            stamps.append(int((moment - EPOCH).total_seconds()) * 1_000_000)
            values.append(float(row["value"]))
    return stamps, values


def label_rows(stamps: list[int], windows: list[list[str]]) -> list[tuple[int, int]]:
    rows = []
    for start, end in windows:
        start_us, end_us = (int((datetime.strptime(t[:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
                                 - EPOCH).total_seconds()) * 1_000_000 for t in (start, end))
        left = stamps.index(start_us)
        right = len(stamps) - 1 - stamps[::-1].index(end_us)
        rows.append((left, right))
    return rows


def stored_series(stamps: list[int], values: list[float]):
    """What the store keeps: one point per timestamp (the first written), in timestamp order."""
    first = {}
    for ts, value in zip(stamps, values):
        first.setdefault(ts, value)
    ordered = sorted(first)
    return ordered, [first[ts] for ts in ordered]


def flags_from_engine(stamps, values) -> set[int]:
    import numpy as np

    from anomalies.engine import DetectionConfig, SeriesState, detect

    ts, vals = stored_series(stamps, values)
    findings, _, _ = detect(SeriesState(), np.array(ts, np.int64), np.array(vals), DetectionConfig())
    return {f.ts_us for f in findings}


class Pipeline:
    """The product's own path: the ingest service, detection_run, anomalies read back from PostgreSQL."""

    def __init__(self, incidents: bool = False):
        self.incidents = incidents
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cloudwatchdog.settings")
        import django

        django.setup()
        import uuid

        from tenants.services import tenant_create

        self.tenant = tenant_create(slug=f"bench-nab-{uuid.uuid4().hex[:6]}")

    def flags(self, name: str, stamps, values) -> set[int]:
        from anomalies.models import Incident
        from anomalies.runs import detection_run
        from anomalies.selectors import anomaly_list
        from cloudwatchdog.timeutil import format_iso, from_us
        from metrics.ingest import Event
        from metrics.services import points_ingest

        events = [Event(service="nab", resource_id=name, metric_name="value", value=value,
                        timestamp=format_iso(from_us(ts))) for ts, value in zip(stamps, values)]
        for start in range(0, len(events), 1000):
            points_ingest(tenant=self.tenant, events=events[start:start + 1000])
        detection_run(tenant=self.tenant, trigger="command")
        if self.incidents:
            found = Incident.objects.for_tenant(self.tenant).filter(series__resource_id=name).values_list(
                "started_at", flat=True)
        else:
            found = [a.ts for a in anomaly_list(tenant=self.tenant, resource_id=name)]
        return {(ts - EPOCH).days * 86_400_000_000 + (ts - EPOCH).seconds * 1_000_000 for ts in found}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--pipeline", action="store_true", help="run through the product instead of the engine")
    parser.add_argument("--incidents", action="store_true",
                        help="with --pipeline: a detection is an incident's opening, not an anomaly")
    parser.add_argument("--verbose", action="store_true", help="one line per file")
    args = parser.parse_args()
    if args.incidents and not args.pipeline:
        parser.error("--incidents needs --pipeline")
    labels = json.loads((args.data / "labels.json").read_text())
    pipeline = Pipeline(incidents=args.incidents) if args.pipeline else None
    raw = defaultdict(lambda: defaultdict(float))
    windows_per_category = defaultdict(int)
    false_positives = defaultdict(int)
    began = time.perf_counter()
    points = 0
    for name in sorted(labels):
        stamps, values = load_file(args.data / "data" / name)
        points += len(stamps)
        windows = label_rows(stamps, labels[name])
        flagged = pipeline.flags(name, stamps, values) if pipeline else flags_from_engine(stamps, values)
        detections = [ts in flagged for ts in stamps]
        category = name.split("/")[0]
        windows_per_category[category] += len(windows)
        for profile in PROFILES:
            score, counts = file_score(detections, windows, profile)
            raw[category][profile.name] += score
            if profile.name == "standard":
                false_positives[category] += counts["false_positives"]
            if args.verbose and profile.name == "standard":
                print(f"  {name:60s} {score:7.2f} {counts}")
    elapsed = time.perf_counter() - began
    total_windows = sum(windows_per_category.values())
    header = f"{'category':24s} {'windows':>7s} " + " ".join(f"{p.name:>19s}" for p in PROFILES)
    print(header)
    for category in sorted(raw):
        if windows_per_category[category] == 0:
            # No window to normalize by: what counts is the raw cost of its false positives.
            cells = " ".join(f"{raw[category][p.name]:+19.2f}" for p in PROFILES)
            print(f"{category:24s} {0:7d} {cells}  (raw: {false_positives[category]} false positives)")
            continue
        cells = " ".join(f"{normalized(raw[category][p.name], windows_per_category[category], p):19.1f}"
                         for p in PROFILES)
        print(f"{category:24s} {windows_per_category[category]:7d} {cells}")
    totals = " ".join(f"{normalized(sum(raw[c][p.name] for c in raw), total_windows, p):19.1f}" for p in PROFILES)
    print(f"{'all (35 files)':24s} {total_windows:7d} {totals}")
    mode = ("pipeline, incident openings" if args.incidents else "pipeline") if pipeline else "engine"
    print(f"{points:,} rows in {elapsed:.1f} s ({mode})")


if __name__ == "__main__":
    main()
