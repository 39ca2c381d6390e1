"""A fuzz pass over the admin and its support console (security review 2026-12-03, finding 18): a
superuser and a tenant's support user ask for every admin URL there is (every registered model's own
URLs, the console's tenant overview, what-if, replay, series, anomaly and raw-points pages among them,
on an object they may see) with hostile values in every query parameter the page reads, and post every
form of our admins the same way; a tenant's key asks every GET operation of the API. No answer is a 5xx.

A page's parameters go together, rotated: in round k parameter i gets ROTATED[(i + k) % n], so over n
rounds each gets each value once. The superuser asks every round of the pages our code serves (our
admins' lists and add forms, the console's views) and one round of Django's own (the user and group
admins, history, delete and change pages, which read only `_popup`, `_to_field` and the list to return
to); the support user, whose pages differ in what they scope, not in how they read, one round of each.
What ends a request early whatever the rest holds goes alone, once, with a value of its own: a list
filter of Django's refusing its value (the admin redirects to ?e=1 before the filters after it run),
`_to_field`, an unknown parameter on a list. NUL, which the middleware refuses anywhere, gets one request
a page. The 500s this pass found are asked for one by one at the end."""
import re
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, User
from django.test import Client, RequestFactory
from drf_spectacular.generators import SchemaGenerator

from anomalies import alerting
from anomalies.engine import DetectionConfig
from anomalies.models import Anomaly, Channel, DetectionRule, DetectionRun, Incident, Notification, Silence
from anomalies.runs import detection_run
from anomalies.services import detection_rule_create, series_mute
from metrics.models import Series
from metrics.services import points_ingest
from tenants.services import api_key_issue, support_user_assign, tenant_create
from tests.helpers import ApiClient, steady_then_spike

NUL = "%00"
# URL-encoded: "²" and "٣" pass str.isdigit, 5,000 digits pass it but not int(), 9999 is the last
# year a date has, %ED%A0%80 a lone surrogate's UTF-8; JSON nested 2,000 deep.
ROTATED = ["%C2%B2", quote("٣"), "9" * 5000, "-1", "0", "1e9", "9999", "", "%ED%A0%80", "x" * 10_240,
           quote("' OR 1=1"), quote("<script>"), "[]", "{}", quote("[" * 2000)]
EVERY_ROUND, ONE_ROUND = range(len(ROTATED)), range(1)
UNKNOWN = "not_a_parameter"
# Django's lists read these besides their filters', and take any other parameter for a filter.
LIST_PARAMETERS = ["q", "o", "p", "all", "e", "_facets", "_popup"]
# Every other page: Django's add, change and delete pages read _popup and the list to return to, the
# console's pages their own (the tenant overview, what-if, replay, a chart's zoom and range, raw points).
PAGE_PARAMETERS = LIST_PARAMETERS + ["_changelist_filters", UNKNOWN, "action", "days", "series", "overrides",
                                     "since", "zoom", "range", "before"]
# The console's form fields: the tenant overview's actions, a series' mute, an anomaly's triage.
CONSOLE_FIELDS = ["since", "overrides", "series", "hours", "status", "note"]
# The what-if form's inputs: the engine's settings.
SETTINGS = list(DetectionConfig().as_dict())
END = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(minutes=30)


@pytest.fixture
def console(db):
    """A tenant with a row of every model the admin shows, its support user (--can-act), a superuser."""
    tenant = tenant_create(slug="fuzzed", name="Fuzzed")
    key = api_key_issue(tenant=tenant, scope="all", name="fuzz").plaintext
    alerting.channel_create(tenant=tenant, data={"name": "mail", "kind": "email", "email": "oncall@example.com"})
    points_ingest(tenant=tenant, events=steady_then_spike(count=400, end=END, step=timedelta(minutes=5)))
    detection_run(tenant=tenant, trigger="command")  # anomalies, an incident, its notification, the baseline
    series = Series.objects.for_tenant(tenant).get()
    series_mute(tenant=tenant, series_id=series.id, start=END, end=END + timedelta(hours=1), actor="test")
    alerting.silence_create(tenant=tenant, data={"service": "ec2", "start": END, "end": END + timedelta(hours=1)},
                            actor="test")
    detection_rule_create(tenant=tenant, data={"name": "rule", "metric_name": "cpu_utilization",
                                               "overrides": {"direction": "above"}})
    Group.objects.create(name="support")
    support, _ = support_user_assign(username="support", tenant=tenant, can_act=True)
    return {"superuser": User.objects.create_superuser("root", "root@example.com", "pw"), "support": support,
            "tenant": tenant, "key": key}


def _client(user) -> Client:
    client = Client(raise_request_exception=False)  # a 500 is an answer to count here, not an exception
    client.force_login(user)
    return client


def _request(user):
    request = RequestFactory().get("/admin/")
    request.user = user
    return request


def _ours(view) -> bool:
    return not view.__module__.startswith("django.")


def _our_model(model_admin) -> bool:
    return model_admin.model._meta.app_label in ("tenants", "metrics", "anomalies")  # not Django's users, groups


def _routes(user):
    """(model admin, route, view, url, object) of every URL of every registered model admin, on the
    first object of its model the user may see."""
    for model, model_admin in admin.site._registry.items():
        base = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        obj = model_admin.get_queryset(_request(user)).order_by("pk").first()
        for pattern in model_admin.get_urls():
            route = str(pattern.pattern)
            if "<" not in route or obj is not None:
                url = base + re.sub(r"<[^>]+>", str(obj.pk) if obj else "", route)
                yield model_admin, route, pattern.callback, url, obj


def _pages(user) -> dict[str, tuple[list[str], list[str], bool]]:
    """{url: (parameters sent together, parameters sent alone, every round?)} of every admin URL: every
    round where our code serves the page (an add form: and shows it to the user)."""
    pages = {"/admin/": (PAGE_PARAMETERS + ["_to_field"], [], False)}
    pages.update({f"/admin/{label}/": (PAGE_PARAMETERS + ["_to_field"], [], False)
                  for label in {model._meta.app_label for model in admin.site._registry}})
    for model_admin, route, view, url, _ in _routes(user):
        if route == "":
            taking_any, refusing = _filter_parameters(model_admin, user)
            pages[url] = (LIST_PARAMETERS + taking_any, [UNKNOWN, "_to_field"] + refusing, _our_model(model_admin))
        elif route in ("add/", "<path:object_id>/change/", "<path:object_id>/delete/") and not _ours(view):
            fields = [field.name for field in model_admin.model._meta.fields]  # an add form's initial values
            pages[url] = (PAGE_PARAMETERS + fields, ["_to_field"], route == "add/" and _may_add(model_admin, user))
        else:
            pages[url] = (PAGE_PARAMETERS + ["_to_field"], [], _ours(view))
        if route.endswith("overview/"):  # what-if and replay read their parameters only when asked for
            asked = [name for name in PAGE_PARAMETERS if name != "action"]
            pages.update({f"{url}?action=what_if": (asked + SETTINGS, [], True), f"{url}?action=replay": (asked, [], True)})
    return pages


def _may_add(model_admin, user) -> bool:
    """Whether an add form of ours is shown to the user (else it is a 403, whatever the query)."""
    return _our_model(model_admin) and model_admin.has_add_permission(_request(user))


def _filter_parameters(model_admin, user) -> tuple[list[str], list[str]]:
    """A list's filter parameters: those taking any value, and those refusing most with the admin's
    redirect to ?e=1 (Django's filters on booleans and dates, the date hierarchy)."""
    if not model_admin.has_view_permission(_request(user)):
        return [], []
    taking_any, refusing = [], []
    for spec in model_admin.get_changelist_instance(_request(user)).filter_specs:
        strict = isinstance(spec, (admin.BooleanFieldListFilter, admin.DateFieldListFilter))
        (refusing if strict else taking_any).extend(spec.expected_parameters())
    if model_admin.date_hierarchy:
        refusing += [f"{model_admin.date_hierarchy}__{part}" for part in ("year", "month", "day")]
    return taking_any, refusing


def _queries(together: list[str], alone: list[str], rounds):
    """Query strings: round k gives parameter i ROTATED[(i + k) % n]; those alone come one a request."""
    n = len(ROTATED)
    yield from ("&".join(f"{name}={ROTATED[(i + k) % n]}" for i, name in enumerate(together)) for k in rounds)
    yield from (f"{name}={ROTATED[(len(together) + j) % n]}" for j, name in enumerate(alone))


def _joined(url: str, query: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{query}"


@pytest.mark.parametrize("who", ["superuser", "support"])
def test_no_admin_page_answers_a_hostile_query_parameter_with_a_5xx(console, who):
    client, failures, asked = _client(console[who]), [], 0
    for url, (together, alone, ours) in _pages(console[who]).items():
        assert client.get(_joined(url, "&".join(f"{name}={NUL}" for name in together))).status_code == 400, url
        for query in _queries(together, alone, EVERY_ROUND if ours and who == "superuser" else ONE_ROUND):
            status = client.get(_joined(url, query)).status_code
            asked += 1
            if status >= 500:
                failures.append(f"{status} GET {_joined(url, query)[:300]}")
    assert asked > 150
    assert not failures, "\n".join(failures)


def _forms(user, tenant) -> list[tuple[str, str, list[str], bool]]:
    """(url, fields posted as they are, fields posted hostile, served by our code?) of every form of our
    admins: add and change forms (the console's triage and mute among them), a list's first action on a
    row (the rows alone: the middleware refuses them), the tenant overview's actions."""
    forms = []
    for model_admin, route, view, url, obj in _routes(user):
        if not _our_model(model_admin):
            continue
        request = _request(user)
        actions = model_admin.get_actions(request)
        if route == "" and actions and obj is not None:
            name, (action, _, _) = next(iter(actions.items()))
            forms += [(url, f"action={name}&_selected_action={obj.pk}", ["index", "select_across"], _ours(action)),
                      (url, f"action={name}", ["_selected_action"], _ours(action))]
        elif route in ("add/", "<path:object_id>/change/"):
            fields = list(model_admin.get_form(request, None if route == "add/" else obj).base_fields)
            ours = _may_add(model_admin, user) if route == "add/" else _ours(view)
            forms.append((url, "", fields + CONSOLE_FIELDS, ours))
    overview = f"/admin/tenants/tenant/{tenant.id}/overview/"
    return forms + [(overview, f"action={name}", CONSOLE_FIELDS, True) for name in ("run", "replay", "save_settings",
                                                                                   "save_for_metrics")]


@pytest.mark.parametrize("who", ["superuser", "support"])
def test_no_admin_form_answers_a_hostile_field_with_a_5xx(console, who):
    client, failures = _client(console[who]), []
    for url, fixed, fields, ours in _forms(console[who], console["tenant"]):
        rounds = EVERY_ROUND if ours and who == "superuser" else ONE_ROUND
        for body in [f"{fields[0]}={NUL}"] + list(_queries(fields, [], rounds)):
            response = client.post(url, "&".join(filter(None, [fixed, body])),
                                   content_type="application/x-www-form-urlencoded")
            if response.status_code >= 500 or (NUL in body and response.status_code != 400):
                failures.append(f"{response.status_code} POST {url} {fixed} {body[:300]}")
    assert not failures, "\n".join(failures)


def test_the_500s_the_pass_found_are_refused_or_served(console):
    client, tenant = _client(console["superuser"]), console["tenant"]
    channel, notification = Channel.objects.for_tenant(tenant).get(), Notification.objects.for_tenant(tenant).get()
    # Django lets the query string filter a list by any lookup on its fields, which PostgreSQL then met;
    # and computes the end of year 9999 in a date hierarchy outside its try (OverflowError, ValueError).
    for url in ("/admin/anomalies/channel/?name__regex=(", "/admin/anomalies/baseline/?checkpoint=x",
                "/admin/anomalies/anomaly/?ts__year__gt=99999999999", "/admin/auth/user/?username__regex=(",
                "/admin/anomalies/anomaly/?ts__year=9999", "/admin/anomalies/anomaly/?ts__year=9999&ts__month=12",
                "/admin/anomalies/anomaly/?ts__year=9999&ts__month=12&ts__day=31"):
        assert client.get(url)["Location"].endswith("?e=1"), url
    # Django's admin takes an empty _to_field for a field name on change and delete pages (FieldDoesNotExist).
    for page in ("change", "delete"):
        assert client.get(f"/admin/anomalies/channel/{channel.id}/{page}/?_to_field=").status_code == 400
    # Django puts an action's rows into pk__in as they come (ValueError).
    for selected in ("²", "9" * 5000):
        response = client.post("/admin/anomalies/anomaly/", {"action": "acknowledge", "_selected_action": selected})
        assert response.status_code == 400
    # Django's split date and time widget took text for a datetime (AttributeError): parsed, or left out.
    page = client.get("/admin/anomalies/silence/add/?start=2026-01-02T03:04:05&end=tomorrow").content.decode()
    assert 'value="2026-01-02"' in page and 'value="03:04:05"' in page
    # Every notification page: its delivery attempts were read unscoped (UnscopedQuery).
    assert client.get(f"/admin/anomalies/notification/{notification.id}/change/").status_code == 200
    # Django's JSON form field let 5,000 digits (ValueError) and deep nesting (RecursionError) through.
    for text in ("9" * 5000, "[" * 2000, '{"a": ' + "9" * 5000 + "}"):
        for url, field in ((f"/admin/tenants/tenant/{tenant.id}/change/", "limits"),
                           ("/admin/anomalies/silence/add/", "tags")):
            response = client.post(url, {field: text})
            assert response.status_code == 200 and "Enter a valid JSON." in response.content.decode(), (url, text)
    assert Silence.objects.for_tenant(tenant).count() == 1


def _api_operations(console) -> list[tuple[str, list[str]]]:
    """(path with its ids filled in, query parameters) of every GET operation of the API's schema."""
    tenant = console["tenant"]
    ids = {"anomaly_id": Anomaly.objects.for_tenant(tenant).first().id,
           "channel_id": Channel.objects.for_tenant(tenant).get().id,
           "rule_id": DetectionRule.objects.for_tenant(tenant).get().id,
           "incident_id": Incident.objects.for_tenant(tenant).first().id,
           "run_id": DetectionRun.objects.for_tenant(tenant).first().run_id,
           "series_id": Series.objects.for_tenant(tenant).get().id}
    operations = []
    for path, methods in SchemaGenerator().get_schema(request=None, public=True)["paths"].items():
        if "get" in methods:
            query = [p["name"] for p in methods["get"].get("parameters", []) if p["in"] == "query"]
            operations.append((path.format(**ids), query))
    return operations


def test_no_api_get_answers_a_hostile_query_parameter_with_a_5xx(console):
    """Each parameter alone beside a valid series_id, so that it reaches past the checks of the others."""
    api, failures = ApiClient(console["key"], raise_request_exception=False), []
    series_id = Series.objects.for_tenant(console["tenant"]).get().id
    for path, parameters in _api_operations(console):
        for name in parameters:
            for value in ROTATED + [NUL]:
                base = f"series_id={series_id}&" if "series_id" in parameters and name != "series_id" else ""
                response = api.get(f"{path}?{base}{name}={value}")
                if response.status_code >= 500:
                    failures.append(f"{response.status_code} GET {path}?{base}{name}={value[:100]}")
    assert not failures, "\n".join(failures)
