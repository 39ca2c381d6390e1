"""The support console in a real browser: headless Chromium (Debian's), driven by Playwright, logs in as
a staff user, opens an anomaly, acknowledges it with a note, and leaves screenshots of the anomaly,
series and tenant pages in .data/screenshots/. Also: the API docs page works with no network."""
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import sync_playwright

from anomalies.models import Anomaly, AnomalyEvent
from anomalies.runs import detection_run
from metrics.services import points_ingest
from tenants.models import TenantStaff
from tenants.services import tenant_create
from tests.helpers import steady_then_spike

SCREENSHOTS = Path(__file__).resolve().parent.parent / ".data" / "screenshots"
# As the machine's own probe starts it: no background connections to a network it does not have.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


@pytest.fixture
def browser(chromium_path, monkeypatch):
    # Playwright's sync API runs an event loop in this thread, and Django refuses ORM calls where
    # one runs; the test's own ORM calls are synchronous all the same (Django's documented way out).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        page = chromium.new_page(viewport={"width": 1400, "height": 1000})
        yield page
        chromium.close()


@pytest.mark.django_db(transaction=True)
def test_a_staff_user_opens_an_anomaly_acknowledges_it_with_a_note_and_every_page_is_captured(live_server, browser):
    tenant = tenant_create(slug="acme")
    end = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(minutes=10)
    points_ingest(tenant=tenant, events=steady_then_spike(count=2000, end=end, resource_id="i-web-1"))
    detection_run(tenant=tenant, trigger="command")
    anomaly = Anomaly.objects.for_tenant(tenant).get(ts=end)
    staff = User.objects.create_user("ada", password="a long support password", is_staff=True)
    TenantStaff.objects.create(tenant=tenant, user=staff)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page = browser

    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "ada")
    page.fill("#id_password", "a long support password")
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")

    page.goto(f"{live_server.url}/admin/anomalies/anomaly/")
    row = page.locator("#result_list tbody tr").first
    page.screenshot(path=str(SCREENSHOTS / "anomaly-list.png"))
    assert row.bounding_box()["height"] < 60  # one line a row: long columns are cut, not wrapped
    severity = page.locator("#result_list tbody tr td.field-severity_badge").first.bounding_box()
    assert severity["x"] + severity["width"] <= 1400  # on screen

    page.goto(f"{live_server.url}/admin/anomalies/anomaly/{anomaly.id}/change/")
    assert "anomaly of ec2/i-web-1/cpu_utilization" in page.title()
    reason = page.locator("#reason").bounding_box()
    assert reason["y"] + reason["height"] < 1000  # above the fold
    chart = page.locator("svg.cwd-chart").first
    assert chart.bounding_box()["width"] > 900
    assert page.locator("svg.cwd-chart circle.anomaly.focus title").text_content().endswith(anomaly.reason)
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
