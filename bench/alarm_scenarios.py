"""What a series' operator would be told: anomalies, incidents and notifications for eight synthetic alarms.

usage: .venv/bin/python bench/alarm_scenarios.py [--only 1,4] [--seed 7]
Each scenario is one series of 5-minute points (level 50, σ 1 unless said) on its own fresh tenant
with one webhook channel (notifications are queued, never delivered). Its clean history (at least
9 days) goes through the ingest service at once, then one detection_run; its live part then goes
point by point with a detection_run after each, as a scheduled pass every 5 minutes of data would.
The last point is about 10 minutes before now (UTC), so nothing lies in the future. Because the live
part goes faster than real time, the tenants of scenarios other than 6 (the silent series, sent at
once and left silent for real) have no-data alerts turned off, where the model has them.

Prints one block per scenario: the anomalies (time, value, severity, detector, score), the incidents
(start, status, resolution, anomalies, peak severity), the notifications queued per incident and the
baseline (its `state` / `state_since` where the model has them). Times are UTC with their offset from
the scenario's t0, its first abnormal point, so runs on different days compare line by line.
"""
import argparse
import math
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cloudwatchdog.settings")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402

from anomalies.alerting import channel_create  # noqa: E402
from anomalies.runs import detection_run  # noqa: E402
from anomalies.selectors import anomaly_list, baseline_list, deliveries_list, incident_list  # noqa: E402
from cloudwatchdog.timeutil import format_iso  # noqa: E402
from metrics.ingest import Event  # noqa: E402
from metrics.services import points_ingest  # noqa: E402
from tenants.services import tenant_create  # noqa: E402

STEP = timedelta(minutes=5)
DAY = timedelta(days=1)
HISTORY = timedelta(days=10)  # clean history before the live part (the detector is ready after a day)
LEAD = timedelta(minutes=30)  # live normal points before t0
TAIL = timedelta(hours=2)  # live normal points after the event: incidents have time to resolve
LEVEL, SIGMA = 50.0, 1.0
BATCH = 1000


@dataclass
class Scenario:
    number: int
    key: str
    title: str
    t0: datetime
    history: list[tuple[datetime, float]]
    live: list[tuple[datetime, float]]
    idle_runs: int = 0  # detection runs after the last point with no new point (a silent series)
    returns_at: datetime | None = None  # a point sent then, after the idle runs (the series reports again)
    watches_silence: bool = False  # see run(): only where the points are sent in real time
    expected: str = ""
    notes: list[str] = field(default_factory=list)


def _grid(start: datetime, end: datetime) -> list[datetime]:
    """5-minute times from start to end inclusive."""
    return [start + i * STEP for i in range(int((end - start) / STEP) + 1)]


def _build(number, key, title, rng, *, t0, live_start, end, start=None, bumps=(), base=None, sigma=SIGMA,
           expected="") -> Scenario:
    """History from `start` (default: HISTORY before the live part) to `live_start`, live to `end`;
    `bumps` are (first time, points, +σ); `base(t)` the noiseless value (default: LEVEL)."""
    times = _grid(start or live_start - HISTORY, end)
    values = np.array([base(t) if base else LEVEL for t in times]) + rng.normal(0, sigma, len(times))
    index = {t: i for i, t in enumerate(times)}
    for first, points, sigmas in bumps:
        for k in range(points):
            values[index[first + k * STEP]] += sigmas * sigma
    points = list(zip(times, values.tolist()))
    split = index[live_start]
    return Scenario(number, key, title, t0, points[:split], points[split:], expected=expected)


def spike_then_larger(rng, end):
    t0 = end - TAIL - 3 * STEP
    return _build(1, "spike_then_larger", "+10σ spike at t0, then +40σ 15 minutes later", rng,
                  t0=t0, live_start=t0 - LEAD, end=end, bumps=[(t0, 1, 10), (t0 + 3 * STEP, 1, 40)],
                  expected="after the fix: the larger spike escalates the incident and notifies")


def level_shift(rng, end):
    t0 = end - TAIL - timedelta(hours=10) + STEP
    return _build(2, "level_shift_10h", "+15σ level shift for 10 hours (120 points) from t0, then back", rng,
                  t0=t0, live_start=t0 - LEAD, end=end, bumps=[(t0, 120, 15)])


def short_excursion(rng, end):
    t0 = end - TAIL - 3 * STEP
    return _build(3, "excursion_20min", "+12σ for 20 minutes (4 points) from t0, then back", rng,
                  t0=t0, live_start=t0 - LEAD, end=end, bumps=[(t0, 4, 12)])


def plateau(rng, end):
    t0 = end - TAIL - 35 * STEP
    return _build(4, "plateau_3h", "+12σ for 3 hours (36 points) from t0, then back", rng,
                  t0=t0, live_start=t0 - LEAD, end=end, bumps=[(t0, 36, 12)])


def flapping(rng, end):
    t0 = end - TAIL - 11 * STEP
    return _build(5, "flapping_1h", "for an hour from t0: +12σ and normal alternating every 5 minutes "
                  "(6 high points), then normal", rng,
                  t0=t0, live_start=t0 - LEAD, end=end, bumps=[(t0 + 2 * k * STEP, 1, 12) for k in range(6)])


def silent(rng, end):
    # Silent for 55 minutes now: five minutes past 10 intervals, so the silence is noticed live.
    last = end - timedelta(minutes=45)
    scenario = _build(6, "silent_55min", "normal points, then none from t0 for 55 minutes (detection run 6 times "
                      "meanwhile), then a point again", rng, t0=last + STEP, live_start=last - LEAD, end=last,
                      expected="after the fix: a no_data incident, notified, resolved by the returning point")
    scenario.idle_runs, scenario.returns_at, scenario.watches_silence = 6, end + 2 * STEP, True
    # All of it at once: fed point by point faster than real time, it would look silent in between.
    scenario.history, scenario.live = scenario.history + scenario.live, []
    return scenario


def _midnight(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def nightly_job(rng, end):
    # Day 10 is the latest day whose job ended at least an hour before the last point.
    day10 = _midnight(end) if end >= _midnight(end) + timedelta(hours=3, minutes=30) else _midnight(end) - DAY
    t0 = day10 + timedelta(hours=2)
    jobs = [(day10 - k * DAY + timedelta(hours=2), 6, 12) for k in range(10)]
    return _build(7, "nightly_job", "+12σ every day 02:00-02:30 UTC (6 points), days 1-9 in history, "
                  "day 10's from t0", rng, t0=t0, live_start=t0 - LEAD, end=end, start=day10 - 9 * DAY,
                  bumps=jobs, expected="a recurring job: expected, raises nothing once recognised")


def seasonal_spike(rng, end):
    # At 09:10 UTC (the latest one at least TAIL before the end), so the sine is in the same phase
    # at the spike and at the alerts before it whenever the scenario runs.
    t0 = _midnight(end - TAIL) + timedelta(hours=9, minutes=10)
    if t0 > end - TAIL:
        t0 -= DAY
    day12 = _midnight(t0)
    # Two alerts 12 hours apart, two and a half days before the spike: they raised the thresholds
    # threefold (x2 per alert, a 5-day half-life), enough to hide a 12σ spike before the fix.
    noise_alerts = [(t0 - timedelta(days=3, hours=2), 1, 12), (t0 - timedelta(days=2, hours=14), 1, 14)]

    def base(t):
        return LEVEL + 20 * math.sin(2 * math.pi * (t - _midnight(t)) / DAY)

    return _build(8, "seasonal_spike", "daily sine (amplitude 20, σ 0.5); +12σ and +14σ single points 3 days 2 h and "
                  "2 days 14 h before t0, a +15σ single point (12 robust σ: the seasonal residual is wider than the "
                  "noise) on day 12 at t0", rng, t0=t0, live_start=t0 - LEAD, end=end,
                  start=day12 - 11 * DAY, bumps=[*noise_alerts, (t0, 1, 15)], base=base, sigma=0.5,
                  expected="the day-12 spike is raised")


SCENARIOS = [spike_then_larger, level_shift, short_excursion, plateau, flapping, silent, nightly_job, seasonal_spike]


def _events(points, resource_id: str) -> list[Event]:
    return [Event(service="scenario", resource_id=resource_id, metric_name="value", value=value,
                  timestamp=format_iso(ts)) for ts, value in points]


def run(scenario: Scenario) -> dict:
    """Feed the scenario through the product on a fresh tenant; returns what it made."""
    tenant = tenant_create(slug=f"alarm-{scenario.number}-{uuid.uuid4().hex[:6]}")
    if hasattr(tenant, "no_data_alerts") and not scenario.watches_silence:
        # The live part goes faster than real time: between its points a series would look silent.
        tenant.no_data_alerts = False
        tenant.save(update_fields=["no_data_alerts"])
    channel = channel_create(tenant=tenant, data={"name": "hook", "kind": "webhook",
                                                  "url": "https://example.invalid/hook"})
    began = time.perf_counter()
    history = _events(scenario.history, scenario.key)
    for start in range(0, len(history), BATCH):
        points_ingest(tenant=tenant, events=history[start:start + BATCH])
    detection_run(tenant=tenant, trigger="command")
    runs = 1
    for event in _events(scenario.live, scenario.key):
        points_ingest(tenant=tenant, events=[event])
        detection_run(tenant=tenant, trigger="command")
        runs += 1
    for _ in range(scenario.idle_runs):
        detection_run(tenant=tenant, trigger="command")
        runs += 1
    if scenario.returns_at is not None:
        points_ingest(tenant=tenant, events=_events([(scenario.returns_at, LEVEL)], scenario.key))
        detection_run(tenant=tenant, trigger="command")
        runs += 1
    return {
        "tenant": tenant, "runs": runs, "seconds": time.perf_counter() - began,
        "anomalies": sorted(anomaly_list(tenant=tenant), key=lambda a: (a.ts, a.id)),
        "incidents": sorted(incident_list(tenant=tenant)[:10_000], key=lambda i: (i.started_at, i.id)),
        "notifications": sorted(deliveries_list(tenant=tenant, channel=channel, limit=10_000), key=lambda n: n.id),
        "baselines": list(baseline_list(tenant=tenant)),
    }


def _at(moment: datetime | None, t0: datetime) -> str:
    """'12-03 09:05 (t0+0:15)'; days shown when a day or more away."""
    if moment is None:
        return "-"
    offset = int((moment - t0).total_seconds()) // 60
    sign = "-" if offset < 0 else "+"
    days, minutes = divmod(abs(offset), 1440)
    span = f"{days}d{minutes // 60:02d}:{minutes % 60:02d}" if days else f"{minutes // 60}:{minutes % 60:02d}"
    return f"{moment.astimezone(timezone.utc):%m-%d %H:%M} (t0{sign}{span})"


def _number(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def report(scenario: Scenario, outcome: dict) -> None:
    t0 = scenario.t0
    print(f"== {scenario.number} {scenario.key}: {scenario.title}")
    print(f"t0 = {t0:%Y-%m-%d %H:%M} UTC; points: {len(scenario.history):,} history "
          f"({_at(scenario.history[0][0], t0)} to {_at(scenario.history[-1][0], t0)}) + {len(scenario.live)} live "
          f"(to {_at((scenario.live or scenario.history)[-1][0], t0)}); detection runs: {outcome['runs']} "
          f"({outcome['seconds']:.1f} s in all); tenant {outcome['tenant'].slug}")
    if scenario.expected:
        print(f"expected: {scenario.expected}")
    print(f"anomalies ({len(outcome['anomalies'])}):")
    for a in outcome["anomalies"]:
        print(f"  {_at(a.ts, t0)}  value {a.value:7.2f}  {a.severity:6s}  {a.detector:9s}  score {a.score:.2f}"
              f"  band {_number(a.lower)}..{_number(a.upper)}")
    by_incident = {}
    for n in outcome["notifications"]:
        by_incident.setdefault(n.incident_id, []).append(n)
    print(f"incidents ({len(outcome['incidents'])}):")
    for number, i in enumerate(outcome["incidents"], 1):
        print(f"  #{number} started {_at(i.started_at, t0)}  {i.status:12s}  resolved_at {_at(i.resolved_at, t0)}  "
              f"anomalies {i.anomaly_count}  peak {i.peak_severity}  last anomaly {_at(i.last_anomaly_at, t0)}")
        sent = by_incident.pop(i.id, [])
        events = ", ".join(f"{n.event}[{n.event_key}]" for n in sent) or "none"
        print(f"      notifications: {events}")
    for incident_id, sent in by_incident.items():  # of no incident listed (a test message, a deleted incident)
        print(f"  notifications of incident {incident_id}: {', '.join(n.event for n in sent)}")
    statuses = sorted({n.status for n in outcome["notifications"]})
    print(f"notifications queued: {len(outcome['notifications'])} ({', '.join(statuses) or 'none'})")
    for b in outcome["baselines"]:
        state = getattr(b, "state", None)
        state_since = getattr(b, "state_since", None)
        print(f"baseline: status {b.status}, state {state if state is not None else '- (no such field)'}"
              f"{'' if state_since is None else ', state_since ' + _at(state_since, t0)}, method {b.method}, "
              f"median {_number(b.median)}, scale {_number(b.scale)}, band {_number(b.lower)}..{_number(b.upper)}, "
              f"watermark {_at(b.watermark, t0)}, recurring {b.recurring or []}")
    print()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated scenario numbers (default: all)")
    parser.add_argument("--seed", type=int, default=7, help="numpy seed; scenario n uses seed + n")
    args = parser.parse_args()
    chosen = {int(n) for n in args.only.split(",")} if args.only else None
    now = datetime.now(timezone.utc)
    end = now.replace(minute=now.minute - now.minute % 5, second=0, microsecond=0) - timedelta(minutes=10)
    print(f"now {now:%Y-%m-%d %H:%M:%S} UTC; last point {end:%Y-%m-%d %H:%M} UTC; seed {args.seed}\n")
    for number, build in enumerate(SCENARIOS, 1):
        if chosen and number not in chosen:
            continue
        scenario = build(np.random.default_rng(args.seed + number), end)
        report(scenario, run(scenario))


if __name__ == "__main__":
    main()
