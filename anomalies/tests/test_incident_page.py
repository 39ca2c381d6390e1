"""The console's incident page as on-call works it: its state, chart and timeline after a real webhook
receiver failed twice then took the message; acknowledging, resolving and silencing from it (until it
resolves), the anomaly page's offer to acknowledge its incident, and the silences' per-tenant limit in
the admin."""
from datetime import datetime, timedelta, timezone

import pytest
from django.contrib.auth.models import User
from django.test import Client
from werkzeug import Response

from anomalies.alerting import incident_status_set, notifications_deliver_due, reminders_queue, silence_create
from anomalies.models import Anomaly, Incident, IncidentEvent, Notification, Silence
from anomalies.runs import detection_run
from metrics.models import Series
from tenants.services import support_user_assign
from tests.helpers import steady_then_spike

# Recent: a series silent for 15 minutes would be in a no_data incident as well.
END = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(minutes=2)


@pytest.fixture(autouse=True)
def _local_receivers_allowed(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True  # the receiver listens on loopback


def _login(user) -> Client:
    browser = Client()
    browser.force_login(User.objects.get(id=user.id))
    return browser


@pytest.fixture
def on_fire(make_tenant, httpserver):
    """A tenant in alarm (a spike at END, still the newest point), its webhook failing twice then taking
    the message, a support user who reads and triages and one who may act."""
    client = make_tenant("fire")
    for status in (500, 500, 200):
        httpserver.expect_ordered_request("/hook", method="POST").respond_with_response(
            Response("down" if status == 500 else "ok", status=status))
    response = client.post("/api/v1/channels", {"name": "ops hook", "kind": "webhook", "url": httpserver.url_for("/hook"),
                                                "renotify_hours": 1})
    assert response.status_code == 201
    client.ingest(steady_then_spike(count=2000, end=END))
    detection_run(tenant=client.tenant, trigger="command")
    now = datetime.now(timezone.utc)
    for attempt in range(3):
        assert notifications_deliver_due(now=now + timedelta(hours=attempt)) == 1
    incident = Incident.objects.for_tenant(client.tenant).get()
    reader, _ = support_user_assign(username="reader", tenant=client.tenant)
    actor, _ = support_user_assign(username="actor", tenant=client.tenant, can_act=True)
    return client, incident, _login(reader), _login(actor)


def test_the_incident_page_shows_its_state_the_series_now_its_chart_and_a_timeline_of_every_attempt(on_fire):
    client, incident, reader, _ = on_fire
    page = reader.get(f"/admin/anomalies/incident/{incident.id}/change/")
    assert page.status_code == 200  # the incident's own page, no longer a redirect to its series
    html = page.content.decode()
    assert 'id="incident-status">open<' in html and "<strong>in alarm</strong>" in html
    assert "<strong>OUT OF BAND</strong>" in html and "newest point 500 at" in html and "expected 50 (band" in html
    assert 'class="cwd-chart' in html and 'class="anomaly medium focus"' in html
    anomaly = Anomaly.objects.for_tenant(client.tenant).get(ts=END)
    timeline = html[html.index('id="timeline"'):]
    assert f'href="/admin/anomalies/anomaly/{anomaly.id}/change/">medium anomaly: {anomaly.reason}' in timeline
    assert timeline.count("incident.opened to ops hook (webhook), attempt") == 3
    assert "attempt 1: failed: answered 500 (HTTP 500" in timeline
    assert "attempt 2: failed: answered 500 (HTTP 500" in timeline
    assert "attempt 3: delivered (HTTP 200" in timeline
    assert timeline.index("The alarm began.") < timeline.index("attempt 1:") < timeline.index("attempt 3:")
    # Each message links to its page, where the tenant's support staff read its attempts.
    notification = Notification.objects.for_tenant(client.tenant).get()
    assert f'href="/admin/anomalies/notification/{notification.id}/change/">incident.opened to ops hook' in timeline
    attempts = reader.get(f"/admin/anomalies/notification/{notification.id}/change/").content.decode()
    assert attempts.count("answered 500") == 2 and attempts.count(">down<") == 2 and ">ok<" in attempts
    # The webhook's link opens this page.
    payload = Notification.objects.for_tenant(client.tenant).get().payload
    assert payload["incident"]["url"].endswith(f"/admin/anomalies/incident/{incident.id}/change/")


def test_acknowledging_from_the_incident_page_records_who_and_why_and_stops_its_reminders(on_fire):
    client, incident, reader, _ = on_fire
    answer = reader.post(f"/admin/anomalies/incident/{incident.id}/change/",
                         {"action": "status", "status": "acknowledged", "note": "looking; OPS-7"})
    assert answer.status_code == 302
    [event] = IncidentEvent.objects.for_tenant(client.tenant).filter(incident=incident)
    assert (event.actor, event.from_status, event.to_status, event.note) == ("user:reader", "open", "acknowledged",
                                                                            "looking; OPS-7")
    html = reader.get(f"/admin/anomalies/incident/{incident.id}/change/").content.decode()
    assert "open → acknowledged by user:reader. “looking; OPS-7”" in html
    assert reminders_queue(now=datetime.now(timezone.utc) + timedelta(hours=3)) == 0
    assert reader.post(f"/admin/anomalies/incident/{incident.id}/change/",
                       {"action": "status", "status": "burnt"}).status_code == 302
    assert Incident.objects.for_tenant(client.tenant).get().status == "acknowledged"  # refused, with a message


def test_silencing_until_resolved_holds_its_reminders_and_ends_when_the_incident_resolves(on_fire):
    client, incident, reader, actor = on_fire
    url = f"/admin/anomalies/incident/{incident.id}/change/"
    assert 'id="silence-form"' not in reader.get(url).content.decode()  # reading staff do not silence
    assert reader.post(url, {"action": "silence", "scope": "series", "duration": "1h"}).status_code == 404
    assert not Silence.objects.for_tenant(client.tenant).exists()

    page = actor.get(url).content.decode()
    assert 'id="silence-form"' in page and 'value="service"' in page and 'value="tag:env"' in page
    assert actor.post(url, {"action": "silence", "scope": "series", "duration": "resolved",
                            "note": "deploy"}).status_code == 302
    silence = Silence.objects.for_tenant(client.tenant).get()
    assert (silence.ends_with_incident_id, silence.resource_id, silence.metric_name, silence.tags, silence.actor) == (
        incident.id, "i-test123", "cpu_utilization", {"env": "dev"}, "user:actor")
    assert "Silenced now:" in actor.get(url).content.decode()

    later = (datetime.now(timezone.utc) + timedelta(hours=2)).replace(minute=0, second=0)
    assert reminders_queue(now=later) == 1
    reminder = Notification.objects.for_tenant(client.tenant).get(event="reminder")
    assert reminder.status == "silenced"  # kept, so the timeline says why nobody was reminded
    assert "incident.reminder to ops hook (webhook): held back by a silence." in actor.get(url).content.decode()

    incident_status_set(tenant=client.tenant, incident=incident, status="resolved", actor="user:actor")
    silence.refresh_from_db()
    assert silence.end <= datetime.now(timezone.utc)


def test_a_silence_made_while_a_message_still_retries_holds_that_message_back(make_tenant, httpserver):
    client = make_tenant("retrying")
    httpserver.expect_request("/hook").respond_with_response(Response("down", status=503))
    client.post("/api/v1/channels", {"name": "hook", "kind": "webhook", "url": httpserver.url_for("/hook")})
    client.ingest(steady_then_spike(count=2000, end=END))
    detection_run(tenant=client.tenant, trigger="command")
    assert notifications_deliver_due() == 1
    now = datetime.now(timezone.utc)
    silence_create(tenant=client.tenant, data={"service": "ec2", "start": now, "end": now + timedelta(hours=1)},
                   actor="user:x")
    assert Notification.objects.for_tenant(client.tenant).get().status == "silenced"
    assert notifications_deliver_due(now=now + timedelta(hours=1)) == 0


def test_acknowledging_an_anomaly_offers_to_acknowledge_its_incident_and_silences_from_its_page(on_fire):
    client, incident, reader, actor = on_fire
    anomaly = Anomaly.objects.for_tenant(client.tenant).get(ts=END)
    url = f"/admin/anomalies/anomaly/{anomaly.id}/change/"
    page = reader.get(url).content.decode()
    assert 'name="incident_too"' in page and f'/admin/anomalies/incident/{incident.id}/change/' in page
    reader.post(url, {"status": "acknowledged", "note": "on it", "incident_too": "1"})
    assert Incident.objects.for_tenant(client.tenant).get().status == "acknowledged"
    assert IncidentEvent.objects.for_tenant(client.tenant).get().note == "on it"

    assert actor.post(url, {"action": "silence", "scope": "service", "duration": "4h"}).status_code == 302
    silence = Silence.objects.for_tenant(client.tenant).get()
    assert (silence.service, silence.resource_id, silence.ends_with_incident_id) == ("ec2", "", None)
    assert timedelta(hours=3, minutes=59) < silence.end - silence.start <= timedelta(hours=4)


def test_another_tenants_staff_get_a_404_for_the_incident_page_and_its_buttons(on_fire, make_tenant):
    _, incident, _, _ = on_fire
    stranger, _ = support_user_assign(username="stranger", tenant=make_tenant("elsewhere").tenant, can_act=True)
    browser = _login(stranger)
    url = f"/admin/anomalies/incident/{incident.id}/change/"
    assert browser.get(url).status_code == 404
    assert browser.post(url, {"action": "status", "status": "resolved"}).status_code == 404
    assert browser.post(url, {"action": "silence", "scope": "series", "duration": "1h"}).status_code == 404
    assert Incident.objects.unscoped().get(id=incident.id).status == "open" and not Silence.objects.unscoped().exists()


def test_the_silences_form_in_the_admin_keeps_to_the_tenants_limit(make_tenant, settings):
    settings.CLOUDWATCHDOG = {**settings.CLOUDWATCHDOG, "SILENCES_PER_TENANT": 1}
    tenant = make_tenant("limited").tenant
    actor, _ = support_user_assign(username="actor", tenant=tenant, can_act=True)
    now = datetime.now(timezone.utc)

    def add(note):
        return _login(actor).post("/admin/anomalies/silence/add/", {
            "tenant": tenant.id, "service": "ec2", "metric_name": "", "resource_id": "", "tags": "{}",
            "start_0": f"{now:%Y-%m-%d}", "start_1": f"{now:%H:%M:%S}",
            "end_0": f"{now + timedelta(hours=4):%Y-%m-%d}", "end_1": f"{now + timedelta(hours=4):%H:%M:%S}",
            "note": note})

    assert add("first").status_code == 302
    refused = add("second")
    assert refused.status_code == 200 and "SILENCES_PER_TENANT" in refused.content.decode()
    assert [s.note for s in Silence.objects.for_tenant(tenant)] == ["first"]


def test_hostile_notes_and_choices_on_the_incident_and_anomaly_pages_get_no_5xx(on_fire):
    client, incident, _, actor = on_fire
    anomaly = Anomaly.objects.for_tenant(client.tenant).get(ts=END)
    actor.raise_request_exception = False
    for url in (f"/admin/anomalies/incident/{incident.id}/change/", f"/admin/anomalies/anomaly/{anomaly.id}/change/"):
        for form in ({"action": "status", "status": "acknowledged", "note": "nul\x00here"},
                     {"status": "acknowledged", "note": "nul\x00", "incident_too": "1"},
                     {"action": "silence", "scope": "series", "duration": "1h", "note": "nul\x00"},
                     {"action": "silence", "scope": "tag:nope", "duration": "forever"},
                     {"action": "status", "status": ["open", "resolved"] * 50}):
            assert actor.post(url, form).status_code < 500, (url, form)


def test_the_series_page_silences_too_and_says_a_mute_stops_no_notification(on_fire):
    client, incident, reader, actor = on_fire
    url = f"/admin/metrics/series/{incident.series_id}/change/"
    page = reader.get(url).content.decode()
    assert "A mute stops no notification: to stop alerts, silence." in page and 'id="silence-form"' not in page
    assert reader.post(url, {"action": "silence", "scope": "series", "duration": "1h"}).status_code == 404
    assert 'value="resolved"' not in actor.get(url).content.decode()  # no incident to wait for here
    assert actor.post(url, {"action": "silence", "scope": "tag:env", "duration": "1h"}).status_code == 302
    silence = Silence.objects.for_tenant(client.tenant).get()
    assert (silence.tags, silence.service, silence.ends_with_incident_id) == ({"env": "dev"}, "", None)
    assert "Silenced now:" in actor.get(url).content.decode()


def test_an_alarm_that_ended_is_not_reopened_by_hand_and_never_reminds(on_fire):
    client, incident, reader, _ = on_fire
    Incident.objects.for_tenant(client.tenant).filter(id=incident.id).update(
        status="resolved", resolved_at=datetime.now(timezone.utc))
    url = f"/admin/anomalies/incident/{incident.id}/change/"
    page = reader.get(url).content.decode()
    assert 'id="reopen"' not in page and 'id="acknowledge"' not in page and 'id="add-note"' in page
    reader.post(url, {"action": "status", "status": "open"})
    assert Incident.objects.for_tenant(client.tenant).get().status == "resolved"
    reader.post(url, {"action": "status", "status": "resolved", "note": "root cause: a bad deploy"})
    assert IncidentEvent.objects.for_tenant(client.tenant).get().note == "root cause: a bad deploy"
    # Reopened over the API all the same: its alarm is over, so nobody is reminded of it.
    incident_status_set(tenant=client.tenant, incident=incident, status="open", actor="key:x")
    assert reminders_queue(now=datetime.now(timezone.utc) + timedelta(hours=3)) == 0


def test_silencing_this_series_covers_no_other_series_with_more_tags(on_fire):
    client, incident, _, actor = on_fire
    client.ingest(steady_then_spike(count=10, end=END, tags={"env": "dev", "az": "eu-1"}))
    sibling = Series.objects.for_tenant(client.tenant).get(tags={"env": "dev", "az": "eu-1"})
    actor.post(f"/admin/anomalies/incident/{incident.id}/change/",
               {"action": "silence", "scope": "series", "duration": "1h"})
    silence = Silence.objects.for_tenant(client.tenant).get()
    now = datetime.now(timezone.utc)
    assert silence.matches(incident.series, now) and not silence.matches(sibling, now)
    [listed] = client.get("/api/v1/silences").json()["results"]  # the API says it covers one series
    assert (listed["series_id"], listed["ends_with_incident_id"]) == (incident.series_id, None)


def test_a_silent_series_incident_says_so_and_a_refused_silence_on_the_anomaly_page_is_a_404(on_fire):
    client, incident, reader, _ = on_fire
    Incident.objects.for_tenant(client.tenant).filter(id=incident.id).update(kind="no_data")
    page = reader.get(f"/admin/anomalies/incident/{incident.id}/change/").content.decode()
    assert "<strong>SILENT</strong>, no point since" in page and "back inside the band" not in page
    anomaly = Anomaly.objects.for_tenant(client.tenant).get(ts=END)
    answer = reader.post(f"/admin/anomalies/anomaly/{anomaly.id}/change/",
                         {"action": "silence", "scope": "series", "duration": "1h"})
    assert answer.status_code == 404 and not Silence.objects.for_tenant(client.tenant).exists()


def test_a_silence_until_resolved_ends_when_detection_resolves_the_incident_even_with_no_channel(make_tenant):
    client = make_tenant("no-channel")
    start = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(hours=2)
    client.ingest(steady_then_spike(count=2000, end=start))
    detection_run(tenant=client.tenant, trigger="command")
    incident = Incident.objects.for_tenant(client.tenant).get()
    now = datetime.now(timezone.utc)
    silence = silence_create(tenant=client.tenant, actor="user:x", data={
        "series": incident.series, "start": now, "end": now + timedelta(days=7), "ends_with_incident": incident})
    calm = steady_then_spike(count=41, end=start + timedelta(minutes=41), spike=50.0)[1:]  # back in band for 40 min
    client.ingest(calm)
    detection_run(tenant=client.tenant, trigger="command")
    assert Incident.objects.for_tenant(client.tenant).get().resolved_at is not None
    silence.refresh_from_db()
    assert silence.end <= datetime.now(timezone.utc)
