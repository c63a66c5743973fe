"""One Strategy's live state inside a desk: its configuration revisions, cooldowns, model router, trades.

Why a state holder without behaviour of its own: the decision is :func:`~..decision.pipeline.decide`, the
lifecycle is :class:`~..trading.lifecycle.TradeBook`, risk is the budget's
:class:`~..risk.engine.RiskEngine`; the desk (``desk.py``) sequences them. Keeping the per-strategy state in
one object makes hot reconfiguration a single call (:meth:`StrategyRuntime.reconfigure`) and lets the desk
treat any number of strategies alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...api.v1alpha1.strategy import ExecutionPolicy, StrategySpec
from ..decision.config import ConfigHolder, DecisionConfig, compile_decision_config
from ..decision.cooldown import Cooldowns
from ..decision.pipeline import Contributions
from ..decision.router import ModelRouter
from ..sim.executors import TwapSpec
from ..sim.routing import RoutingTable
from ..trading.lifecycle import TradeBook
from ..trading.management import ManagementConfig
from .instruments import Instrument
from .market import clock_for

_NS_PER_MS = 1_000_000
_STYLES = {
    ExecutionPolicy.IMMEDIATE: "immediate",
    ExecutionPolicy.MAKER_THEN_TAKER: "maker_then_taker",
    ExecutionPolicy.TWAP: "twap",
    ExecutionPolicy.RL_POLICY: "maker_then_taker",  # until an execution-policy model serves: the default desk
}


@dataclass
class StrategyRuntime:
    """A Strategy as the desk runs it (see the module docstring)."""

    name: str
    spec: StrategySpec
    budget: str
    instruments: list[Instrument]
    holder: ConfigHolder
    cooldowns: Cooldowns
    router: ModelRouter | None
    trades: TradeBook
    management: ManagementConfig
    clock: str  #: feature clock name in the desk's MarketView
    next_tick: int = 0  #: local ns of the next decision tick
    halted_reason: str = ""
    parents: dict[int, str] = field(default_factory=dict)  #: working parent id → client_order_id
    contributions: Contributions | None = None  #: top-5 feature contributions of the stable model

    @classmethod
    def build(cls, name: str, spec: StrategySpec, instruments: list[Instrument], router: ModelRouter | None,
              feature_names: tuple[str, ...] = (),
              contributions: Contributions | None = None) -> StrategyRuntime:  # fmt: skip
        cfg = compile_decision_config(name, spec, feature_names)
        f = spec.features
        clock = clock_for(str(f.clock), f.bar_ms, f.volume_bucket_usdt)
        return cls(
            name=name,
            spec=spec,
            budget=spec.risk_budget_ref.name,
            instruments=instruments,
            holder=ConfigHolder(cfg),
            cooldowns=Cooldowns(cfg.cooldown_ns),
            router=router,
            trades=TradeBook(),
            management=ManagementConfig.from_spec(spec.position_management),
            clock=clock.name,
            contributions=contributions,
        )

    @property
    def config(self) -> DecisionConfig:
        return self.holder.current

    @property
    def tick_ns(self) -> int:
        return self.holder.current.tick_ms * _NS_PER_MS

    @property
    def routing(self) -> RoutingTable:
        """The spec's maker wait and slicing by notional (``spec.execution.routing``)."""
        rows = [(r.min_notional_usdt, r.wait_ms, r.slices, r.slice_interval_ms) for r in self.spec.execution.routing]
        return RoutingTable.from_rows(rows)

    def twap(self, notional: float) -> TwapSpec:
        """The TWAP of a parent of ``notional`` USDT from the spec's routing table: its bucket's slices and
        interval, each slice a short maker-then-taker (waiting the bucket's maker wait, at most one interval),
        jittered by ``twapJitterPct``."""
        ex = self.spec.execution
        route = self.routing.route_for(notional)
        interval = float(route.interval_ms) if route.slices > 1 and route.interval_ms > 0 else max(route.wait_ms, 1.0)
        return TwapSpec(slices=route.slices, interval_ms=interval, jitter=min(ex.twap_jitter_pct / 100.0, 0.49),
                        child="maker_then_taker", wait_ms=min(route.wait_ms, interval))  # fmt: skip

    @property
    def style(self) -> str:
        """The executor style of the spec's execution policy."""
        return _STYLES[self.spec.execution.policy]

    def reconfigure(self, spec: StrategySpec) -> DecisionConfig:
        """Hot configuration: the next decision uses the new revision; one in flight finished on the old one.

        The clock, symbols and model family are structural (they change what data the strategy needs) and
        need a restart; a change to them is refused with the field named.
        """
        for attr in ("symbols", "venue", "features", "model", "risk_budget_ref"):
            if getattr(spec, attr) != getattr(self.spec, attr):
                raise ValueError(f"spec.{attr} cannot change on a running strategy {self.name!r}: restart it")
        new = compile_decision_config(self.name, spec, self.holder.current.feature_names)
        self.holder.swap(new)
        self.cooldowns.set_cooldown(new.cooldown_ns)
        self.management = ManagementConfig.from_spec(spec.position_management)
        self.spec = spec
        return new
