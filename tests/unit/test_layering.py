"""The layering rule, checked on the source: modules import downward only.

Every ``import``/``from ... import`` in ``src/lowtide`` counts, including those under
``if TYPE_CHECKING:`` and inside functions: a type-only circle is still a circle for a reader.
Importing ``lowtide.a.b`` from outside package ``lowtide.a`` also runs ``lowtide/a/__init__.py``,
so that edge is counted too (the top-level ``lowtide/__init__.py``, which re-exports the public
API, is the one exception).
"""

from __future__ import annotations

import ast
from pathlib import Path

import lowtide

SRC = Path(lowtide.__file__).parent
#: the top layer: may import the hub (it builds hubs for users)
TOP = ("lowtide.cli", "lowtide.demo", "lowtide.doctor", "lowtide.integrations", "lowtide.testing")


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in SRC.rglob("*.py")}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # ``from pkg import sub`` may name a submodule
            names = [f"{mod}.{a.name}" for a in node.names] + [mod]
        else:
            continue
        for n in names:
            if not n.startswith("lowtide"):
                continue
            target = _resolve(n, modules)
            if target is None or target == name:
                continue
            targets.add(target)
            # importing a.b.c from outside package a.b runs a/b/__init__.py first
            parent = target.rpartition(".")[0]
            while parent and parent != "lowtide":
                if not name.startswith(parent + ".") and parent != name:
                    targets.add(parent)
                parent = parent.rpartition(".")[0]
    return targets


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in graph:
                    continue
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


def test_the_import_graph_has_no_cycle_type_only_imports_included() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_planted_cycle() -> None:
    graph = _graph()
    graph["lowtide.runtime"] = graph["lowtide.runtime"] | {"lowtide.hub"}
    cycles = _cycles(graph)
    assert cycles
    assert any("lowtide.hub" in group and "lowtide.runtime" in group for group in cycles)


def test_only_the_top_layer_imports_the_hub() -> None:
    offenders = sorted(
        name
        for name, targets in _graph().items()
        if "lowtide.hub" in targets and name != "lowtide" and not name.startswith(TOP)
    )
    assert offenders == []


def test_components_type_against_the_hub_protocol() -> None:
    graph = _graph()
    for component in (
        "lowtide.cache.tiered",
        "lowtide.cache.registry",
        "lowtide.invalidation",
        "lowtide.limiter.limiter",
        "lowtide.breaker.breaker",
        "lowtide.quotas",
        "lowtide.tenants",
        "lowtide.control",
        "lowtide.fleet",
        "lowtide.fleetview",
        "lowtide.periodic",
    ):
        reaches_protocol = "lowtide.runtime" in graph[component] or (
            "lowtide.cache.registry" in graph[component]
        )
        assert reaches_protocol, component


def test_the_protocol_module_sits_below_every_component() -> None:
    below = {
        "lowtide.blocklist",
        "lowtide.clock",
        "lowtide.context",
        "lowtide.errors",
        "lowtide.ledger",
        "lowtide.modes",
        "lowtide.redis",
        "lowtide.settings",
    }
    assert _graph()["lowtide.runtime"] <= below


def test_only_the_redis_package_imports_redis_py() -> None:
    offenders = []
    for name, path in _modules().items():
        if name.startswith("lowtide.redis"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            mods = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and not node.level
                else []
            )
            if any(m == "redis" or m.startswith("redis.") for m in mods):
                offenders.append(name)
    assert sorted(set(offenders)) == []
