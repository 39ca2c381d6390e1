"""The Prometheus HTTP API under /prometheus/api/v1/ through HTTP: labels read back as written, every matcher
kind, tenant isolation on every endpoint, Prometheus' envelope on every error, GET and POST forms with a
read-only key, and promtool against a live server."""
import base64
import json
import subprocess
import time
from datetime import datetime, timedelta, timezone

import cramjam
import pytest
from django.db import connection

from metrics.protocols.remote_write_pb2 import WriteRequest
from tenants.selectors import api_key_cache_clear
from tenants.services import api_key_issue
from tests.helpers import ApiClient, event

API = "/prometheus/api/v1"
NOW_MS = (int(time.time()) - 600) * 1000

# Label sets as Prometheus remote-writes them: one with job and instance, two without either.
WRITTEN = [
    {"__name__": "http_requests_total", "job": "api", "instance": "10.0.0.1:9090", "code": "200", "method": "GET"},
    {"__name__": "http_requests_total", "job": "api", "instance": "10.0.0.2:9090", "code": "500", "method": "POST"},
    {"__name__": "node_load1", "job": "node", "instance": "host-1:9100"},
    {"__name__": "queue_depth", "zone": "eu-1"},
    {"__name__": "queue_depth", "zone": "us-1", "job": "worker"},
]


def _basic(slug: str, key: str) -> dict:
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(f"{slug}:{key}".encode()).decode()}


def remote_write(client, label_sets, samples=((NOW_MS, 1.0),)):
    request = WriteRequest()
    for labels in label_sets:
        series = request.timeseries.add()
        for name, value in sorted(labels.items()):
            series.labels.add(name=name, value=value)
        for ts_ms, value in samples:
            series.samples.add(timestamp=ts_ms, value=value)
    body = bytes(cramjam.snappy.compress_raw(request.SerializeToString()))
    response = client.client.generic("POST", "/api/v1/write", body, content_type="application/x-protobuf",
                                     HTTP_CONTENT_ENCODING="snappy", **_basic(client.tenant.slug, client.key))
    assert response.status_code == 204, response.content


def _ok(response):
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "success" and response["Content-Type"] == "application/json"
    return body["data"]


def _series(client, *selectors, **params):
    return _ok(client.get(f"{API}/series", {"match[]": list(selectors), **params}))


@pytest.mark.django_db
def test_a_remote_written_label_set_reads_back_exactly_from_series(make_tenant):
    client = make_tenant("prom-a")
    remote_write(client, WRITTEN)
    assert _series(client, '{__name__=~".+"}') == sorted(WRITTEN, key=lambda labels: sorted(labels.items()))


@pytest.mark.django_db
def test_json_and_otlp_series_carry_the_documented_mapping(make_tenant):
    client = make_tenant("prom-json")
    tags = {"env": "dev", "http.method": "GET", "9lives": "x", "job": "batch", "instance": "i", "a.b": "1",
            "a_b": "2", "empty": ""}
    assert client.ingest([event(1.0, metric_name="cpu.utilization", service="ec2", resource_id="i-1",
                                tags=tags)]).status_code == 202
    otlp = {"resourceMetrics": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "billing"}},
        {"key": "host.name", "value": {"stringValue": "h1"}}]},
        "scopeMetrics": [{"metrics": [{"name": "queue.depth", "gauge": {"dataPoints": [
            {"timeUnixNano": str(NOW_MS * 1_000_000), "asDouble": 3.0,
             "attributes": [{"key": "http.route", "value": {"stringValue": "/x"}}]}]}}]}]}]}
    response = client.client.generic("POST", "/v1/metrics", json.dumps(otlp), content_type="application/json",
                                     HTTP_AUTHORIZATION=f"Bearer {client.key}")
    assert response.status_code == 200, response.content

    # Invalid characters become _, a leading digit gets key_, the labels our fields give win over tags (which
    # become exported_*), two tags that sanitise alike keep both values, and an empty value is no label.
    assert _series(client, '{__name__="cpu.utilization"}') == [{
        "__name__": "cpu.utilization", "job": "ec2", "instance": "i-1", "env": "dev", "http_method": "GET",
        "key_9lives": "x", "exported_job": "batch", "exported_instance": "i", "a_b": "1;2"}]
    assert _series(client, '{__name__="queue.depth"}') == [
        {"__name__": "queue.depth", "job": "billing", "instance": "h1", "http_route": "/x"}]
    assert _ok(client.get(f"{API}/label/exported_job/values")) == ["batch"]
    # Without match[], read from the catalogue in SQL: the same names (an empty tag is none).
    assert _ok(client.get(f"{API}/labels")) == sorted([
        "__name__", "job", "instance", "env", "http_method", "key_9lives", "exported_job", "exported_instance",
        "a_b", "http_route"])
    assert _ok(client.get(f"{API}/labels", {"match[]": '{__name__=~".+"}'})) == _ok(client.get(f"{API}/labels"))


@pytest.mark.django_db
@pytest.mark.parametrize("selector, expected", [
    ("http_requests_total", [0, 1]),
    ('{__name__="http_requests_total", code="500"}', [1]),
    ('http_requests_total{code!="500"}', [0]),
    ('{job=~"api|node"}', [0, 1, 2]),
    ('{job=~"a.*"}', [0, 1]),
    ('{__name__=~"http_.*|queue_depth"}', [0, 1, 3, 4]),
    ('{__name__=~"node_load1|queue_depth"}', [2, 3, 4]),  # a plain alternation, narrowed in SQL
    ('{__name__!~"http_.*", job=~".+"}', [2, 4]),
    ('queue_depth{job=""}', [3]),  # = "" selects series without the label
    ('queue_depth{job!=""}', [4]),
    ('{__name__=~".+", zone=~"eu-.*|"}', [0, 1, 2, 3]),  # a regex matching "" selects series without it too
    ('{__name__=~".+", instance="host-1:9100"}', [2]),
    ('{instance=~"10\\\\.0\\\\.0\\\\.[12]:9090", method!~"G.*"}', [1]),
    ('{job="unknown_service"}', []),  # the placeholder of an absent job is no job
    ('{code=~"2.."}', [0]),  # anchored: "200" only, not "1200"
    ('{code=~"0"}', []),
])
def test_every_matcher_kind_selects_as_prometheus_does(make_tenant, selector, expected):
    client = make_tenant("prom-m")
    remote_write(client, WRITTEN)
    assert _series(client, selector) == sorted((WRITTEN[k] for k in expected),
                                               key=lambda labels: sorted(labels.items()))


@pytest.mark.django_db
def test_a_catastrophic_regex_is_answered_fast(make_tenant):
    client = make_tenant("prom-redos")
    remote_write(client, [{"__name__": "paths", "path": "a" * 2000 + "!"}])
    started = time.monotonic()
    assert _series(client, '{path=~"(a+)+$"}', '{path=~"(a|aa)+b"}', '{path=~"(a*)*c"}') == []
    assert time.monotonic() - started < 2  # Python's re would take longer than the universe's age


@pytest.mark.django_db
def test_several_match_params_are_a_union_and_series_keep_their_window(make_tenant):
    client = make_tenant("prom-u")
    remote_write(client, WRITTEN[:3])
    remote_write(client, [WRITTEN[3]], samples=((NOW_MS - 3_600_000, 1.0),))
    assert len(_series(client, "http_requests_total", "node_load1", "node_load1")) == 3
    now_s = NOW_MS / 1000
    # Only series with points in [start, end] (queue_depth's one point is an hour older).
    assert _series(client, '{__name__=~".+"}', start=str(now_s - 60), end=str(now_s + 60)) == _series(
        client, "http_requests_total", "node_load1")
    assert _series(client, "queue_depth", start=str(now_s - 3700), end=str(now_s - 3500)) == [WRITTEN[3]]
    assert _series(client, "queue_depth", start="2026-01-01T00:00:00Z", end="2026-01-01T00:00:01.5Z") == []


@pytest.mark.django_db
def test_labels_and_label_values_are_sorted_and_narrowed_by_match(make_tenant):
    client = make_tenant("prom-l")
    assert _ok(client.get(f"{API}/labels")) == []
    remote_write(client, [WRITTEN[3]])
    assert _ok(client.get(f"{API}/labels")) == ["__name__", "zone"]
    assert _ok(client.get(f"{API}/label/job/values")) == []
    remote_write(client, WRITTEN)
    assert _ok(client.get(f"{API}/labels")) == ["__name__", "code", "instance", "job", "method", "zone"]
    assert _ok(client.get(f"{API}/labels", {"match[]": "queue_depth"})) == ["__name__", "job", "zone"]
    assert _ok(client.get(f"{API}/label/__name__/values")) == ["http_requests_total", "node_load1", "queue_depth"]
    assert _ok(client.get(f"{API}/label/job/values", {"match[]": '{__name__=~"http.*|queue_depth"}'})) == [
        "api", "worker"]
    assert _ok(client.get(f"{API}/label/nothing_here/values")) == []
    # A series without job or instance adds no value "unknown_service" / "unknown_resource".
    assert _ok(client.get(f"{API}/label/job/values")) == ["api", "node", "worker"]
    assert _ok(client.get(f"{API}/label/instance/values")) == ["10.0.0.1:9090", "10.0.0.2:9090", "host-1:9100"]
    assert _ok(client.get(f"{API}/label/zone/values")) == ["eu-1", "us-1"]


@pytest.mark.django_db
def test_metadata_buildinfo_and_what_grafana_asks_for(make_tenant):
    client = make_tenant("prom-meta")
    remote_write(client, WRITTEN)
    metadata = _ok(client.get(f"{API}/metadata"))
    assert metadata["http_requests_total"] == [{"type": "counter", "help": "", "unit": ""}]
    assert metadata["node_load1"] == [{"type": "gauge", "help": "", "unit": ""}]
    assert list(_ok(client.get(f"{API}/metadata", {"metric": "node_load1"}))) == ["node_load1"]
    assert len(_ok(client.get(f"{API}/metadata", {"limit": "2"}))) == 2
    assert _ok(client.get(f"{API}/status/buildinfo"))["version"] == "2.42.0"
    assert _ok(client.get(f"{API}/query_exemplars", {"query": "up"})) == []
    assert _ok(client.get(f"{API}/rules")) == {"groups": []}


@pytest.mark.django_db
def test_another_tenants_series_never_appear_on_any_endpoint(make_tenant):
    mine, theirs = make_tenant("prom-mine"), make_tenant("prom-theirs")
    remote_write(mine, [WRITTEN[2]])
    remote_write(theirs, [{"__name__": "secret_metric", "job": "theirs", "instance": "x", "leak": "yes"},
                          {**WRITTEN[2], "leak": "yes"}])
    answers = [
        _series(mine, '{__name__=~".+"}'), _series(mine, '{leak="yes"}'), _series(mine, "secret_metric"),
        _ok(mine.get(f"{API}/labels")), _ok(mine.get(f"{API}/label/__name__/values")),
        _ok(mine.get(f"{API}/label/job/values")), _ok(mine.get(f"{API}/label/leak/values")),
        _ok(mine.get(f"{API}/metadata")),
    ]
    text = json.dumps(answers)
    assert "secret" not in text and "theirs" not in text and "leak" not in text
    assert answers[0] == [WRITTEN[2]]


@pytest.mark.django_db
def test_post_forms_answer_as_get_with_a_read_only_key(make_tenant):
    client = make_tenant("prom-post")
    remote_write(client, WRITTEN)
    reader = ApiClient(api_key_issue(tenant=client.tenant, scope="read").plaintext, client.tenant)
    form = "match%5B%5D=node_load1&match%5B%5D=%7Bzone%3D%22eu-1%22%7D"
    for path, body, expected in [
        ("series", form, [WRITTEN[2], WRITTEN[3]]),
        ("labels", "match%5B%5D=node_load1", ["__name__", "instance", "job"]),
        ("label/job/values", "match%5B%5D=node_load1", ["node"]),
    ]:
        for headers in ({"HTTP_AUTHORIZATION": f"Bearer {reader.key}"}, _basic(client.tenant.slug, reader.key)):
            response = reader.client.generic("POST", f"{API}/{path}", body,
                                             content_type="application/x-www-form-urlencoded", **headers)
            assert _ok(response) == expected
    # The URL's parameters count too, as Go's FormValue reads them.
    response = reader.client.generic("POST", f"{API}/series?match[]=node_load1", "",
                                     content_type="application/x-www-form-urlencoded",
                                     HTTP_AUTHORIZATION=f"Bearer {reader.key}")
    assert _ok(response) == [WRITTEN[2]]


def _error(response, status: int, error_type: str, words: str = ""):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"status", "errorType", "error"}, body
    assert (body["status"], body["errorType"]) == ("error", error_type), body
    assert words in body["error"], body
    return response


@pytest.mark.django_db
@pytest.mark.parametrize("path, params, words", [
    ("series", {}, "no match[] parameter provided"),
    ("series", {"match[]": "up{"}, 'invalid parameter "match[]": parse error: '),
    ("series", {"match[]": "sum(up)"}, "is not a series selector"),
    ("series", {"match[]": "up offset 5m"}, "not a plain series selector"),
    ("series", {"match[]": '{job=""}'}, "at least one non-empty matcher"),
    ("series", {"match[]": '{job=~"("}'}, "parse error"),
    ("series", {"match[]": "up", "start": "yesterday"}, 'invalid parameter "start": cannot parse "yesterday" to a '
                                                        "valid timestamp"),
    ("series", {"match[]": "up", "end": "1e400"}, 'invalid parameter "end"'),
    ("labels", {"start": "2026-13-01T00:00:00Z"}, 'invalid parameter "start"'),
    ("label/__bad-name/values", {}, 'invalid label name: "__bad-name"'),
    ("label/0x/values", {}, "invalid label name"),
    ("metadata", {"limit": "many"}, 'invalid parameter "limit"'),
    ("query", {"query": "up", "time": "1e20"}, 'invalid parameter "time": cannot parse "1e20" to a valid timestamp'),
    ("query", {"query": "up", "time": "1e19"}, 'invalid parameter "time"'),
    ("query", {"query": "up", "time": "-1e19"}, 'invalid parameter "time"'),
    ("query", {"query": "up", "time": "1e300"}, 'invalid parameter "time"'),
    ("query", {"query": "up", "time": "9223372036854775807"}, 'invalid parameter "time"'),
    ("query_range", {"query": "up", "start": "1e20", "end": "1e20", "step": "1"}, 'invalid parameter "start"'),
    ("query", {"query": "up @ 1e20"}, "timestamp out of bounds for @ modifier"),
    ("query", {"query": "up offset 200000y"}, "duration out of range"),
    ("query", {"query": "ln(-1)"}, 'expected type instant vector in call to function "ln", got scalar'),
])
def test_bad_parameters_are_bad_data_in_the_envelope(make_tenant, path, params, words):
    client = make_tenant("prom-bad")
    _error(client.get(f"{API}/{path}", params), 400, "bad_data", words)


@pytest.mark.django_db
def test_refusals_keep_the_envelope_and_their_headers(make_tenant):
    client = make_tenant("prom-refused")
    response = _error(ApiClient(None).get(f"{API}/labels"), 401, "unauthorized", "API key")
    assert response["WWW-Authenticate"] == 'Bearer realm="api", Basic realm="api"'
    _error(ApiClient("cwd_wrong").get(f"{API}/labels"), 401, "unauthorized", "invalid")
    ingest_only = ApiClient(api_key_issue(tenant=client.tenant, scope="ingest").plaintext)
    _error(ingest_only.get(f"{API}/labels"), 403, "forbidden", "scope")
    _error(client.get(f"{API}/labels", HTTP_X_SCOPE_ORGID="someone-else"), 403, "forbidden", "X-Scope-OrgID")
    assert _ok(client.get(f"{API}/labels", HTTP_X_SCOPE_ORGID="prom-refused")) == []
    _error(client.client.generic("POST", f"{API}/labels", "{}", content_type="application/json",
                                 HTTP_AUTHORIZATION=f"Bearer {client.key}"), 415, "unsupported_media_type")
    _error(client.client.generic("DELETE", f"{API}/labels", HTTP_AUTHORIZATION=f"Bearer {client.key}"),
           405, "method_not_allowed")
    _error(client.get(f"{API}/no_such_endpoint"), 404, "not_found")
    _error(client.client.generic("POST", f"{API}/query", "query=" + "a" * 3_000_000,
                                 content_type="application/x-www-form-urlencoded",
                                 HTTP_AUTHORIZATION=f"Bearer {client.key}"), 413, "payload_too_large")
    client.tenant.limits = {"REQUESTS_PER_MINUTE": 2}
    client.tenant.save()
    api_key_cache_clear()
    statuses = [client.get(f"{API}/labels") for _ in range(4)]
    throttled = _error(statuses[-1], 429, "too_many_requests", "REQUESTS_PER_MINUTE")
    assert int(throttled["Retry-After"]) >= 1


@pytest.mark.django_db(transaction=True)
def test_a_statement_timeout_is_timeout_and_a_database_down_unavailable(make_tenant, settings):
    import psycopg2

    client = make_tenant("prom-slow")
    remote_write(client, WRITTEN)
    _ok(client.get(f"{API}/labels"))  # the key is cached now: the view meets what follows
    params = connection.get_connection_params()
    locker = psycopg2.connect(**{k: v for k, v in params.items() if k != "cursor_factory"})
    try:
        locker.cursor().execute("LOCK TABLE metrics_series IN ACCESS EXCLUSIVE MODE")
        with connection.cursor() as cursor:
            cursor.execute("SET statement_timeout = '300ms'")
        try:
            fresh = ApiClient(client.key, client.tenant, raise_request_exception=False)
            response = _error(fresh.get(f"{API}/series", {"match[]": "node_load1"}), 503, "timeout", "timed out")
            assert response["Retry-After"] == "5"
        finally:
            with connection.cursor() as cursor:
                cursor.execute("RESET statement_timeout")
    finally:
        locker.close()
    options, host = dict(connection.settings_dict.get("OPTIONS", {})), connection.settings_dict["HOST"]
    connection.close()
    connection.settings_dict["OPTIONS"] = {**options, "host": "/nonexistent-postgres"}
    connection.settings_dict["HOST"] = "/nonexistent-postgres"
    try:
        fresh = ApiClient(client.key, client.tenant, raise_request_exception=False)
        response = _error(fresh.get(f"{API}/labels"), 503, "unavailable", "database")
        assert response["Retry-After"] == "5"
        api_key_cache_clear()  # now the middleware's key lookup meets the outage, before any view
        response = _error(fresh.get(f"{API}/query", {"query": "up"}), 503, "unavailable", "database")
        assert response["Retry-After"] == "5"
    finally:
        connection.close()
        connection.settings_dict["OPTIONS"], connection.settings_dict["HOST"] = options, host


@pytest.mark.django_db(transaction=True)
def test_promtool_reads_labels_and_series_with_userinfo_credentials(live_server, make_tenant, prometheus_binaries):
    _, promtool = prometheus_binaries
    client = make_tenant("prom-tool")
    remote_write(client, WRITTEN)
    reader = api_key_issue(tenant=client.tenant, scope="read").plaintext
    server = live_server.url.replace("http://", f"http://{client.tenant.slug}:{reader}@") + "/prometheus"

    def promtool_query(*args):
        done = subprocess.run([promtool, "query", *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert promtool_query("labels", server, "job").split() == ["api", "node", "worker"]
    printed = promtool_query("series", server, "--match", "node_load1", "--match", 'queue_depth{zone="eu-1"}')
    assert printed.splitlines() == ['{__name__="node_load1", instance="host-1:9100", job="node"}',
                                    '{__name__="queue_depth", zone="eu-1"}']
    start = datetime.fromtimestamp(NOW_MS / 1000 - 60, timezone.utc)
    printed = promtool_query("series", server, "--match", "http_requests_total",
                             "--start", start.isoformat(), "--end", (start + timedelta(minutes=2)).isoformat())
    assert len(printed.splitlines()) == 2


# Samples every 15 s on whole minutes' grid, so a [1m] window at a whole-minute step holds a sample at each end
# and rate() is the slope exactly: 2/s for code 200, 0.5/s for code 500; node_load1 is 3 + k/4 at sample k.
BASE_MS = (int(time.time()) - 1200) // 60 * 60 * 1000
SAMPLES = 41  # ten minutes


def _stored_for_queries(client):
    counters = [WRITTEN[0], WRITTEN[1]]
    for labels, slope in zip(counters, (2.0, 0.5)):
        remote_write(client, [labels], samples=[(BASE_MS + k * 15_000, slope * 15 * k) for k in range(SAMPLES)])
    remote_write(client, [WRITTEN[2]], samples=[(BASE_MS + k * 15_000, 3 + k / 4) for k in range(SAMPLES)])


def _query_range(client, query, start_ms, end_ms, step="60", method="GET", **extra):
    form = {"query": query, "start": str(start_ms / 1000), "end": str(end_ms / 1000), "step": step, **extra}
    if method == "GET":
        return client.get(f"{API}/query_range", form)
    from urllib.parse import urlencode
    return client.client.generic("POST", f"{API}/query_range", urlencode(form),
                                 content_type="application/x-www-form-urlencoded",
                                 HTTP_AUTHORIZATION=f"Bearer {client.key}")


@pytest.mark.django_db
def test_query_range_answers_for_stored_series(make_tenant):
    client = make_tenant("prom-q")
    _stored_for_queries(client)
    start, end = BASE_MS + 120_000, BASE_MS + 600_000
    data = _ok(_query_range(client, "rate(http_requests_total[1m])", start, end))
    assert data["resultType"] == "matrix"
    by_code = {row["metric"]["code"]: row for row in data["result"]}
    assert by_code["200"]["metric"] == {"code": "200", "instance": "10.0.0.1:9090", "job": "api", "method": "GET"}
    assert by_code["200"]["values"] == [[(start + k * 60_000) // 1000, "2"] for k in range(9)]
    assert {v for _, v in by_code["500"]["values"]} == {"0.5"}

    data = _ok(_query_range(client, "sum by (job) (rate(http_requests_total[1m]))", start, end, step="2m"))
    assert data["result"] == [{"metric": {"job": "api"}, "values": [[(start + k * 120_000) // 1000, "2.5"]
                                                                     for k in range(5)]}]
    # The lookback takes the newest sample at or before each step (up to 5 minutes old): here every step's own.
    data = _ok(_query_range(client, "node_load1 * 2", BASE_MS, BASE_MS + 30_000, step="15s", method="POST"))
    assert data["result"] == [{"metric": {"instance": "host-1:9100", "job": "node"},
                               "values": [[BASE_MS // 1000, "6"], [BASE_MS // 1000 + 15, "6.5"],
                                          [BASE_MS // 1000 + 30, "7"]]}]
    # A scalar over a range is a matrix of one series without labels.
    data = _ok(_query_range(client, "1+1", start, start + 60_000))
    assert data["result"] == [{"metric": {}, "values": [[start // 1000, "2"], [start // 1000 + 60, "2"]]}]


@pytest.mark.django_db
def test_query_answers_each_result_type(make_tenant):
    client = make_tenant("prom-qi")
    _stored_for_queries(client)
    at = (BASE_MS + 300_500) / 1000
    data = _ok(client.get(f"{API}/query", {"query": "node_load1", "time": str(at)}))
    assert data == {"resultType": "vector", "result": [
        {"metric": {"__name__": "node_load1", "instance": "host-1:9100", "job": "node"}, "value": [at, "8"]}]}
    data = _ok(client.get(f"{API}/query", {"query": 'http_requests_total{code="500"}[30s]', "time": str(at)}))
    assert data["resultType"] == "matrix"
    # The window [t - 30s, t] holds the samples at 285 s and 300 s (k = 19, 20), with their own times.
    assert data["result"][0]["values"] == [[(BASE_MS + 285_000) // 1000, "142.5"], [(BASE_MS + 300_000) // 1000, "150"]]
    assert _ok(client.get(f"{API}/query", {"query": "1+1", "time": "100"})) == {"resultType": "scalar",
                                                                                "result": [100, "2"]}
    assert _ok(client.get(f"{API}/query", {"query": '"hi"', "time": "100"})) == {"resultType": "string",
                                                                                "result": [100, "hi"]}
    reader = ApiClient(api_key_issue(tenant=client.tenant, scope="read").plaintext, client.tenant)
    response = reader.client.generic("POST", f"{API}/query", f"query=node_load1&time={at}",
                                     content_type="application/x-www-form-urlencoded",
                                     HTTP_AUTHORIZATION=f"Bearer {reader.key}")
    assert _ok(response)["result"][0]["value"] == [at, "8"]
    # Without time, now: the samples are over five minutes old, so nothing is selected.
    assert _ok(client.get(f"{API}/query", {"query": "node_load1"}))["result"] == []


@pytest.mark.django_db
def test_queries_never_see_another_tenants_series(make_tenant):
    mine, theirs = make_tenant("prom-qa"), make_tenant("prom-qb")
    _stored_for_queries(theirs)
    remote_write(mine, [WRITTEN[2]], samples=[(BASE_MS, 1.0)])
    at = str(BASE_MS / 1000)
    assert _ok(mine.get(f"{API}/query", {"query": "node_load1", "time": at}))["result"][0]["value"][1] == "1"
    for query in ("http_requests_total", '{__name__=~".+"}', "count(node_load1)", 'absent(http_requests_total)'):
        text = json.dumps(_ok(mine.get(f"{API}/query", {"query": query, "time": at})))
        assert "http_requests_total" not in text and "10.0.0.1" not in text
    data = _ok(_query_range(mine, "count(node_load1)", BASE_MS, BASE_MS + 60_000))
    assert {v for _, v in data["result"][0]["values"]} == {"1"}


@pytest.mark.django_db
@pytest.mark.parametrize("endpoint, params, status, error_type, words", [
    ("query", {"query": "rate(x[5m]"}, 400, "bad_data", 'invalid parameter "query": '),
    ("query", {"query": ""}, 400, "bad_data", 'invalid parameter "query"'),
    ("query", {"query": "up", "time": "later"}, 400, "bad_data", 'invalid parameter "time"'),
    ("query", {"query": "up", "timeout": "soon"}, 400, "bad_data", 'invalid parameter "timeout"'),
    ("query_range", {"query": "up", "start": "1", "end": "0", "step": "1"}, 400, "bad_data",
     "end timestamp must not be before start time"),
    ("query_range", {"query": "up", "start": "0", "end": "1", "step": "0"}, 400, "bad_data",
     "zero or negative query resolution step"),
    ("query_range", {"query": "up", "start": "0", "end": "11001", "step": "1"}, 400, "bad_data",
     "exceeded maximum resolution of 11,000 points"),
    ("query_range", {"query": "up", "start": "0", "end": "1"}, 400, "bad_data", 'invalid parameter "step"'),
    ("query_range", {"query": "up", "end": "1", "step": "1"}, 400, "bad_data", 'invalid parameter "start"'),
    ("query_range", {"query": "up[5m]", "start": "0", "end": "1", "step": "1"}, 400, "bad_data",
     'invalid expression type "range vector" for range query'),
])
def test_bad_queries_are_bad_data_in_the_envelope(make_tenant, endpoint, params, status, error_type, words):
    client = make_tenant("prom-qbad")
    _error(client.get(f"{API}/{endpoint}", params), status, error_type, words)


@pytest.mark.django_db
def test_a_query_reading_too_many_samples_is_an_execution_error(make_tenant, settings):
    client = make_tenant("prom-qcap")
    _stored_for_queries(client)
    settings.CLOUDWATCHDOG = {**settings.CLOUDWATCHDOG, "PROMQL_MAX_SAMPLES": 60}
    start, end = BASE_MS + 120_000, BASE_MS + 600_000
    assert _ok(_query_range(client, "node_load1", start, end))["result"]  # 41 samples
    _error(_query_range(client, "http_requests_total", start, end), 422, "execution",
           "query processing would load too many samples into memory in query execution")


@pytest.mark.django_db(transaction=True)
def test_a_query_timeout_is_honoured_as_prometheus_timeout(make_tenant):
    import psycopg2

    client = make_tenant("prom-qslow")
    _stored_for_queries(client)
    _ok(client.get(f"{API}/labels"))  # the key is cached now
    params = connection.get_connection_params()
    locker = psycopg2.connect(**{k: v for k, v in params.items() if k != "cursor_factory"})
    try:
        locker.cursor().execute("LOCK TABLE metrics_series IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        response = _query_range(client, "node_load1", BASE_MS, BASE_MS + 60_000, timeout="0.3")
        _error(response, 503, "timeout", "query timed out in query execution")
        assert time.monotonic() - started < 5 and response["Retry-After"] == "5"
    finally:
        locker.close()
    # The timeout was the query's own: the next statement has the server's.
    assert _ok(_query_range(client, "node_load1", BASE_MS, BASE_MS + 60_000))["result"]


@pytest.mark.django_db
def test_thousands_of_match_selectors_are_accepted_and_a_form_past_the_limit_names_it(make_tenant):
    """Django refuses more than DATA_UPLOAD_MAX_NUMBER_FIELDS (1,000) fields as a bare 400; Prometheus takes them."""
    from urllib.parse import urlencode

    client = make_tenant("prom-many")
    remote_write(client, WRITTEN)
    many = [f'node_load1{{instance="host-{k}:9100"}}' for k in range(1, 1500)] + ["queue_depth"]  # 1,500

    def post(path, form):
        return client.client.generic("POST", f"{API}/{path}", urlencode(form, doseq=True),
                                     content_type="application/x-www-form-urlencoded",
                                     HTTP_AUTHORIZATION=f"Bearer {client.key}")

    series = _ok(post("series", {"match[]": many}))
    assert sorted(s["__name__"] for s in series) == ["node_load1", "queue_depth", "queue_depth"]  # host-1's
    assert "zone" in _ok(post("labels", {"match[]": many}))
    assert _ok(post("label/job/values", {"match[]": many})) == ["node", "worker"]
    assert len(_ok(client.get(f"{API}/series", {"match[]": many}))) == 3  # in the URL too

    from cloudwatchdog.middleware import PROMETHEUS_MAX_FORM_FIELDS
    too_many = "&".join(["match[]=up"] * (PROMETHEUS_MAX_FORM_FIELDS + 1))
    for response in (client.client.generic("POST", f"{API}/series", too_many,
                                           content_type="application/x-www-form-urlencoded",
                                           HTTP_AUTHORIZATION=f"Bearer {client.key}"),
                     client.client.get(f"{API}/labels?{too_many}", HTTP_AUTHORIZATION=f"Bearer {client.key}")):
        _error(response, 400, "bad_data", f"more than {PROMETHEUS_MAX_FORM_FIELDS:,}, this server's limit "
               "(PROMETHEUS_MAX_FORM_FIELDS)")
    # Our own API keeps Django's limit, and now says which it is.
    response = client.client.get("/api/v1/series?" + "&".join(["x=1"] * 1001), HTTP_AUTHORIZATION=f"Bearer {client.key}")
    assert response.status_code == 400 and "DATA_UPLOAD_MAX_NUMBER_FIELDS" in response.json()["detail"], response.content


def _locker():
    """A connection of its own (not this test's), as another client of PostgreSQL."""
    import psycopg2

    params = connection.get_connection_params()
    locker = psycopg2.connect(**{k: v for k, v in params.items() if k != "cursor_factory"})
    locker.autocommit = True
    return locker


@pytest.mark.django_db(transaction=True)
def test_a_timeout_during_the_points_copy_is_prometheus_timeout(make_tenant):
    """The points are read by a raw COPY (psycopg2's own call): its cancellation is 503 `timeout`, not 500."""
    client = make_tenant("prom-copyslow")
    _stored_for_queries(client)
    _ok(client.get(f"{API}/labels"))  # the key is cached now
    locker = _locker()
    try:
        with locker.cursor() as cursor:  # the series lookup passes; only the points' COPY waits
            cursor.execute("BEGIN; LOCK TABLE metrics_point IN ACCESS EXCLUSIVE MODE")
        fresh = ApiClient(client.key, client.tenant, raise_request_exception=False)
        for _ in range(3):
            response = _query_range(fresh, "sum(count_over_time(node_load1[1h]))", BASE_MS, BASE_MS + 60_000,
                                    step="15", timeout="0.2")
            _error(response, 503, "timeout", "query timed out in query execution")
            assert response["Retry-After"] == "5"
    finally:
        locker.close()
    assert _ok(_query_range(client, "node_load1", BASE_MS, BASE_MS + 60_000))["result"]


@pytest.mark.django_db(transaction=True)
def test_a_zero_or_negative_timeout_times_out_as_prometheus_does(make_tenant):
    """Prometheus runs the query under context.WithTimeout(0): it still parses it, then times out."""
    client = make_tenant("prom-t0")
    _stored_for_queries(client)
    for timeout in ("0", "0s", "-1", "0.0001"):
        _error(_query_range(client, "node_load1", BASE_MS, BASE_MS + 60_000, timeout=timeout), 503, "timeout",
               "query timed out in query execution")
        _error(client.get(f"{API}/query", {"query": "1+1", "timeout": timeout}), 503, "timeout")
        _error(client.get(f"{API}/query", {"query": "1+", "timeout": timeout}), 400, "bad_data", "parse error")
    _error(client.get(f"{API}/query", {"query": "1", "timeout": "soon"}), 400, "bad_data", '"timeout"')


@pytest.mark.django_db(transaction=True)
def test_the_database_gone_during_the_points_copy_is_unavailable_with_retry_after(make_tenant):
    """The request's server connection is cut while its COPY waits (what a PostgreSQL restart does to every
    open connection): 503 `unavailable` with Retry-After, not 500."""
    import threading

    from django.db import connections

    client = make_tenant("prom-copygone")
    _stored_for_queries(client)
    _ok(client.get(f"{API}/labels"))
    locker = _locker()
    answers = []

    def query():
        fresh = ApiClient(client.key, client.tenant, raise_request_exception=False)
        try:
            answers.append(_query_range(fresh, "node_load1", BASE_MS, BASE_MS + 60_000))
        finally:
            connections.close_all()

    try:
        with locker.cursor() as cursor:
            cursor.execute("BEGIN; LOCK TABLE metrics_point IN ACCESS EXCLUSIVE MODE")
        reader = threading.Thread(target=query)
        reader.start()
        with locker.cursor() as cursor:
            for _ in range(200):
                cursor.execute("SELECT pg_stat_clear_snapshot()")  # the lock's transaction would see one snapshot
                cursor.execute("SELECT pid FROM pg_stat_activity WHERE query LIKE 'COPY (%%' AND wait_event_type = "
                               "'Lock' AND pid <> pg_backend_pid()")
                waiting = cursor.fetchall()
                if waiting:
                    break
                time.sleep(0.05)
            assert waiting, "the query never reached its COPY"
            cursor.execute("SELECT pg_terminate_backend(%s)", waiting[0])
        reader.join(timeout=30)
    finally:
        locker.close()
    response = _error(answers[0], 503, "unavailable", "the database is unavailable")
    assert response["Retry-After"] == "5"


@pytest.mark.django_db(transaction=True)
def test_promtool_queries_instant_and_range(live_server, make_tenant, prometheus_binaries):
    _, promtool = prometheus_binaries
    client = make_tenant("prom-tool-q")
    _stored_for_queries(client)
    reader = api_key_issue(tenant=client.tenant, scope="read").plaintext
    server = live_server.url.replace("http://", f"http://{client.tenant.slug}:{reader}@") + "/prometheus"

    def promtool_query(*args):
        done = subprocess.run([promtool, "query", "-o", "json", *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    at = (BASE_MS + 300_000) / 1000
    [sample] = promtool_query("instant", "--time", str(at), server, "node_load1")
    assert sample["metric"]["job"] == "node" and sample["value"] == [at, "8"]
    rows = promtool_query("range", "--start", str(at - 120), "--end", str(at), "--step", "1m", server,
                          "sum(rate(http_requests_total[1m]))")
    assert rows == [{"metric": {}, "values": [[at - 120, "2.5"], [at - 60, "2.5"], [at, "2.5"]]}]


def _post_query(client, **form):
    from urllib.parse import urlencode
    return client.client.generic("POST", f"{API}/query", urlencode(form),
                                 content_type="application/x-www-form-urlencoded",
                                 HTTP_AUTHORIZATION=f"Bearer {client.key}")


@pytest.mark.django_db
def test_deep_queries_are_bad_data_and_the_deepest_allowed_is_answered_under_djangos_frames(make_tenant):
    client = make_tenant("prom-deep")
    remote_write(client, [WRITTEN[2]], samples=[(BASE_MS, 3.0)])
    at = str(BASE_MS / 1000)
    _error(_post_query(client, query="(" * 10_000 + "1" + ")" * 10_000, time=at), 400, "bad_data",
           "query nests 10000 deep: the limit is 256")
    _error(_post_query(client, query="+".join(["up"] * 500), time=at), 400, "bad_data", "the limit is 256")
    _error(_post_query(client, query="max_over_time(up[100y:1ms])", time=at), 422, "execution", "too many samples")
    # The most Python frames a level: a range function over a parenthesised subquery, 85 times (255 deep).
    deepest = "max_over_time((" * 85 + "node_load1" + ")[1m:1m])" * 85
    assert _ok(_post_query(client, query=deepest, time=at))["result"][0]["value"][1] == "3"
    assert _ok(_post_query(client, query="abs(" * 255 + "node_load1" + ")" * 255, time=at))["result"][0]["value"][1] == "3"
