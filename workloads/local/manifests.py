"""The desk a local run executes: the manifests' RiskBudgets, ModelVersions and Strategies, validated.

Why the same validation as ``tradeplane validate``: a manifest the API server would reject must not run
locally either, and the error must point at the same file, line and field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ...api.v1alpha1.modelversion import ModelVersionSpec
from ...api.v1alpha1.riskbudget import RiskBudgetSpec
from ...api.v1alpha1.strategy import StrategySpec, TradingMode
from ...api.validation import validate_files


class ManifestError(ValueError):
    """The manifests are invalid or inconsistent; the message names file, document and field."""


@dataclass
class Desk:
    """Typed specs by name, and the files they came from."""

    budgets: dict[str, RiskBudgetSpec] = field(default_factory=dict)
    models: dict[str, ModelVersionSpec] = field(default_factory=dict)
    strategies: dict[str, StrategySpec] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)


def manifest_files(paths: list[Path]) -> list[Path]:
    """Files named directly, and every ``*.yaml``/``*.yml`` of named directories (sorted, like kubectl -f)."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(x for x in p.iterdir() if x.suffix in (".yaml", ".yml"))
        elif p.exists():
            out.append(p)
        else:
            raise ManifestError(f"{p}: no such file or directory")
    if not out:
        raise ManifestError(f"no manifests in {', '.join(map(str, paths))}")
    return out


def load_desk(paths: list[Path]) -> Desk:
    """Validate and parse; every error is reported at once, then the references are checked."""
    files = manifest_files(paths)
    report = validate_files([str(f) for f in files])
    if not report.ok:
        raise ManifestError("invalid manifests:\n" + "\n".join(f"  {e}" for e in report.errors))
    desk = Desk(files=files)
    for f in files:
        for doc in yaml.safe_load_all(f.read_text(encoding="utf-8")):
            _add(desk, doc, f)
    if not desk.strategies:
        raise ManifestError(f"no Strategy in {', '.join(map(str, files))}")
    for name, s in desk.strategies.items():
        if s.risk_budget_ref.name not in desk.budgets:
            raise ManifestError(f"Strategy/{name}: spec.riskBudgetRef.name {s.risk_budget_ref.name!r}: no such "
                                f"RiskBudget in the manifests (known: {sorted(desk.budgets)})")  # fmt: skip
    return desk


def _add(desk: Desk, doc: Any, source: Path) -> None:
    if not isinstance(doc, dict) or not str(doc.get("apiVersion", "")).startswith("tradeplane.io/"):
        return
    kind, name = doc["kind"], doc["metadata"]["name"]
    tables: dict[str, dict[str, Any]] = {"RiskBudget": desk.budgets, "ModelVersion": desk.models,
                                         "Strategy": desk.strategies}  # fmt: skip
    table = tables[kind]
    if name in table:
        raise ManifestError(f"{source}: {kind}/{name} is defined twice")
    spec_type: Any = {"RiskBudget": RiskBudgetSpec, "ModelVersion": ModelVersionSpec, "Strategy": StrategySpec}[kind]
    table[name] = spec_type.model_validate(doc.get("spec") or {})


def trading_mode(desk: Desk) -> TradingMode:
    """The mode of a desk's strategies; they must all agree (one account trades one way), else a
    :class:`ManifestError` naming each strategy and its mode. Both decide and execute dispatch on it."""
    modes = {name: TradingMode(spec.mode) for name, spec in desk.strategies.items()}
    if len(set(modes.values())) > 1:
        listed = ", ".join(f"{name}: {mode.value}" for name, mode in sorted(modes.items()))
        raise ManifestError(f"the strategies of one account must share spec.mode; got {listed}")
    return next(iter(modes.values()), TradingMode.PAPER)
