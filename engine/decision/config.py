"""The decision's configuration, compiled once per revision of the Strategy spec, and its hot holder.

Why compile: the spec is validated pydantic data; the tick path wants plain floats, a compiled rule set and
the cost coefficients already worked out, so a decision reads attributes and never re-parses anything.

Why a revision hash: every signal records the configuration it was decided under, so τ, κ, gates or rules
can change at runtime and the audit trail still says which values applied to which decision. The hash is
over the canonical JSON of the spec (camelCase aliases, keys sorted, no whitespace) minus ``resources`` and
``suspend``, which change how the strategy is deployed, not what it decides. blake2b/sha256 of bytes, not
Python's ``hash``, so the revision is the same in every process.

Why a holder: a decision reads :attr:`ConfigHolder.current` once at its start and passes that snapshot down,
so a swap during a decision cannot mix two revisions; the next decision sees the new one.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from tradeplane.api.v1alpha1.strategy import ExecutionPolicy, StrategySpec, Venue

from ..costs import FeeSchedule, funding_cost_bps, round_trip_cost
from .cooldown import Cooldowns
from .gates import GateConfig
from .rules import RuleSet
from .sizing import SizingConfig

_NS_PER_S = 1_000_000_000
#: Spec fields that do not change decisions (deployment only), left out of the revision hash.
REV_EXCLUDED_FIELDS = frozenset({"resources", "suspend"})


@dataclass(frozen=True)
class DecisionConfig:
    """Everything one decision needs, for one revision of one strategy."""

    strategy: str
    venue: str
    futures: bool  #: USD-M perpetual (leverage, funding, no OCO); spot and paper are not
    horizon_s: int
    tau: float
    kappa: float
    cooldown_ns: int
    tick_ms: int
    maker_bps: float
    taker_bps: float
    slippage_quantile: float
    include_funding: bool
    gates: GateConfig
    rules: RuleSet
    sizing: SizingConfig
    feature_names: tuple[str, ...]  #: the model's signature (set by the runtime from the ModelVersion)
    degrade_to_rules: bool
    config_rev: str
    #: maker-first execution (maker-then-taker): the entry is priced as a maker leg; the exit (stop or
    #: take-profit hit, or a flatten) is always priced as a taker leg.
    entry_maker: bool = False
    # Derived in __post_init__, so a config built or replaced by hand stays consistent with its fees.
    #: round-trip fees in bps of notional, from engine/costs.round_trip_cost for the legs above
    round_trip_fee_bps: float = field(init=False)
    #: how many legs pay taker slippage (1 or 2), from the same call
    taker_legs: float = field(init=False)
    #: expected funding over the horizon per unit of funding rate for a long, bps (funding_cost_bps at rate
    #: 1); 0 on spot or without includeFunding. Funding is linear in the rate and flips with the direction.
    funding_bps_per_rate: float = field(init=False)

    def __post_init__(self) -> None:
        # C is linear in the one-way slippage and in the funding rate: price a unit of each once with
        # engine/costs.py, so the tick only multiplies (those functions work on arrays; one 0-d call costs
        # microseconds of numpy dispatch, a multiplication tens of nanoseconds).
        fees = FeeSchedule(self.maker_bps, self.taker_bps)
        unit = round_trip_cost(fees=fees, entry_maker=self.entry_maker, exit_maker=False, slippage_bps=1.0)
        funding = float(funding_cost_bps(1.0, self.horizon_s, 1)) if self.futures and self.include_funding else 0.0
        object.__setattr__(self, "round_trip_fee_bps", float(unit.fees_bps))
        object.__setattr__(self, "taker_legs", float(unit.slippage_bps))
        object.__setattr__(self, "funding_bps_per_rate", funding)


def config_rev(spec: StrategySpec) -> str:
    """12 hex of sha256 over the canonical JSON of the spec (aliases, sorted keys), minus resources/suspend."""
    data = spec.model_dump(mode="json", by_alias=True, exclude=set(REV_EXCLUDED_FIELDS))
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def compile_decision_config(
    name: str,
    spec: StrategySpec,
    feature_names: Sequence[str] = (),
    *,
    known_features: Collection[str] | None = None,
) -> DecisionConfig:
    """Compile a Strategy spec into the decision's configuration.

    ``feature_names`` is the model's ordered signature (the router builds each model's row itself; this is
    recorded for the runtime's checks). ``known_features``, when given, is every feature the runtime can
    provide: a rule on any other feature fails here (naming ``rules[i].when[j].feature``) rather than never
    firing.
    """
    d = spec.decision
    futures = spec.venue is Venue.BINANCE_USDM
    entry_maker = spec.execution.policy is ExecutionPolicy.MAKER_THEN_TAKER
    return DecisionConfig(
        strategy=name,
        venue=str(spec.venue),
        futures=futures,
        horizon_s=d.horizon_seconds,
        tau=float(d.tau),
        kappa=float(d.kappa),
        cooldown_ns=d.cooldown_seconds * _NS_PER_S,
        tick_ms=d.tick_ms,
        maker_bps=float(d.cost_model.maker_fee_bps),
        taker_bps=float(d.cost_model.taker_fee_bps),
        slippage_quantile=float(d.cost_model.slippage_quantile),
        include_funding=bool(d.cost_model.include_funding),
        gates=GateConfig.from_spec(spec.gates),
        rules=RuleSet.from_spec(
            spec.rules,
            min_mult=spec.sizing.min_size_mult,
            max_mult=spec.sizing.max_size_mult,
            known_features=known_features,
        ),
        sizing=SizingConfig.from_spec(spec.sizing, futures=futures),
        feature_names=tuple(feature_names),
        degrade_to_rules=bool(spec.model.degrade_to_rules),
        config_rev=config_rev(spec),
        entry_maker=entry_maker,
    )


class ConfigHolder:
    """The hot configuration of one strategy. Read ``current`` once per decision; ``swap`` from anywhere.

    Replacing the reference is atomic, so a reader gets either the old or the new config, never a mix; the
    lock only keeps ``revisions`` in step with ``current`` when two swaps race.
    """

    __slots__ = ("_lock", "current", "revisions")

    def __init__(self, initial: DecisionConfig) -> None:
        self.current: DecisionConfig = initial
        #: every revision that was current, oldest first (a swap to the same revision is recorded again)
        self.revisions: list[str] = [initial.config_rev]
        self._lock = threading.Lock()

    def swap(self, new: DecisionConfig) -> DecisionConfig:
        """Make ``new`` current for the next decision; returns the old one (decisions in flight keep it)."""
        if new.strategy != self.current.strategy:
            raise ValueError(f"config for strategy {new.strategy!r} swapped into {self.current.strategy!r}'s holder")
        with self._lock:
            old, self.current = self.current, new
            self.revisions.append(new.config_rev)
        return old


def apply_hot_config(holder: ConfigHolder, cooldowns: Cooldowns, new: DecisionConfig) -> DecisionConfig:
    """Swap the configuration and carry the new cooldown length into the cooldown book; returns the old one."""
    old = holder.swap(new)
    cooldowns.set_cooldown(new.cooldown_ns)
    return old
