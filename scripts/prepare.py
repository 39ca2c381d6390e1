"""`make run`'s preparation, in one process: migrate, this week's partitions (maintain_points), the
admin's static files, and a new key for the demo tenant: the key alone on stdout, the rest on stderr."""
import io
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cloudwatchdog.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

call_command("migrate", interactive=False, verbosity=1, stdout=sys.stderr)
call_command("maintain_points", stdout=sys.stderr)
call_command("collectstatic", interactive=False, verbosity=0)
key = io.StringIO()
call_command("create_tenant", "demo", name="Demo tenant", stdout=key, stderr=io.StringIO())
print(key.getvalue().strip())
