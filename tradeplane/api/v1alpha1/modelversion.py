"""ModelVersion: one immutable model artifact of a model family, and how it is served and rolled out.

A family (``spec.model``) has one stable version; a new version enters as a canary or a shadow and is
promoted or rolled back by analysis against stable over the same window.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Literal, Self

from pydantic import Field, model_validator

from ._base import NAME_PATTERN, ApiModel, Quantity, ResourceStatusBase

KIND = "ModelVersion"
PLURAL = "modelversions"

SHA256_PATTERN = r"^[a-f0-9]{64}$"
ARTIFACT_URI_PATTERN = r"^(file|s3|gs|https|local)://\S+$"


class ModelKind(StrEnum):
    CLASSIFIER = "classifier"  #: scores P(up) for the decision engine
    EXECUTION_POLICY = "execution-policy"  #: an RL policy choosing how to work an order


class ArtifactFormat(StrEnum):
    ONNX = "onnx"


class Artifact(ApiModel):
    """Where the immutable model file is and how to verify it."""

    uri: str = Field(
        pattern=ARTIFACT_URI_PATTERN,
        description="Location of the model file: `file://`, `local://` (relative to the tradeplane home), "
        "`s3://`, `gs://` or `https://`.",
    )
    sha256: str = Field(pattern=SHA256_PATTERN, description="Hex sha256 of the file; loading fails on mismatch.")
    format: ArtifactFormat = Field(default=ArtifactFormat.ONNX, description="Serialization format.")


class FeatureSignature(ApiModel):
    """The exact ordered input the model expects; the runtime refuses a feature set with another hash."""

    names: list[str] = Field(min_length=1, max_length=1024, description="Ordered feature names.")
    hash: str = Field(pattern=SHA256_PATTERN, description="sha256 of the names joined by newlines (UTF-8).")

    @model_validator(mode="after")
    def _hash_matches_names(self) -> Self:
        expected = feature_signature_hash(self.names)
        if self.hash != expected:
            raise ValueError(f"hash does not match names (sha256 of the names is {expected})")
        return self


def feature_signature_hash(names: list[str]) -> str:
    """The signature hash: sha256 of the ordered names joined by newlines, so order matters."""
    return hashlib.sha256("\n".join(names).encode()).hexdigest()


class OfflineMetrics(ApiModel):
    """Out-of-sample metrics from training, for comparison with live analysis. All optional."""

    pr_auc: float | None = Field(default=None, ge=0, le=1, description="Precision-recall AUC.")
    roc_auc: float | None = Field(default=None, ge=0, le=1, description="ROC AUC.")
    brier: float | None = Field(default=None, ge=0, le=1, description="Brier score of calibrated probabilities.")
    ece: float | None = Field(default=None, ge=0, le=1, description="Expected calibration error (fraction).")
    max_calibration_error_pp: float | None = Field(
        default=None,
        ge=0,
        le=100,
        description="Largest |predicted − observed| over decile buckets (percentage points).",
    )
    hit_at_top_k: float | None = Field(default=None, ge=0, le=1, description="Hit rate of the top-K scored signals.")
    avg_utility: float | None = Field(default=None, description="Mean utility U of taken signals.")
    information_coefficient: float | None = Field(default=None, ge=-1, le=1, description="Pearson IC.")
    rank_information_coefficient: float | None = Field(default=None, ge=-1, le=1, description="Spearman IC.")
    false_positive_rate: float | None = Field(default=None, ge=0, le=1, description="FPR at the decision threshold τ.")


class ComputeResources(ApiModel):
    cpu: Quantity = Field(default="1", description="CPU request and limit (Kubernetes quantity).")
    memory: Quantity = Field(default="2Gi", description="Memory request and limit (Kubernetes quantity).")


class TrainingSpec(ApiModel):
    """If present, the operator runs this training as a RayJob and fills in the artifact when it succeeds."""

    data: list[str] = Field(min_length=1, description="Input data URIs (captures, klines, funding).")
    feature_set: str = Field(
        default="bars-v1", description="Name of the engine feature set (`tradeplane train --features`)."
    )
    label: str = Field(default="triple-barrier", description="Label definition, e.g. `triple-barrier`.")
    horizon_seconds: int = Field(default=60, ge=1, le=86_400, description="Label horizon H (s).")
    max_duration_minutes: int = Field(default=60, ge=1, le=1440, description="The job fails after this (min).")
    workers: int = Field(default=1, ge=0, le=64, description="Ray worker replicas for the training cluster.")
    resources: ComputeResources = Field(default_factory=ComputeResources, description="Per Ray pod.")


class ServingMode(StrEnum):
    IN_PROCESS = "in-process"  #: ONNX Runtime inside the decide workload
    RAY_SERVE = "rayserve"  #: a Ray Serve deployment behind a weighted router


class ServingSpec(ApiModel):
    mode: ServingMode = Field(default=ServingMode.IN_PROCESS, description="Where inference runs.")
    replicas: int = Field(default=1, ge=1, le=64, description="Ray Serve replicas (rayserve only).")
    max_batch_size: int = Field(default=32, ge=1, le=4096, description="Dynamic batching: rows per batch.")
    batch_wait_timeout_ms: float = Field(
        default=2.0, ge=0, le=1000, description="Dynamic batching: longest wait to fill a batch (ms)."
    )
    resources: ComputeResources = Field(default_factory=ComputeResources, description="Per replica.")


class RolloutStrategy(StrEnum):
    CANARY = "canary"  #: step through traffic weights or symbol cohorts under analysis
    SHADOW = "shadow"  #: score everything, execute nothing; compare against stable
    IMMEDIATE = "immediate"  #: become stable at once (first version of a family, or emergencies)


class RolloutStep(ApiModel):
    """One canary step: either a traffic weight or a symbol cohort, held at least `pauseSeconds`."""

    weight_pct: float | None = Field(
        default=None, gt=0, le=100, description="Share of decisions scored by the candidate (percent)."
    )
    cohort_pct: float | None = Field(
        default=None,
        gt=0,
        le=100,
        description="Share of symbols (stable hash of the symbol) routed to the candidate (percent).",
    )
    pause_seconds: int = Field(default=300, ge=0, le=7 * 86_400, description="Minimum time at this step (s).")

    @model_validator(mode="after")
    def _exactly_one_target(self) -> Self:
        if (self.weight_pct is None) == (self.cohort_pct is None):
            raise ValueError("set exactly one of weightPct or cohortPct")
        return self

    @property
    def kind(self) -> Literal["weight", "cohort"]:
        """The router unit of this step's share: ``weight`` (decisions) or ``cohort`` (symbols)."""
        return "cohort" if self.cohort_pct is not None else "weight"


class AnalysisThresholds(ApiModel):
    """Candidate limits; a breach fails the analysis run. Unset thresholds are not checked."""

    max_brier: float | None = Field(default=0.25, ge=0, le=1, description="Brier score ceiling.")
    max_ece: float | None = Field(default=0.05, ge=0, le=1, description="Expected calibration error ceiling.")
    max_calibration_drift_pp: float | None = Field(
        default=5.0, ge=0, le=100, description="Largest bucket drift from the offline calibration (percentage points)."
    )
    min_pr_auc: float | None = Field(default=None, ge=0, le=1, description="PR-AUC floor once labels have matured.")
    min_hit_rate: float | None = Field(default=None, ge=0, le=1, description="Hit-rate floor once labels matured.")
    max_latency_p99_ms: float | None = Field(default=5.0, gt=0, description="Inference p99 ceiling (ms).")
    min_pnl_vs_stable_per_risk: float | None = Field(
        default=None, description="Floor of (candidate − stable) PnL per unit of risk."
    )
    max_drawdown_pct: float | None = Field(default=None, gt=0, le=100, description="Candidate drawdown ceiling (%).")


class AnalysisSpec(ApiModel):
    interval_seconds: int = Field(default=60, ge=5, le=86_400, description="How often analysis runs (s).")
    min_samples: int = Field(default=500, ge=1, description="Scored decisions needed before any judgement (count).")
    max_failures: int = Field(default=3, ge=1, le=100, description="Failed analysis runs that roll back (count).")
    max_consecutive_failures: int = Field(
        default=2, ge=1, le=100, description="Failed runs in a row that roll back (count)."
    )
    thresholds: AnalysisThresholds = Field(default_factory=AnalysisThresholds, description="Metric limits.")


class RolloutSpec(ApiModel):
    strategy: RolloutStrategy = Field(
        default=RolloutStrategy.SHADOW,
        description="How the version goes live. The default, shadow, never executes the candidate's decisions.",
    )
    steps: list[RolloutStep] = Field(
        default_factory=list, max_length=20, description="Canary steps, in order; required for canary."
    )
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec, description="Automated analysis.")

    @model_validator(mode="after")
    def _canary_needs_steps(self) -> Self:
        if self.strategy is RolloutStrategy.CANARY and not self.steps:
            raise ValueError("a canary rollout needs at least one step")
        return self

    def initial_route(self) -> tuple[Literal["stable", "canary", "shadow"], float]:
        """(role, canary weight in [0, 1]) a version starts with, wherever it is scored (local router, Ray
        Serve): immediate → stable; canary → canary at its first step's share (the rollout controller moves
        it later); shadow → scored on every decision, never acted on. Weight 0 except for a canary."""
        if self.strategy is RolloutStrategy.IMMEDIATE:
            return "stable", 0.0
        if self.strategy is RolloutStrategy.CANARY:
            first = self.steps[0] if self.steps else None
            pct = (first.weight_pct or first.cohort_pct or 0.0) if first is not None else 0.0
            return "canary", pct / 100.0
        return "shadow", 0.0

    def step_kind(self, index: int | None) -> Literal["weight", "cohort"]:
        """The router unit (``weight``: share of decisions, ``cohort``: share of symbols) of canary step
        ``index`` (past the last step: the last one, as the rollout controller does); ``cohort`` — the
        router's default — when there are no steps."""
        if not self.steps:
            return "cohort"
        return self.steps[min(max(index or 0, 0), len(self.steps) - 1)].kind

    def initial_kind(self) -> Literal["weight", "cohort"]:
        """The unit of :meth:`initial_route`'s weight: a canary's first step's; ``cohort`` otherwise."""
        return self.step_kind(0) if self.strategy is RolloutStrategy.CANARY else "cohort"


class ModelVersionSpec(ApiModel):
    """An immutable model artifact and how it goes live."""

    model: str = Field(
        pattern=NAME_PATTERN, max_length=40, description="Model family; strategies reference the family, not a version."
    )
    kind: ModelKind = Field(default=ModelKind.CLASSIFIER, description="What the model decides.")
    artifact: Artifact | None = Field(
        default=None, description="The model file. Required unless `training` is set (training produces it)."
    )
    feature_signature: FeatureSignature | None = Field(
        default=None, description="Ordered feature names and their hash. Required with `artifact`."
    )
    metrics: OfflineMetrics = Field(default_factory=OfflineMetrics, description="Offline out-of-sample metrics.")
    training: TrainingSpec | None = Field(default=None, description="Optional training job (Ray).")
    serving: ServingSpec = Field(default_factory=ServingSpec, description="Where and how inference runs.")
    rollout: RolloutSpec = Field(default_factory=RolloutSpec, description="How this version goes live.")

    @model_validator(mode="after")
    def _artifact_or_training(self) -> Self:
        if self.artifact is None and self.training is None:
            raise ValueError("set `artifact` (a trained model) or `training` (to produce one)")
        if self.artifact is not None and self.feature_signature is None:
            raise ValueError("`featureSignature` is required with `artifact`")
        return self


class ModelVersionPhase(StrEnum):
    PENDING = "Pending"
    TRAINING = "Training"
    READY = "Ready"
    SHADOW = "Shadow"
    CANARY = "Canary"
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"


class AnalysisResult(ApiModel):
    metric: str = Field(description="Metric name, e.g. `brier`.")
    candidate: float | None = Field(default=None, description="Candidate value over the window.")
    stable: float | None = Field(default=None, description="Stable value over the same window.")
    threshold: float | None = Field(default=None, description="The limit it was judged against.")
    passed: bool = Field(description="Whether the candidate passed.")
    reason: str = Field(default="", description="Why, in words.")


class RevisionRecord(ApiModel):
    phase: ModelVersionPhase = Field(description="Phase entered.")
    time: str = Field(description="RFC 3339 time of the transition.")
    reason: str = Field(default="", description="Why.")


class RolloutProgress(ApiModel):
    """What the rollout controller needs to resume exactly where it was (an operator restart keeps the step
    and its timers): the versions involved, the step's start, the last analysis and its verdict."""

    candidate: str = Field(description="The version being rolled out (this ModelVersion).")
    stable: str | None = Field(default=None, description="The family's stable version the candidate is judged against.")
    previous_stable: str | None = Field(default=None, description="After promotion: the version a rollback restores.")
    step_started_at: str | None = Field(default=None, description="RFC 3339 start of the current step (its pause).")
    last_analysis_at: str | None = Field(default=None, description="RFC 3339 time of the last analysis run.")
    step_passed: bool = Field(default=False, description="The latest analysis in the current step passed.")
    consecutive_failures: int = Field(default=0, ge=0, description="Failed analysis runs in a row (count).")
    last_verdict: str | None = Field(default=None, description="PASS, FAIL or INCONCLUSIVE.")
    last_reason: str = Field(default="", description="The last analysis's reason, in words.")


class ModelVersionStatus(ResourceStatusBase):
    """Observed state of a ModelVersion: phase, canary step and weight, analysis and history."""

    phase: ModelVersionPhase | None = Field(default=None, description="Lifecycle phase.")
    current_step: int | None = Field(default=None, ge=0, description="Index of the current canary step.")
    weight_pct: float | None = Field(default=None, ge=0, le=100, description="Current candidate traffic (percent).")
    analysis: list[AnalysisResult] = Field(default_factory=list, description="Results of the latest analysis run.")
    failures: int = Field(default=0, ge=0, description="Failed analysis runs so far (count).")
    history: list[RevisionRecord] = Field(default_factory=list, description="Phase transitions, oldest first.")
    rollout: RolloutProgress | None = Field(default=None, description="Rollout controller state (resume point).")
