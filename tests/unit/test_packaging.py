"""Packaging contract: the layer folders import as tradeplane.<layer>, the stdlib `operator` is never
shadowed, and the layers only import in the allowed direction."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAYERS = ("engine", "workloads", "operator", "rl")


def test_layers_import_from_their_folders() -> None:
    import tradeplane.engine
    import tradeplane.operator
    import tradeplane.rl
    import tradeplane.workloads

    for layer, module in zip(
        LAYERS, (tradeplane.engine, tradeplane.workloads, tradeplane.operator, tradeplane.rl), strict=True
    ):
        assert Path(module.__file__ or "").resolve() == REPO / layer / "__init__.py"
    assert Path(tradeplane.__file__ or "").resolve() == REPO / "tradeplane" / "__init__.py"


def test_stdlib_operator_in_this_process() -> None:
    import operator

    assert Path(operator.__file__ or "").parent == Path(ast.__file__).parent  # the stdlib directory
    assert operator.itemgetter(1)([10, 20]) == 20


@pytest.mark.parametrize(
    "flags",
    [pytest.param([], id="normal-start"), pytest.param(["-S"], id="no-site-so-nothing-preloaded")],
)
def test_stdlib_operator_from_repo_root(flags: list[str]) -> None:
    # From the repository root, '' (the cwd) is first on sys.path, right where ./operator/ lives.
    code = "import operator, ast; print(operator.__file__); assert operator.attrgetter('real')(3) == 3"
    out = subprocess.run([sys.executable, *flags, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert Path(out.stdout.strip()).parent != REPO / "operator"
    assert out.stdout.strip().endswith("operator.py")


def test_all_layers_import_in_a_fresh_interpreter_elsewhere(tmp_path: Path) -> None:
    code = "import tradeplane.engine, tradeplane.operator, tradeplane.workloads, tradeplane.rl, operator; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def _package_of(path: Path) -> list[str]:
    """The import package of a file in the repository: ``operator/reconcile/x.py`` → tradeplane.operator.reconcile
    (the layer folders are mapped under ``tradeplane``; files outside the repository: no package)."""
    try:
        rel = path.resolve().relative_to(REPO)
    except ValueError:
        return []
    parts = list(rel.parts[:-1])
    return parts if parts and parts[0] == "tradeplane" else ["tradeplane", *parts]


def _module_level(tree: ast.Module) -> list[ast.AST]:
    """The statements that run at import: the module body and the blocks of its top-level if/try."""
    out: list[ast.AST] = []
    todo: list[ast.stmt] = list(tree.body)
    while todo:
        node = todo.pop()
        out.append(node)
        if isinstance(node, ast.If | ast.Try):
            todo += node.body + node.orelse + getattr(node, "finalbody", [])
    return out


def _imported_modules(path: Path, *, lazy: bool = True) -> set[str]:
    """Absolute names of the modules ``path`` imports, relative imports resolved (``from ...engine import x``
    in tradeplane.operator.reconcile is tradeplane.engine); with ``lazy`` also those inside functions (a lazy
    import is still a dependency of the layer), else only what runs at import."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    package = _package_of(path)
    for node in ast.walk(tree) if lazy else _module_level(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif isinstance(node, ast.ImportFrom) and package and node.level <= len(package):
            base = package[: len(package) - node.level + 1]
            names.add(".".join([*base, *([node.module] if node.module else [])]))
    return names


# Which layer may import which (the brief's layering), and which third-party clients each may use.
FORBIDDEN = {
    "tradeplane": ("tradeplane.engine", "tradeplane.workloads", "tradeplane.operator", "tradeplane.rl", "kopf"),
    "engine": ("tradeplane.workloads", "tradeplane.operator", "tradeplane.rl", "kopf", "kubernetes",
               "confluent_kafka", "aiokafka", "clickhouse_driver", "chdb", "ray", "fastapi"),
    "workloads": ("tradeplane.operator", "tradeplane.rl", "kopf"),
    "rl": ("tradeplane.workloads", "tradeplane.operator", "kopf"),
    "operator": ("tradeplane.engine", "tradeplane.rl", "confluent_kafka", "aiokafka", "chdb", "numba"),
}  # fmt: skip
#: The exceptions, each for a reason: the rollout controller is pure engine code the operator runs as-is (numpy
#: only: the [operator] extra carries numpy), and the rollout analysis reads ClickHouse with the data plane's
#: store (imported lazily; without the workloads extra an analysis is INCONCLUSIVE, never a crash).
ALLOWED = {"operator": ("tradeplane.engine.rollout", "tradeplane.workloads.rollout")}


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_only_downward(layer: str) -> None:
    bad = []
    for path in sorted((REPO / layer).rglob("*.py")):
        # the CLI's commands import their layer when they run (that is how `tradeplane operator` stays light)
        for name in _imported_modules(path, lazy=layer != "tradeplane"):
            allowed = ALLOWED.get(layer, ())
            if any(name == a or name.startswith(a + ".") for a in allowed):
                continue
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[layer]):
                bad.append(f"{path.relative_to(REPO)} imports {name}")
    assert not bad, "\n".join(bad)


def test_layering_check_detects_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "x.py"
    bad.write_text("from tradeplane.workloads import bus\nimport kopf\n")
    assert {"tradeplane.workloads", "kopf"} <= _imported_modules(bad)
    # relative and lazy imports are resolved too: a reconciler importing the engine inside a function
    sample = REPO / "operator" / "reconcile" / "rollout.py"
    assert "tradeplane.engine.rollout" in _imported_modules(sample)
    assert "tradeplane.operator.render.routes" in _imported_modules(sample)


def test_operator_extra_carries_no_torch_chdb_or_numba() -> None:
    from importlib.metadata import requires

    reqs = requires("tradeplane") or []
    operator_reqs = [r.split(";")[0].strip() for r in reqs if 'extra == "operator"' in r]
    assert operator_reqs, "the [operator] extra is missing"
    heavy = ("torch", "chdb", "numba", "ray", "lightgbm")
    assert not [r for r in operator_reqs if r.split("=")[0].strip().lower() in heavy]
    core = [r for r in reqs if "extra ==" not in r]
    assert not [r for r in core if r.split("=")[0].strip().lower() in heavy]


def test_the_operator_process_loads_no_data_plane_library() -> None:
    """The operator image has only the [operator] extra: importing the handlers (which pulls in every
    renderer, reconciler and the Serve config builder) must not load numpy, numba, Ray, Kafka or chDB."""
    code = (
        "import sys, tradeplane.operator.main, tradeplane.operator.handlers, tradeplane.cli; "
        "bad = [m for m in ('numpy', 'numba', 'ray', 'onnxruntime', 'confluent_kafka', 'chdb', 'torch') "
        "if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)


def test_every_dependency_is_pinned_exactly() -> None:
    from importlib.metadata import requires

    loose = [r for r in requires("tradeplane") or [] if "==" not in r and not r.startswith("tradeplane")]
    assert not loose, f"unpinned dependencies: {loose}"
