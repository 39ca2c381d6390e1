"""On-call works an incident in a real browser (Debian's Chromium through Playwright), as a support user
of one tenant who may act, at 1,400 x 1,000 and at 390 x 844, in the admin's light and dark themes
(switched with its own toggle): a real webhook receiver on loopback failed twice, so the failing-channel
banner leads the admin index and the tenant overview; then it took the message, and the incident page
shows the three attempts in its timeline. The engineer acknowledges the incident and silences it until
it resolves, from its page. On every page: nothing overflows horizontally, chart text is at least
10 px, and chart text contrasts with its background at least 4.5:1 (WCAG), from the rendered styles.
Screenshots go to .data/screenshots/."""
from datetime import datetime, timedelta, timezone

import pytest
from werkzeug import Response

from anomalies import alerting
from anomalies.alerting import notifications_deliver_due
from anomalies.models import Incident, IncidentEvent, Silence
from anomalies.runs import detection_run
from metrics.services import points_ingest
from tenants.services import support_user_assign, tenant_create
from tests.browser_checks import SCREENSHOTS, assert_readable, log_in, theme_toggle_to
from tests.helpers import steady_then_spike

SIZES = {"wide": (1400, 1000), "phone": (390, 844)}


@pytest.mark.django_db(transaction=True)
def test_on_call_sees_the_failing_channel_then_works_the_incident_at_both_sizes_in_both_themes(
        live_server, browser, httpserver, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True  # the receiver listens on loopback
    for status in (500, 500, 200):
        httpserver.expect_ordered_request("/hook", method="POST").respond_with_response(
            Response("down" if status == 500 else "ok", status=status))
    tenant = tenant_create(slug="acme")
    alerting.channel_create(tenant=tenant, data={"name": "ops hook", "kind": "webhook",
                                                 "url": httpserver.url_for("/hook")})
    end = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(minutes=2)
    points_ingest(tenant=tenant, events=steady_then_spike(count=2000, end=end, resource_id="i-web-1", unit="Cel"))
    detection_run(tenant=tenant, trigger="command")
    incident = Incident.objects.for_tenant(tenant).get()
    support_user_assign(username="oncall", tenant=tenant, password="a long on-call password", can_act=True)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    now = datetime.now(timezone.utc)
    assert notifications_deliver_due(now=now) == 1 and notifications_deliver_due(now=now + timedelta(hours=1)) == 1

    page = browser
    log_in(page, live_server.url, "oncall", "a long on-call password")
    for where in ("/admin/", f"/admin/tenants/tenant/{tenant.id}/overview/"):
        page.goto(live_server.url + where)
        banner = page.locator("#failing-channels")
        assert "ops hook" in banner.text_content() and "answered 500" in banner.text_content()
    page.screenshot(path=str(SCREENSHOTS / "failing-channel-banner.png"), full_page=True)

    assert notifications_deliver_due(now=now + timedelta(hours=2)) == 1  # the receiver takes it at last
    incident_url = f"{live_server.url}/admin/anomalies/incident/{incident.id}/change/"
    for size, (width, height) in SIZES.items():
        page.set_viewport_size({"width": width, "height": height})
        for theme in ("light", "dark"):
            page.goto(incident_url)
            theme_toggle_to(page, theme)
            timeline = page.locator("#timeline").text_content()
            assert [f"attempt {n}: " in timeline for n in (1, 2, 3)] == [True] * 3
            assert "attempt 3: delivered (HTTP 200" in timeline
            assert_readable(page, f"incident page, {size}, {theme}")
            page.screenshot(path=str(SCREENSHOTS / f"incident-{size}-{theme}.png"), full_page=True)
            page.goto(f"{live_server.url}/admin/tenants/tenant/{tenant.id}/overview/")
            assert_readable(page, f"tenant overview, {size}, {theme}", charts=False)
            page.screenshot(path=str(SCREENSHOTS / f"tenant-{size}-{theme}.png"), full_page=True)

    page.set_viewport_size({"width": 390, "height": 844})  # on a phone, at 3 a.m.
    page.goto(incident_url)
    page.fill("#status-form input[name=note]", "on it; deploy rollback")
    page.click("#acknowledge")
    page.wait_for_selector("#timeline td:has-text('on it; deploy rollback')")
    assert page.locator("#incident-status").text_content() == "acknowledged"
    [event] = IncidentEvent.objects.for_tenant(tenant).filter(incident=incident)
    assert (event.actor, event.to_status) == ("user:oncall", "acknowledged")

    page.select_option("#silence-form select[name=scope]", "series")
    page.select_option("#silence-form select[name=duration]", "resolved")
    page.fill("#silence-form input[name=note]", "rollback running")
    page.click("#silence-form input[type=submit]")
    page.wait_for_selector("#silenced-now:has-text('or this incident resolves')")
    silence = Silence.objects.for_tenant(tenant).get()
    assert (silence.ends_with_incident_id, silence.resource_id, silence.actor) == (incident.id, "i-web-1", "user:oncall")
    assert_readable(page, "incident page after acting, phone")
    page.screenshot(path=str(SCREENSHOTS / "incident-phone-acted.png"), full_page=True)
