"""HTTP endpoints of detection: process/run, runs, anomalies, baselines, detection rules."""

from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from anomalies import selectors, serializers
from anomalies.runs import QueueUnavailable, RunInProgress, detection_run, detection_run_enqueue
from anomalies.services import (
    DetectionRuleInvalid,
    anomaly_status_set,
    detection_rule_create,
    detection_rule_delete,
    detection_rule_update,
)
from cloudwatchdog.api import MAX_ID, cursor_id, cursor_time, keyset_page, query_params, window
from cloudwatchdog.errors import ApiError
from cloudwatchdog.schema import ErrorSerializer
from cloudwatchdog.timeutil import to_us
from metrics.selectors import series_get
from tenants.models import ApiKey


class ProcessRunView(APIView):
    required_scope = ApiKey.SCOPE_ALL

    @extend_schema(
        operation_id="process_run", summary="Run detection",
        request=None,
        parameters=[serializers.ProcessRunQuerySerializer],
        responses={200: serializers.RunSummarySerializer,
                   202: OpenApiResponse(serializers.RunQueuedSerializer, "Queued (?async=true); follow it at "
                                        "/api/v1/process/runs/{run_id}."),
                   409: OpenApiResponse(ErrorSerializer, "A run of this tenant is going; errors.run_id gives its id."),
                   503: OpenApiResponse(ErrorSerializer, "PostgreSQL, or with ?async=true the task queue, is "
                                        "unavailable; retry after Retry-After.")},
    )
    def post(self, request):
        """Run one detection pass for the caller's tenant (or enqueue it with ?async=true)."""
        tenant = request.user.tenant
        run_async = query_params(serializers.ProcessRunQuerySerializer, request)["async"]
        if run_async:
            try:
                run = detection_run_enqueue(tenant=tenant)
            except QueueUnavailable:
                raise ApiError(503, "The task queue is unavailable; retry in a few seconds, or run without ?async=true.",
                               headers={"Retry-After": "5"}) from None
            return Response(serializers.RunQueuedSerializer(run).data, status=status.HTTP_202_ACCEPTED)
        try:
            run = detection_run(tenant=tenant, trigger="api",
                                wait_seconds=settings.CLOUDWATCHDOG["PROCESS_RUN_WAIT_SECONDS"])
        except RunInProgress as busy:
            raise ApiError(409, "A detection run of this tenant is already going; read its status at "
                                f"/api/v1/process/runs/{busy.running_run_id}.",
                           {"run_id": [str(busy.running_run_id)]})
        return Response(serializers.RunSummarySerializer(run).data)


class RunDetailView(APIView):
    @extend_schema(operation_id="process_run_get", summary="Read a detection run",
                   responses=serializers.RunSummarySerializer)
    def get(self, request, run_id):
        """Status and summary of one detection run of the caller's tenant."""
        run = selectors.detection_run_get(tenant=request.user.tenant, run_id=run_id)
        if run is None:
            raise ApiError(404, "Not found.")
        return Response(serializers.RunSummarySerializer(run).data)


def api_actor(request) -> str:
    return f"key:{request.user.api_key.prefix}"


class AnomalyDetailView(APIView):
    def _detail(self, tenant, anomaly_id) -> dict:
        anomaly = selectors.anomaly_get(tenant=tenant, anomaly_id=anomaly_id) if anomaly_id <= MAX_ID else None
        if anomaly is None:
            raise ApiError(404, "No such anomaly.")
        events = selectors.anomaly_events(tenant=tenant, anomaly_id=anomaly.id)
        return serializers.AnomalyDetailSerializer(anomaly, context={"events": events}).data

    @extend_schema(operation_id="anomaly_read", summary="Read an anomaly",
                   responses=serializers.AnomalyDetailSerializer)
    def get(self, request, anomaly_id):
        """One anomaly with its status history."""
        return Response(self._detail(request.user.tenant, anomaly_id))

    @extend_schema(operation_id="anomaly_update", summary="Acknowledge, resolve or reopen an anomaly",
                   request=serializers.StatusChangeSerializer,
                   responses=serializers.AnomalyDetailSerializer)
    def patch(self, request, anomaly_id):
        """Acknowledge, resolve or reopen an anomaly, with a note; recorded as an event (needs scope all)."""
        tenant = request.user.tenant
        serializer = serializers.StatusChangeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        anomaly = selectors.anomaly_get(tenant=tenant, anomaly_id=anomaly_id) if anomaly_id <= MAX_ID else None
        if anomaly is None:
            raise ApiError(404, "No such anomaly.")
        anomaly_status_set(tenant=tenant, anomaly_ids=[anomaly.id], status=data.get("status", anomaly.status),
                           actor=api_actor(request), note=data.get("note", ""))
        return Response(self._detail(tenant, anomaly.id))


class AnomalyListView(APIView):
    @extend_schema(operation_id="anomalies_list", summary="List anomalies",
                   parameters=[serializers.AnomalyQuerySerializer],
                   responses=serializers.AnomalyPageSerializer)
    def get(self, request):
        """The tenant's anomalies, newest first, filtered; cursor-paged."""
        params = query_params(serializers.AnomalyQuerySerializer, request)
        anomalies = selectors.anomaly_list(
            tenant=request.user.tenant, **{k: params.get(k) for k in (
                "service", "metric_name", "resource_id", "series_id", "start", "end", "severity", "status")},
        )
        page, next_page = keyset_page(
            request, anomalies, limit=params["limit"], parts=(cursor_time, cursor_id),
            after=lambda rows, moment, anomaly_id: rows.filter(Q(ts__lt=moment) | Q(ts=moment, id__lt=anomaly_id)),
            key=lambda a: (to_us(a.ts), a.id))
        return Response(serializers.AnomalyPageSerializer({"results": page, "next": next_page}).data)


class BaselineListView(APIView):
    @extend_schema(operation_id="baselines_list", summary="List baselines and their bands",
                   parameters=[serializers.BaselineQuerySerializer],
                   responses=serializers.BaselinePageSerializer)
    def get(self, request):
        """Each series' current baseline; with series_id also the expected band over start..end to draw."""
        tenant = request.user.tenant
        params = query_params(serializers.BaselineQuerySerializer, request)
        baselines = selectors.baseline_list(tenant=tenant, series_id=params.get("series_id"), status=params.get("status"),
                                            state=params.get("state"))
        page, next_page = keyset_page(request, baselines, limit=params["limit"], parts=(cursor_id,),
                                      after=lambda rows, after: rows.filter(series_id__gt=after),
                                      key=lambda b: (b.series_id,))
        body = {"results": page, "next": next_page}
        if params.get("series_id") is not None:
            if series_get(tenant=tenant, series_id=params["series_id"]) is None:
                raise ApiError(404, "Not found.")
            start, end = window(minutes=None, start=params.get("start"), end=params.get("end"), now=timezone.now(),
                                default_minutes=24 * 60)
            body["band"] = selectors.baseline_band(tenant=tenant, series_id=params["series_id"], start=start, end=end)
        return Response(serializers.BaselinePageSerializer(body).data)


def _rules_answer(tenant, rules: list, *, many: bool = True) -> dict:
    """The rules as answered, each with how many of the tenant's series it matches (one query for all)."""
    counts = selectors.detection_rule_series_matched(tenant=tenant, rules=rules)
    data = serializers.DetectionRuleSerializer(rules, many=True, context={"series_matched": counts}).data
    return {"results": data} if many else data[0]


def _rule_or_404(tenant, rule_id: int):
    rule = selectors.detection_rule_get(tenant=tenant, rule_id=rule_id) if rule_id <= MAX_ID else None
    if rule is None:
        raise ApiError(404, "No such detection rule.")
    return rule


def _refused(invalid: DetectionRuleInvalid) -> ApiError:
    field, reasons = next(iter(invalid.errors.items()))
    return ApiError(400, f"Invalid input: {field} {reasons[0]}.", invalid.errors)


RULES_DESCRIPTION = (
    "A rule gives detection settings (`overrides`, the fields of DetectionConfig) to the tenant's series that match "
    "its `service`, `metric_name`, `resource_id` and `tags` (each empty for any). A series runs with the defaults, "
    "then the tenant's overrides, then every matching rule's overrides from the least specific to the most "
    "(`specificity`; ties by id), so the most specific rule wins each setting it names. Changes apply from the next "
    "detection run; replay to apply them to history.")


class DetectionRuleListView(APIView):
    @extend_schema(operation_id="detection_rules_list", summary="List the detection rules",
                   description="The tenant's detection rules, oldest first. " + RULES_DESCRIPTION,
                   responses=serializers.DetectionRulePageSerializer)
    def get(self, request):
        tenant = request.user.tenant
        return Response(_rules_answer(tenant, selectors.detection_rule_list(tenant=tenant)))

    @extend_schema(operation_id="detection_rule_create", summary="Create a detection rule",
                   description="Needs scope all; at most DETECTION_RULES_PER_TENANT (200) rules a tenant. A setting "
                   "the engine refuses is a 400 naming it. " + RULES_DESCRIPTION,
                   request=serializers.DetectionRuleWriteSerializer,
                   responses={201: serializers.DetectionRuleSerializer})
    def post(self, request):
        tenant = request.user.tenant
        data = serializers.DetectionRuleWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            rule = detection_rule_create(tenant=tenant, data=data.validated_data)
        except DetectionRuleInvalid as invalid:
            raise _refused(invalid) from None
        return Response(_rules_answer(tenant, [rule], many=False), status=status.HTTP_201_CREATED)


class DetectionRuleDetailView(APIView):
    @extend_schema(operation_id="detection_rule_read", summary="Read a detection rule",
                   description="One rule of the tenant, with how many series it matches.",
                   responses=serializers.DetectionRuleSerializer)
    def get(self, request, rule_id):
        tenant = request.user.tenant
        return Response(_rules_answer(tenant, [_rule_or_404(tenant, rule_id)], many=False))

    @extend_schema(operation_id="detection_rule_update", summary="Change a detection rule",
                   description="Needs scope all. The fields given replace the rule's (`tags` and `overrides` "
                   "whole, not merged).", request=serializers.DetectionRuleWriteSerializer,
                   responses=serializers.DetectionRuleSerializer)
    def patch(self, request, rule_id):
        tenant = request.user.tenant
        rule = _rule_or_404(tenant, rule_id)
        data = serializers.DetectionRuleWriteSerializer(rule, data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        try:
            rule = detection_rule_update(rule=rule, data=data.validated_data)
        except DetectionRuleInvalid as invalid:
            raise _refused(invalid) from None
        return Response(_rules_answer(tenant, [rule], many=False))

    @extend_schema(operation_id="detection_rule_delete", summary="Delete a detection rule",
                   description="Needs scope all; its series run with the remaining settings from the next run.",
                   responses={204: OpenApiResponse(description="Deleted.")})
    def delete(self, request, rule_id):
        detection_rule_delete(rule=_rule_or_404(request.user.tenant, rule_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class SeriesDetectionConfigView(APIView):
    @extend_schema(operation_id="series_detection_config", summary="The detection settings of a series",
                   description="Every setting the series runs with (defaults, the tenant's overrides, its rules) and "
                   "the ids of the rules that apply to it, in the order they apply.",
                   responses=serializers.SeriesDetectionConfigSerializer)
    def get(self, request, series_id):
        tenant = request.user.tenant
        series = series_get(tenant=tenant, series_id=series_id) if series_id <= MAX_ID else None
        if series is None:
            raise ApiError(404, "No such series.")
        config = selectors.detection_configs_for(tenant=tenant, series=[series])[series.id]
        rules = selectors.detection_rules_for(tenant=tenant, series=series)
        return Response(serializers.SeriesDetectionConfigSerializer(
            {"series_id": series.id, "config": config.as_dict(), "rules": [rule.id for rule in rules]}).data)
