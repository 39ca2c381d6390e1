"""How the code is laid out, measured: per app, its modules, lines, import arrows between its own
modules, floors (the longest chain of such arrows), import circles, and the largest module.

    python bench/layout.py            # metrics and anomalies
    python bench/layout.py tenants    # any app

Tests and migrations are left out: they are not rooms a reader walks through to find the code.
"""
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(tree: ast.AST, package: str) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def measure(app: str) -> dict:
    paths = [p for p in (ROOT / app).rglob("*.py")
             if "tests" not in p.parts and "migrations" not in p.parts]
    modules = {_module_name(p): p for p in paths}
    lines = {name: len(p.read_text().splitlines()) for name, p in modules.items()}
    arrows = set()
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for target in _imported(ast.parse(path.read_text()), package):
            if target in modules and target != name and not name.startswith(target + "."):
                arrows.add((name, target))
    return {"modules": modules, "lines": lines, "arrows": arrows}


def _floors_and_circles(modules, arrows):
    graph = {m: sorted(t for s, t in arrows if s == m) for m in modules}
    depth, on_path, circles = {}, set(), set()

    def visit(node):
        if node in depth:
            return depth[node]
        if node in on_path:
            circles.add(node)
            return 0
        on_path.add(node)
        depth[node] = 1 + max((visit(t) for t in graph[node]), default=0)
        on_path.discard(node)
        return depth[node]

    return max((visit(m) for m in graph), default=0), sorted(circles)


def report(app: str) -> None:
    found = measure(app)
    floors, circles = _floors_and_circles(found["modules"], found["arrows"])
    largest = max(found["lines"], key=found["lines"].get)
    print(f"{app}: {len(found['modules'])} modules, {sum(found['lines'].values())} lines, "
          f"{len(found['arrows'])} import arrows, {floors} floors, "
          f"largest {largest} ({found['lines'][largest]} lines), "
          f"circles through: {', '.join(circles) or 'none'}")


if __name__ == "__main__":
    for app in sys.argv[1:] or ("metrics", "anomalies"):
        report(app)
