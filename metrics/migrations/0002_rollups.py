from django.db import migrations

ROLLUPS_SQL = """
CREATE TABLE metrics_rollup_1m (
    tenant_id bigint NOT NULL,
    series_id bigint NOT NULL,
    bucket timestamptz NOT NULL,
    count bigint NOT NULL,
    sum double precision NOT NULL,
    min double precision NOT NULL,
    max double precision NOT NULL,
    PRIMARY KEY (tenant_id, series_id, bucket)
);
COMMENT ON TABLE metrics_rollup_1m IS 'Per-minute count/sum/min/max of metrics_point, rebuilt from raw points for touched minutes.';
CREATE TABLE metrics_rollup_1h (LIKE metrics_rollup_1m INCLUDING ALL);
COMMENT ON TABLE metrics_rollup_1h IS 'Per-hour count/sum/min/max, rebuilt from metrics_rollup_1m for touched hours.';
CREATE TABLE metrics_ingest_log (
    tenant_id bigint NOT NULL,
    min_ts timestamptz NOT NULL,
    max_ts timestamptz NOT NULL
);
CREATE INDEX metrics_ingest_log_tenant ON metrics_ingest_log (tenant_id, min_ts);
COMMENT ON TABLE metrics_ingest_log IS 'One row per ingest transaction: the time range it wrote, consumed by the rollup refresh.';
CREATE INDEX metrics_point_ts_brin ON metrics_point USING brin (ts) WITH (pages_per_range = 32);
"""


class Migration(migrations.Migration):
    dependencies = [("metrics", "0001_initial")]

    operations = [
        migrations.RunSQL(
            ROLLUPS_SQL,
            "DROP TABLE metrics_rollup_1m, metrics_rollup_1h, metrics_ingest_log; DROP INDEX metrics_point_ts_brin;",
        ),
    ]
