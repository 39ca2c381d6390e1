"""HTTP endpoints of metrics: ingest, series discovery, time-series reads."""
import time
from contextlib import contextmanager

import orjson
from django.conf import settings
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from cloudwatchdog.api import cursor_id, keyset_page, query_params, step_check, window
from cloudwatchdog.errors import ApiError, not_found_json
from cloudwatchdog.schema import ErrorSerializer
from metrics import selectors, serializers, storage
from metrics.ingest import BodyError, parse_body
from metrics.services import IngestResult, ingest_admit, ingest_counted, ingest_finish, ingest_limits, points_ingest
from tenants.models import ApiKey


class _JsonOnly(BaseContentNegotiation):
    """Ingest answers JSON whatever the client accepts: no Accept header parsing on the hot path."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


def body_read(request, limits) -> bytes:
    """The raw request body (chunked ones too: cloudwatchdog.middleware), refused (413) when it is
    declared or turns out over the tenant's limit."""
    too_large = ApiError(413, f"The request body is over this tenant's limit of {limits.max_body_bytes} bytes "
                              "(MAX_BODY_BYTES).")
    declared = request.META.get("CONTENT_LENGTH")
    if declared and declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise too_large
    raw = request._request.read(limits.max_body_bytes + 1)
    if len(raw) > limits.max_body_bytes:
        raise too_large
    return raw


class IngestMeter:
    """One admitted ingest request's points, charged with its CPU when it ends (ingest_metered)."""

    def __init__(self, tenant):
        self.tenant = tenant
        self.points = 0

    def points_take(self, points: int) -> None:
        """Count the request's points (charged when it ends, off its path); 413 when they are more than the
        tenant's burst, without a Redis call."""
        burst = self.tenant.limit("POINTS_BURST")
        if points > burst:
            # A 429 would be retried for ever: the bucket never holds more than the burst. Settings and
            # Tenant.clean() refuse a burst below MAX_EVENTS_PER_REQUEST; a row saved around clean() lands here.
            raise ApiError(413, f"The request has {points} points, more than this tenant's burst of {burst} "
                                "(POINTS_BURST), so it could never be accepted; send at most that many a request.",
                           {"events": [f"at most {burst} points per request (POINTS_BURST)"]})
        self.points = points


@contextmanager
def ingest_metered(tenant):
    """Admit an ingest request before its body is read (429 with Retry-After when the tenant has
    INGEST_INFLIGHT_PER_TENANT requests in flight, is out of request tokens or its points bucket is in
    debt), and however it ends free its slot and charge its points or CPU, off its path, so 400s and 413s
    count against the tenant's rates too."""
    admission = ingest_admit(tenant=tenant)
    if admission.refusal == "inflight":
        raise _over_inflight(tenant)
    if admission.refusal:
        raise _over_rate(tenant, admission.wait)
    began = time.thread_time()
    meter = IngestMeter(tenant)
    try:
        yield meter
    finally:
        ingest_finish(tenant=tenant, slot=admission.slot, cpu_seconds=time.thread_time() - began, points=meter.points)


def _over_inflight(tenant) -> ApiError:
    return ApiError(429, f"This tenant already has {tenant.limit('INGEST_INFLIGHT_PER_TENANT')} ingest requests in "
                         "flight, its share of the servers (INGEST_INFLIGHT_PER_TENANT); retry in 1 second.",
                    headers={"Retry-After": "1"})


def _over_rate(tenant, wait: float) -> ApiError:
    return ApiError(429, f"Over this tenant's rate limits ({tenant.limit('POINTS_PER_SECOND')} points a second, "
                         f"bursts of {tenant.limit('POINTS_BURST')}: POINTS_PER_SECOND, POINTS_BURST; "
                         f"{tenant.limit('REQUESTS_PER_MINUTE')} requests a minute: REQUESTS_PER_MINUTE); "
                         f"retry in {int(wait) + 1} seconds.",
                    headers={"Retry-After": str(int(wait) + 1)})


def points_store(tenant, events: list, *, limits, deltas: list[int] | None = None,
                 keep_nan: bool = False) -> IngestResult:
    """points_ingest, with storage being prepared answered 503 (nothing was stored, retry soon)."""
    try:
        return points_ingest(tenant=tenant, events=events, deltas=deltas, keep_nan=keep_nan, limits=limits)
    except storage.PartitionsBusy:
        raise ApiError(503, "Storage for these timestamps is being prepared; retry in a few seconds (nothing was "
                       "stored).", headers={"Retry-After": "2"}) from None


class IngestView(APIView):
    required_scope = ApiKey.SCOPE_INGEST
    reads_own_body = True  # with body_read, under the tenant's MAX_BODY_BYTES
    parser_classes = []  # the body is read and parsed by the hot path itself
    throttle_classes = []  # ingest is limited by its admission (ingest_metered), one Redis call per request
    renderer_classes = [JSONRenderer]
    content_negotiation_class = _JsonOnly

    @extend_schema(
        operation_id="ingest_metrics", summary="Ingest metric points",
        request={"application/json": serializers.IngestRequestSerializer},  # parser_classes is empty: say the type
        responses={
            202: serializers.IngestResponseSerializer,
            400: OpenApiResponse(ErrorSerializer, "No valid event (the body then also has accepted, duplicates and "
                                 "rejected), or the body is not an events object."),
            413: OpenApiResponse(ErrorSerializer, "The body or the event count is over the tenant's limit."),
            429: OpenApiResponse(ErrorSerializer, "Over the tenant's request or points rate, or its in-flight ingest "
                                 "requests (INGEST_INFLIGHT_PER_TENANT); retry after Retry-After."),
            503: OpenApiResponse(ErrorSerializer, "PostgreSQL is unavailable, or storage for a new time range is "
                                 "being prepared; nothing was stored, retry after Retry-After."),
        },
        description="Store a batch of events (JSON, or gzip with Content-Encoding: gzip). Valid events are "
        "stored even when others are rejected; accepted + duplicates + len(rejected) = number of events.",
    )
    def post(self, request):
        tenant = request.user.tenant
        with ingest_metered(tenant) as meter:
            limits = ingest_limits(tenant=tenant)
            raw = body_read(request, limits)
            try:
                events = parse_body(raw, content_encoding=request.META.get("HTTP_CONTENT_ENCODING", ""),
                                    limits=limits)
            except BodyError as error:
                raise ApiError(error.status, error.detail, error.errors) from None
            meter.points_take(len(events))
            result = points_store(tenant, events, limits=limits)
        ingest_counted(tenant=tenant, protocol="json", result=result)
        # The fields of IngestResponseSerializer (the schema), without a serializer's cost on every request.
        body = {"accepted": result.accepted, "duplicates": result.duplicates, "rejected": result.rejected}
        code = status.HTTP_202_ACCEPTED
        if result.accepted == 0 and result.duplicates == 0:
            body["detail"] = f"No event was valid: {len(result.rejected)} rejected."
            code = status.HTTP_400_BAD_REQUEST
        # Serialised directly: DRF's content negotiation and rendering cost more than the JSON.
        return HttpResponse(orjson.dumps(body), status=code, content_type="application/json")


class IngestNoopView(APIView):
    """POST /api/v1/ingest/noop (BENCH_ENDPOINTS only): an ingest request's key check and DRF path, answered 202
    without reading the body; bench/mixed_load.py compares ingest's requests/s with it."""

    required_scope = ApiKey.SCOPE_INGEST
    reads_own_body = True  # never read
    parser_classes = []
    throttle_classes = []
    renderer_classes = [JSONRenderer]
    content_negotiation_class = _JsonOnly

    def dispatch(self, request, *args, **kwargs):
        if not settings.BENCH_ENDPOINTS:  # as if the path did not exist, before any key check
            return not_found_json(request)
        return super().dispatch(request, *args, **kwargs)

    @extend_schema(exclude=True)
    def post(self, request):
        return HttpResponse(b"{}", status=status.HTTP_202_ACCEPTED, content_type="application/json")


class SeriesListView(APIView):
    @extend_schema(operation_id="series_list", summary="List series", parameters=[serializers.SeriesQuerySerializer],
                   responses=serializers.SeriesPageSerializer)
    def get(self, request):
        """The tenant's series, oldest first, with first/last timestamps and point counts; cursor-paged."""
        tenant = request.user.tenant
        params = query_params(serializers.SeriesQuerySerializer, request)
        series = selectors.series_list(
            tenant=tenant, service=params.get("service"), metric_name=params.get("metric_name"),
            resource_id=params.get("resource_id"),
        )
        page, next_page = keyset_page(request, series, limit=params["limit"], parts=(cursor_id,),
                                      after=lambda rows, after_id: rows.filter(id__gt=after_id), key=lambda s: (s.id,))
        stats = storage.series_stats(tenant=tenant, series_ids=[s.id for s in page])
        facts = selectors.series_facts_of(tenant=tenant, series_ids=[s.id for s in page])
        listed = [serializers.SeriesListed(s, stats.get(s.id), facts[s.id]) for s in page]
        return Response(serializers.SeriesPageSerializer({"results": listed, "next": next_page}).data)


class TimeseriesView(APIView):
    @extend_schema(operation_id="timeseries_read", summary="Read points of series",
                   parameters=[serializers.TimeseriesQuerySerializer],
                   responses=serializers.TimeseriesResponseSerializer)
    def get(self, request):
        """Points of the matching series in (now − minutes, now] or (start, end], raw or per step with agg; counters
        also by their increase or rate (fn)."""
        tenant = request.user.tenant
        params = query_params(serializers.TimeseriesQuerySerializer, request)
        start, end = window(minutes=params.get("minutes"), start=params.get("start"), end=params.get("end"),
                            now=timezone.now(), default_minutes=60)
        step_check(start=start, end=end, step_seconds=params.get("step"))
        series = list(selectors.series_list(
            tenant=tenant, service=params.get("service"), metric_name=params.get("metric_name"),
            resource_id=params.get("resource_id"), series_id=params.get("series_id"),
        )[:1000])
        fn = params.get("fn")
        if fn:
            gauges = [s for s in series if s.kind != "counter"]
            if gauges:
                raise ApiError(400, f"fn={fn} applies to counters; series {gauges[0].id} ({gauges[0]}) is a "
                                    f"{gauges[0].kind}.", {"fn": [f"series {gauges[0].id} is not a counter"]})
            points = storage.counter_read(tenant=tenant, series_ids=[s.id for s in series], start=start, end=end,
                                          fn=fn, step_seconds=params.get("step"))
        else:
            points = storage.timeseries_read(
                tenant=tenant, series_ids=[s.id for s in series], start=start, end=end,
                step_seconds=params.get("step"), agg=params["agg"],
            )
        read = [serializers.SeriesPoints(s, fn, points[s.id]) for s in series]
        return Response(serializers.TimeseriesResponseSerializer({"series": read}).data)
