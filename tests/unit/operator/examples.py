"""The examples/ manifests as the API server returns them: namespace, uid and generation set, and the spec
defaulted (the CRD's defaults equal the pydantic models', which tests/unit/api checks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from tradeplane.api.v1alpha1 import ModelVersionSpec, RiskBudgetSpec, StrategySpec

REPO = Path(__file__).resolve().parents[3]
NS = "desk"
Obj = dict[str, Any]
SPEC_MODELS: dict[str, type[BaseModel]] = {
    "Strategy": StrategySpec,
    "RiskBudget": RiskBudgetSpec,
    "ModelVersion": ModelVersionSpec,
}


def defaulted(kind: str, spec: Obj) -> Obj:
    """The spec as stored by the server."""
    out: Obj = SPEC_MODELS[kind].model_validate(spec).model_dump(by_alias=True, mode="json", exclude_none=True)
    return out


def load(name: str, uid: str, generation: int = 1) -> Obj:
    """``examples/<name>`` as read from the API server."""
    obj: Obj = yaml.safe_load((REPO / "examples" / name).read_text())
    obj["metadata"].update(namespace=NS, uid=uid, generation=generation)
    obj["spec"] = defaulted(obj["kind"], obj["spec"])
    return obj
