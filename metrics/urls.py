from django.urls import path

from metrics import views

urlpatterns = [
    path("ingest/metrics", views.IngestView.as_view(), name="ingest-metrics"),
    path("ingest/noop", views.IngestNoopView.as_view(), name="ingest-noop"),  # 404 unless BENCH_ENDPOINTS
    path("series", views.SeriesListView.as_view(), name="series-list"),
    path("metrics/timeseries", views.TimeseriesView.as_view(), name="timeseries"),
]
