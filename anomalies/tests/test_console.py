"""The support console: the SVG chart's content, the anomaly, series and tenant pages, the lifecycle
with its audit trail (admin and API), mutes, the what-if preview, and tenant isolation (404s)."""
import html as html_text
import json
import random
import re
from datetime import datetime, timedelta, timezone

import pytest
from django.contrib.auth.models import User
from django.test import Client

from anomalies import selectors
from anomalies.engine import DetectionConfig
from anomalies.models import Anomaly, AnomalyEvent, Baseline, DetectionRule, DetectionRun, SeriesMute
from anomalies.runs import detection_run
from anomalies.services import detection_rule_create, series_mute, tenant_detection_config_set
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
    assert intruder.post(f"/admin/tenants/tenant/{client.tenant.id}/overview/", {
        "action": "save_for_metrics", "overrides": '{"sensitivity": 0.2}', "series": str(series_id)}).status_code == 404
    assert not DetectionRule.objects.for_tenant(client.tenant).exists()
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
    preview = root.get(url, {"action": "what_if", "sensitivity": "0.2", "days": "2",
                             "series": str(anomaly.series_id)}).content.decode()
    counts = re.search(r"(\d+) anomalies now, (\d+) with the proposed settings", preview)
    assert counts and int(counts.group(2)) <= int(counts.group(1)) and int(counts.group(1)) >= 1
    assert preview.count('data-size="wide"') == 2  # two charts, each in every size
    assert "not valid" in root.get(url, {"action": "what_if", "sensitivity": "0"}).content.decode()
    rollups_refresh()  # beat does it every minute; the confirmation counts from the hourly rollups
    confirm = root.get(url, {"action": "replay", "since": (END - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M")})
    assert "recomputes baselines and anomalies of <strong>1</strong> series" in confirm.content.decode()
    assert root.post(url, {"action": "save_settings", "overrides": '{"sensitivity": 0.2}'}).status_code == 302
    client.tenant.refresh_from_db()
    assert client.tenant.detection_config == {"sensitivity": 0.2}
    assert root.post(url, {"action": "run"}).status_code == 302
    assert DetectionRun.objects.for_tenant(client.tenant).filter(trigger="api_async").exists()


def _bumpy(tenant, **series) -> list[dict]:
    """2,000 one-minute points of noise (σ 1) around 50, its range widened on the first day, with bumps of
    4.5 σ the default residual threshold (6 σ) lets pass, ending in a spike of 500."""
    rng = random.Random(3)
    values = [50 + rng.gauss(0, 1) for _ in range(2000)]
    values[10], values[20] = 80.0, 20.0
    for k in (1700, 1800, 1900):
        values[k] += 4.5
    values[-1] = 500.0
    return [event(v, END - timedelta(minutes=1999 - i), **series) for i, v in enumerate(values)]


@pytest.fixture
def bumpy(make_tenant):
    """A tenant whose bumpy series detection ran over (the spike stored), and a superuser's browser."""
    client = make_tenant("bumpy")
    points_ingest(tenant=client.tenant, events=_bumpy(client.tenant))
    detection_run(tenant=client.tenant, trigger="command")
    root = Client()
    root.force_login(User.objects.create_superuser("root", password="x"))
    series = Series.objects.for_tenant(client.tenant).get()
    return client, root, series, f"/admin/tenants/tenant/{client.tenant.id}/overview/"


def _preview(root, url, series, **settings) -> str:
    return root.get(url, {"action": "what_if", "days": "2", "series": str(series.id), **settings}).content.decode()


def _band_heights(svg: str) -> list[float]:
    points = re.search(r'<polygon class="band" points="([^"]+)"', svg).group(1).split()
    upper, lower = points[:len(points) // 2], points[len(points) // 2:][::-1]
    return [float(lo.split(",")[1]) - float(up.split(",")[1]) for up, lo in zip(upper, lower)]


def _changes(page: str, series) -> list[tuple[str, str, str]]:
    """(kind, link, time) of each row of a series' what-if table."""
    table = re.search(rf'<table class="what-if-changes" id="what-if-changes-{series.id}">.*?</table>', page, re.S)
    return re.findall(r'<tr class="(added|removed|kept)"><td>\1</td><td><a href="([^"]+)">([^<]+) UTC</a>',
                      table.group(0))


def test_the_what_if_draws_the_band_each_setting_gives_and_lists_anomalies_added_removed_and_kept(bumpy):
    client, root, series, url = bumpy
    stored = Anomaly.objects.for_tenant(client.tenant).get(ts=END)
    page = _preview(root, url, series, residual_threshold="2")
    # Each chart comes in every size; the wide drawings are compared.
    current, proposed = re.findall(r'<svg [^>]*class="cwd-chart"[^>]*data-size="wide".*?</svg>', page, re.S)
    assert '<path class="expected"' in current and '<path class="expected"' in proposed
    # The proposed band is the engine's under a third of the threshold: narrower, not the stored one.
    now_heights, proposed_heights = _band_heights(current), _band_heights(proposed)
    assert len(now_heights) == len(proposed_heights) > 1000
    assert sum(proposed_heights) < 0.5 * sum(now_heights)

    rows = _changes(page, series)
    kinds = [kind for kind, _, _ in rows]
    assert kinds.count("kept") == 1 and kinds.count("added") >= 1 and "removed" not in kinds
    [kept] = [row for row in rows if row[0] == "kept"]
    assert kept[1:] == (f"/admin/anomalies/anomaly/{stored.id}/change/", f"{END:%Y-%m-%d %H:%M:%S}")
    for _, link, when in rows:
        if link.startswith(f"/admin/metrics/series/{series.id}/change/?range="):
            assert END - timedelta(days=1) < datetime.fromisoformat(when).replace(tzinfo=timezone.utc) < END
    assert all(link.startswith(f"/admin/metrics/series/{series.id}/change/?range=") for kind, link, _ in rows
               if kind == "added")
    assert re.search(rf"{kinds.count('added')} added, 0 removed, 1 kept", page)

    below = _changes(_preview(root, url, series, direction="below"), series)
    assert below == [("removed", f"/admin/anomalies/anomaly/{stored.id}/change/", f"{END:%Y-%m-%d %H:%M:%S}")]


def test_the_what_if_form_shows_each_setting_its_default_and_the_tenants_value(bumpy):
    client, root, series, url = bumpy
    tenant_detection_config_set(tenant=client.tenant, overrides={"sensitivity": 0.5})
    page = root.get(url).content.decode()
    assert 'name="overrides"' not in page  # no free JSON any more
    rows = dict(re.findall(r'<tr(?: class="changed")?><th><label for="id_(\w+)">\1</label></th>(.*?)</tr>', page, re.S))
    assert list(rows) == list(DetectionConfig().as_dict())
    for name, default in DetectionConfig().as_dict().items():
        assert f'<td class="default">{default}</td>' in rows[name], name
    assert 'value="0.5"' in rows["sensitivity"] and '<td class="current">0.5</td>' in rows["sensitivity"]
    assert 'min="0.001"' in rows["sensitivity"] and 'max="1000"' in rows["sensitivity"] and 'step="any"' in rows["sensitivity"]
    assert 'value="1000"' in rows["window_points"] and 'min="10"' in rows["window_points"] and 'step="1"' in rows["window_points"]
    assert 'max="21600"' in rows["recurring_jitter_seconds"]
    assert re.search(r'<select name="direction"[^>]*>\s*<option value="both" selected>both</option>\s*'
                     r'<option value="above">above</option>\s*<option value="below">below</option>', rows["direction"])

    # Every setting submitted as the page holds it, one changed: only what differs from the defaults is kept.
    submitted = {**DetectionConfig().as_dict(), "sensitivity": "0.5", "residual_threshold": "2"}
    page = _preview(root, url, series, **submitted)
    proposed = json.loads(html_text.unescape(re.search(r'name="overrides" value="([^"]+)"', page).group(1)))
    assert proposed == {"sensitivity": 0.5, "residual_threshold": 2.0}
    assert root.post(url, {"action": "save_settings", "overrides": json.dumps(proposed)}).status_code == 302
    client.tenant.refresh_from_db()
    assert client.tenant.detection_config == {"sensitivity": 0.5, "residual_threshold": 2.0}

    bad = _preview(root, url, series, sensitivity="nan", window_points="100001", recurring_jitter_seconds="30000",
                   cooldown_seconds="1e3", direction="sideways")
    assert "not valid" in bad and 'class="cwd-chart"' not in bad
    for name in ("sensitivity", "window_points", "recurring_jitter_seconds", "cooldown_seconds", "direction"):
        assert f'<div class="errornote">{name}: ' in bad, name


def test_saving_for_the_previewed_metric_makes_a_rule_for_it_alone_and_leaves_the_tenant_settings(bumpy):
    client, root, series, url = bumpy
    points_ingest(tenant=client.tenant, events=[event(1.0, END, metric_name="memory_used")])
    page = _preview(root, url, series, residual_threshold="2")
    assert 'value="Save for the 1 series of cpu_utilization" id="save-for-metrics"' in page
    form = re.search(r'<form method="post"[^>]*>(?:(?!</form>).)*value="save_for_metrics".*?</form>', page, re.S).group(0)
    fields = re.findall(r'name="(\w+)" value="([^"]*)"', form)
    data = {}
    for name, value in fields:
        data.setdefault(name, []).append(html_text.unescape(value))
    assert data["series"] == [str(series.id)]
    assert root.post(url, data).status_code == 302

    [rule] = DetectionRule.objects.for_tenant(client.tenant)
    assert (rule.name, rule.service, rule.metric_name, rule.resource_id, rule.tags, rule.overrides) == (
        "what-if: cpu_utilization", "", "cpu_utilization", "", {}, {"residual_threshold": 2.0})
    client.tenant.refresh_from_db()
    assert client.tenant.detection_config == {}
    configs = selectors.detection_configs_for(tenant=client.tenant, series=Series.objects.for_tenant(client.tenant))
    memory = Series.objects.for_tenant(client.tenant).get(metric_name="memory_used")
    assert configs[series.id].residual_threshold == 2.0 and configs[memory.id].residual_threshold == 6.0

    # Saving again for the metric changes that rule, adding the setting: no second rule.
    again = {**data, "overrides": [json.dumps({"direction": "above"})]}
    assert root.post(url, again).status_code == 302
    [rule] = DetectionRule.objects.for_tenant(client.tenant)
    assert rule.overrides == {"residual_threshold": 2.0, "direction": "above"}
    client.tenant.refresh_from_db()
    assert client.tenant.detection_config == {}


def test_saving_for_the_whole_tenant_warns_how_many_series_it_changes(bumpy):
    client, root, series, url = bumpy
    points_ingest(tenant=client.tenant, events=[event(1.0, END, resource_id="i-other"),
                                                event(1.0, END, metric_name="memory_used")])
    detection_rule_create(tenant=client.tenant, data={"name": "memory", "metric_name": "memory_used",
                                                       "overrides": {"residual_threshold": 8}})
    warning = re.compile(r'id="tenant-save-warning">Saving for the whole tenant changes detection of '
                         r'<strong>(\d+)</strong> of its (\d+) series')
    # The memory series' rule sets the threshold: a tenant-wide threshold changes the other two.
    assert warning.search(_preview(root, url, series, residual_threshold="2")).groups() == ("2", "3")
    assert warning.search(_preview(root, url, series, sensitivity="2")).groups() == ("3", "3")
    assert 'id="save-settings"' in _preview(root, url, series, sensitivity="2")
    unchanged = _preview(root, url, series)
    assert "nothing to save" in unchanged and 'id="save-settings"' not in unchanged


def test_pages_write_values_to_four_digits_with_units_and_times_in_utc(make_tenant):
    client = make_tenant("units")
    events = steady_then_spike(count=300, end=END, base=21.342, spike=94.59200000000001, unit="Cel")
    points_ingest(tenant=client.tenant, events=events[150:])
    points_ingest(tenant=client.tenant, events=events[:150])  # backfilled: older than the series itself
    detection_run(tenant=client.tenant, trigger="command")
    admin_user = User.objects.create_superuser("root-u", password="x")
    root = Client()
    root.force_login(admin_user)
    series = Series.objects.for_tenant(client.tenant).get()
    oldest = END - timedelta(minutes=299)

    page = root.get(f"/admin/metrics/series/{series.id}/change/").content.decode()
    assert f'first point <span id="first-point">{oldest:%Y-%m-%d %H:%M:%S} UTC</span>' in page
    assert series.created_at - oldest > timedelta(minutes=30) and "gauge in °C" in page  # not its creation
    points = root.get(f"/admin/metrics/series/{series.id}/points/").content.decode()
    assert f"<td>{END:%Y-%m-%d %H:%M:%S} UTC</td>" in points
    assert '<td title="stored: 94.59200000000001">94.59 °C</td>' in points
    baselines = root.get("/admin/anomalies/baseline/").content.decode()
    assert re.search(r'<td class="field-median_shown">\d\d(\.\d{1,2})? °C</td>', baselines), baselines
    run = DetectionRun.objects.for_tenant(client.tenant).get()
    run_page = root.get(f"/admin/anomalies/detectionrun/{run.id}/change/").content.decode()
    assert f"{run.requested_at:%Y-%m-%d %H:%M:%S} UTC" in run_page and "a.m." not in run_page and "p.m." not in run_page
    listing = root.get("/admin/anomalies/detectionrun/").content.decode()
    assert f"{run.requested_at:%Y-%m-%d %H:%M:%S} UTC" in listing


def test_the_what_if_draws_both_bands_where_its_charts_are_bucketed(make_tenant):
    client = make_tenant("long-what-if")
    points_ingest(tenant=client.tenant, events=steady_then_spike(count=3000, end=END))  # more than a chart draws raw
    detection_run(tenant=client.tenant, trigger="command")
    root = Client()
    root.force_login(User.objects.create_superuser("root", password="x"))
    series = Series.objects.for_tenant(client.tenant).get()
    page = _preview(root, f"/admin/tenants/tenant/{client.tenant.id}/overview/", series, days="3",
                    residual_threshold="2")
    wide = re.findall(r'<svg [^>]*class="cwd-chart"[^>]*data-size="wide".*?</svg>', page, re.S)
    assert len(wide) == 2 and all('class="envelope"' in svg for svg in wide)  # bucketed: the min-max envelope
    for svg in wide:
        assert '<polygon class="band"' in svg and '<path class="expected"' in svg
        assert len(_band_heights(svg)) > 100  # one per bucket over the three days
