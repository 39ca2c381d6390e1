"""The agents' ways in: OTLP/HTTP metrics at /v1/metrics, Prometheus remote write at /api/v1/write.

Both answer in their protocol's terms, errors included (OTLP: a google.rpc.Status in the
request's encoding; remote write: a plain-text line Prometheus logs), with the status codes
their clients act on: exporters retry 429, 502, 503 and 504 only, Prometheus retries 5xx (and
429 when told to) and drops a batch answered 4xx.
"""
from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from google.protobuf import json_format
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView

from cloudwatchdog.errors import ApiError
from metrics.ingest import BodyError, events_count_check, gunzip, shown
from metrics.protocols import TooLarge, otlp, rejections_named, remote_write, summary
from metrics.services import ingest_counted, ingest_limits
from metrics.views import IngestMeter, _JsonOnly, body_read, ingest_metered, points_store
from tenants.models import ApiKey

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


class _AgentView(APIView):
    required_scope = ApiKey.SCOPE_INGEST
    reads_own_body = True  # with body_read, under the tenant's MAX_BODY_BYTES
    parser_classes = []  # each protocol reads its own body
    throttle_classes = []  # limited by the points bucket, as the JSON ingest is
    renderer_classes = [JSONRenderer]
    content_negotiation_class = _JsonOnly

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        detail = response.data.get("detail", "") if isinstance(response.data, dict) else str(response.data)
        answer = self.error_response(response.status_code, str(detail))
        for header in ("Retry-After", "WWW-Authenticate"):
            if header in response:
                answer[header] = response[header]
        return answer

    def error_response(self, status_code: int, detail: str) -> HttpResponse:
        raise NotImplementedError


def _both_encodings(descriptions: dict[int, str]) -> dict:
    return {(code, media): OpenApiResponse(OpenApiTypes.BINARY if media == PROTOBUF else OpenApiTypes.OBJECT, text)
            for code, text in descriptions.items() for media in (PROTOBUF, JSON)}


def _content_type(request) -> str:
    return request.META.get("CONTENT_TYPE", "").split(";")[0].strip().lower()


class OtlpMetricsView(_AgentView):
    @extend_schema(
        operation_id="otlp_metrics_export", summary="Ingest OTLP metrics",
        request={PROTOBUF: OpenApiTypes.BINARY, JSON: OpenApiTypes.OBJECT},
        responses=_both_encodings({
            200: "An ExportMetricsServiceResponse in the request's encoding; partial_success counts and names the "
                 "refused points (the others were stored).",
            400: "The body is not an ExportMetricsServiceRequest (a google.rpc.Status, as are all errors).",
            401: "No valid API key.",
            403: "The key may not ingest.",
            413: "The body or its point count is over the tenant's limit.",
            415: "Not application/x-protobuf or application/json, or an encoding other than gzip.",
            429: "Over the tenant's rate or its in-flight ingest requests (INGEST_INFLIGHT_PER_TENANT); retry after "
                 "Retry-After.",
            503: "Storage unavailable; retry after Retry-After.",
        }),
        description="OTLP/HTTP metrics receiver (OpenTelemetry SDK exporters and the Collector's otlphttp "
        "exporter): protobuf or JSON, optionally gzip. The mapping to series is in the README.",
    )
    def post(self, request):
        json_body = _content_type(request) == JSON
        if not json_body and _content_type(request) != PROTOBUF:
            raise ApiError(415, f"Send {PROTOBUF} or {JSON} (Content-Type), as OTLP/HTTP defines.")
        tenant = request.user.tenant
        with ingest_metered(tenant) as meter:
            limits = ingest_limits(tenant=tenant)
            raw = _gunzipped(body_read(request, limits), request, limits)
            try:
                converted = otlp.convert(otlp.decode(raw, json_body=json_body, limits=limits), limits=limits,
                                         tenant_id=tenant.id)
            except otlp.UndecodableBody as error:
                raise ApiError(400, str(error)) from None
            except TooLarge as error:
                raise ApiError(413, str(error)) from None
            refused, total = _converted_store(meter, limits, converted, protocol="otlp")
        response = ExportMetricsServiceResponse()
        if refused:
            response.partial_success.rejected_data_points = len(refused)
            response.partial_success.error_message = summary(refused, total=total, noun="data point")
        return self._message_response(200, response)

    def error_response(self, status_code: int, detail: str) -> HttpResponse:
        return self._message_response(status_code, Status(code=_grpc_code(status_code), message=detail))

    def _message_response(self, status_code: int, message) -> HttpResponse:
        if _content_type(self.request) == JSON:
            body = json_format.MessageToJson(message, indent=None)
            return HttpResponse(body, status=status_code, content_type=JSON)
        return HttpResponse(message.SerializeToString(), status=status_code, content_type=PROTOBUF)


class OtlpMetricsAliasView(OtlpMetricsView):
    """/otlp/v1/metrics, where a collector configured with an /otlp base (as Mimir and Grafana Cloud document)
    appends /v1/metrics: the same receiver, documented once (at /v1/metrics)."""

    @extend_schema(exclude=True)
    def post(self, request):
        return super().post(request)


def _grpc_code(status_code: int) -> int:
    # google.rpc.Code for each status we answer (the OTLP/HTTP specification maps them so).
    return {400: 3, 401: 16, 403: 7, 404: 5, 413: 3, 415: 3, 429: 8, 503: 14}.get(status_code, 13)


def _gunzipped(raw: bytes, request, limits) -> bytes:
    encoding = request.META.get("HTTP_CONTENT_ENCODING", "").strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding not in ("gzip", "x-gzip"):
        raise ApiError(415, f"Content-Encoding {encoding[:32]!r} is not supported: send gzip or none.")
    try:
        return gunzip(raw, limits.max_body_bytes)
    except BodyError as error:
        raise ApiError(error.status, error.detail) from None


def _converted_store(meter: IngestMeter, limits, converted, *, protocol: str) -> tuple[list[str], int]:
    """Store a protocol request's events under the JSON path's limits and rules; returns the sentences
    naming every refused point (in conversion or by validation) and how many points the request had."""
    tenant = meter.tenant
    refused = list(converted.refused)
    total = len(converted.events) + len(refused)
    result = None
    if converted.events:
        _count_check(converted.events, limits)
        meter.points_take(len(converted.events))
        result = points_store(tenant, converted.events, limits=limits, deltas=converted.deltas, keep_nan=True)
        refused += rejections_named(converted.events, result.rejected)
    ingest_counted(tenant=tenant, protocol=protocol, result=result, refused_in_conversion=len(converted.refused))
    return refused, total


def _count_check(events: list, limits) -> None:
    try:
        events_count_check(events, limits)
    except BodyError as error:
        raise ApiError(error.status, error.detail.replace("events", "points")) from None


class RemoteWriteView(_AgentView):
    @extend_schema(
        operation_id="prometheus_remote_write", summary="Ingest a Prometheus remote write",
        request={"application/x-protobuf": OpenApiTypes.BINARY},
        responses={
            204: OpenApiResponse(description="Every sample stored or already stored (NaN samples and staleness "
                                 "markers are kept for PromQL only; a marker of a series that does not exist is "
                                 "dropped and counted)."),
            **{(code, "text/plain"): OpenApiResponse(OpenApiTypes.STR, text) for code, text in {
                400: "A malformed body, or samples refused (named in the text; the others were stored). Prometheus "
                     "drops the batch and does not retry it.",
                401: "No valid API key (basic_auth: the tenant's slug and an API key).",
                403: "The key may not ingest.",
                413: "The body or its sample count is over the tenant's limit.",
                415: "A message other than remote write 1.0's (Content-Type proto= other than prometheus.WriteRequest, "
                     "as remote write 2.0 sends), refused before its body is read.",
                429: "Over the tenant's rate or its in-flight ingest requests (INGEST_INFLIGHT_PER_TENANT); retry "
                     "after Retry-After.",
                503: "Storage unavailable; retry after Retry-After.",
            }.items()},
        },
        description="Prometheus remote write 1.0 receiver: a snappy-compressed protobuf WriteRequest "
        "(Content-Encoding: snappy). Authenticate with basic_auth (tenant slug, API key) or a bearer token.",
    )
    def post(self, request):
        tenant = request.user.tenant
        with ingest_metered(tenant) as meter:
            _remote_write_1_check(request)
            limits = ingest_limits(tenant=tenant)
            raw = body_read(request, limits)
            try:
                converted = remote_write.convert(remote_write.decode(raw, limits=limits), limits=limits,
                                                 tenant_id=tenant.id)
            except remote_write.UndecodableBody as error:
                raise ApiError(400, str(error)) from None
            except (remote_write.BodyTooLarge, TooLarge) as error:
                raise ApiError(413, str(error)) from None
            refused, total = _converted_store(meter, limits, converted, protocol="remote_write")
        if refused:
            return self.error_response(400, summary(refused, total=total, noun="sample") +
                                       " (the other samples were stored)")
        return HttpResponse(status=204)

    def error_response(self, status_code: int, detail: str) -> HttpResponse:
        return HttpResponse(detail + "\n", status=status_code, content_type="text/plain; charset=utf-8")


REMOTE_WRITE_1_MESSAGE = "prometheus.WriteRequest"


def _remote_write_1_check(request) -> None:
    """415 for any message but 1.0's WriteRequest: a 2.0 body (io.prometheus.write.v2.Request) would otherwise
    decode as an empty 1.0 request, be answered 204 and be lost, which the 2.0 specification forbids."""
    parameters = request.META.get("CONTENT_TYPE", "").split(";")[1:]
    for name, _, value in (parameter.partition("=") for parameter in parameters):
        message = value.strip().strip('"')
        if name.strip().lower() == "proto" and message != REMOTE_WRITE_1_MESSAGE:
            raise ApiError(415, f"proto={shown(message)} is not supported: this receiver speaks remote write 1.0 "
                                f"only (Content-Type: {PROTOBUF};proto={REMOTE_WRITE_1_MESSAGE}). Prometheus 3: set "
                                f"protobuf_message: {REMOTE_WRITE_1_MESSAGE} in remote_write.")


class RemoteWritePushView(RemoteWriteView):
    """/api/v1/push, the path Mimir and Cortex use: the same receiver, documented once (at /api/v1/write)."""

    @extend_schema(exclude=True)
    def post(self, request):
        return super().post(request)
