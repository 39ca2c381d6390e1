"""Dump, or compare, every anomaly the product raises on the NAB corpus, field by field.

usage:
  .venv/bin/python bench/nab_anomalies.py dump OUT.jsonl     # ingest service -> detection_run -> anomalies
  .venv/bin/python bench/nab_anomalies.py compare A.jsonl B.jsonl
  (NAB_DATA=... points at the corpus when this checkout is not beside shared/)

For refactors that must not change behaviour: dump before and after, then compare (exit 1 on
any difference, with the first ones printed). Uses only the services every version has.
"""
import json
import os
import sys
import uuid
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.nab import DEFAULT_DATA, load_file  # noqa: E402

DATA = Path(os.environ.get("NAB_DATA", DEFAULT_DATA))
FIELDS = ("value", "expected", "lower", "upper", "score", "severity", "status", "detector", "parameters",
          "baseline_stats", "suppression", "reason")


def dump(out: Path) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cloudwatchdog.settings")
    import django

    django.setup()
    from datetime import datetime, timedelta, timezone

    from anomalies.selectors import anomaly_list
    try:
        from anomalies.runs import detection_run
    except ImportError:  # before issue 23 split anomalies/services.py
        from anomalies.services import detection_run
    from metrics.ingest import Event
    from metrics.services import points_ingest
    from tenants.services import tenant_create

    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    tenant = tenant_create(slug=f"bench-nab-dump-{uuid.uuid4().hex[:6]}")
    labels = json.loads((DATA / "labels.json").read_text())
    with open(out, "w") as handle:
        for name in sorted(labels):
            stamps, values = load_file(DATA / "data" / name)
            events = [Event(service="nab", resource_id=name, metric_name="value", value=value,
                            timestamp=(epoch + timedelta(microseconds=ts)).isoformat())
                      for ts, value in zip(stamps, values)]
            for start in range(0, len(events), 1000):
                points_ingest(tenant=tenant, events=events[start:start + 1000])
            detection_run(tenant=tenant, trigger="command")
            for anomaly in sorted(anomaly_list(tenant=tenant, resource_id=name), key=lambda a: a.ts):
                row = {"file": name, "ts": anomaly.ts.isoformat(), **{f: getattr(anomaly, f) for f in FIELDS}}
                handle.write(json.dumps(row, sort_keys=True) + "\n")
            print(name, flush=True)


def compare(first: Path, second: Path) -> int:
    a = [json.loads(line) for line in first.read_text().splitlines()]
    b = [json.loads(line) for line in second.read_text().splitlines()]
    differences = [(x, y) for x, y in zip(a, b) if x != y]
    print(f"{len(a)} vs {len(b)} anomalies; {len(differences)} differ in place")
    for x, y in differences[:5]:
        print("-", x, "\n+", y)
    return 0 if a == b else 1


if __name__ == "__main__":
    if sys.argv[1] == "dump":
        dump(Path(sys.argv[2]))
    else:
        sys.exit(compare(Path(sys.argv[2]), Path(sys.argv[3])))
