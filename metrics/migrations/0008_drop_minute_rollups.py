from django.db import migrations


class Migration(migrations.Migration):
    """Hourly rollups are rebuilt from the points themselves; a minute rollup cost as much as the points."""

    dependencies = [("metrics", "0007_chunks")]

    operations = [
        migrations.RunSQL(
            "DROP TABLE metrics_rollup_1m;",
            "CREATE TABLE metrics_rollup_1m (LIKE metrics_rollup_1h INCLUDING ALL);",
        ),
    ]
