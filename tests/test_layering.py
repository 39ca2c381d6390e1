"""The layering STYLE.md promises, checked on the source: only services and selectors touch
`.objects`; imports flow one way; the engine imports no Django; tenant-owned rows fail closed; the
point store is one package with one face."""
import ast
import re
from fnmatch import fnmatch
from pathlib import Path

import pytest

from metrics import models as metrics_models
from metrics.models import Series
from tenants.models import UnscopedQuery

ROOT = Path(__file__).resolve().parent.parent
APPS = ("tenants", "metrics", "anomalies", "promql")
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
               "anomalies": {"cloudwatchdog", "tenants", "metrics"},
               "promql": {"cloudwatchdog", "tenants", "metrics", "anomalies"}}
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
    for path in [*(ROOT / "anomalies" / "engine").glob("*.py"), *(ROOT / "promql" / "engine").glob("*.py")]:
        assert not [m for m in _imports(ast.parse(path.read_text())) if m.split(".")[0] in ("django", "rest_framework")], path


def test_tenant_owned_rows_fail_closed(owner):
    with pytest.raises(UnscopedQuery):
        list(Series.objects.filter(service="ec2"))
    with pytest.raises(UnscopedQuery):
        Series.objects.count()
    assert list(Series.objects.for_tenant(owner.tenant).filter(service="ec2")) == []
    assert Series.objects.unscoped().filter(service="ec2").count() == 0


STORE = ROOT / "metrics" / "storage"
STORE_TABLE_CONSTANTS = ("POINT_TABLE", "CHUNK_TABLE", "NAN_SAMPLE_TABLE", "ROLLUP_1H_TABLE", "INGEST_LOG_TABLE")


def _outside_the_store():
    """App modules other than the store's own and models.py (tests and migrations are left out already)."""
    for path, tree in _modules():
        if STORE not in path.parents and path != ROOT / "metrics" / "models.py":
            yield path, tree


def _docstrings(tree) -> set[int]:
    """The docstring nodes of a module: prose may mention a table, code may not."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def test_only_the_store_names_the_point_chunk_nan_sample_rollup_and_ingest_log_tables():
    tables = [getattr(metrics_models, name) for name in STORE_TABLE_CONSTANTS]
    assert tables == ["metrics_point", "metrics_chunk", "metrics_nan_sample", "metrics_rollup_1h", "metrics_ingest_log"]
    named = re.compile("|".join(map(re.escape, tables)))  # partitions (metrics_point_p20260105) included
    offenders = []
    for path, tree in _outside_the_store():
        prose = _docstrings(tree)
        for node in ast.walk(tree):
            text = node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None
            name = (node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute)
                    else node.name if isinstance(node, ast.alias) else None)
            if (text and id(node) not in prose and named.search(text)) or name in STORE_TABLE_CONSTANTS:
                offenders.append(f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '')} {text or name}")
    assert offenders == []


def test_code_outside_the_store_goes_through_its_face():
    inner = {path.stem for path in STORE.glob("*.py")} - {"__init__"}
    offenders = []
    for path, tree in _outside_the_store():
        bound = set()  # names the package is imported as: storage, metrics_storage, ...
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "metrics.storage":
                offenders += [f"{path.relative_to(ROOT)} imports metrics.storage.{a.name}"
                              for a in node.names if a.name in inner]
            elif isinstance(node, ast.ImportFrom) and node.module == "metrics":
                bound.update(a.asname or a.name for a in node.names if a.name == "storage")
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                offenders += [f"{path.relative_to(ROOT)} imports {m}" for m in _imports(ast.Module([node], []))
                              if m.startswith("metrics.storage.")]
        offenders += [f"{path.relative_to(ROOT)}:{node.lineno} uses {node.value.id}.{node.attr}"
                      for node in ast.walk(tree) if isinstance(node, ast.Attribute) and node.attr in inner
                      and isinstance(node.value, ast.Name) and node.value.id in bound]
    assert offenders == []
