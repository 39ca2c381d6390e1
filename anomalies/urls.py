from django.urls import path

from anomalies import views

urlpatterns = [
    path("process/run", views.ProcessRunView.as_view(), name="process-run"),
    path("process/runs/<uuid:run_id>", views.RunDetailView.as_view(), name="process-run-detail"),
    path("anomalies", views.AnomalyListView.as_view(), name="anomalies-list"),
    path("baselines", views.BaselineListView.as_view(), name="baselines-list"),
]
