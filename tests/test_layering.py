"""The package's shape, read from its source: sub-packages import only the layers below them, no module imports
itself back through others, and each external system has exactly one importer. A change that breaks the layering
fails here, naming the import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "harness"

# Top to bottom: a module may import its own layer and any layer after it, never one before it. "" is the
# foundation: the modules directly in harness/ (errors, paths, digests, files, flatten, urls).
LAYERS = ("__main__", "cli", "ui", "provenance", "cluster", "remote", "runs", "env", "project", "docker", "storage", "")

# External systems and the one module allowed to import each.
SOLE_IMPORTERS = {
    "docker": {"harness.docker.engine"},
    "git": {"harness.project.vcs"},
    "oras": {"harness.remote.client"},
    "distributed": {"harness.cluster.executor", "harness.cluster.task"},  # the submitting side, the worker side
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    found = {_module_name(p): p for p in PACKAGE.rglob("*.py") if "incontainer" not in p.parts}
    assert len(found) > 40, "the package was not found where the test expects it"
    return found


def _imports(name: str, path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, at any depth (function-level ones included)."""
    is_package = path.name == "__init__.py"
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # `from harness.env import oci` imports the module harness.env.oci
            out += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return out


def _internal(target: str, modules: dict[str, Path]) -> str | None:
    """The harness module an import refers to (the longest known prefix), or None for anything else."""
    parts = target.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 2 and parts[1] == "__main__":
        return "__main__"
    return parts[1] if len(parts) > 2 else ""


def _graph() -> dict[str, list[tuple[int, str]]]:
    modules = _modules()
    graph: dict[str, list[tuple[int, str]]] = {}
    for name, path in modules.items():
        edges = []
        for line, target in _imports(name, path):
            found = _internal(target, modules)
            if found is not None and found != name and found != "harness":
                edges.append((line, found))
        graph[name] = edges
    return graph


def test_every_sub_package_is_a_known_layer() -> None:
    layers = {_layer(m) for m in _modules()}
    assert layers <= set(LAYERS), f"add {sorted(layers - set(LAYERS))} to LAYERS, in its place in the pipeline"


def test_sub_packages_import_only_the_layers_below_them() -> None:
    wrong = []
    for module, edges in _graph().items():
        rank = LAYERS.index(_layer(module))
        for line, target in edges:
            if LAYERS.index(_layer(target)) < rank:
                wrong.append(f"{module}:{line} imports {target} ({_layer(target) or 'foundation'} is above it)")
    assert not wrong, "\n".join(wrong)


def test_no_module_imports_itself_back() -> None:
    graph = {m: sorted({t for _, t in edges}) for m, edges in _graph().items()}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    cycles: list[str] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("system", sorted(SOLE_IMPORTERS))
def test_each_external_system_has_one_importer(system: str) -> None:
    modules = _modules()
    importers = {
        name
        for name, path in modules.items()
        for _, target in _imports(name, path)
        if target == system or target.startswith(system + ".")
    }
    assert importers <= SOLE_IMPORTERS[system], f"{system} imported by {sorted(importers - SOLE_IMPORTERS[system])}"


def test_package_init_files_stay_empty() -> None:
    """Importing a sub-package must cost nothing: `harness --help` and `harness ls` load only what they use."""
    for init in PACKAGE.rglob("__init__.py"):
        body = [n for n in ast.parse(init.read_text()).body if not isinstance(n, ast.Expr)]  # a docstring is fine
        if init.parent == PACKAGE:
            assert [type(n).__name__ for n in body] == ["Assign"], "harness/__init__.py holds __version__ only"
        else:
            assert not body, f"{init.relative_to(PACKAGE.parent)} should be empty"


def test_the_layering_check_sees_a_wrong_import(tmp_path: Path) -> None:
    """The check itself: an upward import in a throwaway module is reported."""
    source = "from harness.runs import records\nfrom ..cli.output import echo\n"
    fake = tmp_path / "x.py"
    fake.write_text(source)
    found = [t for _, t in _imports("harness.storage.x", fake)]
    assert found == ["harness.runs.records", "harness.cli.output.echo"]
    modules = _modules()
    assert [_layer(_internal(t, modules) or "") for t in found] == ["runs", "cli"]
    assert all(LAYERS.index(_layer(_internal(t, modules) or "")) < LAYERS.index("storage") for t in found)
