"""Authentication (a challenge urllib answers with Basic), scopes and X-Tenant-ID / X-Scope-OrgID on every endpoint."""
import json
import urllib.request

import cramjam
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from tenants.services import api_key_issue, api_key_revoke
from tests.helpers import ApiClient, event

READ_ENDPOINTS = ["/api/v1/series", "/api/v1/anomalies", "/api/v1/baselines",
                  "/api/v1/metrics/timeseries?service=ec2&metric_name=cpu_utilization&minutes=60"]


@pytest.mark.parametrize("path", READ_ENDPOINTS + ["/api/v1/process/runs/00000000-0000-0000-0000-000000000000"])
def test_a_read_without_a_key_is_401(db, path):
    response = ApiClient(None).get(path)
    assert response.status_code == 401
    assert response.json()["detail"]
    assert response["WWW-Authenticate"] == 'Bearer realm="api", Basic realm="api"'


class _ChallengeAnswered(urllib.request.HTTPBasicAuthHandler):
    """urllib's Basic handler (as collectd and curl --anyauth behave: credentials only after a 401), noting each
    challenge it answered."""

    def __init__(self, password_manager):
        super().__init__(password_manager)
        self.challenges = []

    def http_error_401(self, req, fp, code, msg, headers):
        self.challenges.append(headers["WWW-Authenticate"])
        return super().http_error_401(req, fp, code, msg, headers)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path, body, content_type, status", [
    ("/api/v1/series", None, None, 200),
    ("/api/v1/ingest/metrics", json.dumps({"events": [event()]}).encode(), "application/json", 202),
    ("/api/v1/write", bytes(cramjam.snappy.compress_raw(b"")), "application/x-protobuf", 204),
    ("/v1/metrics", ExportMetricsServiceRequest().SerializeToString(), "application/x-protobuf", 200),
])
def test_a_client_answering_the_challenge_with_basic_gets_in(live_server, make_tenant, path, body, content_type, status):
    client = make_tenant("collectd")
    passwords = urllib.request.HTTPPasswordMgrWithDefaultRealm()
    passwords.add_password(None, live_server.url, client.tenant.slug, client.key)
    handler = _ChallengeAnswered(passwords)
    request = urllib.request.Request(live_server.url + path, data=body, method="POST" if body is not None else "GET")
    if content_type:
        request.add_header("Content-Type", content_type)
    with urllib.request.build_opener(handler).open(request, timeout=30) as response:
        assert response.status == status
    assert handler.challenges == ['Bearer realm="api", Basic realm="api"']


@pytest.mark.parametrize("path", ["/api/v1/ingest/metrics", "/api/v1/process/run"])
def test_a_write_with_a_made_up_key_is_401(db, path):
    response = ApiClient("cwd_all_0123456789abcdef0123456789abcdef").post(path, {"events": [event()]})
    assert response.status_code == 401
    assert response.json() == {"detail": "The API key is invalid or revoked."}


def test_a_revoked_key_is_401(owner):
    api_key_revoke(tenant=owner.tenant, api_key_id=owner.tenant.apikey_set.get().id)
    assert owner.get("/api/v1/series").status_code == 401


@pytest.mark.parametrize("header", ["X-Tenant-ID", "X-Scope-OrgID"])
@pytest.mark.parametrize("path", READ_ENDPOINTS)
def test_a_tenant_header_naming_another_tenant_is_403(owner, outsider, path, header):
    meta = "HTTP_" + header.upper().replace("-", "_")
    response = owner.get(path, **{meta: outsider.tenant.slug})
    assert response.status_code == 403
    assert response.json()["detail"] == f"{header} names a tenant this API key does not belong to."
    assert owner.get(path, **{meta: owner.tenant.slug}).status_code == 200


@pytest.mark.parametrize("path", ["/api/v1/ingest/metrics", "/api/v1/write", "/v1/metrics"])
@pytest.mark.parametrize("header", ["HTTP_X_TENANT_ID", "HTTP_X_SCOPE_ORGID"])
def test_a_tenant_header_naming_another_tenant_cannot_ingest(owner, outsider, header, path):
    response = owner.client.generic("POST", path, b"{}", content_type="application/json",
                                    HTTP_AUTHORIZATION=f"Bearer {owner.key}", **{header: outsider.tenant.slug})
    assert response.status_code == 403
    assert outsider.get("/api/v1/series").json()["results"] == []


@pytest.mark.parametrize("path", READ_ENDPOINTS)
def test_an_ingest_only_key_cannot_read(make_tenant, path):
    agent = make_tenant("agent", scope="ingest")
    response = agent.get(path)
    assert response.status_code == 403
    assert response.json()["detail"] == "This API key has scope 'ingest'; this call needs 'read'."


def test_a_read_key_reads(make_tenant):
    assert make_tenant("dashboard", scope="read").get("/api/v1/series").status_code == 200


def test_keys_are_stored_hashed_and_their_prefix_shows_the_scope(owner):
    issued = api_key_issue(tenant=owner.tenant, scope="ingest")
    assert issued.plaintext.startswith("cwd_ingest_")
    assert issued.api_key.prefix == issued.plaintext[: len(issued.api_key.prefix)]
    assert issued.plaintext not in (issued.api_key.key_hash, issued.api_key.prefix)


def test_authenticated_use_is_recorded(owner):
    owner.get("/api/v1/series")
    assert owner.tenant.apikey_set.get().last_used_at is not None
