"""The support console: the SVG chart's content, the anomaly, series and tenant pages, the lifecycle
with its audit trail (admin and API), mutes, the what-if preview, and tenant isolation (404s)."""
import re
from datetime import datetime, timedelta, timezone

import pytest
from django.contrib.auth.models import User
from django.test import Client

from anomalies.models import Anomaly, AnomalyEvent, Baseline, DetectionRun, SeriesMute
from anomalies.runs import detection_run
from anomalies.services import series_mute
from cloudwatchdog.timeutil import to_us
from metrics import storage as metrics_storage
from metrics.models import Series
from metrics.services import points_ingest
from metrics.storage import rollups_refresh
from tenants.models import TenantStaff
from tenants.services import tenant_create
from tests.helpers import daily_spikes, event, steady_then_spike

END = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(minutes=30)


@pytest.fixture
def alerted(make_tenant):
    """A tenant whose series ends in a spike that detection raised, and a staff user of that tenant."""
    client = make_tenant("console")
    points_ingest(tenant=client.tenant, events=steady_then_spike(count=2000, end=END))
    detection_run(tenant=client.tenant, trigger="command")
    staff = User.objects.create_user("support-a", password="x", is_staff=True)
    TenantStaff.objects.create(tenant=client.tenant, user=staff)
    browser = Client()
    browser.force_login(staff)
    anomaly = Anomaly.objects.for_tenant(client.tenant).get(ts=END)
    return client, browser, anomaly


def _svg(html: str) -> str:
    return re.search(r'<svg [^>]*class="cwd-chart".*?</svg>', html, re.S).group(0)


def _scales(svg: str):
    x0, x1, y0, y1 = (float(re.search(rf'data-{k}="([^"]+)"', svg).group(1)) for k in ("x0", "x1", "y0", "y1"))
    left, top, width, height = map(float, re.search(r'data-plot="([^"]+)"', svg).group(1).split())
    return (lambda ts_us: left + (ts_us - x0) / (x1 - x0) * width), (lambda v: top + (y1 - v) / (y1 - y0) * height)


def test_the_anomaly_page_charts_every_point_the_band_and_the_marker_with_its_reason(alerted):
    client, browser, anomaly = alerted
    page = browser.get(f"/admin/anomalies/anomaly/{anomaly.id}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert f"{anomaly.severity} anomaly of ec2/i-test123/cpu_utilization{{env=dev}} at" in html
    assert "Anomaly object" not in html and anomaly.reason in html
    svg = _svg(html)
    x, y = _scales(svg)

    start, end = anomaly.ts - timedelta(hours=12), anomaly.ts + timedelta(hours=2)
    stored = metrics_storage.timeseries_read(tenant=client.tenant, series_ids=[anomaly.series_id], start=start,
                                             end=end)[anomaly.series_id]
    line = re.search(r'<path class="line" d="([^"]+)"', svg).group(1)
    coordinates = re.findall(r"[ML](-?[\d.]+),(-?[\d.]+)", line)
    assert len(coordinates) == len(stored) == 12 * 60  # (start, end]: the anomaly is the last point
    for (cx, cy), (ts, value) in zip(coordinates, stored):
        assert abs(float(cx) - x(to_us(ts))) < 0.06 and abs(float(cy) - y(value)) < 0.06

    band = client.get("/api/v1/baselines", {"series_id": anomaly.series_id, "start": start.isoformat(),
                                            "end": end.isoformat()}).json()["band"]
    drawn = [item for item in band if item["lower"] is not None]
    polygon = re.search(r'<polygon class="band" points="([^"]+)"', svg).group(1).split()
    upper_half, lower_half = polygon[:len(drawn)], polygon[len(drawn):][::-1]
    for item, upper_xy, lower_xy in zip(drawn, upper_half, lower_half):
        ts_us = to_us(datetime.fromisoformat(item["timestamp"].replace("Z", "+00:00")))
        assert abs(float(upper_xy.split(",")[0]) - x(ts_us)) < 0.06
        assert abs(float(upper_xy.split(",")[1]) - y(item["upper"])) < 0.06
        assert abs(float(lower_xy.split(",")[1]) - y(item["lower"])) < 0.06
    assert len(polygon) == 2 * len(drawn) and drawn

    marker = re.search(rf'<circle class="anomaly {anomaly.severity} focus" cx="([\d.]+)" cy="([\d.]+)"[^>]*>'
                       r'<title>([^<]+)</title>', svg)
    assert abs(float(marker.group(1)) - x(to_us(anomaly.ts))) < 0.06
    assert abs(float(marker.group(2)) - y(anomaly.value)) < 0.06
    assert anomaly.reason in marker.group(3).replace("&#x27;", "'")
    assert 'class="shade cooldown"' in svg


def test_numbers_are_readable_and_the_reason_comes_first(alerted):
    _, browser, anomaly = alerted
    Anomaly.objects.for_tenant(anomaly.tenant).filter(id=anomaly.id).update(lower=-0.010700000000000001)
    html = browser.get(f"/admin/anomalies/anomaly/{anomaly.id}/change/").content.decode()
    assert "-0.0107 to" in html and "-0.010700000000000001" not in html
    assert html.index('id="reason"') < html.index('class="cwd-chart"')


def test_acknowledging_with_a_note_records_who_when_and_why_in_the_admin_and_the_api(alerted, make_tenant):
    client, browser, anomaly = alerted
    response = browser.post(f"/admin/anomalies/anomaly/{anomaly.id}/change/",
                            {"status": "acknowledged", "note": "disk cleanup job, expected"})
    assert response.status_code == 302
    detail = client.get(f"/api/v1/anomalies/{anomaly.id}").json()
    assert detail["status"] == "acknowledged"
    [first] = detail["events"]
    assert (first["actor"], first["from_status"], first["to_status"], first["note"]) == (
        "user:support-a", "open", "acknowledged", "disk cleanup job, expected")

    patched = client.client.patch(f"/api/v1/anomalies/{anomaly.id}", {"status": "resolved", "note": "fixed"},
                                  content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {client.key}")
    assert patched.status_code == 200
    events = patched.json()["events"]
    assert [e["to_status"] for e in events] == ["acknowledged", "resolved"]
    assert events[1]["actor"].startswith("key:cwd_all_")
    page = browser.get(f"/admin/anomalies/anomaly/{anomaly.id}/change/").content.decode()
    assert "disk cleanup job, expected" in page and "fixed" in page

    bad = client.client.patch(f"/api/v1/anomalies/{anomaly.id}", {"status": "closed"},
                              content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {client.key}")
    assert bad.status_code == 400 and "status" in bad.json()["errors"]
    reader = make_tenant("console-reader", scope="read")
    assert reader.client.patch(f"/api/v1/anomalies/{anomaly.id}", {"status": "open"}, content_type="application/json",
                               HTTP_AUTHORIZATION=f"Bearer {reader.key}").status_code in (403, 404)
    assert client.get("/api/v1/anomalies/99999999999999999999").status_code == 404


def test_staff_of_another_tenant_get_404_for_every_console_page_and_action(alerted):
    client, _, anomaly = alerted
    other = User.objects.create_user("support-b", password="x", is_staff=True)
    TenantStaff.objects.create(tenant=tenant_create(slug="b"), user=other)
    intruder = Client()
    intruder.force_login(other)
    series_id = anomaly.series_id
    baseline_id = Baseline.objects.for_tenant(client.tenant).get(series_id=series_id).id
    for url in (f"/admin/anomalies/anomaly/{anomaly.id}/change/", f"/admin/anomalies/anomaly/{anomaly.id}/change/?zoom=7d",
                f"/admin/metrics/series/{series_id}/change/", f"/admin/metrics/series/{series_id}/change/?range=30d",
                f"/admin/metrics/series/{series_id}/points/", f"/admin/anomalies/baseline/{baseline_id}/change/",
                f"/admin/tenants/tenant/{client.tenant.id}/overview/",
                f"/admin/tenants/tenant/{client.tenant.id}/overview/?action=what_if&series={series_id}"):
        response = intruder.get(url)
        assert response.status_code == 404, url
        assert b"i-test123" not in response.content
    assert intruder.post(f"/admin/anomalies/anomaly/{anomaly.id}/change/", {"status": "resolved"}).status_code == 404
    assert intruder.post(f"/admin/metrics/series/{series_id}/change/", {"hours": "24"}).status_code == 404
    assert intruder.post(f"/admin/tenants/tenant/{client.tenant.id}/overview/", {"action": "run"}).status_code == 404
    anomaly.refresh_from_db()
    assert anomaly.status == "open" and not AnomalyEvent.objects.for_tenant(client.tenant).exists()
    assert not SeriesMute.objects.for_tenant(client.tenant).exists()


def test_the_series_page_draws_its_range_and_a_long_range_from_buckets(alerted):
    client, browser, anomaly = alerted
    for range_key in ("1h", "24h", "7d", "30d"):
        page = browser.get(f"/admin/metrics/series/{anomaly.series_id}/change/?range={range_key}")
        assert page.status_code == 200, range_key
        assert "<svg" in page.content.decode() and 'id="baseline"' in page.content.decode()
    series = anomaly.series
    points, envelope, step = metrics_storage.chart_points(
        tenant=client.tenant, series=series, start=END - timedelta(days=2), end=END, max_points=100, max_buckets=100)
    assert step == 1800 and len(points) == len(envelope) > 60
    raw = metrics_storage.timeseries_read(tenant=client.tenant, series_ids=[series.id], start=END - timedelta(days=2),
                                          end=END)[series.id]
    assert min(lo for _, lo, _ in envelope) == min(v for _, v in raw)
    assert max(hi for _, _, hi in envelope) == max(v for _, v in raw)
    for before in ("garbage", "0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"):
        assert browser.get(f"/admin/metrics/series/{anomaly.series_id}/points/", {"before": before}).status_code == 200


def test_the_series_page_says_which_recurring_pattern_is_expected(make_tenant):
    client = make_tenant("nightly")
    midnight = END.replace(hour=0, minute=0)
    points_ingest(tenant=client.tenant, events=daily_spikes(end=midnight))
    detection_run(tenant=client.tenant, trigger="command")
    staff = User.objects.create_user("support-n", password="x", is_staff=True)
    TenantStaff.objects.create(tenant=client.tenant, user=staff)
    browser = Client()
    browser.force_login(staff)
    series_id = Series.objects.for_tenant(client.tenant).get().id
    page = browser.get(f"/admin/metrics/series/{series_id}/change/?range=7d").content.decode()
    row = re.search(r"<th>recurring, expected</th><td>(.*?)</td>", page).group(1)
    assert re.fullmatch(r"daily 0[23]:\d\d–03:\d\d UTC, above \(seen 3 of the last 3\)", row), row
    listing = browser.get("/admin/anomalies/baseline/").content.decode()
    assert re.search(r"daily 0[23]:\d\d–03:\d\d above", listing)


def test_a_muted_series_stores_its_anomalies_marked_muted(make_tenant):
    client = make_tenant("muted")
    events = steady_then_spike(count=2000, end=END)
    points_ingest(tenant=client.tenant, events=events[:-1])
    detection_run(tenant=client.tenant, trigger="command")
    series = Series.objects.for_tenant(client.tenant).get()
    series_mute(tenant=client.tenant, series_id=series.id, start=END - timedelta(minutes=5),
                end=END + timedelta(hours=1), actor="user:x", note="maintenance")
    points_ingest(tenant=client.tenant, events=events[-1:])
    detection_run(tenant=client.tenant, trigger="command")
    anomaly = Anomaly.objects.for_tenant(client.tenant).get(ts=END)
    assert anomaly.muted
    assert client.get(f"/api/v1/anomalies/{anomaly.id}").json()["muted"] is True


def test_the_tenant_overview_counts_refusals_and_previews_other_settings(alerted):
    client, _, anomaly = alerted
    assert client.ingest([event(1.0, "2025-13-01T00:00:00Z"), event(1e300)]).status_code == 400
    admin_user = User.objects.create_superuser("root", password="x")
    root = Client()
    root.force_login(admin_user)
    url = f"/admin/tenants/tenant/{client.tenant.id}/overview/"
    html = root.get(url).content.decode()
    assert 'id="series-count">1<' in html
    assert "<td>json</td><td>timestamp</td><td>1</td>" in html and "<td>json</td><td>value</td><td>1</td>" in html
    preview = root.get(url, {"action": "what_if", "overrides": '{"sensitivity": 0.2}', "days": "2",
                             "series": str(anomaly.series_id)}).content.decode()
    counts = re.search(r"(\d+) anomalies now, (\d+) with the proposed settings", preview)
    assert counts and int(counts.group(2)) <= int(counts.group(1)) and int(counts.group(1)) >= 1
    assert preview.count("class=\"cwd-chart\"") == 2
    assert "not valid" in root.get(url, {"action": "what_if", "overrides": '{"bogus": 1}'}).content.decode()
    rollups_refresh()  # beat does it every minute; the confirmation counts from the hourly rollups
    confirm = root.get(url, {"action": "replay", "since": (END - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M")})
    assert "recomputes baselines and anomalies of <strong>1</strong> series" in confirm.content.decode()
    assert root.post(url, {"action": "save_settings", "overrides": '{"sensitivity": 0.2}'}).status_code == 302
    client.tenant.refresh_from_db()
    assert client.tenant.detection_config == {"sensitivity": 0.2}
    assert root.post(url, {"action": "run"}).status_code == 302
    assert DetectionRun.objects.for_tenant(client.tenant).filter(trigger="api_async").exists()
