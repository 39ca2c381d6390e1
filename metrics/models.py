"""Series and their points.

A series is (tenant, service, resource_id, metric_name, tags). Points live in the
`metrics_point` table, created by raw SQL in the migrations because it is range-partitioned
by time (declarative partitions, one per ISO week), which Django models cannot express:
columns (tenant_id, series_id, ts, value), primary key (tenant_id, series_id, ts).
Points of closed days move into `metrics_chunk` (one compressed row per series and UTC day).
NaN samples and staleness markers (remote write, OTLP) are kept apart in `metrics_nan_sample`, read by
PromQL only. Points are written, kept and read by `metrics.storage`, in SQL: only it (with the migrations
and the table names below) names the point, chunk, NaN-sample, rollup and ingest-log tables.
"""
from django.db import models

from tenants.models import TenantOwned

POINT_TABLE = "metrics_point"
# Column widths, in characters; ingest limits them in UTF-8 bytes (MAX_NAME_BYTES, MAX_VALUE_BYTES),
# so a value that passes always fits. service and metric_name lead the lookup index, whose entries
# must stay under PostgreSQL's 2,704-byte btree limit: 8 + 2 x 1,024 bytes does.
NAME_MAX_BYTES = 1024
VALUE_MAX_BYTES = 2048
UNIT_MAX_BYTES = 64  # UCUM units ("By", "ms", "{request}/s") and Prometheus' unit suffixes are short


class SeriesKind(models.TextChoices):
    # A gauge's value is what it measures; a counter's value only goes up (a drop is a restart), so
    # it is read and evaluated by its increase per interval.
    GAUGE = "gauge", "gauge"
    COUNTER = "counter", "counter"


class Series(TenantOwned):
    service = models.CharField(max_length=NAME_MAX_BYTES, help_text="Service that emits the metric, e.g. ec2.")
    resource_id = models.CharField(max_length=VALUE_MAX_BYTES, help_text="The resource measured, e.g. an instance id.")
    metric_name = models.CharField(max_length=NAME_MAX_BYTES, help_text="Metric name, e.g. cpu_utilization.")
    tags = models.JSONField(default=dict, blank=True, help_text="String-to-string tags that are part of the identity.")
    key_hash = models.CharField(
        max_length=40, help_text="SHA-1 of the canonical (service, resource_id, metric_name, tags); unique per tenant."
    )
    source = models.CharField(max_length=VALUE_MAX_BYTES, blank=True, help_text="The source named by the first event of the series.")
    created_at = models.DateTimeField(auto_now_add=True, help_text="When the first point of the series arrived.")
    kind = models.CharField(max_length=16, choices=SeriesKind.choices, default=SeriesKind.GAUGE, db_default=SeriesKind.GAUGE,
                            help_text="gauge or counter, as the first event of the series said (default gauge).")
    unit = models.CharField(max_length=UNIT_MAX_BYTES, blank=True, default="", db_default="",
                            help_text="The unit the first event of the series named (UCUM, e.g. By, ms, 1), if any.")

    class Meta:
        verbose_name_plural = "series"
        constraints = [models.UniqueConstraint(fields=["tenant", "key_hash"], name="series_tenant_key_uniq")]
        indexes = [
            models.Index(fields=["tenant", "service", "metric_name"], name="series_tenant_service_metric"),
            # PromQL selects by metric name alone ({__name__="x"}); without it a tenant's series are scanned.
            models.Index(fields=["tenant", "metric_name"], name="series_tenant_metric"),
        ]

    def __str__(self) -> str:
        tags = ",".join(f"{k}={v}" for k, v in sorted(self.tags.items()))
        return f"{self.service}/{self.resource_id}/{self.metric_name}" + (f"{{{tags}}}" if tags else "")


class IngestRejection(TenantOwned):
    """How many points a tenant had refused, per UTC day, protocol and reason (the first field refused),
    for the support console; written only by requests that refused something."""

    day = models.DateField(help_text="UTC day.")
    protocol = models.CharField(max_length=20, help_text="json, otlp or remote_write.")
    reason = models.CharField(max_length=40, help_text="The first field refused, or 'protocol'.")
    count = models.PositiveBigIntegerField(default=0, help_text="Points refused.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "day", "protocol", "reason"],
                                               name="ingest_rejection_uniq")]


# Tables that raw SQL names (the hot paths and set-based reads go through SQL, not the ORM).
SERIES_TABLE = Series._meta.db_table
ROLLUP_1H_TABLE = "metrics_rollup_1h"  # created by migration 0002, like the ingest log
INGEST_LOG_TABLE = "metrics_ingest_log"
CHUNK_TABLE = "metrics_chunk"  # compacted points, one row per series and closed UTC day (migration 0007)
NAN_SAMPLE_TABLE = "metrics_nan_sample"  # NaN samples and staleness markers, for PromQL only (migration 0010)
INGEST_REJECTION_TABLE = IngestRejection._meta.db_table
