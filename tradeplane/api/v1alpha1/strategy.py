"""Strategy: what to trade and how — venue, symbols, data, features, model, decision, execution, risk.

The operator renders a Strategy into its runtime config (with a revision hash) and the ingest, decide,
execute and sink workloads; the local runner runs the same config in one process.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Self

from pydantic import Field, model_validator

from ._base import NAME_PATTERN, ApiModel, Quantity, ResourceStatusBase, Symbol

KIND = "Strategy"
PLURAL = "strategies"

FEATURE_NAME_PATTERN = r"^[a-z][a-z0-9_]*$"


class Venue(StrEnum):
    BINANCE_SPOT = "binance-spot"
    BINANCE_USDM = "binance-usdm"  #: USD-M perpetual futures
    PAPER = "paper"  #: the simulator as a venue, fed by replayed or synthetic data


def market_data_venue(venue: str) -> str:
    """The venue whose market data a trading venue runs on: ``paper`` has no feed of its own and trades on
    the USD-M feed (md topics, captures and the simulator's books are named by this venue)."""
    return Venue.BINANCE_USDM.value if venue == Venue.PAPER.value else venue


class TradingMode(StrEnum):
    PAPER = "paper"  #: orders go to the simulator, whatever the venue
    LIVE = "live"  #: orders go to the venue with real money


class Stream(StrEnum):
    DEPTH = "depth"  #: L2 diffs (synced from a REST snapshot)
    BOOK_TICKER = "bookTicker"  #: best bid/ask
    TRADE = "trade"
    AGG_TRADE = "aggTrade"
    KLINE = "kline"
    MARK_PRICE = "markPrice"  #: mark price and funding (futures)
    FORCE_ORDER = "forceOrder"  #: liquidations (futures)
    OPEN_INTEREST = "openInterest"  #: polled (futures)


class RiskBudgetRef(ApiModel):
    name: str = Field(pattern=NAME_PATTERN, max_length=40, description="RiskBudget in the same namespace.")


class MarketDataSpec(ApiModel):
    streams: list[Stream] = Field(
        default_factory=lambda: [Stream.DEPTH, Stream.BOOK_TICKER, Stream.TRADE],
        min_length=1,
        description="Exchange streams to ingest per symbol.",
    )
    depth_levels: int = Field(default=20, ge=1, le=1000, description="Book levels kept and used by features.")
    depth_update_ms: int = Field(
        default=100, ge=0, le=1000, description="Diff stream speed: 0 (futures only), 100, 250, 500 or 1000 (ms)."
    )
    max_clock_offset_ms: float = Field(
        default=100.0,
        gt=0,
        description="Records whose estimated clock offset or latency exceeds this are degraded (ms).",
    )


class BarClock(StrEnum):
    TIME = "time"
    VOLUME = "volume"
    EVENTS = "events"


class FeatureSpec(ApiModel):
    set: str = Field(default="microstructure-v1", description="Named engine feature set.")
    clock: BarClock = Field(default=BarClock.TIME, description="Bar clock the features are sampled on.")
    bar_ms: int = Field(default=1000, ge=10, le=3_600_000, description="Time-bar length (ms), time clock.")
    volume_bucket_usdt: float = Field(
        default=250_000.0, gt=0, description="Quote volume per bucket (USDT), volume clock; also VPIN buckets."
    )


class ModelRef(ApiModel):
    family: str = Field(
        pattern=NAME_PATTERN,
        max_length=40,
        description="Model family; the family's ModelVersions are routed by weight.",
    )
    degrade_to_rules: bool = Field(
        default=True,
        description="When the model or data is degraded, fall back to a rules-only score on order-flow imbalance, "
        "queue imbalance and Δmicroprice instead of standing aside.",
    )


class CostModel(ApiModel):
    maker_fee_bps: float = Field(default=2.0, ge=-10, le=100, description="Maker fee; negative is a rebate (bps).")
    taker_fee_bps: float = Field(default=5.0, ge=0, le=100, description="Taker fee (bps).")
    slippage_quantile: float = Field(
        default=0.5, gt=0, lt=1, description="Quantile of the fitted slippage distribution charged in C (fraction)."
    )
    include_funding: bool = Field(default=True, description="Charge expected funding over the horizon (futures).")


class DecisionSpec(ApiModel):
    horizon_seconds: int = Field(default=60, ge=1, le=86_400, description="Prediction and holding horizon H (s).")
    tau: float = Field(default=0.6, ge=0.5, le=1, description="τ: minimum probability of the predicted direction.")
    kappa: float = Field(
        default=1.0, ge=0, le=100, description="κ: minimum utility U = E[excess return] / C(size, t) (ratio)."
    )
    cooldown_seconds: int = Field(
        default=30, ge=0, le=86_400, description="No new entry per symbol and direction for this long (s)."
    )
    tick_ms: int = Field(default=100, ge=1, le=60_000, description="Decision tick period (ms).")
    cost_model: CostModel = Field(default_factory=CostModel, description="Fees, slippage and funding in C.")


class GateSpec(ApiModel):
    """L0 gates: any failing gate skips the entry, with the gate's name as the reason code."""

    max_abs_funding_rate_bps: float = Field(
        default=10.0, ge=0, description="|next funding rate| ceiling (bps per 8 h); futures only."
    )
    max_spread_bps: float = Field(default=5.0, gt=0, description="Quoted spread ceiling (bps).")
    min_top1_depth_usdt: float = Field(default=10_000.0, ge=0, description="Minimum best-level depth per side (USDT).")
    require_data_quality: bool = Field(default=True, description="Skip when the book is unsynced or degraded.")
    require_risk_headroom: bool = Field(default=True, description="Skip when the RiskBudget has no headroom.")


class Comparison(StrEnum):
    LT = "lt"
    LE = "le"
    GT = "gt"
    GE = "ge"
    EQ = "eq"
    NE = "ne"


class RuleCondition(ApiModel):
    feature: str = Field(pattern=FEATURE_NAME_PATTERN, description="Feature name, e.g. `spread_bps`.")
    op: Comparison = Field(description="Comparison operator.")
    value: float = Field(description="Right-hand side.")


class Rule(ApiModel):
    """A named condition on features and its effect. Rules are data, parsed safely, never evaluated as code."""

    name: str = Field(pattern=NAME_PATTERN, max_length=63, description="Reason code recorded with each signal.")
    when: list[RuleCondition] = Field(min_length=1, max_length=16, description="All must hold (logical AND).")
    size_mult: float = Field(default=1.0, ge=0, le=10, description="Multiplies the size.")
    tp_mult: float = Field(default=1.0, gt=0, le=10, description="Multiplies the take-profit distance.")
    sl_mult: float = Field(default=1.0, gt=0, le=10, description="Multiplies the stop distance.")
    skip_entry: bool = Field(default=False, description="Skip the entry outright (short-circuits later rules).")


class ProbabilityBucket(ApiModel):
    min_p: float = Field(ge=0, le=1, description="Lower bound of the probability bucket (inclusive).")
    mult: float = Field(ge=0, le=10, description="Size multiplier; 0 skips the entry.")


def _default_buckets() -> list[ProbabilityBucket]:
    return [
        ProbabilityBucket(min_p=0.85, mult=1.2),
        ProbabilityBucket(min_p=0.6, mult=1.0),
        ProbabilityBucket(min_p=0.4, mult=0.5),
        ProbabilityBucket(min_p=0.0, mult=0.0),
    ]


class SizingSpec(ApiModel):
    margin_base_usdt: float = Field(default=50.0, gt=0, description="Base margin per entry before multipliers (USDT).")
    leverage: int = Field(default=1, ge=1, le=125, description="Futures leverage (×); ignored on spot.")
    probability_buckets: list[ProbabilityBucket] = Field(
        default_factory=_default_buckets,
        min_length=1,
        max_length=20,
        description="Piecewise size multiplier in p: the first bucket whose `minP` ≤ p applies.",
    )
    min_size_mult: float = Field(default=0.0, ge=0, le=10, description="Lower clamp of the combined multiplier.")
    max_size_mult: float = Field(default=2.0, ge=0, le=10, description="Upper clamp of the combined multiplier.")
    atr_mult: float = Field(default=1.5, gt=0, le=50, description="Stop distance in ATRs (×).")
    max_loss_usdt: float = Field(default=10.0, gt=0, description="Loss at the stop caps the stop distance (USDT).")
    target_net_pnl_usdt: float = Field(default=5.0, gt=0, description="Take-profit set for this net PnL (USDT).")

    @model_validator(mode="after")
    def _clamp_order(self) -> Self:
        if self.min_size_mult > self.max_size_mult:
            raise ValueError("minSizeMult must not exceed maxSizeMult")
        return self


class ExecutionPolicy(StrEnum):
    IMMEDIATE = "immediate"  #: take liquidity at once
    MAKER_THEN_TAKER = "maker-then-taker"  #: post at the touch, wait by notional bucket, then take
    TWAP = "twap"  #: N slices at fixed intervals with jitter
    RL_POLICY = "rl-policy"  #: an execution-policy ModelVersion decides


class RoutingRow(ApiModel):
    min_notional_usdt: float = Field(ge=0, description="Row applies from this order notional up (USDT).")
    wait_ms: int = Field(ge=0, le=600_000, description="How long to rest as maker before taking (ms).")
    slices: int = Field(default=1, ge=1, le=100, description="Child orders.")
    slice_interval_ms: int = Field(default=0, ge=0, le=600_000, description="Time between slices (ms).")


def _default_routing() -> list[RoutingRow]:
    return [
        RoutingRow(min_notional_usdt=0, wait_ms=1500, slices=1, slice_interval_ms=0),
        RoutingRow(min_notional_usdt=200, wait_ms=2000, slices=2, slice_interval_ms=600),
        RoutingRow(min_notional_usdt=500, wait_ms=2500, slices=3, slice_interval_ms=800),
        RoutingRow(min_notional_usdt=1000, wait_ms=3000, slices=4, slice_interval_ms=1000),
    ]


class ExecutionSpec(ApiModel):
    policy: ExecutionPolicy = Field(default=ExecutionPolicy.MAKER_THEN_TAKER, description="How intents are worked.")
    policy_model: str | None = Field(
        default=None, pattern=NAME_PATTERN, description="execution-policy model family (rl-policy only)."
    )
    routing: list[RoutingRow] = Field(
        default_factory=_default_routing, min_length=1, max_length=20, description="Maker wait and slicing by notional."
    )
    maker_fill_ratio_floor: float = Field(
        default=0.25, ge=0, le=1, description="θ: below this maker fill ratio over the last hour, take at once."
    )
    twap_jitter_pct: float = Field(default=10.0, ge=0, le=50, description="±jitter of TWAP slice times (percent).")

    @model_validator(mode="after")
    def _policy_model_for_rl(self) -> Self:
        if self.policy is ExecutionPolicy.RL_POLICY and not self.policy_model:
            raise ValueError("policy rl-policy needs policyModel")
        return self


class TrailingStep(ApiModel):
    at_roe_pct: float = Field(gt=0, description="When return on equity reaches this (percent)…")
    lock_roe_pct: float = Field(ge=0, description="…move the stop to lock in this ROE (percent; 0 = breakeven).")


class PositionManagementSpec(ApiModel):
    trailing: list[TrailingStep] = Field(
        default_factory=lambda: [
            TrailingStep(at_roe_pct=10, lock_roe_pct=0),
            TrailingStep(at_roe_pct=20, lock_roe_pct=10),
        ],
        max_length=10,
        description="Trailing-stop ladder.",
    )
    partial_take_profit_roe_pct: float | None = Field(
        default=None, gt=0, description="Take part of the position off at this ROE (percent); unset disables."
    )
    partial_take_profit_fraction_pct: float = Field(
        default=50.0, gt=0, le=100, description="Share of the position taken off (percent)."
    )
    max_add_ons: int = Field(default=2, ge=0, le=2, description="Add-ons to a winning position (count, at most 2).")
    add_on_roe_step_pct: float = Field(default=5.0, gt=0, description="ROE step between add-ons (percent).")


class WorkloadResources(ApiModel):
    replicas: int = Field(default=1, ge=0, le=32, description="Pod replicas.")
    cpu: Quantity = Field(default="500m", description="CPU request (Kubernetes quantity).")
    memory: Quantity = Field(default="512Mi", description="Memory request and limit (Kubernetes quantity).")


class ResourcesSpec(ApiModel):
    ingest: WorkloadResources = Field(default_factory=WorkloadResources, description="Market-data ingest.")
    decide: WorkloadResources = Field(default_factory=WorkloadResources, description="Decision engine.")
    execute: WorkloadResources = Field(default_factory=WorkloadResources, description="Order execution.")
    sink: WorkloadResources = Field(default_factory=WorkloadResources, description="ClickHouse sink.")


class StrategySpec(ApiModel):
    """What to trade and how."""

    risk_budget_ref: RiskBudgetRef = Field(description="The RiskBudget this strategy is charged to.")
    venue: Venue = Field(description="Where market data comes from and, in live mode, where orders go.")
    mode: TradingMode = Field(default=TradingMode.PAPER, description="paper (simulated fills) or live.")
    symbols: list[Symbol] = Field(min_length=1, max_length=50, description="Symbols traded, e.g. `BTCUSDT`.")
    market_data: MarketDataSpec = Field(default_factory=MarketDataSpec, description="Streams and book depth.")
    features: FeatureSpec = Field(default_factory=FeatureSpec, description="Feature set and bar clock.")
    model: ModelRef = Field(description="Model family used for scoring.")
    decision: DecisionSpec = Field(default_factory=DecisionSpec, description="Horizon, thresholds, cooldown, costs.")
    gates: GateSpec = Field(default_factory=GateSpec, description="L0 gates.")
    rules: list[Rule] = Field(default_factory=list, max_length=64, description="Named rules, applied in order.")
    sizing: SizingSpec = Field(default_factory=SizingSpec, description="Position sizing and stops.")
    execution: ExecutionSpec = Field(default_factory=ExecutionSpec, description="Execution policy.")
    position_management: PositionManagementSpec = Field(
        default_factory=PositionManagementSpec, description="Trailing stops, partial take-profit, add-ons."
    )
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="Per-workload pod resources.")
    suspend: bool = Field(default=False, description="Stop the workloads without deleting the strategy.")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.mode is TradingMode.LIVE and self.venue is Venue.PAPER:
            raise ValueError("mode live needs a real venue, not paper")
        if len(set(self.symbols)) != len(self.symbols):
            raise ValueError("symbols must not repeat")
        futures_only = {Stream.MARK_PRICE, Stream.FORCE_ORDER, Stream.OPEN_INTEREST}
        if self.venue is Venue.BINANCE_SPOT and futures_only & set(self.market_data.streams):
            bad = sorted(str(s) for s in futures_only & set(self.market_data.streams))
            raise ValueError(f"streams {bad} exist only on futures venues")
        return self


class StrategyPhase(StrEnum):
    PENDING = "Pending"  #: accepted, children not ready yet
    RUNNING = "Running"
    SUSPENDED = "Suspended"
    BLOCKED = "Blocked"  #: its RiskBudget is missing or halted
    FAILED = "Failed"


class ChildRef(ApiModel):
    kind: str = Field(description="Child kind, e.g. `Deployment`.")
    name: str = Field(description="Child name.")


class SymbolPosition(ApiModel):
    symbol: str = Field(description="Symbol.")
    quantity: float = Field(description="Signed position in base units (+ long, − short).")
    average_entry: float | None = Field(default=None, description="Average entry price (quote).")
    notional_usdt: float = Field(default=0.0, description="Position notional at mark (USDT).")


class PnlStatus(ApiModel):
    realized_usdt: float = Field(default=0.0, description="Realized PnL net of fees and funding (USDT).")
    unrealized_usdt: float = Field(default=0.0, description="Unrealized PnL at mark (USDT).")
    drawdown_pct: float = Field(default=0.0, ge=0, description="Account equity below its running peak (percent).")


class LastSignal(ApiModel):
    id: str = Field(description="Signal id.")
    symbol: str = Field(description="Symbol.")
    time: str = Field(description="RFC 3339 exchange time of the signal.")
    decision: str = Field(description="enter-long, enter-short, skip, exit …")
    p_up: float | None = Field(default=None, ge=0, le=1, description="Calibrated probability of an up move.")


class StrategyStatus(ResourceStatusBase):
    """Observed state of a Strategy: phase, children, positions, PnL and the active config revision."""

    phase: StrategyPhase | None = Field(default=None, description="Lifecycle phase.")
    config_rev: str | None = Field(default=None, description="Revision hash of the active rendered config.")
    children: list[ChildRef] = Field(default_factory=list, description="Objects the operator created.")
    positions: list[SymbolPosition] = Field(default_factory=list, description="Live positions.")
    pnl: PnlStatus = Field(default_factory=PnlStatus, description="Live PnL.")
    last_signal: LastSignal | None = Field(default=None, description="The most recent signal.")
