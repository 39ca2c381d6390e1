from django.apps import AppConfig


class PromqlConfig(AppConfig):
    name = "promql"
    verbose_name = "Prometheus query API"
