"""The Prometheus HTTP API under /prometheus/api/v1/, for Grafana's Prometheus data source, promtool and every
Prometheus API client: the same API keys (Bearer, or Basic with the tenant's slug), each answer scoped to the
key's tenant, in Prometheus' envelope with its error types and status codes (promql/responses.py).

Every endpoint answers GET and a POST form alike and needs only the read scope: client_golang (so promtool) and
Grafana POST their queries. These views follow Prometheus' specification, not ours, so they are left out of our
OpenAPI schema (the README says where they are documented)."""
from __future__ import annotations

import time

from django.db import InterfaceError, OperationalError
from drf_spectacular.utils import extend_schema
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView

from cloudwatchdog.errors import RETRY_AFTER_SECONDS, statement_cancelled
from promql import params, responses, selectors
from promql.engine import BadData, ExecutionError
from promql.responses import PrometheusError
from tenants.models import ApiKey

# What /status/buildinfo reports: Grafana picks its query features by the version (it is Prometheus 2.42's API).
PROMETHEUS_VERSION = "2.42.0"


class _ParsedForm(FormParser):
    """The urlencoded form as PrometheusFormMiddleware parsed it (with many more fields than Django allows)."""

    def parse(self, stream, media_type=None, parser_context=None):
        return parser_context["request"]._request.POST


class _PrometheusView(APIView):
    required_scope = ApiKey.SCOPE_READ  # POST forms are reads here
    parser_classes = [_ParsedForm, MultiPartParser]
    renderer_classes = [JSONRenderer]

    @extend_schema(exclude=True)
    def get(self, request, **kwargs):
        return self.answer(request, **kwargs)

    @extend_schema(exclude=True)
    def post(self, request, **kwargs):
        return self.answer(request, **kwargs)

    def answer(self, request, **kwargs):
        raise NotImplementedError

    def param(self, name: str) -> str | None:
        """A parameter from the POST form, else the URL (Go's Request.FormValue)."""
        value = self.request.data.get(name) if hasattr(self.request.data, "getlist") else None
        return value if value is not None else self.request.query_params.get(name)

    def param_list(self, name: str) -> list[str]:
        data = self.request.data
        return [*(data.getlist(name) if hasattr(data, "getlist") else []), *self.request.query_params.getlist(name)]

    def window(self) -> tuple[int, int]:
        return (params.time_ms("start", self.param("start"), default=params.MIN_TIME_MS),
                params.time_ms("end", self.param("end"), default=params.MAX_TIME_MS))

    def handle_exception(self, exc):
        return responses.error(_as_prometheus_error(exc, lambda: super(_PrometheusView, self).handle_exception(exc)))


def _as_prometheus_error(exc, drf_answer) -> PrometheusError:
    if isinstance(exc, PrometheusError):
        return exc
    if isinstance(exc, BadData):
        return PrometheusError("bad_data", str(exc))
    if isinstance(exc, ExecutionError):
        return PrometheusError("execution", str(exc))
    retry = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    if isinstance(exc, selectors.QueryTimedOut):
        return PrometheusError("timeout", "query timed out in query execution", retry)
    if isinstance(exc, (OperationalError, InterfaceError)):
        if statement_cancelled(exc):
            return PrometheusError("timeout", "query timed out in query execution", retry)
        return PrometheusError("unavailable", "the database is unavailable or busy; retry in a few seconds", retry)
    # DRF's refusals (401, 403, 429, 415...) and anything unforeseen, through the project's handler (which logs).
    answer = drf_answer()
    detail = answer.data.get("detail") if isinstance(answer.data, dict) else None
    headers = {name: answer[name] for name in ("WWW-Authenticate", "Retry-After") if name in answer}
    return PrometheusError(responses.error_type_for(answer.status_code), str(detail or "request failed"), headers)


class QueryView(_PrometheusView):
    def answer(self, request):
        time_ms = params.time_ms("time", self.param("time"), default=int(time.time() * 1000))
        result = selectors.query_instant(tenant=request.user.tenant, text=self.param("query") or "", time_ms=time_ms,
                                         timeout_ms=_timeout_ms(self))
        return responses.success(responses.result_data(result), result.warnings)


class QueryRangeView(_PrometheusView):
    def answer(self, request):
        # In Prometheus' order, so the first fault reported is the one it would report.
        start_ms = params.time_ms("start", self.param("start"))
        end_ms = params.time_ms("end", self.param("end"))
        params.range_window(start_ms=start_ms, end_ms=end_ms)
        step_ms = params.duration_ms("step", self.param("step"))
        params.range_steps(start_ms=start_ms, end_ms=end_ms, step_ms=step_ms)
        result = selectors.query_range(tenant=request.user.tenant, text=self.param("query") or "", start_ms=start_ms,
                                       end_ms=end_ms, step_ms=step_ms, timeout_ms=_timeout_ms(self))
        return responses.success(responses.result_data(result), result.warnings)


def _timeout_ms(view: _PrometheusView) -> int | None:
    text = view.param("timeout")
    return params.duration_ms("timeout", text) if text else None


class LabelsView(_PrometheusView):
    def answer(self, request):
        low_ms, high_ms = self.window()
        selectors_ = params.series_selectors(self.param_list("match[]"), required=False)
        return responses.success(selectors.label_names(tenant=request.user.tenant, selectors=selectors_,
                                                       low_ms=low_ms, high_ms=high_ms))


class LabelValuesView(_PrometheusView):
    def answer(self, request, name):
        name = params.label_name(name)
        low_ms, high_ms = self.window()
        selectors_ = params.series_selectors(self.param_list("match[]"), required=False)
        return responses.success(selectors.label_values(tenant=request.user.tenant, name=name, selectors=selectors_,
                                                        low_ms=low_ms, high_ms=high_ms))


class SeriesView(_PrometheusView):
    def answer(self, request):
        selectors_ = params.series_selectors(self.param_list("match[]"), required=True)
        low_ms, high_ms = self.window()
        return responses.success(selectors.series_selected(tenant=request.user.tenant, selectors=selectors_,
                                                           low_ms=low_ms, high_ms=high_ms))


class MetadataView(_PrometheusView):
    def answer(self, request):
        limit = self.param("limit")
        try:
            limit = int(limit) if limit not in (None, "") else None
        except ValueError:
            raise BadData(f'invalid parameter "limit": cannot parse {limit[:40]!r} as an integer') from None
        return responses.success(selectors.metric_metadata(
            tenant=request.user.tenant, metric=self.param("metric") or None,
            limit=limit if limit is not None and limit >= 0 else None))


class BuildInfoView(_PrometheusView):
    def answer(self, request):
        return responses.success({"version": PROMETHEUS_VERSION, "revision": "", "branch": "", "buildUser": "",
                                  "buildDate": "", "goVersion": ""})


class ExemplarsView(_PrometheusView):
    """No exemplars are stored; Grafana asks anyway."""

    def answer(self, request):
        return responses.success([])


class RulesView(_PrometheusView):
    """No recording or alerting rules here (detection is ours); Grafana asks anyway."""

    def answer(self, request):
        return responses.success({"groups": []})
