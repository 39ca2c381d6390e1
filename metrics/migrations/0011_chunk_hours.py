from django.db import migrations

# The hourly stats of a compacted day move from metrics_rollup_1h into its chunk row (metrics/storage/hours.py).
# Only the column is added here (no rewrite, safe to run again): compaction folds the rollup rows of days
# compacted before, on its next pass (beat, hourly) or with `manage.py compact_points`; until then they are
# read from the rollups as before.
HOURS_SQL = """
ALTER TABLE metrics_chunk ADD COLUMN IF NOT EXISTS hours bytea;
-- Deflated by codec.encode_hours already: no pglz attempt, kept in line while the row fits.
ALTER TABLE metrics_chunk ALTER COLUMN hours SET STORAGE EXTERNAL;
COMMENT ON COLUMN metrics_chunk.hours IS 'Hourly count/sum/min/max of the chunk''s points (codec.encode_hours); a metrics_rollup_1h row for the same hour overrides it.';
"""


class Migration(migrations.Migration):
    dependencies = [("metrics", "0010_nan_samples")]

    operations = [migrations.RunSQL(HOURS_SQL, "ALTER TABLE metrics_chunk DROP COLUMN IF EXISTS hours;")]
