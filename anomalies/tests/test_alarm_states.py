"""Alarms a person on call can trust, tried the way they happen: synthetic 5-minute series sent through
the ingest API, detection run through POST /api/v1/process/run as the points come (a batch of points,
then a run), incidents and states read back through the API, notifications delivered to a real HTTP
receiver on loopback (pytest-httpserver)."""
import json
import math
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from anomalies.alerting import notifications_deliver_due
from anomalies.runs import detection_run
from tests.helpers import event

STEP = timedelta(minutes=5)
NOW = datetime.now(timezone.utc).replace(second=0, microsecond=0)
START = (NOW - timedelta(days=8)).replace(hour=0, minute=0)  # a week of history, then the live part


@pytest.fixture(autouse=True)
def _local_receivers_allowed(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True  # the receiver listens on loopback


_NOISE = np.random.default_rng(21).uniform(-0.5, 0.5, 20_000)


def _calm(i: int) -> float:
    """Noise within ±0.5 of the level: no new extreme beyond the range detector's tolerance once the first
    day has been seen, so a clean history raises nothing."""
    return float(_NOISE[i % len(_NOISE)])


class Watched:
    """One series of a fresh tenant with a webhook channel: points go in through the API in batches, each
    followed by a detection run; what was sent is read from the receiver."""

    def __init__(self, make_tenant, httpserver, *, base=lambda t: 50.0, watch_silence=False):
        self.client = make_tenant()
        if not watch_silence:
            # The points go in faster than real time: between runs the series would look silent.
            self.client.tenant.no_data_alerts = False
            self.client.tenant.save(update_fields=["no_data_alerts"])
        self.httpserver = httpserver
        self.base = base
        self.sent = 0
        httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
        response = self.client.post("/api/v1/channels", {"name": "on call", "kind": "webhook",
                                                         "url": httpserver.url_for("/hook")})
        assert response.status_code == 201, response.content
        self.channel_id = response.json()["id"]

    def value(self, t: datetime) -> float:
        return self.base(t) + _calm(self.index(t))

    @staticmethod
    def index(t: datetime) -> int:
        return int((t - START) / STEP)

    def send(self, points: list[tuple[datetime, float]]) -> None:
        events = [event(value, t, resource_id="db-1", metric_name="latency_ms") for t, value in points]
        for start in range(0, len(events), 1000):
            response = self.client.ingest(events[start:start + 1000])
            assert response.status_code == 202, response.content
        run = self.client.post("/api/v1/process/run")
        assert run.status_code == 200, run.content
        notifications_deliver_due()

    def history(self, until: datetime, bumps: dict[datetime, float] | None = None) -> datetime:
        """Calm points from START to `until` (exclusive), with `bumps` added; returns `until`."""
        times = [START + k * STEP for k in range(self.index(until))]
        self.send([(t, self.value(t) + (bumps or {}).get(t, 0.0)) for t in times])
        return until

    def live(self, start: datetime, points: int, *, add=lambda t: 0.0, per_run: int = 1) -> datetime:
        """`points` points from `start`, `per_run` of them before each detection run; returns the next time."""
        times = [start + k * STEP for k in range(points)]
        for first in range(0, len(times), per_run):
            self.send([(t, self.value(t) + add(t)) for t in times[first:first + per_run]])
        return start + points * STEP

    def webhooks(self) -> list[dict]:
        return [json.loads(request.get_data()) for request, _ in self.httpserver.log]

    def events(self) -> list[str]:
        return [body["type"] for body in self.webhooks()]

    def incidents(self) -> list[dict]:
        return self.client.get("/api/v1/incidents").json()["results"]

    def baseline(self) -> dict:
        [baseline] = self.client.get("/api/v1/baselines").json()["results"]
        return baseline

    def anomalies(self) -> list[dict]:
        return self.client.get("/api/v1/anomalies").json()["results"]


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def test_a_much_larger_spike_15_minutes_later_escalates_the_open_incident_and_is_sent(make_tenant, httpserver):
    series = Watched(make_tenant, httpserver)
    t0 = series.history(NOW - timedelta(hours=2))
    scale = series.baseline()["scale"]
    spikes = {t0: 12 * scale, t0 + 3 * STEP: 48 * scale}  # then four times as far, inside the old cooldown
    after = series.live(t0, 4, add=lambda t: spikes.get(t, 0.0))
    assert series.events() == ["incident.opened", "incident.escalated"]
    [incident] = series.incidents()
    assert (incident["status"], incident["anomaly_count"], incident["started_at"]) == ("open", 2, _iso(t0))
    first, worse = sorted(series.anomalies(), key=lambda a: a["timestamp"])
    assert (first["escalation"], worse["escalation"]) == (False, True)
    assert worse["alarm_started_at"] == _iso(t0) and worse["value"] > worse["upper"]
    assert worse["reason"].startswith("Worse: value ") and "times as far from the expected value as the peak" in worse[
        "reason"]
    escalated = series.webhooks()[1]
    assert escalated["incident"]["reason"] == worse["reason"] and escalated["incident"]["out_of_band"] is True
    series.live(after, 4)  # back in the band: resolved once the recovery time (15 min) has passed
    assert series.events() == ["incident.opened", "incident.escalated", "incident.resolved"]
    [incident] = series.incidents()
    assert incident["resolved_at"] == _iso(t0 + 6 * STEP)  # 15 minutes after the last point out of band


def test_a_level_shift_of_10_hours_is_one_incident_open_all_along_high_and_drawn_outside_the_band(make_tenant,
                                                                                                   httpserver):
    series = Watched(make_tenant, httpserver)
    t0 = series.history(NOW - timedelta(hours=11))
    shift = 15 * series.baseline()["scale"]
    end = t0 + 120 * STEP
    for hour in range(10):
        series.live(t0 + 12 * hour * STEP, 12, add=lambda t: shift, per_run=6)
        [incident] = series.incidents()
        baseline = series.baseline()
        assert (incident["status"], incident["out_of_band"], baseline["state"], baseline["state_since"]) == (
            "open", True, "alarm", _iso(t0)), hour
    assert incident["peak_severity"] == "high" and incident["anomaly_count"] == 1
    band = series.client.get("/api/v1/baselines", {"series_id": baseline["series_id"], "start": _iso(t0 - STEP),
                                                   "end": _iso(end - STEP)}).json()["band"]
    assert len(band) == 120 and all(point["value"] > point["upper"] for point in band)
    series.live(end, 6, per_run=6)
    [incident] = series.incidents()
    assert (incident["status"], incident["resolved_at"]) == ("resolved", _iso(end + 2 * STEP))
    assert series.events() == ["incident.opened", "incident.resolved"]
    assert series.baseline()["state"] == "ok"
    # A replay (run_detection --replay) rebuilds the same incident and sends nothing again.
    detection_run(tenant=series.client.tenant, trigger="replay", replay_since=t0 - timedelta(hours=1))
    notifications_deliver_due()
    assert series.incidents() == [incident] and len(series.webhooks()) == 2


def test_a_20_minute_excursion_resolves_within_the_recovery_time_after_it_ends(make_tenant, httpserver):
    series = Watched(make_tenant, httpserver)
    t0 = series.history(NOW - timedelta(hours=2))
    bump = 12 * series.baseline()["scale"]
    after = series.live(t0, 4, add=lambda t: bump)
    [incident] = series.incidents()
    assert incident["status"] == "open" and series.baseline()["state"] == "alarm"
    series.live(after, 2)
    assert series.incidents()[0]["status"] == "open"  # 10 minutes back in the band: not yet
    series.live(after + 2 * STEP, 1)
    [incident] = series.incidents()
    assert (incident["status"], incident["resolved_at"]) == ("resolved", _iso(after + 2 * STEP))
    assert series.baseline()["state"] == "ok" and series.baseline()["state_since"] == _iso(after + 2 * STEP)


def test_a_3_hour_plateau_is_one_incident_never_resolved_while_it_lasts(make_tenant, httpserver):
    series = Watched(make_tenant, httpserver)
    t0 = series.history(NOW - timedelta(hours=4))
    bump = 12 * series.baseline()["scale"]
    for hour in range(3):
        series.live(t0 + 12 * hour * STEP, 12, add=lambda t: bump, per_run=3)
        [incident] = series.incidents()
        assert incident["status"] == "open" and incident["out_of_band"], hour
    series.live(t0 + 36 * STEP, 4)
    [incident] = series.incidents()
    assert incident["status"] == "resolved" and series.events() == ["incident.opened", "incident.resolved"]


def test_flapping_for_an_hour_is_one_incident_with_at_most_3_notifications(make_tenant, httpserver):
    series = Watched(make_tenant, httpserver)
    t0 = series.history(NOW - timedelta(hours=2))
    bump = 12 * series.baseline()["scale"]
    series.live(t0, 16, add=lambda t: bump if (series.index(t) - series.index(t0)) % 2 == 0 and t < t0 + 12 * STEP
                else 0.0)
    assert len(series.incidents()) == 1
    assert series.events() == ["incident.opened", "incident.resolved"]


def test_a_series_that_goes_silent_opens_a_no_data_incident_resolved_when_it_reports_again(make_tenant, httpserver):
    series = Watched(make_tenant, httpserver, watch_silence=True)
    minute = timedelta(minutes=1)
    last = NOW - timedelta(minutes=17)  # one-minute points: silent after 15 minutes
    points = [(last - k * minute, 50.0 + _calm(k)) for k in range(2 * 1440)][::-1]
    series.send(points)
    baseline = series.baseline()
    assert (baseline["state"], baseline["interval_seconds"]) == ("no_data", 60.0)
    assert baseline["state_since"] == _iso(last + 15 * minute)
    [incident] = series.incidents()
    assert (incident["kind"], incident["status"], incident["started_at"]) == ("no_data", "open", _iso(last + 15 * minute))
    assert "No points since" in incident["reason"]
    assert series.client.get("/api/v1/incidents", {"kind": "anomaly"}).json()["results"] == []
    assert len(series.client.get("/api/v1/incidents", {"kind": "no_data"}).json()["results"]) == 1
    assert series.events() == ["incident.opened"]
    [series_item] = series.client.get("/api/v1/series").json()["results"]
    assert series_item["state"] == "no_data"
    series.send([])  # another run while still silent: nothing more
    assert len(series.incidents()) == 1 and len(series.webhooks()) == 1

    back = NOW - minute
    series.send([(back, 50.0)])
    [incident] = series.incidents()
    assert (incident["status"], incident["resolved_at"]) == ("resolved", _iso(back))
    assert series.events() == ["incident.opened", "incident.resolved"]
    assert (series.baseline()["state"], series.baseline()["state_since"]) == ("ok", _iso(back))


def test_no_data_alerts_can_be_turned_off_and_a_series_silent_long_ago_pages_nobody(make_tenant, httpserver):
    series = Watched(make_tenant, httpserver, watch_silence=True)
    minute = timedelta(minutes=1)
    long_ago = NOW - timedelta(hours=3)
    series.send([(long_ago - k * minute, 50.0 + _calm(k)) for k in range(2 * 1440)][::-1])
    assert series.baseline()["state"] == "no_data" and series.incidents() == [] and series.webhooks() == []

    quiet = Watched(make_tenant, httpserver)  # no-data detection off
    last = NOW - timedelta(minutes=17)
    quiet.send([(last - k * minute, 50.0 + _calm(k)) for k in range(2 * 1440)][::-1])
    assert quiet.baseline()["state"] == "ok" and quiet.incidents() == [] and quiet.webhooks() == []


def test_a_nightly_job_raises_no_incident_once_it_is_recognised(make_tenant, httpserver):
    series = Watched(make_tenant, httpserver)
    today = NOW.replace(hour=0, minute=0)
    if NOW < today + timedelta(hours=3):
        today -= timedelta(days=1)
    jobs = {}
    for day in range(8):
        for k in range(6):  # 02:00-02:30, every night
            jobs[START + timedelta(days=day, hours=2) + k * STEP] = 10.0
    t0 = series.history(today, bumps=jobs)
    opened = len(series.incidents())
    assert opened <= 2  # the first night or two, before the pattern is known
    series.live(t0, 60, add=lambda t: 10.0 if timedelta(hours=2) <= t - today < timedelta(hours=2, minutes=30)
                else 0.0, per_run=12)
    assert len(series.incidents()) == opened
    assert series.baseline()["recurring"][0]["start"] == "02:00"


def test_a_clean_seasonal_series_sees_a_12_sigma_spike_days_after_two_alerts(make_tenant, httpserver):
    def daily(t):
        return 50 + 20 * math.sin(2 * math.pi * (t - t.replace(hour=0, minute=0)) / timedelta(days=1))

    series = Watched(make_tenant, httpserver, base=daily)
    t0 = (NOW - timedelta(days=1)).replace(hour=9, minute=40)  # the same phase of the day whenever it runs
    first, second = t0 - timedelta(days=3, hours=2), t0 - timedelta(days=2, hours=14)
    series.history(t0, bumps={first: 6.0, second: 7.0})  # two noise alerts, 12 hours apart
    assert [a["timestamp"] for a in sorted(series.anomalies(), key=lambda a: a["timestamp"])] == [
        _iso(first), _iso(second)]
    raised = series.anomalies()[0]["suppression"]["next_threshold_multiplier"]
    assert raised > 3  # the thresholds tripled: a 12σ residual had been unseen
    scale = series.baseline()["scale"]
    series.live(t0, 1, add=lambda t: 12 * scale)
    spike = series.anomalies()[0]
    assert spike["timestamp"] == _iso(t0) and spike["detector"] == "residual"
    assert series.events()[-2:] == ["incident.resolved", "incident.opened"]


def test_a_percentage_is_never_drawn_above_100_and_a_sustained_failure_is_outside_the_band(make_tenant, httpserver):
    series = Watched(make_tenant, httpserver, base=lambda t: 99.0)  # a busy CPU, in %: its band would reach 101.3
    series.client.ingest([event(99.0, START - STEP, resource_id="db-1", metric_name="latency_ms", unit="%")])
    t0 = series.history(NOW - timedelta(hours=3))
    series.live(t0, 24, add=lambda t: -60.0, per_run=12)  # two hours at about 35 %
    [drop] = series.anomalies()
    assert drop["upper"] <= 100 and drop["suppression"]["alert_upper"] <= 100 and drop["value"] < drop["lower"]
    band = series.client.get("/api/v1/baselines", {"series_id": series.baseline()["series_id"],
                                                   "start": _iso(t0 - 12 * STEP), "end": _iso(t0 + 23 * STEP)}).json()
    assert max(point["upper"] for point in band["band"]) == 100
    assert band["band"][0]["expected"] + 6 * series.baseline()["scale"] > 100
    assert all(point["value"] < point["lower"] for point in band["band"] if point["timestamp"] >= _iso(t0))
    assert series.baseline()["state"] == "alarm" and series.incidents()[0]["out_of_band"]


def test_a_late_point_that_starts_the_alarm_earlier_keeps_the_incident_and_pages_nobody_again(make_tenant, httpserver):
    series = Watched(make_tenant, httpserver)
    t0 = series.history(NOW - timedelta(hours=1))
    spike = 20 * series.baseline()["scale"]
    series.live(t0, 2, add=lambda t: spike if t == t0 else 0.0)
    [incident] = series.incidents()
    assert incident["started_at"] == _iso(t0) and series.events() == ["incident.opened"]
    late = t0 - STEP / 2  # sent now, from before the alarm: the re-evaluation starts the alarm there
    series.send([(late, series.value(t0) + spike)])
    [moved] = series.incidents()
    assert (moved["id"], moved["started_at"], moved["status"]) == (incident["id"], _iso(late), "open")
    assert series.events() == ["incident.opened"]
    deliveries = series.client.get(f"/api/v1/channels/{series.channel_id}/deliveries").json()["results"]
    assert [d["event"] for d in deliveries] == ["opened"]  # the page that went out is still on record
