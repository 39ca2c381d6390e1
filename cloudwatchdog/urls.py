from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from cloudwatchdog import health, telemetry
from metrics import agent_views

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", telemetry.metrics_view, name="metrics"),
    path("v1/metrics", agent_views.OtlpMetricsView.as_view(), name="otlp-metrics"),
    path("otlp/v1/metrics", agent_views.OtlpMetricsAliasView.as_view(), name="otlp-metrics-alias"),
    path("api/v1/write", agent_views.RemoteWriteView.as_view(), name="remote-write"),
    path("api/v1/push", agent_views.RemoteWritePushView.as_view(), name="remote-write-push"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/v1/", include("metrics.urls")),
    path("api/v1/", include("anomalies.urls")),
    path("prometheus/api/v1/", include("promql.urls")),
]

handler404 = "cloudwatchdog.errors.not_found_json"
handler500 = "cloudwatchdog.errors.server_error_json"
handler400 = "cloudwatchdog.errors.bad_request_json"
