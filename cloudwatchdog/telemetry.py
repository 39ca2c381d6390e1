"""What operators scrape at /metrics (Prometheus exposition format).

Counters and histograms are counted where things happen (ingest, detection, every request).
Under `make run` every process (gunicorn workers, the Celery worker, beat) writes them to memory-
mapped files in PROMETHEUS_MULTIPROC_DIR, and a scrape sums the files, so a scrape answered by
any worker sees every worker's counts; without that directory they live in the process. The
gauges (detection lag, late points, rollup backlog, queue length) are read from PostgreSQL and
Redis when scraped, by the functions the apps register in `scrape_collectors`, so they are the
same whichever process answers. Set METRICS_SCRAPE_TOKEN to require `Authorization: Bearer <token>`;
without it a scrape is refused (403) except on a development machine (settings: METRICS_OPEN_WITHOUT_TOKEN).
"""
from __future__ import annotations

import hmac
import logging
import os
import time
from typing import Callable, Iterable

import redis
from django.conf import settings
from django.http import HttpResponse
from django.urls import Resolver404, resolve
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import REGISTRY, Collector

logger = logging.getLogger(__name__)

POINTS = Counter(
    "cloudwatchdog_points", "Points received, by tenant, protocol (json, otlp, remote_write) and outcome "
    "(accepted, duplicate, rejected, dropped); reason: the field or step that refused a point, or for accepted "
    "nan and staleness (NaN samples and staleness markers, kept for PromQL only), for dropped staleness (a "
    "marker of a series that does not exist).",
    ["tenant", "protocol", "outcome", "reason"],
)
REQUEST_SECONDS = Histogram(
    "cloudwatchdog_http_request_duration_seconds", "Time to answer a request, by endpoint (URL name), method and status.",
    ["endpoint", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
DETECTION_RUNS = Counter(
    "cloudwatchdog_detection_runs", "Detection runs finished, by tenant, trigger and status.", ["tenant", "trigger", "status"],
)
DETECTION_SECONDS = Histogram(
    "cloudwatchdog_detection_run_duration_seconds", "Duration of a tenant's detection run, by trigger.", ["trigger"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)

# Functions an app registers (in its AppConfig.ready) that return gauge families read at scrape time.
scrape_collectors: list[Callable[[], Iterable[GaugeMetricFamily]]] = []


def points_counted(*, tenant_slug: str, protocol: str, accepted: int = 0, duplicates: int = 0,
                   rejected_by_reason: dict[str, int] | None = None, nans: int = 0, stale: int = 0,
                   stale_dropped: int = 0) -> None:
    if accepted:
        POINTS.labels(tenant_slug, protocol, "accepted", "").inc(accepted)
    if nans:
        POINTS.labels(tenant_slug, protocol, "accepted", "nan").inc(nans)
    if stale:
        POINTS.labels(tenant_slug, protocol, "accepted", "staleness").inc(stale)
    if duplicates:
        POINTS.labels(tenant_slug, protocol, "duplicate", "").inc(duplicates)
    if stale_dropped:
        POINTS.labels(tenant_slug, protocol, "dropped", "staleness").inc(stale_dropped)
    for reason, count in (rejected_by_reason or {}).items():
        POINTS.labels(tenant_slug, protocol, "rejected", reason).inc(count)


def detection_run_counted(*, tenant_slug: str, trigger: str, status: str, seconds: float) -> None:
    DETECTION_RUNS.labels(tenant_slug, trigger, status).inc()
    DETECTION_SECONDS.labels(trigger).observe(seconds)


class RequestTimingMiddleware:
    """Observes every request's duration under its URL name (a bounded label set: no raw paths)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        if match is None:
            try:
                match = resolve(request.path_info)
            except Resolver404:
                match = None
        endpoint = (match.view_name if match else "") or "unmatched"
        REQUEST_SECONDS.labels(endpoint, request.method if request.method in _METHODS else "other",
                               str(response.status_code)).observe(time.perf_counter() - started)
        return response


_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}


class _ScrapeTime(Collector):
    def describe(self):
        return []  # else registering it would run every collector (PostgreSQL, Redis) at import

    def collect(self):
        up = GaugeMetricFamily("cloudwatchdog_collector_up", "1 when a scrape-time collector (PostgreSQL or Redis "
                               "figures) answered, 0 when it failed.", labels=["collector"])
        for collect in scrape_collectors:
            name = getattr(collect, "__name__", "collector")
            try:
                families = list(collect())
            except Exception as error:  # one failing source must not take the others' figures down
                logger.warning("metrics collector %s failed: %s", name, error)
                up.add_metric([name], 0)
                continue
            up.add_metric([name], 1)
            yield from families
        yield up


def queue_figures() -> list:
    """Each Celery queue's length in Redis (tasks waiting for a worker)."""
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=settings.REDIS_TIMEOUT_SECONDS,
                                  socket_connect_timeout=settings.REDIS_TIMEOUT_SECONDS)
    names = [settings.CELERY_TASK_DEFAULT_QUEUE, *settings.TASK_QUEUES.values()]
    try:
        with client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.llen(name)
            lengths = pipe.execute()
    finally:
        client.close()
    queue = GaugeMetricFamily("cloudwatchdog_celery_queue_length", "Tasks waiting in each Celery queue.",
                              labels=["queue"])
    for name, length in zip(names, lengths):
        queue.add_metric([name], length)
    return [queue]


scrape_collectors.append(queue_figures)
_scrape_time = _ScrapeTime()
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    REGISTRY.register(_scrape_time)


def _registry() -> CollectorRegistry:
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY  # this process's counters, its process and platform figures, and the scrape-time gauges
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    registry.register(_scrape_time)
    return registry


def metrics_view(request):
    token = settings.METRICS_SCRAPE_TOKEN
    if not token and not settings.METRICS_OPEN_WITHOUT_TOKEN:
        # 403, not 401: no credential the scraper could send would do; the operator has a setting to make.
        return HttpResponse("GET /metrics lists every tenant, so outside a development machine it needs "
                            "METRICS_SCRAPE_TOKEN set, sent as 'Authorization: Bearer <METRICS_SCRAPE_TOKEN>'.\n",
                            status=403, content_type="text/plain")
    if token:
        presented = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")[2].strip()
        if not hmac.compare_digest(presented.encode(), token.encode()):
            response = HttpResponse("Send the scrape token as 'Authorization: Bearer <METRICS_SCRAPE_TOKEN>'.\n",
                                    status=401, content_type="text/plain")
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    return HttpResponse(generate_latest(_registry()), content_type="text/plain; version=0.0.4; charset=utf-8")
