from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from cloudwatchdog import health

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/v1/", include("metrics.urls")),
    path("api/v1/", include("anomalies.urls")),
]

handler404 = "cloudwatchdog.errors.not_found_json"
handler500 = "cloudwatchdog.errors.server_error_json"
handler400 = "cloudwatchdog.errors.bad_request_json"
