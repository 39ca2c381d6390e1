from django.urls import path

from anomalies import alerting_views, views

urlpatterns = [
    path("process/run", views.ProcessRunView.as_view(), name="process-run"),
    path("process/runs/<uuid:run_id>", views.RunDetailView.as_view(), name="process-run-detail"),
    path("anomalies", views.AnomalyListView.as_view(), name="anomalies-list"),
    path("anomalies/<int:anomaly_id>", views.AnomalyDetailView.as_view(), name="anomaly-detail"),
    path("baselines", views.BaselineListView.as_view(), name="baselines-list"),
    path("detection-rules", views.DetectionRuleListView.as_view(), name="detection-rules-list"),
    path("detection-rules/<int:rule_id>", views.DetectionRuleDetailView.as_view(), name="detection-rule-detail"),
    path("series/<int:series_id>/detection-config", views.SeriesDetectionConfigView.as_view(),
         name="series-detection-config"),
    path("channels", alerting_views.ChannelListView.as_view(), name="channels-list"),
    path("channels/<int:channel_id>", alerting_views.ChannelDetailView.as_view(), name="channel-detail"),
    path("channels/<int:channel_id>/test", alerting_views.ChannelTestView.as_view(), name="channel-test"),
    path("channels/<int:channel_id>/deliveries", alerting_views.ChannelDeliveriesView.as_view(), name="channel-deliveries"),
    path("incidents", alerting_views.IncidentListView.as_view(), name="incidents-list"),
    path("incidents/<int:incident_id>", alerting_views.IncidentDetailView.as_view(), name="incident-detail"),
    path("silences", alerting_views.SilenceListView.as_view(), name="silences-list"),
    path("silences/<int:silence_id>", alerting_views.SilenceDetailView.as_view(), name="silence-detail"),
]
