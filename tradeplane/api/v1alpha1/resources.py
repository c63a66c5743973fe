"""The three top-level resources and the facts the CRDs need about each (names, columns, scope).

This table is the single source of truth: the CRD generator, the validator, the docs generator and the
operator all read it, so a new kind or printer column is added in exactly one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from . import modelversion, riskbudget, strategy
from ._base import GROUP, ObjectMeta

CATEGORY = "tradeplane"


class _Resource(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    api_version: Literal["tradeplane.io/v1alpha1"] = Field(alias="apiVersion", description="API group/version.")
    metadata: ObjectMeta = Field(description="Standard object metadata.")


class RiskBudget(_Resource):
    kind: Literal["RiskBudget"] = Field(description="RiskBudget.")
    spec: riskbudget.RiskBudgetSpec = Field(description="Limits, breakers and the kill switch.")
    status: riskbudget.RiskBudgetStatus | None = Field(default=None, description="Written by the operator.")


class ModelVersion(_Resource):
    kind: Literal["ModelVersion"] = Field(description="ModelVersion.")
    spec: modelversion.ModelVersionSpec = Field(description="Artifact, serving and rollout.")
    status: modelversion.ModelVersionStatus | None = Field(default=None, description="Written by the operator.")


class Strategy(_Resource):
    kind: Literal["Strategy"] = Field(description="Strategy.")
    spec: strategy.StrategySpec = Field(description="What to trade and how.")
    status: strategy.StrategyStatus | None = Field(default=None, description="Written by the operator.")


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    type: Literal["string", "integer", "number", "boolean", "date"]
    json_path: str
    description: str
    priority: int = 0  #: 0 = shown by default; 1 = only with `-o wide`


@dataclass(frozen=True)
class ResourceDef:
    """Everything the CRD generator needs to know about one kind."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    model: type[_Resource]
    spec_model: type[BaseModel]
    status_model: type[BaseModel]
    columns: tuple[PrinterColumn, ...]
    description: str
    #: Checks spanning several fields. The API server cannot express them (no CEL in our minimum Kubernetes
    #: version); `tradeplane validate` and the operator's admission enforce them.
    cross_field_rules: tuple[str, ...] = ()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


_AGE = PrinterColumn("Age", "date", ".metadata.creationTimestamp", "Time since creation.")

RESOURCES: tuple[ResourceDef, ...] = (
    ResourceDef(
        kind=riskbudget.KIND,
        plural=riskbudget.PLURAL,
        singular="riskbudget",
        short_names=("rb",),
        model=RiskBudget,
        spec_model=riskbudget.RiskBudgetSpec,
        status_model=riskbudget.RiskBudgetStatus,
        description="A desk-level risk envelope shared by the strategies charged to it, with a kill switch.",
        columns=(
            PrinterColumn("Phase", "string", ".status.phase", "Active, Reducing or Halted."),
            PrinterColumn("Halt", "boolean", ".spec.halt", "Kill switch."),
            PrinterColumn("Gross", "number", ".status.usage.grossNotionalUsdt", "Gross notional in use (USDT)."),
            PrinterColumn("MaxGross", "number", ".spec.limits.maxGrossNotionalUsdt", "Gross notional limit (USDT)."),
            PrinterColumn("DailyPnL", "number", ".status.usage.dailyPnlUsdt", "PnL since 00:00 UTC (USDT)."),
            PrinterColumn("Strategies", "integer", ".status.strategyCount", "Charged strategies."),
            _AGE,
        ),
    ),
    ResourceDef(
        kind=modelversion.KIND,
        plural=modelversion.PLURAL,
        singular="modelversion",
        short_names=("mv",),
        model=ModelVersion,
        spec_model=modelversion.ModelVersionSpec,
        status_model=modelversion.ModelVersionStatus,
        description="One immutable model artifact of a model family, how it is served and how it is rolled out.",
        cross_field_rules=(
            "`artifact` or `training` must be set; `featureSignature` is required with `artifact`.",
            "`featureSignature.hash` must equal sha256 of `featureSignature.names` joined by newlines.",
            "Each rollout step sets exactly one of `weightPct` and `cohortPct`.",
            "`rollout.strategy: canary` needs at least one step.",
        ),
        columns=(
            PrinterColumn("Model", "string", ".spec.model", "Model family."),
            PrinterColumn("Kind", "string", ".spec.kind", "classifier or execution-policy."),
            PrinterColumn("Rollout", "string", ".spec.rollout.strategy", "canary, shadow or immediate."),
            PrinterColumn("Phase", "string", ".status.phase", "Lifecycle phase."),
            PrinterColumn("Step", "integer", ".status.currentStep", "Current canary step."),
            PrinterColumn("Weight", "number", ".status.weightPct", "Candidate traffic (percent)."),
            PrinterColumn("Serving", "string", ".spec.serving.mode", "in-process or rayserve.", priority=1),
            _AGE,
        ),
    ),
    ResourceDef(
        kind=strategy.KIND,
        plural=strategy.PLURAL,
        singular="strategy",
        short_names=("strat", "tps"),
        model=Strategy,
        spec_model=strategy.StrategySpec,
        status_model=strategy.StrategyStatus,
        description="What to trade and how: venue, symbols, features, model, decision, execution and risk.",
        cross_field_rules=(
            "`mode: live` needs a real venue (not `paper`).",
            "`symbols` must not repeat.",
            "`markPrice`, `forceOrder` and `openInterest` streams need a futures venue.",
            "`sizing.minSizeMult` must not exceed `sizing.maxSizeMult`.",
            "`execution.policy: rl-policy` needs `execution.policyModel`.",
        ),
        columns=(
            PrinterColumn("Venue", "string", ".spec.venue", "Venue."),
            PrinterColumn("Mode", "string", ".spec.mode", "paper or live."),
            PrinterColumn("Budget", "string", ".spec.riskBudgetRef.name", "RiskBudget charged."),
            PrinterColumn("Phase", "string", ".status.phase", "Lifecycle phase."),
            PrinterColumn("PnL", "number", ".status.pnl.realizedUsdt", "Realized PnL (USDT)."),
            PrinterColumn("Rev", "string", ".status.configRev", "Active config revision."),
            PrinterColumn("Model", "string", ".spec.model.family", "Model family.", priority=1),
            _AGE,
        ),
    ),
)

RESOURCES_BY_KIND: dict[str, ResourceDef] = {r.kind: r for r in RESOURCES}
