from django.urls import path, re_path

from promql import views

# Mounted at /prometheus/api/v1/ (cloudwatchdog/urls.py): Grafana and promtool are given /prometheus as the
# server's address, as with Mimir, because our own /api/v1/ is another API.
urlpatterns = [
    path("query", views.QueryView.as_view(), name="prometheus-query"),
    path("query_range", views.QueryRangeView.as_view(), name="prometheus-query-range"),
    path("labels", views.LabelsView.as_view(), name="prometheus-labels"),
    re_path(r"^label/(?P<name>[^/]+)/values$", views.LabelValuesView.as_view(), name="prometheus-label-values"),
    path("series", views.SeriesView.as_view(), name="prometheus-series"),
    path("metadata", views.MetadataView.as_view(), name="prometheus-metadata"),
    path("status/buildinfo", views.BuildInfoView.as_view(), name="prometheus-buildinfo"),
    path("query_exemplars", views.ExemplarsView.as_view(), name="prometheus-exemplars"),
    path("rules", views.RulesView.as_view(), name="prometheus-rules"),
]
