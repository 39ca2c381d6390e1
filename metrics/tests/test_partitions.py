"""Partitions of metrics_point: the accepted time range, bounds from the catalog, bounded creation,
locks that do not stall other tenants (security review C1, C5e, C8)."""
import threading
from datetime import datetime, timedelta, timezone

import numpy as np
import psycopg2
import pytest
from django.core.management import call_command
from django.db import connection

from cloudwatchdog.timeutil import from_us, to_us
from metrics.services import points_ingest
from metrics.storage import partitions, points_maintain
from tests.helpers import event, iso

URL = "/api/v1/ingest/metrics"
NOW = datetime.now(timezone.utc)


def _bounds():
    with connection.cursor() as cursor:
        return {name: (from_us(start), from_us(end))
                for name, start, end in partitions._partition_bounds(cursor)}


def _covering(moment):
    return [name for name, (start, end) in _bounds().items() if start <= moment < end]


@pytest.mark.parametrize("timestamp", ["0001-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00", "1999-12-31T23:59:59Z",
                                       "1970-01-01T00:00:00Z"])
def test_a_point_before_the_earliest_timestamp_is_refused_by_index_and_creates_nothing(owner, timestamp):
    before = _bounds()
    response = owner.ingest([event(1.0, timestamp), event(2.0, NOW)])
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["accepted"] == 1
    assert body["rejected"] == [{"index": 0, "errors": {"timestamp": [
        "is before the earliest accepted timestamp, 2000-01-01T00:00:00Z (EARLIEST_TIMESTAMP)"]}}]
    assert set(_bounds()) - set(before) <= set(_covering(NOW))


def test_the_earliest_accepted_timestamp_is_stored(owner):
    assert owner.ingest([event(1.0, "2000-01-01T00:00:00Z")]).json()["accepted"] == 1
    assert _covering(datetime(2000, 1, 1, tzinfo=timezone.utc))


def test_a_tenants_maximum_age_refuses_older_points(owner):
    owner.tenant.max_point_age_days = 30
    owner.tenant.save()
    body = owner.ingest([event(1.0, NOW - timedelta(days=31)), event(1.0, NOW - timedelta(days=29))]).json()
    assert body["accepted"] == 1
    assert body["rejected"][0]["errors"] == {"timestamp": ["is older than this tenant's maximum age of 30 days"]}


def test_old_backfill_gets_one_partition_a_month_and_recent_backfill_one_a_week(owner):
    points_ingest(tenant=owner.tenant, events=[event(1.0, "2013-01-09T12:00:00Z"), event(2.0, "2013-01-30T12:00:00Z")])
    (name,) = _covering(datetime(2013, 1, 9, 12, tzinfo=timezone.utc))
    assert _bounds()[name] == (datetime(2013, 1, 1, tzinfo=timezone.utc), datetime(2013, 2, 1, tzinfo=timezone.utc))
    recent = NOW - timedelta(days=9)
    points_ingest(tenant=owner.tenant, events=[event(1.0, recent)])
    start, end = _bounds()[_covering(recent)[0]]
    assert end - start <= timedelta(days=7)


def test_a_new_partition_is_clipped_to_its_neighbours(owner):
    # A week partition created earlier inside an old month: the month's partition fills around it.
    with connection.cursor() as cursor:
        partitions._create(cursor, to_us(datetime(2014, 5, 14, tzinfo=timezone.utc)),
                           to_us(datetime(2014, 5, 20, tzinfo=timezone.utc)))
    partitions.forget_known_partitions()
    points_ingest(tenant=owner.tenant, events=[event(1.0, "2014-05-02T00:00:00Z"), event(2.0, "2014-05-25T00:00:00Z")])
    spans = sorted(_bounds()[n] for n in _bounds() if datetime(2014, 4, 30, tzinfo=timezone.utc) < _bounds()[n][0]
                   < datetime(2014, 6, 2, tzinfo=timezone.utc) or _bounds()[n][0] == datetime(2014, 5, 1, tzinfo=timezone.utc))
    assert [(s.day, e.month, e.day) for s, e in spans] == [(1, 5, 12), (12, 5, 19), (19, 6, 1)]
    assert owner.get("/api/v1/metrics/timeseries", {"series_id": _series_id(owner), "start": "2014-05-01T00:00:00Z",
                                                    "end": "2014-06-01T00:00:00Z"}).json()["series"][0]["points"] == [
        {"timestamp": "2014-05-02T00:00:00Z", "value": 1.0}, {"timestamp": "2014-05-25T00:00:00Z", "value": 2.0}]


def _series_id(client):
    return client.get("/api/v1/series").json()["results"][0]["series_id"]


def test_a_request_creates_at_most_the_limit_of_new_partitions_and_keeps_its_other_events(owner):
    owner.tenant.limits = {"MAX_NEW_PARTITIONS_PER_REQUEST": 3}
    owner.tenant.save()
    points_maintain(now=NOW)
    before = set(_bounds())
    months = [datetime(2001 + k // 12, 1 + k % 12, 15, tzinfo=timezone.utc) for k in range(10)]
    response = owner.ingest([event(1.0, NOW)] + [event(1.0, m) for m in months])
    body = response.json()
    assert response.status_code == 202
    assert len(set(_bounds()) - before) == 3
    assert body["accepted"] == 1 + 3
    assert [r["index"] for r in body["rejected"]] == list(range(4, 11))
    assert "MAX_NEW_PARTITIONS_PER_REQUEST" in body["rejected"][0]["errors"]["timestamp"][0]
    assert owner.ingest([event(1.0, m) for m in months[3:6]]).json()["accepted"] == 3  # a later request goes on


def test_ten_thousand_weeks_in_one_batch_create_a_bounded_number_of_partitions(owner):
    before = len(_bounds())
    stamps = [iso(datetime(2000, 1, 3, tzinfo=timezone.utc) + timedelta(weeks=k)) for k in range(1400)]
    body = owner.ingest([event(1.0, ts) for ts in stamps]).json()
    assert len(_bounds()) - before <= 12
    assert body["accepted"] + len(body["rejected"]) == len(stamps)


def test_bookkeeping_reads_bounds_from_the_catalog_whatever_the_names(owner):
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE metrics_point_p10101 (LIKE metrics_point)")
        cursor.execute("ALTER TABLE metrics_point ATTACH PARTITION metrics_point_p10101 "
                       "FOR VALUES FROM ('0001-12-25 BC') TO ('0001-01-01')")
    partitions.forget_known_partitions()
    report = points_maintain(now=NOW)  # the V1 bug: this failed with "time data '10101'" forever after
    assert report["failed_tenants"] == []
    call_command("maintain_points")
    assert owner.ingest([event(1.0, NOW + timedelta(minutes=5))]).json()["accepted"] == 1


def test_maintenance_creates_this_week_and_the_next_two(db):
    points_maintain(now=NOW)
    covered = partitions._KnownRanges()
    covered.load()
    moments = [NOW + timedelta(days=d) for d in range(0, 15)]
    assert covered.covered(np.array([to_us(m) for m in moments])).all()


@pytest.fixture
def other_connection(transactional_db):
    from django.conf import settings

    db = settings.DATABASES["default"]
    params = {"dbname": connection.settings_dict["NAME"], "user": db["USER"], "password": db["PASSWORD"] or None,
              "host": db["OPTIONS"].get("host") or db["HOST"] or None, "port": db["PORT"] or None}
    other = psycopg2.connect(**{k: v for k, v in params.items() if v is not None})
    yield other
    other.rollback()
    other.close()


def test_creating_a_partition_does_not_wait_for_other_tenants_writes_and_reads(owner, outsider, other_connection):
    points_ingest(tenant=outsider.tenant, events=[event(1.0, NOW)])
    with other_connection.cursor() as cursor:  # another tenant's open transaction, mid-write and mid-read
        cursor.execute("INSERT INTO metrics_point VALUES (%s, 1, now(), 1)", [outsider.tenant.id])
        cursor.execute("SELECT count(*) FROM metrics_point WHERE tenant_id = %s", [outsider.tenant.id])
        done = threading.Event()
        worker = threading.Thread(target=lambda: (owner.ingest([event(1.0, "2003-06-01T00:00:00Z")]), done.set()))
        worker.start()
        assert done.wait(10), "a new partition waited for another tenant's transaction"
        worker.join()
    assert _covering(datetime(2003, 6, 1, tzinfo=timezone.utc))


def test_a_partition_that_cannot_get_its_lock_answers_503_and_stores_nothing(owner, other_connection):
    with other_connection.cursor() as cursor:
        cursor.execute("LOCK TABLE metrics_point IN SHARE UPDATE EXCLUSIVE MODE")  # e.g. another DDL
        response = owner.ingest([event(1.0, "2004-06-01T00:00:00Z"), event(2.0, NOW)])
    other_connection.rollback()
    assert response.status_code == 503
    assert response["Retry-After"] == "2"
    assert "retry" in response.json()["detail"]
    retried = owner.ingest([event(1.0, "2004-06-01T00:00:00Z"), event(2.0, NOW)])
    assert retried.json() == {"accepted": 2, "duplicates": 0, "rejected": []}
