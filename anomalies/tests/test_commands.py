"""manage.py run_detection: every tenant, one tenant, bad arguments."""
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from metrics.services import points_ingest
from tests.helpers import spiky_history


def test_run_detection_command_covers_every_tenant_and_exits_cleanly(make_tenant):
    first, _second = make_tenant("first"), make_tenant("second")
    points_ingest(tenant=first.tenant, events=spiky_history())
    out = StringIO()
    call_command("run_detection", stdout=out)
    lines = out.getvalue().splitlines()
    assert any(line.startswith("first: run ") and "2600 points, 3 anomalies" in line for line in lines)
    assert any(line.startswith("second: run ") and "0 points" in line for line in lines)


def test_run_detection_command_refuses_bad_arguments(db):
    with pytest.raises(CommandError, match="No tenant"):
        call_command("run_detection", "--tenant", "nobody")
    with pytest.raises(CommandError, match="--replay needs --since"):
        call_command("run_detection", "--replay")
    with pytest.raises(CommandError, match="needs a time zone"):
        call_command("run_detection", "--replay", "--since", "2026-01-01T00:00:00")
