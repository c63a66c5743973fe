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


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
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


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_only_downward(layer: str) -> None:
    bad = []
    for path in sorted((REPO / layer).rglob("*.py")):
        for name in _imported_modules(path):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[layer]):
                bad.append(f"{path.relative_to(REPO)} imports {name}")
    assert not bad, "\n".join(bad)


def test_layering_check_detects_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "x.py"
    bad.write_text("from tradeplane.workloads import bus\nimport kopf\n")
    assert {"tradeplane.workloads", "kopf"} <= _imported_modules(bad)


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
