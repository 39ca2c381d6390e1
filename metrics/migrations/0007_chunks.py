from django.db import migrations

CHUNKS_SQL = """
CREATE TABLE metrics_chunk (
    tenant_id bigint NOT NULL,
    series_id bigint NOT NULL,
    period_start timestamptz NOT NULL,
    first_ts timestamptz NOT NULL,
    last_ts timestamptz NOT NULL,
    count integer NOT NULL,
    sum double precision NOT NULL,
    min double precision NOT NULL,
    max double precision NOT NULL,
    data bytea NOT NULL,
    PRIMARY KEY (tenant_id, series_id, period_start)
);
-- Already compressed by the codec: stored out of line when large, without pglz trying again.
ALTER TABLE metrics_chunk ALTER COLUMN data SET STORAGE EXTERNAL;
COMMENT ON TABLE metrics_chunk IS 'Compacted points: one row per series and closed UTC day, timestamps and values encoded by metrics.codec.';
"""


class Migration(migrations.Migration):
    dependencies = [("metrics", "0006_ingest_rejections")]

    operations = [migrations.RunSQL(CHUNKS_SQL, "DROP TABLE metrics_chunk;")]
