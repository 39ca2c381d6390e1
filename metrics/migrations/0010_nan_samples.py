from django.db import migrations

NAN_SAMPLES_SQL = """
CREATE TABLE metrics_nan_sample (
    tenant_id bigint NOT NULL,
    series_id bigint NOT NULL,
    ts timestamptz NOT NULL,
    stale boolean NOT NULL,
    PRIMARY KEY (tenant_id, series_id, ts)
);
-- Retention deletes by time across tenants; rows arrive in about time order, so a BRIN index finds them.
CREATE INDEX metrics_nan_sample_ts ON metrics_nan_sample USING brin (ts);
COMMENT ON TABLE metrics_nan_sample IS 'NaN samples (stale: a Prometheus staleness marker), read by PromQL only; kept out of metrics_point so rollups and detection see finite values.';
"""


class Migration(migrations.Migration):
    dependencies = [("metrics", "0009_series_tenant_metric")]

    operations = [migrations.RunSQL(NAN_SAMPLES_SQL, "DROP TABLE metrics_nan_sample;")]
