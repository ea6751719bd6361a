"""The import graph of the project follows its layers (docs/architecture.md) and has no cycle.

Every ``import`` and ``from ... import`` statement of every module is read with ``ast`` (also those inside functions
and ``if TYPE_CHECKING:`` blocks), resolved to the project's module it names, and checked against :data:`LAYERS`: a
module may import its own package and the layers below its own, never a peer or a layer above.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("envs", "qarl", "baselines")

#: Bottom to top. Packages on one line are peers: neither may import the other.
LAYERS: list[tuple[str, ...]] = [
    ("envs",),
    ("qarl",),  # the package itself: its version only
    ("qarl.files", "qarl.provenance"),
    ("qarl.config",),
    ("qarl.sac",),
    ("qarl.training",),
    ("qarl.quantal",),
    ("baselines",),
    ("qarl.evaluation", "qarl.diagnostics"),
    ("qarl.experiment",),
    ("qarl.sweep", "qarl.policy"),
    ("qarl.report", "qarl.bench"),
    ("qarl.cli",),
    ("qarl.__main__",),
]


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _unit(module: str) -> str:
    """The layer entry a module belongs to (the longest listed prefix)."""
    best = ""
    for layer in LAYERS:
        for unit in layer:
            if (module == unit or module.startswith(unit + ".")) and len(unit) > len(best):
                best = unit
    assert best, f"{module} belongs to no layer: add it to LAYERS"
    return best


def _rank(unit: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if unit in layer)


def _imports(module: str, path: Path) -> list[tuple[str, int, str | None]]:
    """(imported project module, line, imported name or None) for every import statement of a module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_pkg = path.name == "__init__.py"
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno, None) for a in node.names if a.name.split(".")[0] in PACKAGES]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.split(".")[0] not in PACKAGES:
                continue
            for a in node.names:
                sub = f"{target}.{a.name}"
                out.append((sub, node.lineno, None) if sub in MODULES else (target, node.lineno, a.name))
    return out


def _resolve(target: str) -> str:
    """The project module an import names (``import qarl.sac.learner`` -> that module; unknown -> nearest parent)."""
    while target not in MODULES and "." in target:
        target = target.rsplit(".", 1)[0]
    return target


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        _unit(module)


def test_no_import_points_up_or_sideways() -> None:
    bad = []
    for module, path in MODULES.items():
        unit = _unit(module)
        for target, line, _ in _imports(module, path):
            other = _unit(_resolve(target))
            if other == unit or unit.startswith(other + "."):
                continue  # its own package, or a package above it in the tree (the package's own __init__)
            if _rank(other) >= _rank(unit):
                bad.append(f"{path.relative_to(ROOT)}:{line}: {unit} imports {target} ({other})")
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def test_qarl_never_imports_baselines() -> None:
    """The method registry finds baselines by import strings; no qarl module imports them."""
    bad = [
        f"{path.relative_to(ROOT)}:{line}: {target}"
        for module, path in MODULES.items()
        if module.startswith("qarl")
        for target, line, _ in _imports(module, path)
        if target.split(".")[0] == "baselines"
    ]
    assert not bad, "qarl imports baselines:\n" + "\n".join(bad)


def test_baselines_use_public_names_only() -> None:
    bad = []
    for module, path in MODULES.items():
        if not module.startswith("baselines"):
            continue
        for target, line, name in _imports(module, path):
            if target.startswith("qarl") and (
                (name or "").startswith("_") or any(p.startswith("_") for p in target.split("."))
            ):
                bad.append(f"{path.relative_to(ROOT)}:{line}: {target}:{name}")
    assert not bad, "baselines import private names:\n" + "\n".join(bad)


def test_no_import_cycle() -> None:
    graph = {m: {_resolve(t) for t, _, _ in _imports(m, p)} - {m} for m, p in MODULES.items()}
    # a package's __init__ is imported before its modules: an edge to a package is an edge to its __init__ only
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                cycle = [*stack[stack.index(n) :], n]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_the_checker_catches_an_upward_import(tmp_path: Path) -> None:
    """The rules above would flag a lower layer importing a higher one (checked on a synthetic module)."""
    fake = tmp_path / "loop.py"
    fake.write_text("from qarl.experiment.trial import run_trial\nimport qarl.report.figures\n")
    found = [_unit(_resolve(t)) for t, _, _ in _imports("qarl.training.loop", fake)]
    assert found == ["qarl.experiment", "qarl.report"]
    assert all(_rank(u) > _rank("qarl.training") for u in found)
