"""The admin: support staff see only the tenants they are assigned to; superusers see all."""
import re
from datetime import datetime, timedelta, timezone

import pytest
from django.contrib.auth.models import User
from django.test import Client

from anomalies import alerting
from anomalies.models import Anomaly, Baseline, Channel, DeliveryAttempt, Incident, Silence
from anomalies.runs import detection_run
from metrics.models import Series
from metrics.services import points_ingest
from tenants.models import TenantStaff
from tenants.services import support_user_assign
from tests.helpers import spiky_history, steady_then_spike


@pytest.fixture
def two_tenants_with_anomalies(make_tenant):
    mine, theirs = make_tenant("mine"), make_tenant("theirs")
    for client, resource in ((mine, "i-mine"), (theirs, "i-theirs")):
        points_ingest(tenant=client.tenant, events=steady_then_spike(count=2000, resource_id=resource))
        detection_run(tenant=client.tenant, trigger="command")
    return mine.tenant, theirs.tenant


def _login(user):
    client = Client()
    client.force_login(user)
    return client


def test_support_staff_see_only_their_tenants_anomalies(two_tenants_with_anomalies):
    mine, theirs = two_tenants_with_anomalies
    staff = User.objects.create_user("support", password="x", is_staff=True)
    TenantStaff.objects.create(tenant=mine, user=staff)
    client = _login(staff)
    page = client.get("/admin/anomalies/anomaly/")
    assert page.status_code == 200
    assert b"i-mine" in page.content and b"i-theirs" not in page.content
    their_anomaly = Anomaly.objects.for_tenant(theirs).first()
    assert client.get(f"/admin/anomalies/anomaly/{their_anomaly.id}/change/").status_code == 404
    their_series = Series.objects.for_tenant(theirs).get()
    assert client.get(f"/admin/metrics/series/{their_series.id}/points/").status_code == 404
    my_series = Series.objects.for_tenant(mine).get()
    points = client.get(f"/admin/metrics/series/{my_series.id}/points/")
    assert points.status_code == 200 and b"500.0" in points.content
    assert b"i-theirs" not in client.get("/admin/anomalies/baseline/").content
    assert b"theirs" not in client.get("/admin/tenants/tenant/").content


def test_a_superuser_sees_every_tenant(two_tenants_with_anomalies):
    admin = User.objects.create_superuser("root", password="x")
    page = _login(admin).get("/admin/anomalies/anomaly/")
    assert b"i-mine" in page.content and b"i-theirs" in page.content


def test_staff_can_acknowledge_their_anomalies_in_bulk(two_tenants_with_anomalies):
    mine, _ = two_tenants_with_anomalies
    staff = User.objects.create_user("support", password="x", is_staff=True)
    TenantStaff.objects.create(tenant=mine, user=staff)
    ids = list(Anomaly.objects.for_tenant(mine).values_list("id", flat=True))
    response = _login(staff).post("/admin/anomalies/anomaly/", {"action": "acknowledge", "_selected_action": ids})
    assert response.status_code == 302
    assert set(Anomaly.objects.for_tenant(mine).values_list("status", flat=True)) == {"acknowledged"}


def test_the_admin_refuses_unknown_detection_settings_and_saves_valid_ones(make_tenant):
    tenant = make_tenant("tuned").tenant
    client = _login(User.objects.create_superuser("root", password="x"))
    url = f"/admin/tenants/tenant/{tenant.id}/change/"
    form = {"slug": "tuned", "name": "Tuned", "is_active": "on", "limits": "{}", "tenantstaff_set-TOTAL_FORMS": "0",
            "tenantstaff_set-INITIAL_FORMS": "0"}
    refused = client.post(url, {**form, "detection_config": '{"threshold": 9}'})
    assert refused.status_code == 200 and b"unknown detection setting(s): threshold" in refused.content
    for hostile, says in (('{"sensitivity": "nan"}', b"sensitivity must be a finite number"),
                          ('{"\\ud800": 1}', b"unknown detection setting(s): \\ud800"),
                          ('{"sensitivity": 1' + "0" * 400 + '}', b"sensitivity must be a float"),
                          ('{"recurring_jitter_seconds": 86400}', b"recurring_jitter_seconds must be at most 21600"),
                          ('{"window_points": 1e18}', b"window_points must be from 10 to 100000"),
                          ("[" * 100_000, b"Enter a valid JSON.")):
        refused = client.post(url, {**form, "detection_config": hostile})
        assert refused.status_code == 200 and says in refused.content, hostile
    saved = client.post(url, {**form, "detection_config": '{"sensitivity": 0.5}'})
    assert saved.status_code == 302
    tenant.refresh_from_db()
    assert tenant.detection_config == {"sensitivity": 0.5}


def test_a_stored_override_that_is_not_a_finite_number_is_dropped_by_the_migration(make_tenant):
    import importlib

    from django.apps import apps

    migration = importlib.import_module("anomalies.migrations.0009_drop_non_finite_detection_overrides")
    tenant = make_tenant("was-nan").tenant
    tenant.detection_config = {"sensitivity": "nan", "cooldown_seconds": 3600, "residual_threshold": "-inf"}
    tenant.save()
    migration.drop_non_finite(apps, None)
    tenant.refresh_from_db()
    assert tenant.detection_config == {"cooldown_seconds": 3600}


def test_anomaly_and_incident_lists_are_newest_first_by_time_not_by_id(make_tenant):
    tenant = make_tenant("lists").tenant
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    # The recent spike is detected first; the backfilled one, ten days older, gets the higher ids.
    for resource, end in (("i-recent", now), ("i-backfilled", now - timedelta(days=10))):
        points_ingest(tenant=tenant, events=steady_then_spike(count=2000, end=end, resource_id=resource))
        detection_run(tenant=tenant, trigger="command")
    client = _login(User.objects.create_superuser("root", password="x"))
    for page in ("/admin/anomalies/anomaly/", "/admin/anomalies/incident/"):
        listing = client.get(page).content.decode()
        assert 0 < listing.index("i-recent") < listing.index("i-backfilled"), page


def _channel_with_attempts(tenant, name: str, errors: list[str], *, first: datetime):
    """A webhook channel whose delivery attempts, a minute apart from `first`, failed with these errors
    ("" for a success)."""
    channel = alerting.channel_create(tenant=tenant, data={"name": name, "kind": "webhook",
                                                           "url": "https://hooks.example.com/x"})
    notification = alerting.notification_test_queue(channel=channel)
    for minute, error in enumerate(errors):
        attempt = DeliveryAttempt.objects.create(tenant=tenant, notification=notification, latency_ms=5, error=error,
                                                 status_code=None if error else 200)
        DeliveryAttempt.objects.for_tenant(tenant).filter(id=attempt.id).update(at=first + timedelta(minutes=minute))
    return channel


def test_a_failing_channel_shows_when_it_began_failing_and_a_banner_leads_the_index_and_the_overview(make_tenant):
    mine, theirs = make_tenant("mine").tenant, make_tenant("theirs").tenant
    first = datetime(2026, 12, 3, 9, 0, tzinfo=timezone.utc)
    _channel_with_attempts(mine, "pager", ["", "connection refused", "answered 503"], first=first)
    _channel_with_attempts(mine, "chat", ["connection refused", ""], first=first)
    _channel_with_attempts(theirs, "their-pager", ["connection refused"], first=first)
    staff = User.objects.create_user("support", password="x", is_staff=True)
    TenantStaff.objects.create(tenant=mine, user=staff)
    client = _login(staff)

    channels = client.get("/admin/anomalies/channel/").content.decode()
    assert "failing since 2026-12-03 09:01 UTC" in channels and "answered 503" in channels
    assert channels.count("failing since") == 1 and "their-pager" not in channels
    for page in ("/admin/", f"/admin/tenants/tenant/{mine.id}/overview/"):
        banner = client.get(page).content.decode()
        assert 'id="failing-channels"' in banner and "pager" in banner, page
        assert "failing since 2026-12-03 09:01 UTC" in banner and "chat" not in banner and "their-pager" not in banner
    alerting.channel_update(channel=Channel.objects.for_tenant(mine).get(name="pager"), data={"enabled": False})
    assert 'id="failing-channels"' not in client.get("/admin/").content.decode()


def test_support_staff_who_may_act_add_and_end_silences_and_the_list_says_each_ones_state(make_tenant):
    tenant = make_tenant("quiet").tenant
    now = datetime.now(timezone.utc)
    for start, end, note in ((now - timedelta(hours=2), now - timedelta(hours=1), "over"),
                             (now - timedelta(hours=1), now + timedelta(hours=1), "patching"),
                             (now + timedelta(hours=1), now + timedelta(hours=2), "tonight")):
        alerting.silence_create(tenant=tenant, data={"start": start, "end": end, "note": note}, actor="key:test")
    viewer, _ = support_user_assign(username="viewer", tenant=tenant)
    actor, _ = support_user_assign(username="actor", tenant=tenant, can_act=True)
    assert _login(viewer).get("/admin/anomalies/silence/add/").status_code == 403

    acting = _login(User.objects.get(id=actor.id))
    listing = acting.get("/admin/anomalies/silence/").content.decode()
    assert all(state in listing for state in (">ended<", ">active<", ">scheduled<"))
    for page in ("/admin/anomalies/silence/", "/admin/anomalies/seriesmute/"):  # the two ideas told apart on both
        assert "it stops no notification" in acting.get(page).content.decode()
    added = acting.post("/admin/anomalies/silence/add/", {
        "tenant": tenant.id, "service": "ec2", "metric_name": "", "resource_id": "", "tags": "{}",
        "start_0": f"{now:%Y-%m-%d}", "start_1": f"{now:%H:%M:%S}",
        "end_0": f"{now + timedelta(hours=4):%Y-%m-%d}", "end_1": f"{now + timedelta(hours=4):%H:%M:%S}", "note": "deploy"})
    assert added.status_code == 302
    silences = {s.note: s for s in Silence.objects.for_tenant(tenant)}
    assert silences["deploy"].actor == "user:actor"
    ids = [silences[note].id for note in ("patching", "tonight", "deploy")]
    assert acting.post("/admin/anomalies/silence/", {"action": "end_now", "_selected_action": ids}).status_code == 302
    left = {s.note: s for s in Silence.objects.for_tenant(tenant)}
    assert set(left) == {"over", "patching", "deploy"}  # the scheduled one is dropped
    assert left["patching"].state_at(datetime.now(timezone.utc)) == "ended"
    assert left["deploy"].state_at(datetime.now(timezone.utc)) == "ended"


def test_the_overview_counts_open_incidents_once_each_and_links_to_them(make_tenant):
    tenant = make_tenant("burning").tenant
    points_ingest(tenant=tenant, events=spiky_history())  # three anomalies of one series
    detection_run(tenant=tenant, trigger="command")
    open_incidents = Incident.objects.for_tenant(tenant).exclude(status=Incident.STATUS_RESOLVED)
    anomalies = Anomaly.objects.for_tenant(tenant).filter(status=Anomaly.STATUS_OPEN).count()
    assert open_incidents.count() < anomalies
    client = _login(User.objects.create_superuser("root", password="x"))
    page = client.get(f"/admin/tenants/tenant/{tenant.id}/overview/").content.decode()
    open_now = page[page.index('id="open-now"'):page.index("</table>", page.index('id="open-now"'))]
    for incident in open_incidents:
        link = (f"?tenant={tenant.id}&amp;status__exact={incident.status}"
                f"&amp;peak_severity__exact={incident.peak_severity}\">")
        shown = open_incidents.filter(status=incident.status, peak_severity=incident.peak_severity).count()
        assert link + f"{shown}</a>" in open_now
        listed = client.get("/admin/anomalies/incident/" + link[:-2].replace("&amp;", "&"))
        assert listed.status_code == 200 and f"{shown} incident" in listed.content.decode()


def test_the_overview_says_how_far_behind_detection_is_and_the_index_links_each_tenants_overview(make_tenant):
    tenant = make_tenant("lagging").tenant
    other = make_tenant("other-tenant").tenant
    points_ingest(tenant=tenant, events=spiky_history())
    detection_run(tenant=tenant, trigger="command")
    newest = Baseline.objects.for_tenant(tenant).get().watermark
    viewer, _ = support_user_assign(username="viewer", tenant=tenant)
    client = _login(User.objects.get(id=viewer.id))
    page = client.get(f"/admin/tenants/tenant/{tenant.id}/overview/").content.decode()
    lag = page[page.index('id="detection-lag"'):page.index("</table>", page.index('id="detection-lag"'))]
    assert f"{newest:%Y-%m-%d %H:%M} UTC (" in lag and " ago)" in lag
    state = Baseline.objects.for_tenant(tenant).get().state
    assert f"state__exact={state}\">1 {state}</a>" in lag and "0 warming" in lag

    index = client.get("/admin/").content.decode()
    links = index[index.index('id="tenant-overviews"'):]
    assert f'href="/admin/tenants/tenant/{tenant.id}/overview/">lagging</a>' in links
    assert "other-tenant" not in index and f"/tenant/{other.id}/" not in index
    opened = Incident.objects.for_tenant(tenant).filter(status=Incident.STATUS_OPEN).count()
    assert (f"{opened} open incident" in links) if opened else ("nothing open" in links)


def test_the_overviews_anomaly_counts_link_to_those_anomalies(make_tenant):
    tenant = make_tenant("counted").tenant
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    points_ingest(tenant=tenant, events=steady_then_spike(count=2000, end=now - timedelta(minutes=3)))
    detection_run(tenant=tenant, trigger="command")
    [anomaly] = Anomaly.objects.for_tenant(tenant)
    client = _login(User.objects.create_superuser("root", password="x"))
    page = client.get(f"/admin/tenants/tenant/{tenant.id}/overview/").content.decode()
    links = re.findall(r'<a href="(/admin/anomalies/anomaly/\?[^"]+)">(\d+)</a>', page)
    assert [count for _, count in links] == ["1", "1"]  # in 24 h and in 7 days
    for link, _ in links:
        assert f"severity__exact={anomaly.severity}&amp;status__exact=open" in link
        listed = client.get(link.replace("&amp;", "&")).content.decode()
        assert f"/admin/anomalies/anomaly/{anomaly.id}/change/" in listed and "1 anomaly" in listed
