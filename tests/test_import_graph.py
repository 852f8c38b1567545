"""The house drawn from its imports: every module of webapp/ and workers/, every import statement in it (also the
ones inside functions, which run as surely as the ones at the top, only later).

Layers, top to bottom: `workers` (the Celery interface, like views and the API) → the apps `webapp.<app>` →
`webapp.core`. Services enqueue by task name (webapp.core.jobs.job_enqueue), so nothing in webapp imports workers."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("webapp", "workers")

# The app order (docs/architecture.md, "Apps in order"): an app imports only apps before it. Apps below reach apps
# above through an inversion (a signal, a registry filled in AppConfig.ready), never an import. An app not listed
# here (a new one) is held to "no circle" until it is placed.
APP_ORDER = (
    "webapp.core", "webapp.tasks", "webapp.rubrics", "webapp.endpoints", "webapp.rollouts", "webapp.judging",
    "webapp.reviews", "webapp.rubric_tools", "webapp.rollout_browser", "webapp.runs", "webapp.exports",
    "webapp.compare", "webapp.api", "webapp.demo",
)


def _modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (REPO_ROOT / package).rglob("*.py"):
            relative = path.relative_to(REPO_ROOT)
            if "migrations" in relative.parts:
                continue
            name = ".".join(relative.with_suffix("").parts)
            modules[name.removesuffix(".__init__")] = path
    return modules


def _imports(name: str, path: Path) -> set[str]:
    """Every module `name` imports, resolved to absolute names (`from a import b` yields a and a.b)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    """module → the project modules it imports (names that are not modules, like `from a import func`, dropped)."""
    modules = _modules()
    return {name: {m for m in _imports(name, path) if m in modules and m != name} for name, path in modules.items()}


def _layer(module: str) -> str:
    parts = module.split(".")
    return "workers" if parts[0] == "workers" else ".".join(parts[:2])


def _circles(edges: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one member (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[set[str]] = []
    counter = 0
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    circles.append(component)
    return circles


def test_the_graph_is_read_from_the_code(graph):
    # Guards the reader itself: a known function-level import and a known relative import are found.
    assert "webapp.core.jobs" in graph["webapp.judging.services"]
    assert "webapp.judging.services" in graph["workers.judging"]  # imported inside the task functions
    assert "workers.celery" in graph["workers"]


def test_no_module_imports_itself_back_through_others(graph):
    circles = _circles(graph)
    assert circles == [], "import circles: " + "; ".join(" ↔ ".join(sorted(c)) for c in circles)


def test_nothing_in_webapp_imports_workers(graph):
    upward = sorted(f"{m} → {t}" for m, targets in graph.items() if m.startswith("webapp") for t in targets
                    if t.startswith("workers"))
    assert upward == [], "enqueue by name with webapp.core.jobs.job_enqueue instead:\n" + "\n".join(upward)


def test_core_imports_no_other_app(graph):
    upward = sorted(f"{m} → {t}" for m, targets in graph.items() if _layer(m) == "webapp.core" for t in targets
                    if _layer(t) not in ("webapp.core", "webapp"))
    assert upward == [], "\n".join(upward)


def _app_edges(graph: dict[str, set[str]]) -> dict[tuple[str, str], list[str]]:
    """(app, app it imports) → the module imports that make that edge (imports of the package `webapp` left out)."""
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for module, targets in graph.items():
        for target in targets:
            if _layer(module) != _layer(target) and _layer(target) != "webapp":
                edges[(_layer(module), _layer(target))].append(f"{module} → {target}")
    return edges


def test_apps_import_each_other_without_circles(graph):
    apps: dict[str, set[str]] = defaultdict(set)
    for source, target in _app_edges(graph):
        apps[source].add(target)
    circles = _circles(dict(apps))
    assert circles == [], "circles of apps: " + "; ".join(" ↔ ".join(sorted(c)) for c in circles)


def test_apps_import_only_apps_below_them(graph):
    rank = {app: position for position, app in enumerate(APP_ORDER)}
    upward = sorted(
        line for (source, target), lines in _app_edges(graph).items()
        if source in rank and target in rank and rank[target] > rank[source] for line in lines
    )
    assert upward == [], "imports that run up the app order (invert them: a signal or a registry):\n" + "\n".join(
        upward)


def test_the_order_checks_something(graph):
    # Guards the test above: the order is read from real packages, and real edges run down it.
    edges = _app_edges(graph)
    assert all((REPO_ROOT / app.replace(".", "/")).is_dir() for app in APP_ORDER)
    assert ("webapp.judging", "webapp.rollouts") in edges and ("webapp.reviews", "webapp.judging") in edges
