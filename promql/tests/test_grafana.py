"""docs/grafana: the provisioned data source is the one the README describes, and every expression of the
example dashboard (panels, annotations, variables) answers through our Prometheus API as Grafana sends it
(POST form, Basic auth with the tenant's slug and a read key) on a tenant with detected anomalies."""
import base64
import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlencode

import pytest
import yaml

from cloudwatchdog.timeutil import parse_iso, to_us
from metrics.services import points_ingest
from tenants.services import api_key_issue
from tests.helpers import event, steady_then_spike

DOCS = Path(__file__).resolve().parents[2] / "docs" / "grafana"
API = "/prometheus/api/v1"
END = datetime(2026, 1, 10, tzinfo=timezone.utc)
START_MS, END_MS = to_us(datetime(2026, 1, 9, 5, tzinfo=timezone.utc)) // 1000, to_us(END) // 1000 + 600_000
# What Grafana puts in for the dashboard's variables and its own, at a 1-minute step.
VARIABLES = {"$metric": "node_load1", "$instance": "host-1:9100", "$__interval": "1m"}


def _dashboard() -> dict:
    return json.loads((DOCS / "dashboard.json").read_text())


def _expressions(dashboard: dict) -> list[tuple[str, str, str]]:
    """(where, expression, step) of every PromQL expression in the dashboard."""
    found = [(f"panel {panel['title']!r} {target['refId']}", target["expr"], "60")
             for panel in dashboard["panels"] for target in panel["targets"]]
    found += [(f"annotation {a['name']!r}", a["expr"], a["step"]) for a in dashboard["annotations"]["list"]]
    return found


def _filled(text: str, variables: dict = VARIABLES) -> str:
    for variable, value in variables.items():
        text = text.replace(variable, value)
    assert "$" not in text, text
    return text


def _requests_counter() -> list[dict]:
    """A counter on host-1 gaining about 600 a minute (10 per second) for 2,600 minutes up to END."""
    total, events = 0.0, []
    for i in range(2600):
        total += 600 + (i % 7) * 3
        events.append(event(total, END - (2599 - i) * timedelta(minutes=1), metric_name="http_requests_total",
                            service="node", resource_id="host-1:9100", tags={}, kind="counter"))
    return events


@pytest.fixture
def grafana(make_tenant):
    """A tenant with two node_load1 series and a counter, detection run over them, and Grafana's Basic
    credentials."""
    owner = make_tenant()
    for instance in ("host-1:9100", "host-2:9100"):
        events = steady_then_spike(count=2600, end=END, metric_name="node_load1", service="node",
                                   resource_id=instance, tags={})
        for index in (1500, 1950):
            events[index]["value"] = 700.0
        points_ingest(tenant=owner.tenant, events=events)
    points_ingest(tenant=owner.tenant, events=_requests_counter())
    assert owner.post("/api/v1/process/run").status_code == 200
    key = api_key_issue(tenant=owner.tenant, scope="read").plaintext
    credentials = base64.b64encode(f"{owner.tenant.slug}:{key}".encode()).decode()
    return owner, {"HTTP_AUTHORIZATION": f"Basic {credentials}"}


def _post(owner, headers, endpoint, form) -> dict:
    response = owner.client.generic("POST", f"{API}/{endpoint}", urlencode(form, doseq=True),
                                    content_type="application/x-www-form-urlencoded", **headers)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "success", body
    return body["data"]


def test_the_data_source_is_grafanas_prometheus_at_our_prefix_with_basic_auth():
    [source] = yaml.safe_load((DOCS / "datasource.yaml").read_text())["datasources"]
    assert (source["type"], source["access"], source["url"]) == (
        "prometheus", "proxy", "http://${CWD_HOST}:8000/prometheus")
    assert source["basicAuth"] is True and source["basicAuthUser"] == "${CWD_TENANT}"
    assert source["secureJsonData"] == {"basicAuthPassword": "${CWD_READ_KEY}"}
    assert {k: source["jsonData"][k] for k in ("httpMethod", "prometheusType", "prometheusVersion")} == {
        "httpMethod": "POST", "prometheusType": "Prometheus", "prometheusVersion": "2.42.0"}
    dashboard = _dashboard()
    used = [dashboard["templating"]["list"], dashboard["annotations"]["list"], dashboard["panels"],
            [t for panel in dashboard["panels"] for t in panel["targets"]]]
    assert {item["datasource"]["uid"] for group in used for item in group} == {source["uid"]}


def test_every_dashboard_expression_answers_with_data_through_the_api(grafana):
    owner, headers = grafana
    expressions = _expressions(_dashboard())
    assert len(expressions) == 4
    answers = {}
    for where, expression, step in expressions:
        data = _post(owner, headers, "query_range", {"query": _filled(expression), "start": START_MS / 1000,
                                                     "end": END_MS / 1000, "step": step})
        assert data["resultType"] == "matrix" and data["result"], where
        assert all(series["values"] for series in data["result"]), where
        answers[where] = data["result"]
    # The band panel's fill refers to the series its one query answers, by their legend ({{__name__}}): the
    # value detection evaluated, named as the metric, and the band.
    panel = _dashboard()["panels"][0]
    [band] = [answer for where, answer in answers.items() if where.startswith(f"panel {panel['title']!r}")]
    assert sorted(series["metric"]["__name__"] for series in band) == ["cwd_band_lower", "cwd_band_upper",
                                                                       "cwd_expected", "node_load1"]
    fills = [p["value"] for o in panel["fieldConfig"]["overrides"] for p in o["properties"]
             if p["id"] == "custom.fillBelowTo"]
    assert fills == ["cwd_band_lower"]
    assert all(series["metric"]["instance"] == "host-1:9100" for series in band)
    # Anomaly annotations (the value is the time, in ms): exactly the instance's anomalies in the window.
    anomalies = {parse_iso(a["timestamp"]) // 1000 for a in owner.get("/api/v1/anomalies").json()["results"]
                 if a["resource_id"] == "host-1:9100" and START_MS <= parse_iso(a["timestamp"]) // 1000 <= END_MS}
    assert len(anomalies) == 3
    [marks] = answers["annotation 'Anomalies'"]
    assert {int(float(value)) for _, value in marks["values"]} == anomalies
    [incidents] = answers["annotation 'Incidents'"]
    assert {value for _, value in incidents["values"]} == {"0", "1"}


def test_the_band_panel_draws_a_counter_as_its_rate_per_second_inside_its_band(grafana):
    """A counter's band is of its rate per second: drawn raw, the counter (1.5 million) would sit far above a band
    around 10. The panel draws cwd_value, the rate detection evaluated, which the band holds."""
    owner, headers = grafana
    panel = _dashboard()["panels"][0]
    [target] = panel["targets"]
    counter = {**VARIABLES, "$metric": "http_requests_total"}
    window = {"start": START_MS / 1000, "end": END_MS / 1000, "step": "60"}
    drawn = {series["metric"]["__name__"]: {t: float(v) for t, v in series["values"]}
             for series in _post(owner, headers, "query_range", {"query": _filled(target["expr"], counter),
                                                                 **window})["result"]}
    assert sorted(drawn) == ["cwd_band_lower", "cwd_band_upper", "cwd_expected", "http_requests_total"]
    rates, lower, upper = drawn["http_requests_total"], drawn["cwd_band_lower"], drawn["cwd_band_upper"]
    assert all(9.9 <= rate <= 10.4 for rate in rates.values())  # 600 to 618 a minute
    inside = [lower[t] <= rate <= upper[t] for t, rate in rates.items() if t in upper]
    assert len(inside) > 1000 and all(inside)
    [raw] = _post(owner, headers, "query_range", {"query": 'http_requests_total{instance="host-1:9100"}',
                                                  **window})["result"]
    assert min(float(v) for _, v in raw["values"]) > 100 * max(upper.values())


def test_the_dashboards_variables_list_the_metric_and_its_instances(grafana):
    owner, headers = grafana
    queries = [variable["query"]["query"] for variable in _dashboard()["templating"]["list"]]
    assert queries == ["label_values(__name__)", 'label_values({__name__="$metric"}, instance)']
    for query in queries:
        # Grafana's label_values(name) reads label/<name>/values; label_values(selector, name) adds match[].
        selector, name = re.fullmatch(r"label_values\((?:(.+), )?(\w+)\)", query).groups()
        form = {"start": START_MS / 1000, "end": END_MS / 1000}
        if selector:
            form["match[]"] = _filled(selector)
        response = owner.client.get(f"{API}/label/{name}/values", form, **headers)
        assert response.status_code == 200, response.content
        values = response.json()["data"]
        assert (VARIABLES["$metric"] if name == "__name__" else VARIABLES["$instance"]) in values
    assert values == ["host-1:9100", "host-2:9100"]


def test_a_series_compared_with_its_band_through_the_api(grafana, make_tenant, settings):
    owner, headers = grafana
    window = {"start": START_MS / 1000, "end": END_MS / 1000, "step": "60"}
    [upper] = _post(owner, headers, "query_range", {"query": 'cwd_band_upper{cwd_metric="node_load1", '
                                                              'instance="host-2:9100"}', **window})["result"]
    assert upper["metric"] == {"__name__": "cwd_band_upper", "cwd_metric": "node_load1", "job": "node",
                               "instance": "host-2:9100"}
    band_at = {t: float(v) for t, v in upper["values"]}
    [stored] = _post(owner, headers, "query_range", {"query": 'node_load1{instance="host-2:9100"}', **window})["result"]
    above = {t: v for t, v in stored["values"] if t in band_at and float(v) > band_at[t]}
    assert len(above) >= 3  # the spikes, at least
    # The band has cwd_metric besides the series' labels: one-to-one matching must ignore it.
    [compared] = _post(owner, headers, "query_range", {
        "query": 'node_load1{instance="host-2:9100"} > ignoring(cwd_metric) cwd_band_upper{cwd_metric="node_load1"}',
        **window})["result"]
    assert dict(compared["values"]) == above
    assert _post(owner, headers, "query_range", {"query": 'node_load1 > cwd_band_upper{cwd_metric="node_load1"}',
                                                  **window})["result"] == []
    # Another tenant reads none of it.
    outsider = make_tenant()
    assert outsider.get(f"{API}/query_range", {"query": "cwd_band_upper", **window}).json()["data"]["result"] == []
    # Past the cap, Prometheus' bad_data naming it.
    settings.CLOUDWATCHDOG = {**settings.CLOUDWATCHDOG, "PROMQL_BAND_MAX_SERIES": 1}
    response = owner.client.generic("POST", f"{API}/query_range", urlencode({"query": "cwd_band_upper", **window}),
                                    content_type="application/x-www-form-urlencoded", **headers)
    assert response.status_code == 400
    assert response.json()["errorType"] == "bad_data" and "PROMQL_BAND_MAX_SERIES" in response.json()["error"]
