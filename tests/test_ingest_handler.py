"""The ingest paths' short middleware list (cloudwatchdog/wsgi.py) answers as the full one does, and the
authenticated no-op behind BENCH_ENDPOINTS (issue 26)."""
import contextlib
import io
import json
import sys

import pytest
from django.core import signals
from django.db import close_old_connections
from django.test import override_settings

from cloudwatchdog.wsgi import application, application_full
from tests.helpers import event


class _Unreadable(io.RawIOBase):
    def read(self, *args):
        raise AssertionError("the body was read")

    readline = readinto = read


@contextlib.contextmanager
def _in_test_transaction():
    # As Django's test client does: the per-request connection check would close the test's transaction.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


def call(handler, path: str, body: bytes = b"", *, key: str | None = None, content_type="application/json",
         stream=None, **headers) -> tuple[int, dict, bytes]:
    environ = {
        "REQUEST_METHOD": "POST", "PATH_INFO": path, "SCRIPT_NAME": "", "QUERY_STRING": "",
        "SERVER_NAME": "testserver", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "testserver",
        "CONTENT_TYPE": content_type, "CONTENT_LENGTH": str(len(body)), "REMOTE_ADDR": "127.0.0.1",
        "wsgi.input": stream or io.BytesIO(body), "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr,
        "wsgi.multithread": False, "wsgi.multiprocess": True, "wsgi.run_once": False, "wsgi.version": (1, 0),
        **headers,
    }
    if key:
        environ["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    started = {}

    def start_response(status, response_headers, exc_info=None):
        started["status"], started["headers"] = int(status.split()[0]), dict(response_headers)

    with _in_test_transaction():
        result = handler(environ, start_response)
        content = b"".join(result)
        result.close()
    return started["status"], started["headers"], content


def _same_answer(path: str, body: bytes = b"", **options):
    slim, full = call(application, path, body, **options), call(application_full, path, body, **options)
    assert "X-Frame-Options" not in slim[1] and "X-Frame-Options" in full[1]  # each handler served its own
    for name in ("Content-Type", "Content-Length", "Retry-After", "WWW-Authenticate", "X-Content-Type-Options"):
        assert slim[1].get(name) == full[1].get(name), name
    assert (slim[0], slim[2]) == (full[0], full[2])
    return slim


@pytest.mark.django_db
def test_the_ingest_paths_answer_through_the_short_list_as_through_the_full_one(make_tenant):
    writer, reader = make_tenant(), make_tenant(scope="read")
    batch = json.dumps({"events": [event(1.0)]}).encode()
    assert _same_answer("/api/v1/ingest/metrics", batch)[0] == 401
    assert _same_answer("/api/v1/ingest/metrics", batch, key="cwd_all_not-a-key")[0] == 401
    assert _same_answer("/api/v1/ingest/metrics", batch, key=reader.key)[0] == 403
    assert _same_answer("/api/v1/ingest/metrics", b"{", key=writer.key)[0] == 400
    assert _same_answer("/api/v1/ingest/metrics", b'{"events": [{"value": 1}]}', key=writer.key)[0] == 400
    assert _same_answer("/v1/metrics", b"", key=writer.key, content_type="text/plain")[0] == 415
    assert _same_answer("/otlp/v1/metrics", b"", content_type="application/x-protobuf")[0] == 401
    assert _same_answer("/api/v1/write", b"", key=writer.key,
                        content_type="application/x-protobuf;proto=io.prometheus.write.v2.Request")[0] == 415
    status, _, body = call(application, "/api/v1/ingest/metrics", batch, key=writer.key)
    assert (status, json.loads(body)) == (202, {"accepted": 1, "duplicates": 0, "rejected": []})
    status, _, body = call(application_full, "/api/v1/ingest/metrics", batch, key=writer.key)
    assert (status, json.loads(body)) == (202, {"accepted": 0, "duplicates": 1, "rejected": []})


@pytest.mark.django_db
def test_other_paths_keep_the_full_list(owner):
    status, headers, _ = call(application, "/api/v1/ingest/metrics/", b"{}", key=owner.key)
    assert "X-Frame-Options" in headers and status == 404


@pytest.mark.django_db
def test_the_no_op_is_404_unless_bench_endpoints(make_tenant):
    writer, reader = make_tenant(scope="ingest"), make_tenant(scope="read")
    unknown = call(application, "/api/v1/ingest/nothing", key=writer.key)
    status, _, body = call(application, "/api/v1/ingest/noop", key=writer.key)
    assert (status, body) == (404, unknown[2])
    with override_settings(BENCH_ENDPOINTS=True):
        body = json.dumps({"events": [event(1.0)] * 100}).encode()
        assert call(application, "/api/v1/ingest/noop", body, key=writer.key, stream=_Unreadable())[0] == 202
        assert call(application, "/api/v1/ingest/noop", body, stream=_Unreadable())[0] == 401
        assert call(application, "/api/v1/ingest/noop", body, key=reader.key, stream=_Unreadable())[0] == 403
