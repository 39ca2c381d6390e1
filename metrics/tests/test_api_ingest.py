"""POST /api/v1/ingest/metrics: status, body, partial acceptance, duplicates, limits, isolation."""
import json
from datetime import datetime, timedelta, timezone

import pytest

from tests.helpers import event, iso

URL = "/api/v1/ingest/metrics"


def test_ingest_accepts_the_sketch_example(owner):
    response = owner.ingest([event(180.0, "2025-01-01T00:00:00Z")])
    assert response.status_code == 202, response.content
    assert response.json() == {"accepted": 1, "duplicates": 0, "rejected": []}


def test_ingest_counts_a_resent_batch_as_duplicates_and_keeps_the_first_value(owner):
    batch = [event(1.0, "2025-01-01T00:00:00Z"), event(2.0, "2025-01-01T00:01:00Z")]
    assert owner.ingest(batch).json()["accepted"] == 2
    batch[0]["value"] = 99.0
    again = owner.ingest(batch).json()
    assert again == {"accepted": 0, "duplicates": 2, "rejected": []}
    read = owner.get("/api/v1/metrics/timeseries", {"service": "ec2", "metric_name": "cpu_utilization",
                                                     "start": "2024-12-31T00:00:00Z", "end": "2025-01-02T00:00:00Z"})
    assert [p["value"] for p in read.json()["series"][0]["points"]] == [1.0, 2.0]


def test_ingest_counts_a_repeat_inside_one_batch_as_a_duplicate_and_the_first_wins(owner):
    body = owner.ingest([event(1.0, "2025-01-01T00:00:00Z"), event(7.0, "2025-01-01T00:00:00+00:00")]).json()
    assert body == {"accepted": 1, "duplicates": 1, "rejected": []}
    read = owner.get("/api/v1/metrics/timeseries", {"series_id": _only_series_id(owner),
                                                     "start": "2024-12-31T00:00:00Z", "end": "2025-01-02T00:00:00Z"})
    assert read.json()["series"][0]["points"] == [{"timestamp": "2025-01-01T00:00:00Z", "value": 1.0}]


def _only_series_id(client):
    return client.get("/api/v1/series").json()["results"][0]["series_id"]


def test_ingest_keeps_valid_events_when_a_neighbour_is_nan(owner):
    raw = ('{"events": [' + json.dumps(event(1.0, "2025-01-01T00:00:00Z")) + ","
           + json.dumps(event(2.0, "2025-01-01T00:01:00Z")).replace("2.0", "NaN") + "]}").encode()
    response = owner.post(URL, raw=raw)
    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 1
    assert body["rejected"] == [{"index": 1, "errors": {"value": ["must be a finite number, not NaN"]}}]


NOW = datetime.now(timezone.utc)


@pytest.mark.parametrize(
    "change, field, reason",
    [
        ({"service": None}, "service", "this field is required"),
        ({"metric_name": 5}, "metric_name", "must be a string, not a number"),
        ({"value": "12"}, "value", "must be a number, not a string"),
        ({"value": True}, "value", "must be a number, not a boolean"),
        ({"value": float("inf")}, "value", "must be a finite number, not infinity"),
        ({"value": float("-inf")}, "value", "must be a finite number, not infinity"),
        ({"timestamp": "yesterday"}, "timestamp", "'yesterday' is not an ISO 8601 timestamp"),
        ({"timestamp": "2025-01-01T00:00:00"}, "timestamp", "needs a time zone: add 'Z' or an offset such as +00:00"),
        ({"timestamp": 1735689600}, "timestamp", "must be an ISO 8601 string with a UTC offset, not a number"),
        ({"timestamp": iso(NOW + timedelta(minutes=11))}, "timestamp", "is more than 10 minutes in the future"),
        ({"resource_id": "x" * 2049}, "resource_id", "is 2049 bytes long in UTF-8; the limit is 2048 (MAX_VALUE_BYTES)"),
        ({"tags": {"env": 1}}, "tags", "tag 'env' must be a string, not a number"),
        ({"tags": ["env"]}, "tags", "must be an object of string values, not a list"),
        ({"kind": "histogram"}, "kind", "must be one of gauge, counter"),
        ({"unit": "u" * 65}, "unit", "is 65 bytes long in UTF-8; the limit is 64 (the unit limit)"),
        ({"unit": 5}, "unit", "must be a string, not a number"),
    ],
)
def test_ingest_rejects_a_bad_event_by_index_naming_the_field(owner, change, field, reason):
    bad = event(1.0, "2025-01-01T00:00:00Z")
    for key, value in change.items():
        if value is None:
            bad.pop(key)
        else:
            bad[key] = value
    good = event(2.0, "2025-01-01T00:05:00Z")
    raw = json.dumps({"events": [good, bad]}).encode()  # json.dumps writes Infinity, as a careless client would
    response = owner.post(URL, raw=raw)
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["accepted"] == 1
    assert body["rejected"] == [{"index": 1, "errors": {field: [reason]}}]


def test_ingest_answers_400_when_no_event_is_valid(owner):
    response = owner.ingest([{"value": 1}])
    assert response.status_code == 400
    body = response.json()
    assert body["accepted"] == 0 and body["rejected"][0]["index"] == 0
    assert "detail" in body


@pytest.mark.parametrize(
    "raw, field",
    [
        (b"{not json", "body"),
        (b"[]", "events"),
        (b'{"events": {}}', "events"),
        (b'{"events": []}', "events"),
        (b'{"metrics": []}', "events"),
    ],
)
def test_ingest_answers_a_json_400_to_a_malformed_body(owner, raw, field):
    response = owner.post(URL, raw=raw)
    assert response.status_code == 400
    body = response.json()
    assert body["detail"] and field in body["errors"]


def test_ingest_answers_413_over_the_event_limit(owner, settings):
    owner.tenant.limits = {"MAX_EVENTS_PER_REQUEST": 3}
    owner.tenant.save()
    response = owner.ingest([event(float(i), f"2025-01-01T00:0{i}:00Z") for i in range(4)])
    assert response.status_code == 413
    assert response.json()["errors"] == {"events": ["at most 3 events per request"]}


def test_ingest_answers_413_over_the_body_limit(owner):
    owner.tenant.limits = {"MAX_BODY_BYTES": 1000}
    owner.tenant.save()
    response = owner.ingest([event(float(i), f"2025-01-01T00:0{i}:00Z") for i in range(9)])
    assert response.status_code == 413
    assert "1000 bytes" in response.json()["detail"]


def test_ingest_accepts_a_gzip_body(owner):
    response = owner.post(URL, {"events": [event(3.0, "2025-01-01T00:00:00Z")]}, gzip_body=True)
    assert response.status_code == 202
    assert response.json()["accepted"] == 1


def test_ingest_rejects_a_broken_gzip_body(owner):
    response = owner.post(URL, raw=b"\x1f\x8b\x08\x00garbage", HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 400
    assert response.json()["errors"] == {"body": ["not valid gzip"]}


def test_ingest_answers_429_with_retry_after_over_the_points_rate(owner):
    owner.tenant.limits = {"POINTS_PER_SECOND": 1, "POINTS_BURST": 1}
    owner.tenant.save()
    assert owner.ingest([event(1.0, "2025-01-01T00:00:00Z")]).status_code == 202
    response = owner.ingest([event(1.0, "2025-01-01T00:01:00Z")])
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    assert "1 points a second" in response.json()["detail"] and "POINTS_PER_SECOND" in response.json()["detail"]


def test_reads_over_the_request_rate_answer_429_naming_the_limit(owner):
    owner.tenant.limits = {"REQUESTS_PER_MINUTE": 2}
    owner.tenant.save()
    answers = [owner.get("/api/v1/series") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert int(answers[2]["Retry-After"]) >= 1
    assert answers[2].json()["detail"].startswith("Over this tenant's limit of 2 requests a minute (REQUESTS_PER_MINUTE)")


def test_ingest_refuses_points_older_than_the_tenant_retention(owner):
    owner.tenant.retention_days = 7
    owner.tenant.save()
    body = owner.ingest([event(1.0, NOW - timedelta(days=8)), event(1.0, NOW - timedelta(days=1))]).json()
    assert body["accepted"] == 1
    assert body["rejected"] == [{"index": 0, "errors": {"timestamp": ["is older than this tenant's retention of 7 days"]}}]


def test_ingest_with_a_read_key_is_forbidden(make_tenant):
    reader = make_tenant("reader", scope="read")
    response = reader.ingest([event(1.0, "2025-01-01T00:00:00Z")])
    assert response.status_code == 403
    assert "scope 'read'" in response.json()["detail"]


def test_ingest_stores_nothing_for_another_tenant(owner, outsider):
    owner.ingest([event(1.0, "2025-01-01T00:00:00Z")])
    assert outsider.get("/api/v1/series").json()["results"] == []
    assert outsider.ingest([event(5.0, "2025-01-01T00:00:00Z")]).json()["accepted"] == 1


def test_kind_and_unit_describe_a_new_series_and_the_first_write_wins(owner):
    first = event(1.0, "2025-01-01T00:00:00Z", metric_name="bytes_sent", kind="counter", unit="By")
    later = event(2.0, "2025-01-01T00:01:00Z", metric_name="bytes_sent", kind="gauge", unit="kBy")
    assert owner.ingest([first]).json()["accepted"] == 1
    assert owner.ingest([later]).json()["accepted"] == 1
    [series] = owner.get("/api/v1/series", {"metric_name": "bytes_sent"}).json()["results"]
    assert (series["kind"], series["unit"]) == ("counter", "By")
    assert owner.ingest([event(1.0, "2025-01-01T00:00:00Z")]).status_code == 202
    [plain] = owner.get("/api/v1/series", {"metric_name": "cpu_utilization"}).json()["results"]
    assert (plain["kind"], plain["unit"]) == ("gauge", "")


def test_a_gzip_body_of_several_members_is_read_whole_and_trailing_garbage_refused(owner):
    import gzip as gzip_module
    import json as json_module

    from tests.helpers import event

    events = [event(float(i), f"2026-01-01T00:0{i}:00Z") for i in range(4)]
    text = json_module.dumps({"events": events}).encode()
    half = len(text) // 2
    two_members = gzip_module.compress(text[:half]) + gzip_module.compress(text[half:])
    stored = owner.post("/api/v1/ingest/metrics", raw=two_members, HTTP_CONTENT_ENCODING="gzip")
    assert stored.status_code == 202 and stored.json()["accepted"] == 4, stored.content
    garbage = gzip_module.compress(text) + b"and then some"
    refused = owner.post("/api/v1/ingest/metrics", raw=garbage, HTTP_CONTENT_ENCODING="gzip")
    assert refused.status_code == 400 and "not valid gzip" in refused.json()["detail"]


def test_a_batch_larger_than_the_burst_is_413_naming_it_not_429_for_ever(owner):
    # A burst below the batch limit, saved around Tenant.clean() (which refuses it, as settings do).
    # A high rate, so the CPU each refusal is charged (INGEST_POINTS_PER_CPU_SECOND) is paid back at once.
    owner.tenant.limits = {"POINTS_PER_SECOND": 10_000_000, "POINTS_BURST": 2}
    owner.tenant.save()
    for _ in range(2):
        response = owner.ingest([event(float(i), f"2025-01-01T00:0{i}:00Z") for i in range(3)])
        assert response.status_code == 413, response.content
        assert "more than this tenant's burst of 2 (POINTS_BURST)" in response.json()["detail"]
    assert owner.ingest([event(1.0, "2025-01-01T00:00:00Z"), event(2.0, "2025-01-01T00:01:00Z")]).status_code == 202


def test_refused_points_create_no_series(owner):
    owner.tenant.max_point_age_days = 30
    owner.tenant.save()
    now = datetime.now(timezone.utc)
    response = owner.ingest([
        event(1.0, now - timedelta(days=40), resource_id="too-old"),
        event(1.0, now + timedelta(days=1), resource_id="in-the-future"),
        event(1e300, now, resource_id="too-large"),
        event(1.0, "yesterday", resource_id="no-time", service=" "),
        event(2.0, now, resource_id="kept"),
    ])
    assert response.status_code == 202 and response.json()["accepted"] == 1
    rejected = {item["index"]: item["errors"] for item in response.json()["rejected"]}
    assert set(rejected) == {0, 1, 2, 3}
    assert {"timestamp", "service"} <= set(rejected[3])  # a new identity is still judged
    assert [s["resource_id"] for s in owner.get("/api/v1/series").json()["results"]] == ["kept"]
