from django.urls import path

from anomalies import views

urlpatterns = [
    path("process/run", views.ProcessRunView.as_view(), name="process-run"),
    path("process/runs/<uuid:run_id>", views.RunDetailView.as_view(), name="process-run-detail"),
    path("anomalies", views.AnomalyListView.as_view(), name="anomalies-list"),
    path("anomalies/<int:anomaly_id>", views.AnomalyDetailView.as_view(), name="anomaly-detail"),
    path("baselines", views.BaselineListView.as_view(), name="baselines-list"),
]
