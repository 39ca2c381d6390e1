"""Detection rules (per-metric settings): the API's CRUD, its refusals naming the field, tenant
isolation, the order rules combine in (detection_configs_for), the admin and the what-if preview."""
from datetime import datetime, timedelta, timezone

import pytest
from django.contrib.auth.models import User
from django.test import Client

from anomalies import selectors
from anomalies.console import reads
from anomalies.models import Anomaly, DetectionRule
from anomalies.services import detection_rule_create, tenant_detection_config_set
from metrics.models import Series
from metrics.services import points_ingest
from tenants.services import api_key_issue, support_user_assign
from tests.helpers import ApiClient, event, steady_then_spike

RULES = "/api/v1/detection-rules"
END = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(minutes=30)


def _patch(client, path, body):
    return client.client.patch(path, body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {client.key}")


def _delete(client, path):
    return client.client.delete(path, HTTP_AUTHORIZATION=f"Bearer {client.key}")


def _series(tenant, *, metric_name="cpu_utilization", resource_id="i-1", service="ec2", tags=None):
    points_ingest(tenant=tenant, events=[event(1.0, END, metric_name=metric_name, resource_id=resource_id,
                                               service=service, tags=tags if tags is not None else {"env": "prod"})])
    return Series.objects.for_tenant(tenant).get(metric_name=metric_name, resource_id=resource_id, service=service)


def test_a_rule_is_created_read_listed_changed_and_deleted_over_the_api(owner):
    _series(owner.tenant, resource_id="i-1")
    _series(owner.tenant, resource_id="i-2", tags={"env": "dev"})
    _series(owner.tenant, metric_name="memory_used", resource_id="i-1")
    created = owner.post(RULES, {"name": "cpu: only above", "metric_name": "cpu_utilization",
                                 "tags": {"env": "prod"}, "overrides": {"direction": "above", "residual_threshold": 8}})
    assert created.status_code == 201, created.content
    rule = created.json()
    assert rule["name"] == "cpu: only above" and rule["service"] == "" and rule["resource_id"] == ""
    assert rule["tags"] == {"env": "prod"} and rule["overrides"] == {"direction": "above", "residual_threshold": 8}
    assert rule["specificity"] == 2 and rule["series_matched"] == 1
    assert rule["created_at"].endswith("Z") and rule["updated_at"].endswith("Z")
    assert owner.get(f"{RULES}/{rule['id']}").json() == rule
    assert owner.get(RULES).json() == {"results": [rule]}

    changed = _patch(owner, f"{RULES}/{rule['id']}", {"tags": {}, "overrides": {"recovery_seconds": 1800}})
    assert changed.status_code == 200, changed.content
    body = changed.json()
    assert body["overrides"] == {"recovery_seconds": 1800}  # replaced whole, not merged
    assert body["name"] == "cpu: only above" and body["metric_name"] == "cpu_utilization"
    assert body["specificity"] == 1 and body["series_matched"] == 2

    assert _delete(owner, f"{RULES}/{rule['id']}").status_code == 204
    assert owner.get(f"{RULES}/{rule['id']}").status_code == 404
    assert owner.get(RULES).json() == {"results": []}


def test_a_series_answers_the_settings_it_runs_with_and_the_rules_that_made_them(owner):
    series = _series(owner.tenant)
    tenant_detection_config_set(tenant=owner.tenant, overrides={"sensitivity": 0.5})
    rule = owner.post(RULES, {"name": "cpu", "metric_name": "cpu_utilization",
                              "overrides": {"direction": "above"}}).json()
    answer = owner.get(f"/api/v1/series/{series.id}/detection-config")
    assert answer.status_code == 200
    body = answer.json()
    assert body["series_id"] == series.id and body["rules"] == [rule["id"]]
    assert body["config"]["direction"] == "above" and body["config"]["sensitivity"] == 0.5
    assert body["config"]["residual_threshold"] == 6.0


def test_reading_needs_scope_read_and_writing_scope_all(owner):
    rule = owner.post(RULES, {"name": "r", "overrides": {"direction": "above"}}).json()
    reader = ApiClient(api_key_issue(tenant=owner.tenant, scope="read").plaintext, owner.tenant)
    assert reader.get(RULES).status_code == 200
    assert reader.get(f"{RULES}/{rule['id']}").status_code == 200
    for response in (reader.post(RULES, {"name": "x", "overrides": {"direction": "below"}}),
                     _patch(reader, f"{RULES}/{rule['id']}", {"name": "y"}),
                     _delete(reader, f"{RULES}/{rule['id']}")):
        assert response.status_code == 403
        assert "scope 'read'" in response.json()["detail"]
    assert DetectionRule.objects.for_tenant(owner.tenant).get().name == "r"


def test_another_tenants_rule_is_a_404_for_every_method(owner, outsider):
    rule = owner.post(RULES, {"name": "mine", "overrides": {"direction": "above"}}).json()
    series = _series(owner.tenant)
    for response in (outsider.get(f"{RULES}/{rule['id']}"),
                     _patch(outsider, f"{RULES}/{rule['id']}", {"name": "theirs"}),
                     _delete(outsider, f"{RULES}/{rule['id']}"),
                     outsider.get(f"/api/v1/series/{series.id}/detection-config")):
        assert response.status_code == 404
        assert "mine" not in response.content.decode()
    assert outsider.get(RULES).json() == {"results": []}
    assert owner.get(f"{RULES}/{rule['id']}").json()["name"] == "mine"
    assert owner.get(f"{RULES}/99999999999999999999").status_code == 404


def test_series_matched_counts_only_the_tenants_own_series(owner, outsider):
    for client in (owner, outsider):
        _series(client.tenant, resource_id="i-1")
        _series(client.tenant, resource_id="i-2")
    rule = owner.post(RULES, {"name": "cpu", "metric_name": "cpu_utilization",
                              "overrides": {"direction": "above"}}).json()
    assert rule["series_matched"] == 2


@pytest.mark.parametrize("body, field, says", [
    ({"overrides": {"threshold": 9}}, "overrides", "unknown detection setting(s): threshold"),
    ({"overrides": {"direction": "up"}}, "overrides", "direction must be one of both, above, below"),
    ({"overrides": {"residual_threshold": "nan"}}, "overrides", "residual_threshold must be a finite number"),
    ({"overrides": {"recovery_seconds": 7 * 86_400 + 1}}, "overrides", "recovery_seconds must be at most 604800"),
    ({"overrides": {}}, "overrides", "at least one setting"),
    ({"overrides": {"\x00": 1}}, "overrides", "unknown detection setting"),
    ({"overrides": {"\ud800": 1}}, "overrides", "unknown detection setting"),
    ({"overrides": "above"}, "overrides", ""),
    ({"tags": ["env"]}, "tags", ""),
    ({"tags": {"env": {"nested": "prod"}}}, "tags", ""),
    ({"tags": {"": "prod"}}, "tags", "non-empty"),
    ({"tags": {"env\x00": "prod"}}, "tags", "NUL"),
    ({"tags": {"env": "prod\x00"}}, "tags", "Null characters"),
    ({"tags": {"\udc00": "prod"}}, "tags", "surrogates"),
    ({"tags": {"env": "\ud800"}}, "tags", "Surrogate characters"),
    ({"tags": {"e" * 1025: "prod"}}, "tags", "at most 1024"),
    ({"tags": {f"t{i}": "v" for i in range(101)}}, "tags", "has 101 tags; the most is 100"),
    ({"name": "n\x00"}, "name", "Null characters"),
    ({"name": "n" * 201}, "name", "200"),
    ({"metric_name": "m" * 1025}, "metric_name", "1024"),
    ({"resource_id": "\ud800"}, "resource_id", "Surrogate characters"),
])
def test_a_bad_rule_is_a_400_naming_the_field(owner, body, field, says):
    create = {"name": "r", "overrides": {"direction": "above"}, **body}
    response = owner.post(RULES, create)
    assert response.status_code == 400, response.content
    answer = response.json()
    assert field in answer["errors"] and answer["detail"].startswith(f"Invalid input: {field} ")
    assert says in " ".join(answer["errors"][field])
    rule = owner.post(RULES, {"name": "r", "overrides": {"direction": "above"}}).json()
    changed = _patch(owner, f"{RULES}/{rule['id']}", body)
    assert changed.status_code == 400 and field in changed.json()["errors"]
    assert owner.get(f"{RULES}/{rule['id']}").json()["overrides"] == {"direction": "above"}


def test_a_body_nested_five_thousand_deep_is_a_400(owner):
    nested = b'{"name": "deep", "overrides": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    response = owner.post(RULES, raw=nested)
    assert response.status_code == 400
    assert response.json()["errors"] == {"body": ["JSON parse error - nested too deeply"]}


def test_a_rule_at_every_limit_is_stored(owner):
    at_limits = {"name": "n" * 200, "service": "s" * 1024, "metric_name": "m" * 1024, "resource_id": "r" * 2048,
                 "tags": {**{f"t{i}": "v" for i in range(98)}, "k" * 1024: "v", "k": "v" * 2048},
                 "overrides": {"range_tolerance": 0, "recovery_seconds": 7 * 86_400, "direction": "below"}}
    response = owner.post(RULES, at_limits)
    assert response.status_code == 201, response.content
    assert {k: response.json()[k] for k in at_limits} == at_limits


def test_a_tenant_has_at_most_200_rules(owner):
    for i in range(199):
        detection_rule_create(tenant=owner.tenant, data={"name": f"r{i}", "overrides": {"direction": "above"}})
    assert owner.post(RULES, {"name": "r199", "overrides": {"direction": "above"}}).status_code == 201
    refused = owner.post(RULES, {"name": "r200", "overrides": {"direction": "above"}})
    assert refused.status_code == 400
    assert "DETECTION_RULES_PER_TENANT" in refused.json()["errors"]["detection_rules"][0]
    assert DetectionRule.objects.for_tenant(owner.tenant).count() == 200


def _rule(tenant, name, overrides, **matchers):
    return detection_rule_create(tenant=tenant, data={"name": name, "overrides": overrides, **matchers})


def test_the_tenants_overrides_come_first_then_rules_from_the_least_specific_to_the_most(owner):
    tenant = owner.tenant
    tenant_detection_config_set(tenant=tenant, overrides={"sensitivity": 0.5, "residual_threshold": 6.5})
    _rule(tenant, "every series", {"residual_threshold": 7, "cooldown_seconds": 100})
    _rule(tenant, "cpu prod", {"residual_threshold": 9}, metric_name="cpu_utilization", tags={"env": "prod"})
    _rule(tenant, "cpu", {"residual_threshold": 8, "direction": "above"}, metric_name="cpu_utilization")
    _rule(tenant, "i-1, made after cpu: wins the tie", {"direction": "below"}, resource_id="i-1")
    both = _series(tenant, resource_id="i-1", tags={"env": "prod"})
    cpu_dev = _series(tenant, resource_id="i-2", tags={"env": "dev"})
    cpu_dev_too = _series(tenant, resource_id="i-3", tags={"env": "dev"})
    memory = _series(tenant, metric_name="memory_used", resource_id="i-4")

    configs = selectors.detection_configs_for(tenant=tenant, series=[both, cpu_dev, cpu_dev_too, memory])
    assert (configs[both.id].residual_threshold, configs[both.id].direction) == (9, "below")
    assert (configs[cpu_dev.id].residual_threshold, configs[cpu_dev.id].direction) == (8, "above")
    assert (configs[memory.id].residual_threshold, configs[memory.id].direction) == (7, "both")
    assert {c.sensitivity for c in configs.values()} == {0.5}  # no rule names it: the tenant's
    assert {c.cooldown_seconds for c in configs.values()} == {100}
    assert configs[cpu_dev.id] is configs[cpu_dev_too.id]  # one config per set of matching rules
    assert selectors.detection_configs_for_ids(tenant=tenant, series_ids=[both.id, memory.id, 10**12]) == {
        both.id: configs[both.id], memory.id: configs[memory.id]}
    previewed = selectors.detection_configs_for(tenant=tenant, series=[memory], tenant_overrides={"sensitivity": 2})
    assert (previewed[memory.id].sensitivity, previewed[memory.id].residual_threshold) == (2, 7)
    assert [r.name for r in selectors.detection_rules_for(tenant=tenant, series=both)] == [
        "every series", "cpu", "i-1, made after cpu: wins the tie", "cpu prod"]


def test_configs_for_thousands_of_series_cost_one_query(owner, django_assert_num_queries):
    tenant = owner.tenant
    for i in range(50):
        _rule(tenant, f"metric {i}", {"residual_threshold": 6 + i / 10}, metric_name=f"m{i}")
    _rule(tenant, "prod", {"direction": "above"}, tags={"env": "prod"})
    many = [Series(id=i, tenant=tenant, service="ec2", metric_name=f"m{i % 60}", resource_id=f"i-{i}",
                   tags={"env": "prod" if i % 2 else "dev"}) for i in range(1, 5001)]
    with django_assert_num_queries(1):
        configs = selectors.detection_configs_for(tenant=tenant, series=many)
    assert len(configs) == 5000 and len({id(c) for c in configs.values()}) <= 2 * 60
    assert configs[3].residual_threshold == 6.3 and configs[3].direction == "above"
    assert configs[58].residual_threshold == 6.0 and configs[58].direction == "both"


def test_a_rule_watching_only_rises_keeps_its_metric_quiet_on_a_dip_and_other_metrics_alert(owner):
    owner.post(RULES, {"name": "latency: only above", "metric_name": "latency",
                       "overrides": {"direction": "above"}})
    for metric_name in ("latency", "errors"):
        events = steady_then_spike(count=2000, end=END, spike=0.0, metric_name=metric_name)  # ends in a dip
        for start in range(0, len(events), 1000):
            assert owner.ingest(events[start:start + 1000]).status_code == 202
    assert owner.post("/api/v1/process/run").status_code == 200
    assert owner.get("/api/v1/anomalies", {"metric_name": "errors"}).json()["results"]
    assert owner.get("/api/v1/anomalies", {"metric_name": "latency"}).json()["results"] == []


def test_the_what_if_preview_runs_each_series_with_its_own_rules_on_both_sides(owner):
    tenant = owner.tenant
    for metric_name in ("latency", "errors"):
        points_ingest(tenant=tenant, events=steady_then_spike(count=2000, end=END, metric_name=metric_name))
    _rule(tenant, "latency: only below", {"direction": "below"}, metric_name="latency")
    latency = Series.objects.for_tenant(tenant).get(metric_name="latency")
    errors = Series.objects.for_tenant(tenant).get(metric_name="errors")
    now = END + timedelta(minutes=30)
    previews = reads.what_if(tenant=tenant, series_list=[latency, errors], days=2,
                             proposed_overrides={"direction": "above"}, now=now)
    by_metric = {p.series.metric_name: p for p in previews}
    assert by_metric["latency"].current == [] and by_metric["latency"].proposed == []  # its rule wins both times
    assert by_metric["errors"].current and by_metric["errors"].proposed
    assert not Anomaly.objects.for_tenant(tenant).exists()  # a preview stores nothing


def _admin_client(user):
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


def _form(tenant, **fields):
    return {"tenant": str(tenant.id), "name": "cpu", "service": "", "metric_name": "cpu_utilization",
            "resource_id": "", "tags": "{}", "overrides": '{"direction": "above"}', **fields}


def test_the_admin_lists_rules_and_shows_a_bad_rule_in_the_form(make_tenant):
    tenant = make_tenant("ruled").tenant
    client = _admin_client(User.objects.create_superuser("root", password="x"))
    for fields, says in (({"overrides": '{"threshold": 9}'}, "unknown detection setting(s): threshold"),
                         ({"overrides": '{"direction": "sideways"}'}, "direction must be one of"),
                         ({"overrides": "{}"}, "This field is required"),
                         ({"tags": '{"env": {"a": "b"}}'}, "tag values must be strings"),
                         ({"tags": '{"env\\u0000": "prod"}'}, "must not contain NUL"),
                         ({"tags": '{"env": "\\ud800"}'}, "lone surrogates")):
        response = client.post("/admin/anomalies/detectionrule/add/", _form(tenant, **fields))
        assert response.status_code == 200, (fields, response.status_code)
        assert says in response.content.decode(), fields
    # A NUL in any form field is refused before the form is read.
    response = client.post("/admin/anomalies/detectionrule/add/", _form(tenant, name="a\x00b"))
    assert response.status_code == 400 and "NUL" in response.content.decode()
    assert not DetectionRule.objects.for_tenant(tenant).exists()
    saved = client.post("/admin/anomalies/detectionrule/add/", _form(tenant, tags='{"env": "prod"}'))
    assert saved.status_code == 302
    rule = DetectionRule.objects.for_tenant(tenant).get()
    assert (rule.metric_name, rule.tags, rule.overrides) == ("cpu_utilization", {"env": "prod"}, {"direction": "above"})
    listing = client.get("/admin/anomalies/detectionrule/").content.decode()
    assert "cpu_utilization" in listing and "env=prod" in listing and "direction=above" in listing
    changed = client.post(f"/admin/anomalies/detectionrule/{rule.id}/change/",
                          {k: v for k, v in _form(tenant, overrides='{"residual_threshold": 8}').items() if k != "tenant"})
    assert changed.status_code == 302
    rule.refresh_from_db()
    assert rule.overrides == {"residual_threshold": 8}


def test_the_admin_form_says_when_a_tenant_has_all_its_rules(make_tenant, settings):
    settings.CLOUDWATCHDOG = {**settings.CLOUDWATCHDOG, "DETECTION_RULES_PER_TENANT": 1}
    tenant = make_tenant("full").tenant
    _rule(tenant, "the one", {"direction": "above"})
    client = _admin_client(User.objects.create_superuser("root", password="x"))
    refused = client.post("/admin/anomalies/detectionrule/add/", _form(tenant))
    assert refused.status_code == 200 and "DETECTION_RULES_PER_TENANT" in refused.content.decode()
    assert DetectionRule.objects.for_tenant(tenant).count() == 1


def test_support_staff_change_rules_only_with_can_act_and_only_of_their_tenants(make_tenant):
    mine, theirs = make_tenant("mine").tenant, make_tenant("theirs").tenant
    their_rule = _rule(theirs, "theirs", {"direction": "above"})
    viewer, _ = support_user_assign(username="viewer", tenant=mine)
    actor, _ = support_user_assign(username="actor", tenant=mine, can_act=True)

    looking = _admin_client(viewer)
    assert looking.get("/admin/anomalies/detectionrule/").status_code == 200
    assert looking.post("/admin/anomalies/detectionrule/add/", _form(mine)).status_code == 403
    assert not DetectionRule.objects.for_tenant(mine).exists()

    acting = _admin_client(User.objects.get(id=actor.id))
    assert acting.post("/admin/anomalies/detectionrule/add/", _form(mine)).status_code == 302
    assert DetectionRule.objects.for_tenant(mine).get().overrides == {"direction": "above"}
    refused = acting.post("/admin/anomalies/detectionrule/add/", _form(theirs, name="sneaky"))
    assert refused.status_code == 200 and "Select a valid choice" in refused.content.decode()
    listing = acting.get("/admin/anomalies/detectionrule/").content.decode()
    assert "theirs" not in listing
    acting.post(f"/admin/anomalies/detectionrule/{their_rule.id}/change/", {"name": "mine now",
                                                                          "overrides": '{"direction": "below"}'})
    acting.post(f"/admin/anomalies/detectionrule/{their_rule.id}/delete/", {"post": "yes"})
    their_rule.refresh_from_db()
    assert their_rule.name == "theirs" and their_rule.overrides == {"direction": "above"}
