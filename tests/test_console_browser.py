"""The support console in a real browser: headless Chromium (Debian's), driven by Playwright, logs in as
a staff user, opens an anomaly, acknowledges it with a note, and leaves screenshots of the anomaly,
series and tenant pages in .data/screenshots/; the anomaly and series pages read on a phone and a wide
screen in the admin's light and dark themes (no sideways scrolling, chart text >= 10 px and in contrast).
Also: the API docs page works with no network. One browser for the module, a page per test."""
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


@pytest.fixture(scope="module")
def chromium(chromium_path):
    # Playwright's sync API runs an event loop in this thread, and Django refuses ORM calls where
    # one runs; the test's own ORM calls are synchronous all the same (Django's documented way out).
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        launched = playwright.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def browser(chromium):
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    yield context.new_page()
    context.close()


def _assert_on_screen(page, columns: list[str]) -> None:
    """The list's columns that matter are in view at this width: no sideways scrolling of the results."""
    results = page.locator("#changelist .results").bounding_box()
    right = min(results["x"] + results["width"], page.viewport_size["width"])
    for column in columns:
        box = page.locator(f"#result_list thead th.column-{column}").bounding_box()
        assert box is not None and box["x"] + box["width"] <= right, column


def _log_in(page, url: str, username: str, password: str) -> None:
    page.goto(f"{url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_url(f"{url}/admin/")


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

    _log_in(page, live_server.url, "ada", "a long support password")

    page.goto(f"{live_server.url}/admin/anomalies/anomaly/")
    row = page.locator("#result_list tbody tr").first
    page.screenshot(path=str(SCREENSHOTS / "anomaly-list.png"))
    assert row.bounding_box()["height"] < 60  # one line a row: long columns are cut, not wrapped
    _assert_on_screen(page, ["when", "severity_badge", "status", "series_short", "value_short", "expected_short"])
    assert "UTC" in row.text_content() and "m." not in row.text_content()  # 2026-12-03 09:04:05 UTC, not 9:04 a.m.
    page.goto(f"{live_server.url}/admin/anomalies/incident/")
    page.screenshot(path=str(SCREENSHOTS / "incident-list.png"))
    _assert_on_screen(page, ["started_at", "severity_badge", "status", "series_short", "anomaly_count"])
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


# What a reader sees, measured in the page: sideways overflow, and each drawn chart text's rendered size
# (its font size times the drawing's scale) and contrast (WCAG 2) against the first opaque background
# behind it. Charts hidden at this width (another size of the same chart) are not drawn, so not read.
READABILITY = """() => {
  const rgba = text => { const [r, g, b, a = 1] = text.match(/[\\d.]+/g).map(Number); return [r, g, b, a]; };
  const background = element => {
    for (let e = element; e; e = e.parentElement) {
      const colour = rgba(getComputedStyle(e).backgroundColor);
      if (colour[3] > 0) return colour;
    }
    return [255, 255, 255, 1];
  };
  const luminance = rgb => rgb.slice(0, 3).map(v => v / 255)
    .map(v => v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4)
    .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
  const texts = [...document.querySelectorAll("svg.cwd-chart text")].filter(t => t.getClientRects().length);
  return {
    overflow: document.documentElement.scrollWidth - window.innerWidth,
    sizes: [...new Set([...document.querySelectorAll("svg.cwd-chart")].filter(s => s.getClientRects().length)
      .map(s => s.dataset.size))],
    line: getComputedStyle([...document.querySelectorAll("svg.cwd-chart path.line")]
      .find(p => p.getClientRects().length)).stroke,
    texts: texts.map(t => {
      const svg = t.ownerSVGElement, style = getComputedStyle(t);
      const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
      const bg = background(t), fg = rgba(style.fill), alpha = fg[3] * Number(style.fillOpacity);
      const seen = fg.slice(0, 3).map((v, i) => v * alpha + bg[i] * (1 - alpha));
      const [light, dark] = [luminance(seen), luminance(bg)].sort((a, b) => b - a);
      return {text: t.textContent, px: parseFloat(style.fontSize) * scale, contrast: (light + 0.05) / (dark + 0.05)};
    }),
  };
}"""
SCREENS = {"phone": {"width": 390, "height": 844}, "wide": {"width": 1400, "height": 1000}}


@pytest.mark.django_db(transaction=True)
def test_the_console_reads_on_a_phone_and_a_wide_screen_in_light_and_dark(live_server, browser):
    tenant = tenant_create(slug="acme")
    end = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(minutes=10)
    points_ingest(tenant=tenant, events=steady_then_spike(count=2000, end=end, base=21.342, spike=94.59200000000001,
                                                          resource_id="i-web-1", unit="Cel"))
    detection_run(tenant=tenant, trigger="command")
    anomaly = Anomaly.objects.for_tenant(tenant).get(ts=end)
    staff = User.objects.create_user("ada", password="a long support password", is_staff=True)
    TenantStaff.objects.create(tenant=tenant, user=staff)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page = browser
    _log_in(page, live_server.url, "ada", "a long support password")
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
                seen = page.evaluate(READABILITY)
                page.screenshot(path=str(SCREENSHOTS / f"{name}-{screen}-{theme}.png"), full_page=True)
                where = f"{name}, {screen}, {theme}"
                assert seen["overflow"] <= 0, where
                assert seen["sizes"] == (["narrow"] if screen == "phone" else ["wide"]), where
                assert seen["line"] == ("rgb(96, 165, 250)" if theme == "dark" else "rgb(37, 99, 235)"), where
                assert len(seen["texts"]) >= 6, where
                for text in seen["texts"]:
                    assert text["px"] >= 10, (where, text)
                    assert text["contrast"] >= 4.5, (where, text)
                labels = [text["text"] for text in seen["texts"]]
                assert "°C" in labels and "now" in labels, (where, labels)
                assert any(label == end.strftime("%Y-%m-%d") for label in labels), (where, labels)

    page.goto(f"{live_server.url}{pages['anomaly']}")
    facts = page.locator("#anomaly-console dl.facts-inline").text_content()
    assert "94.59 °C" in facts and "94.592" not in facts
    page.goto(f"{live_server.url}/admin/metrics/series/{anomaly.series_id}/points/")
    assert page.locator("td:has-text('94.59 °C')").count() == 1
    assert page.locator(f"td:has-text('{end:%Y-%m-%d %H:%M:%S} UTC')").count() == 1
