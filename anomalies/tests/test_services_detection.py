"""detection_run: incremental runs, late points, replay, overlapping runs, the command."""
from datetime import datetime, timedelta, timezone
from io import StringIO

import psycopg2
import pytest
from django.core.management import call_command
from django.db import connection

from anomalies.models import Anomaly, Baseline
from anomalies.runs import RunInProgress, detection_run
from cloudwatchdog.locks import Lock
from metrics.services import points_ingest
from tests.helpers import daily_spikes, spiky_history

END = datetime(2026, 1, 10, tzinfo=timezone.utc)


def _anomaly_rows(tenant):
    return list(
        Anomaly.objects.for_tenant(tenant).order_by("series_id", "ts")
        .values_list("ts", "value", "expected", "lower", "upper", "score", "reason")
    )



def test_results_do_not_depend_on_how_points_were_batched_between_runs(make_tenant):
    whole, split = make_tenant("whole"), make_tenant("split")
    events = spiky_history()
    points_ingest(tenant=whole.tenant, events=events)
    detection_run(tenant=whole.tenant, trigger="command")
    for start in range(0, len(events), 137):
        points_ingest(tenant=split.tenant, events=events[start:start + 137])
        detection_run(tenant=split.tenant, trigger="command")
    assert _anomaly_rows(split.tenant) == _anomaly_rows(whole.tenant)
    assert len(_anomaly_rows(whole.tenant)) == 3  # the two spikes and the final one, each past the cooldown


def test_a_late_point_within_the_late_window_is_evaluated_as_if_in_order(make_tenant):
    in_order, late = make_tenant("in-order"), make_tenant("late")
    events = spiky_history()
    points_ingest(tenant=in_order.tenant, events=events)
    detection_run(tenant=in_order.tenant, trigger="command")
    held_back = events[2580]  # 20 minutes before the end, inside the default 1 h late window
    points_ingest(tenant=late.tenant, events=events[:2580] + events[2581:])
    detection_run(tenant=late.tenant, trigger="command")
    points_ingest(tenant=late.tenant, events=[held_back])
    baseline = Baseline.objects.for_tenant(late.tenant).get()
    assert baseline.late_points == 1
    run = detection_run(tenant=late.tenant, trigger="command")
    assert run.points_processed == 1441  # re-evaluated from the start of the late point's UTC day to 00:00
    assert _anomaly_rows(late.tenant) == _anomaly_rows(in_order.tenant)
    assert Baseline.objects.for_tenant(late.tenant).get().late_points == 0


def test_a_nightly_job_is_recognised_and_a_late_point_re_evaluates_its_day_the_same(make_tenant):
    in_order, late = make_tenant("in-order"), make_tenant("late")
    events = daily_spikes()
    points_ingest(tenant=in_order.tenant, events=events)
    detection_run(tenant=in_order.tenant, trigger="command")
    nightly = [row for row in _anomaly_rows(in_order.tenant) if row[0].hour < 5]
    assert 1 <= len({row[0].date() for row in nightly}) <= 2  # the first nights only
    baseline = Baseline.objects.for_tenant(in_order.tenant).get()
    assert [(p["period"], p["direction"], p["seen"]) for p in baseline.recurring] == [("daily", "above", 3)]
    assert in_order.get("/api/v1/baselines").json()["results"][0]["recurring"] == baseline.recurring
    # The last day re-evaluated from its midnight: the history read (two windows, a day and a half)
    # does not reach the nights before, the checkpoint's excursions do.
    held_back = events[-20]
    points_ingest(tenant=late.tenant, events=events[:-20] + events[-19:])
    detection_run(tenant=late.tenant, trigger="command")
    points_ingest(tenant=late.tenant, events=[held_back])
    assert detection_run(tenant=late.tenant, trigger="command").points_processed == 1440
    assert _anomaly_rows(late.tenant) == _anomaly_rows(in_order.tenant)
    assert Baseline.objects.for_tenant(late.tenant).get().recurring == baseline.recurring


def test_a_point_older_than_the_late_window_waits_for_a_replay(make_tenant):
    reference, late = make_tenant("reference"), make_tenant("late")
    events = spiky_history()
    points_ingest(tenant=reference.tenant, events=events)
    detection_run(tenant=reference.tenant, trigger="command")
    points_ingest(tenant=late.tenant, events=events[:1500] + events[1501:])
    detection_run(tenant=late.tenant, trigger="command")
    points_ingest(tenant=late.tenant, events=[events[1500]])  # the first spike, 18 h late
    assert detection_run(tenant=late.tenant, trigger="command").points_processed == 0
    baseline = Baseline.objects.for_tenant(late.tenant).get()
    assert baseline.late_points == 1 and baseline.late_from is not None
    out = StringIO()
    call_command("run_detection", "--tenant", "late", "--replay", "--since", "2026-01-01T00:00:00Z", stdout=out)
    assert "succeeded" in out.getvalue()
    assert _anomaly_rows(late.tenant) == _anomaly_rows(reference.tenant)
    assert Baseline.objects.for_tenant(late.tenant).get().late_points == 0


def test_a_replay_after_a_configuration_change_replaces_the_range(owner):
    points_ingest(tenant=owner.tenant, events=spiky_history())
    detection_run(tenant=owner.tenant, trigger="command")
    assert len(_anomaly_rows(owner.tenant)) == 3
    owner.tenant.detection_config = {"range_tolerance": 1000, "sensitivity": 0.001}  # nothing can fire
    owner.tenant.save()
    run = detection_run(tenant=owner.tenant, trigger="replay", replay_since=END - timedelta(hours=8))
    assert run.points_processed > 0
    remaining = _anomaly_rows(owner.tenant)
    first = END - timedelta(minutes=2599)
    assert [row[0] for row in remaining] == [first + timedelta(minutes=1500), first + timedelta(minutes=1950)]


def test_a_replay_keeps_anomalies_found_again_with_their_triage_status(owner):
    points_ingest(tenant=owner.tenant, events=spiky_history())
    points_ingest(tenant=owner.tenant, events=[{**e, "metric_name": "other"} for e in spiky_history(spikes=(1700,))])
    detection_run(tenant=owner.tenant, trigger="command")
    before = {a.id: (a.series_id, a.ts) for a in Anomaly.objects.for_tenant(owner.tenant)}
    assert len({series for series, _ in before.values()}) == 2
    Anomaly.objects.for_tenant(owner.tenant).update(status=Anomaly.STATUS_ACKNOWLEDGED)
    run = detection_run(tenant=owner.tenant, trigger="replay", replay_since=END - timedelta(days=3))
    assert run.points_processed == 2 * 2600
    after = {a.id: (a.series_id, a.ts) for a in Anomaly.objects.for_tenant(owner.tenant)}
    assert after == before  # the same rows, not deleted and re-inserted
    assert set(Anomaly.objects.for_tenant(owner.tenant).values_list("status", flat=True)) == {Anomaly.STATUS_ACKNOWLEDGED}


def test_a_run_that_died_between_its_phases_is_redone(owner):
    points_ingest(tenant=owner.tenant, events=spiky_history())
    detection_run(tenant=owner.tenant, trigger="command")
    expected = _anomaly_rows(owner.tenant)
    # Simulate a crash after phase 1: anomalies of the range gone, marker left behind.
    Anomaly.objects.for_tenant(owner.tenant).filter(ts__gte=END - timedelta(hours=6)).delete()
    Baseline.objects.for_tenant(owner.tenant).update(evaluating_from=END - timedelta(hours=6))
    detection_run(tenant=owner.tenant, trigger="command")
    assert _anomaly_rows(owner.tenant) == expected


@pytest.mark.django_db(transaction=True)
def test_an_overlapping_run_is_refused_with_the_running_id(make_tenant, settings):
    settings.CLOUDWATCHDOG = {**settings.CLOUDWATCHDOG, "PROCESS_RUN_WAIT_SECONDS": 0.2}
    owner = make_tenant("busy")
    params = connection.get_connection_params()
    other = psycopg2.connect(**params)
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s, %s)", [Lock.RUN, owner.tenant.id])
        with pytest.raises(RunInProgress):
            detection_run(tenant=owner.tenant, trigger="command")
        response = owner.post("/api/v1/process/run")
        assert response.status_code == 409
        assert "already going" in response.json()["detail"]
        out = StringIO()
        call_command("run_detection", "--tenant", "busy", stdout=out)
        assert "skipped" in out.getvalue()
    finally:
        other.close()
    assert owner.post("/api/v1/process/run").status_code == 200


def test_finished_runs_are_pruned_after_the_keep_period(owner):
    old = detection_run(tenant=owner.tenant, trigger="command")
    recent = detection_run(tenant=owner.tenant, trigger="command")
    type(old).objects.for_tenant(owner.tenant).filter(id=old.id).update(requested_at=END - timedelta(days=30))
    from anomalies.runs import detection_runs_prune

    assert detection_runs_prune(older_than=timedelta(days=7)) == 1
    assert list(type(old).objects.for_tenant(owner.tenant).values_list("id", flat=True)) == [recent.id]
