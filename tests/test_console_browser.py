"""The support console in a real browser: headless Chromium (Debian's), driven by Playwright, logs in as
a staff user, opens an anomaly, acknowledges it with a note, and leaves screenshots of the anomaly,
series and tenant pages in .data/screenshots/; the anomaly and series pages read on a phone and a wide
screen in the admin's light and dark themes (no sideways scrolling, chart text >= 10 px and in contrast).
Also: the API docs page works with no network. One browser for the module, a page per test."""
from datetime import datetime, timedelta, timezone

import pytest
from django.contrib.auth.models import User

from anomalies.models import Anomaly, AnomalyEvent
from anomalies.runs import detection_run
from metrics.services import points_ingest
from tenants.models import TenantStaff
from tenants.services import tenant_create
from tests.browser_checks import SCREENSHOTS, assert_readable, log_in
from tests.helpers import steady_then_spike


def _assert_on_screen(page, columns: list[str]) -> None:
    """The list's columns that matter are in view at this width: no sideways scrolling of the results."""
    results = page.locator("#changelist .results").bounding_box()
    right = min(results["x"] + results["width"], page.viewport_size["width"])
    for column in columns:
        box = page.locator(f"#result_list thead th.column-{column}").bounding_box()
        assert box is not None and box["x"] + box["width"] <= right, column


def _signed_in_to_a_spike(live_server, page, **spike) -> tuple:
    """A tenant whose series ends in a spike detection raised, its staff user "ada" signed in on `page`;
    returns (tenant, the spike's time, its anomaly)."""
    tenant = tenant_create(slug="acme")
    end = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(minutes=10)
    points_ingest(tenant=tenant, events=steady_then_spike(count=2000, end=end, resource_id="i-web-1", **spike))
    detection_run(tenant=tenant, trigger="command")
    staff = User.objects.create_user("ada", password="a long support password", is_staff=True)
    TenantStaff.objects.create(tenant=tenant, user=staff)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    log_in(page, live_server.url, "ada", "a long support password")
    return tenant, end, Anomaly.objects.for_tenant(tenant).get(ts=end)


@pytest.mark.django_db(transaction=True)
def test_a_staff_user_opens_an_anomaly_acknowledges_it_with_a_note_and_every_page_is_captured(live_server, browser):
    page = browser
    tenant, end, anomaly = _signed_in_to_a_spike(live_server, page)

    page.goto(f"{live_server.url}/admin/anomalies/anomaly/")
    row = page.locator("#result_list tbody tr").first
    page.screenshot(path=str(SCREENSHOTS / "anomaly-list.png"))
    assert row.bounding_box()["height"] < 60  # one line a row: long columns are cut, not wrapped
    _assert_on_screen(page, ["when", "severity_badge", "status", "series_short", "value_short", "expected_short"])
    assert "UTC" in row.text_content() and "m." not in row.text_content()  # 2026-12-03 09:04:05 UTC, not 9:04 a.m.
    page.goto(f"{live_server.url}/admin/anomalies/incident/")
    page.screenshot(path=str(SCREENSHOTS / "incident-list.png"))
    _assert_on_screen(page, ["started", "severity_badge", "status", "state", "series_short", "count", "tenant"])
    assert "UTC" in page.locator("#result_list tbody tr").first.text_content()

    page.goto(f"{live_server.url}/admin/anomalies/anomaly/{anomaly.id}/change/")
    assert "anomaly of ec2/i-web-1/cpu_utilization" in page.title()
    reason = page.locator("#reason").bounding_box()
    assert reason["y"] + reason["height"] < 1000  # above the fold
    chart = page.locator("svg.cwd-chart").first
    assert chart.bounding_box()["width"] > 900
    assert page.locator("svg.cwd-chart[data-size=wide] circle.anomaly.focus title").text_content().endswith(anomaly.reason)
    page.screenshot(path=str(SCREENSHOTS / "anomaly.png"), full_page=True)
    page.select_option("#status-form select[name=status]", "acknowledged")
    page.fill("#status-form input[name=note]", "known backup job; ticket OPS-12")
    page.click("#status-form input[type=submit]")
    page.wait_for_selector("#history td:has-text('known backup job')")
    assert page.locator("#anomaly-status").text_content() == "acknowledged"
    [event] = AnomalyEvent.objects.for_tenant(tenant).filter(anomaly=anomaly)
    assert (event.actor, event.to_status, event.note) == ("user:ada", "acknowledged", "known backup job; ticket OPS-12")

    page.click("#series-link")
    page.wait_for_selector("#series-console svg.cwd-chart")
    page.screenshot(path=str(SCREENSHOTS / "series.png"), full_page=True)
    page.goto(f"{live_server.url}/admin/tenants/tenant/{tenant.id}/overview/")
    page.wait_for_selector("#tenant-console")
    page.screenshot(path=str(SCREENSHOTS / "tenant.png"), full_page=True)
    for name in ("anomaly", "series", "tenant"):
        assert (SCREENSHOTS / f"{name}.png").stat().st_size > 10_000


@pytest.mark.django_db(transaction=True)
def test_the_api_docs_render_from_our_own_static_files_without_a_network(live_server, browser):
    failed = []
    browser.on("requestfailed", lambda request: failed.append(request.url))
    browser.goto(f"{live_server.url}/api/docs/")
    browser.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
    assert "CloudWatchDog API" in browser.locator(".swagger-ui .info .title").text_content()
    assert failed == []


SCREENS = {"phone": {"width": 390, "height": 844}, "wide": {"width": 1400, "height": 1000}}


@pytest.mark.django_db(transaction=True)
def test_the_console_reads_on_a_phone_and_a_wide_screen_in_light_and_dark(live_server, browser):
    page = browser
    tenant, end, anomaly = _signed_in_to_a_spike(live_server, page, base=21.342, spike=94.59200000000001, unit="Cel")
    pages = {"anomaly": f"/admin/anomalies/anomaly/{anomaly.id}/change/",
             "series": f"/admin/metrics/series/{anomaly.series_id}/change/"}

    for screen, viewport in SCREENS.items():
        page.set_viewport_size(viewport)
        for theme in ("light", "dark"):
            # As the admin's moon toggle leaves it (theme.js reads it back on every page); the browser's
            # own scheme stays light, so a dark chart here follows the toggle.
            page.evaluate(f"localStorage.setItem('theme', '{theme}')")
            for name, path in pages.items():
                page.goto(f"{live_server.url}{path}")
                assert page.evaluate("document.documentElement.dataset.theme") == theme
                page.screenshot(path=str(SCREENSHOTS / f"{name}-{screen}-{theme}.png"), full_page=True)
                where = f"{name}, {screen}, {theme}"
                seen = assert_readable(page, where)
                assert seen["sizes"] == (["narrow"] if screen == "phone" else ["wide"]), where
                assert seen["line"] == ("rgb(96, 165, 250)" if theme == "dark" else "rgb(37, 99, 235)"), where
                assert len(seen["texts"]) >= 6, where
                labels = [text["text"] for text in seen["texts"]]
                assert "°C" in labels and "now" in labels, (where, labels)
                assert any(label == end.strftime("%Y-%m-%d") for label in labels), (where, labels)

    page.goto(f"{live_server.url}{pages['anomaly']}")
    facts = page.locator("#anomaly-console dl.facts-inline").text_content()
    assert "94.59 °C" in facts and "94.592" not in facts
    page.goto(f"{live_server.url}/admin/metrics/series/{anomaly.series_id}/points/")
    assert page.locator("td:has-text('94.59 °C')").count() == 1
    assert page.locator(f"td:has-text('{end:%Y-%m-%d %H:%M:%S} UTC')").count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_what_if_preview_reads_on_a_phone_and_a_wide_screen_in_light_and_dark(live_server, browser):
    page = browser
    tenant, _, anomaly = _signed_in_to_a_spike(live_server, page, unit="Cel")
    preview = (f"{live_server.url}/admin/tenants/tenant/{tenant.id}/overview/?action=what_if&days=3"
               f"&series={anomaly.series_id}&residual_threshold=3")
    for screen, viewport in SCREENS.items():
        page.set_viewport_size(viewport)
        for theme in ("light", "dark"):
            page.evaluate(f"localStorage.setItem('theme', '{theme}')")
            page.goto(preview)
            page.screenshot(path=str(SCREENSHOTS / f"what-if-{screen}-{theme}.png"), full_page=True)
            seen = assert_readable(page, f"what-if, {screen}, {theme}")
            assert len(seen["texts"]) >= 12  # both charts, current and proposed
