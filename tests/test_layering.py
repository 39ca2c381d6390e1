"""The layering STYLE.md promises, checked on the source: only services and selectors touch
`.objects`; imports flow one way; the engine imports no Django; tenant-owned rows fail closed."""
import ast
from fnmatch import fnmatch
from pathlib import Path

import pytest

from metrics.models import Series
from tenants.models import UnscopedQuery

ROOT = Path(__file__).resolve().parent.parent
APPS = ("tenants", "metrics", "anomalies")
# Matched by pattern, so a new interface module (agent_views.py, a console package) is guarded on arrival.
INTERFACES = ("*views.py", "*admin.py", "console*.py", "tasks.py", "drf.py", "middleware.py", "serializers.py")
INTERFACE_FOLDERS = ("commands", "console", "templatetags")


def _is_interface(path: Path) -> bool:
    return any(fnmatch(path.name, pattern) for pattern in INTERFACES) or bool(set(INTERFACE_FOLDERS) & set(path.parts))


def _modules():
    for app in (*APPS, "cloudwatchdog"):
        for path in (ROOT / app).rglob("*.py"):
            if "migrations" not in path.parts and "tests" not in path.parts:
                yield path, ast.parse(path.read_text())


def _imports(tree) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_views_tasks_commands_and_admin_go_through_services_and_selectors():
    offenders = []
    for path, tree in _modules():
        if _is_interface(path):
            offenders += [f"{path.relative_to(ROOT)}:{node.lineno}" for node in ast.walk(tree)
                          if isinstance(node, ast.Attribute) and node.attr == "objects"]
    assert offenders == []


def test_imports_flow_one_way():
    allowed = {"cloudwatchdog": set(), "tenants": {"cloudwatchdog"}, "metrics": {"cloudwatchdog", "tenants"},
               "anomalies": {"cloudwatchdog", "tenants", "metrics"}}
    offenders = []
    for path, tree in _modules():
        layer = path.relative_to(ROOT).parts[0]
        for module in _imports(tree):
            top = module.split(".")[0]
            if top in allowed and top != layer and top not in allowed[layer]:
                # The project package may name apps only in settings and URL wiring, never import their code.
                if not (layer == "cloudwatchdog" and path.name in ("urls.py", "celery.py")):
                    offenders.append(f"{path.relative_to(ROOT)} imports {module}")
    assert offenders == []


def test_no_app_unregisters_another_apps_admin():
    # Each model's admin is registered once (anomalies/console/__init__.py says how); only Django's own
    # user and group admins are replaced, having no other way in.
    offenders = [f"{path.relative_to(ROOT)}:{node.lineno}" for path, tree in _modules() for node in ast.walk(tree)
                 if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "unregister"
                 and not (node.args and getattr(node.args[0], "id", None) in ("User", "Group"))]
    assert offenders == []


def test_the_engine_imports_no_django():
    for path in (ROOT / "anomalies" / "engine").glob("*.py"):
        assert not [m for m in _imports(ast.parse(path.read_text())) if m.split(".")[0] in ("django", "rest_framework")], path


def test_tenant_owned_rows_fail_closed(owner):
    with pytest.raises(UnscopedQuery):
        list(Series.objects.filter(service="ec2"))
    with pytest.raises(UnscopedQuery):
        Series.objects.count()
    assert list(Series.objects.for_tenant(owner.tenant).filter(service="ec2")) == []
    assert Series.objects.unscoped().filter(service="ec2").count() == 0
