"""The Prometheus HTTP API under /prometheus/api/v1/: PromQL over the tenant's stored series, so Grafana,
promtool and every Prometheus client read our data back. The engine (promql/engine/) is pure Python/numpy."""
