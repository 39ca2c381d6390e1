"""Prometheus' response envelope and value formats (web/api/v1/api.go), serialised straight to JSON.

Success: {"status":"success","data":…} (+ "warnings"). Error: {"status":"error","errorType":T,"error":msg} with
Prometheus' status for each type; client_golang reads the body of 400, 422 and 503 answers. Our own refusals
(401, 403, 429) keep the same shape, with error types named for them. Sample values are strings formatted as Go's
strconv.FormatFloat(v, 'f', -1, 64) (engine/format.py: shortest round-trip, no exponent); times are
seconds with up to three decimals."""
from __future__ import annotations

import numpy as np
import orjson
from django.http import HttpResponse

from promql.engine import Result
from promql.engine.format import format_value  # the engine's, which count_values' labels use too

# errorType -> HTTP status, as Prometheus answers (and, past its list, our own refusals).
STATUS = {
    "bad_data": 400, "execution": 422, "canceled": 503, "timeout": 503, "unavailable": 503, "internal": 500,
    "not_found": 404, "not_acceptable": 406,
    "unauthorized": 401, "forbidden": 403, "too_many_requests": 429, "method_not_allowed": 405,
    "payload_too_large": 413, "unsupported_media_type": 415,
}
_TYPE_OF_STATUS = {status: error_type for error_type, status in STATUS.items()
                   if error_type not in ("canceled", "timeout", "unavailable")} | {503: "unavailable"}


class PrometheusError(Exception):
    """An answer in Prometheus' error envelope."""

    def __init__(self, error_type: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.headers = headers or {}


def error_type_for(status: int) -> str:
    return _TYPE_OF_STATUS.get(status, "bad_data" if 400 <= status < 500 else "internal")


def success(data, warnings: list[str] | None = None) -> HttpResponse:
    body = {"status": "success", "data": data}
    if warnings:
        body["warnings"] = warnings
    return HttpResponse(orjson.dumps(body), content_type="application/json")


def error(error: PrometheusError) -> HttpResponse:
    body = {"status": "error", "errorType": error.error_type, "error": error.message}
    response = HttpResponse(orjson.dumps(body), status=STATUS[error.error_type], content_type="application/json")
    for name, value in error.headers.items():
        response[name] = value
    return response


def format_time(ts_ms: int) -> int | float:
    """Seconds as Prometheus writes them: an integer when whole, else up to three decimals."""
    return ts_ms // 1000 if ts_ms % 1000 == 0 else ts_ms / 1000


def format_values(values: np.ndarray) -> list[bytes]:
    """format_value of every value, as UTF-8: a range query may answer millions, so orjson writes them all at
    once (its shortest round-trip digits are repr's) and only what it writes otherwise is redone one by one."""
    texts = [text[:-2] if text.endswith(b".0") else text
             for text in orjson.dumps(values.tolist())[1:-1].split(b",")] if len(values) else []
    magnitude = np.abs(values)
    with np.errstate(invalid="ignore"):
        # The exponent forms (repr's bounds, wider than orjson's) and the non-finite (null to orjson).
        special = ~np.isfinite(values) | (magnitude >= 1e16) | ((magnitude < 1e-4) & (magnitude > 0))
    for index in np.flatnonzero(special).tolist():
        texts[index] = format_value(values[index]).encode()
    return texts


def format_times(ts_ms: np.ndarray) -> list[bytes]:
    if not (ts_ms % 1000).any():
        return orjson.dumps((ts_ms // 1000).tolist())[1:-1].split(b",") if len(ts_ms) else []
    return [orjson.dumps(format_time(t)) for t in ts_ms.tolist()]


def _matrix_series_json(series) -> bytes:
    points = b",".join([b'[%s,"%s"]' % point for point in zip(format_times(series.ts_ms), format_values(series.values))])
    return b'{"metric":%s,"values":[%s]}' % (orjson.dumps(dict(series.labels)), points)


def result_data(result: Result) -> dict:
    """A query's `data`: resultType and result, in the shape of each type."""
    if result.result_type == "scalar":
        ts_ms, value = result.scalar
        return {"resultType": "scalar", "result": [format_time(ts_ms), format_value(float(value))]}
    if result.result_type == "string":
        ts_ms, text = result.string
        return {"resultType": "string", "result": [format_time(ts_ms), text]}
    if result.result_type == "vector":
        rows = [{"metric": dict(s.labels), "value": [format_time(int(s.ts_ms[0])), format_value(float(s.values[0]))]}
                for s in result.series]
        return {"resultType": "vector", "result": rows}
    # Written here rather than by orjson from Python lists: a matrix may hold millions of points.
    return {"resultType": "matrix",
            "result": orjson.Fragment(b"[%s]" % b",".join(_matrix_series_json(s) for s in result.series))}
