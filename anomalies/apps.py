from django.apps import AppConfig


class AnomaliesConfig(AppConfig):
    name = "anomalies"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from anomalies.evaluation import detection_figures, late_points_hook
        from anomalies.selectors import series_states, watermarks_of
        from cloudwatchdog.telemetry import scrape_collectors
        from metrics.selectors import series_facts
        from metrics.storage import compaction_horizons, post_ingest_hooks

        if late_points_hook not in post_ingest_hooks:
            post_ingest_hooks.append(late_points_hook)
        if series_states not in series_facts:
            series_facts.append(series_states)
        if watermarks_of not in compaction_horizons:
            compaction_horizons.append(watermarks_of)
        if detection_figures not in scrape_collectors:
            scrape_collectors.append(detection_figures)
