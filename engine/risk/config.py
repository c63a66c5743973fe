"""The risk configuration compiled from a RiskBudget spec, one immutable value per spec revision.

Why a frozen copy instead of the pydantic spec itself: the engine compares the old and the new configuration
on every :meth:`~tradeplane.engine.risk.engine.RiskEngine.update_config` (a changed spec re-arms the latched
halts, see ``docs/risk.md``), and a copy the caller cannot mutate afterwards keeps that comparison honest.
"""

from __future__ import annotations

from dataclasses import dataclass

from tradeplane.api.v1alpha1.riskbudget import CircuitBreakers, HaltPolicy, RiskBudgetSpec, RiskLimits

_NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class RiskConfig:
    """The limits, breakers, kill switch, halt policy and reduce threshold of one RiskBudget revision."""

    limits: RiskLimits
    breakers: CircuitBreakers
    halt: bool
    halt_policy: HaltPolicy
    reduce_at_pct: float

    @classmethod
    def from_spec(cls, spec: RiskBudgetSpec) -> RiskConfig:
        """Deep copies of the spec's parts, so later edits of ``spec`` never leak into a running engine."""
        return cls(
            limits=spec.limits.model_copy(deep=True),
            breakers=spec.breakers.model_copy(deep=True),
            halt=spec.halt,
            halt_policy=HaltPolicy(spec.halt_policy),
            reduce_at_pct=spec.reduce_at_pct,
        )

    @property
    def cooldown_ns(self) -> int:
        """How long a breaker stays tripped after its input recovers (ns)."""
        return self.breakers.cooldown_seconds * _NS_PER_S

    @property
    def flatten(self) -> bool:
        """True when a halt closes every position (``haltPolicy: flatten``), not only cancels working orders."""
        return self.halt_policy is HaltPolicy.FLATTEN

    @property
    def reduce_fraction(self) -> float:
        """``reduce_at_pct`` as a fraction of a limit (0.8 for 80 %)."""
        return self.reduce_at_pct / 100.0
