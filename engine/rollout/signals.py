"""The controller's inputs and outputs: manual commands, the drawdown guard, the route, events, the transition.

Plain frozen values, so callers (operator, local runner, CLI) can build and inspect them without the logic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal

from .state import RolloutState


class Command(StrEnum):
    PROMOTE = "promote"  #: skip the remaining steps: Promoted now
    ABORT = "abort"  #: roll back now (also after promotion: back to the previous stable)
    RETRY = "retry"  #: from RolledBack/Failed back to the first step, failure counts reset, history kept


@dataclass(frozen=True)
class ManualCommand:
    action: Command
    by: str = "unknown"  #: who asked (user, annotation), quoted in the reason


@dataclass(frozen=True)
class GuardSignal:
    """The candidate's live drawdown against its RiskBudget limit (both percent), from the risk engine."""

    drawdown_pct: float
    limit_pct: float
    budget: str = ""

    def __post_init__(self) -> None:
        if not math.isfinite(self.drawdown_pct) or self.drawdown_pct < 0:
            raise ValueError(f"drawdown_pct must be finite and >= 0, got {self.drawdown_pct}")
        if not math.isfinite(self.limit_pct) or self.limit_pct <= 0:
            raise ValueError(f"limit_pct must be finite and > 0, got {self.limit_pct}")

    @property
    def breached(self) -> bool:
        return self.drawdown_pct >= self.limit_pct


class StepKind(StrEnum):
    """A canary step's unit; the values are the ModelRouter's canary kinds (engine/decision/router.py)."""

    WEIGHT = "weight"  #: share of decisions (stable hash of the symbol and the decision's key)
    COHORT = "cohort"  #: share of symbols (stable hash of the symbol)


@dataclass(frozen=True)
class Route:
    """How the family's traffic should be routed for this state (what the caller applies to the router).

    ``role``: the candidate's router role; ``fraction`` its share in [0, 1] (canary only; 1 when it is the
    stable, 0 otherwise); ``kind`` whether the share is of decisions or of symbols."""

    stable: str | None
    candidate: str
    role: Literal["stable", "canary", "shadow", "none"]
    fraction: float
    kind: StepKind

    def canary_weights(self) -> dict[str, float]:
        """The argument for ``ModelRouter.set_weights`` (empty unless the candidate is a canary)."""
        return {self.candidate: self.fraction} if self.role == "canary" else {}

    def canary_kinds(self) -> dict[str, str]:
        """``ModelRouter.set_weights``' ``kinds`` argument: the unit of the canary's share (empty unless
        the candidate is a canary)."""
        return {self.candidate: self.kind.value} if self.role == "canary" else {}


@dataclass(frozen=True)
class Event:
    """A Kubernetes-style event: ``type`` Normal/Warning, a CamelCase ``reason`` and a message."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class Transition:
    """The result of one :func:`advance` call."""

    state: RolloutState
    route: Route  #: the route for ``state`` (always given; apply it when ``route_changed``)
    route_changed: bool
    events: tuple[Event, ...]
    promoted: bool  #: the candidate became stable in this call
    rolled_back: bool  #: the candidate lost its traffic in this call
    next_analysis_at: datetime | None  #: when an analysis is due (None: none runs in this phase)
    wake_at: datetime | None  #: the earliest time advance() should be called again, even without a verdict
