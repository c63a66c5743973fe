"""RiskBudget: a desk-level risk envelope shared by the strategies charged to it.

The limits are enforced across all charged strategies together (pre-trade and continuously); the breakers
stop trading when the inputs the decisions rely on are themselves unhealthy. ``spec.halt`` is the kill switch.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from ._base import ApiModel, ResourceStatusBase

KIND = "RiskBudget"
PLURAL = "riskbudgets"


class HaltPolicy(StrEnum):
    """What happens to open positions when the budget halts."""

    CANCEL_ONLY = "cancel-only"  #: cancel working orders, keep positions
    FLATTEN = "flatten"  #: cancel working orders and close every position at market


class RiskLimits(ApiModel):
    """Hard limits. Every one is checked before an order is sent and again on every fill and mark."""

    max_gross_notional_usdt: float = Field(
        default=10_000.0, gt=0, description="Sum of |position notional| over all charged strategies and symbols (USDT)."
    )
    max_net_notional_per_symbol_usdt: float = Field(
        default=5_000.0, gt=0, description="|long − short| notional in any one symbol across strategies (USDT)."
    )
    max_order_notional_usdt: float = Field(default=1_000.0, gt=0, description="Notional of a single order (USDT).")
    max_futures_margin_usdt: float = Field(
        default=2_000.0, ge=0, description="Initial margin committed on futures venues (USDT)."
    )
    max_spot_quote_usdt: float = Field(
        default=5_000.0, ge=0, description="Quote currency tied up in spot positions and working spot buys (USDT)."
    )
    max_concurrent_entries_per_market: int = Field(
        default=1, ge=1, le=100, description="Open entries (positions plus pending entry orders) per venue+symbol."
    )
    max_orders_per_minute: int = Field(
        default=60, ge=1, le=6000, description="New orders per rolling minute across the budget (count)."
    )
    max_daily_loss_usdt: float = Field(
        default=500.0, gt=0, description="Realized plus unrealized loss since 00:00 UTC that halts the budget (USDT)."
    )
    max_drawdown_pct: float = Field(
        default=10.0, gt=0, le=100, description="Peak-to-trough equity drawdown that halts the budget (percent)."
    )
    max_consecutive_losses: int = Field(
        default=5, ge=1, le=1000, description="Losing closed trades in a row that move the budget to Reducing (count)."
    )


class CircuitBreakers(ApiModel):
    """Data-health breakers: when tripped, new entries stop (Reducing) until the input recovers."""

    max_ingest_lag_ms: float = Field(
        default=500.0, gt=0, description="Ingest lag (ingest_ts − exchange_ts) above which entries stop (ms)."
    )
    max_feed_gap_ratio_pct: float = Field(
        default=0.2, gt=0, le=100, description="Share of sequence gaps per minute above which entries stop (percent)."
    )
    max_decision_latency_p99_ms: float = Field(
        default=5.0, gt=0, description="p99 of the decision latency over the last minute above which entries stop (ms)."
    )
    cooldown_seconds: int = Field(
        default=60, ge=0, le=86_400, description="How long a breaker stays tripped after its input recovers (s)."
    )


class RiskBudgetSpec(ApiModel):
    """What a desk is allowed to risk, and the kill switch."""

    limits: RiskLimits = Field(default_factory=RiskLimits, description="Hard limits across all charged strategies.")
    breakers: CircuitBreakers = Field(default_factory=CircuitBreakers, description="Data-health circuit breakers.")
    halt: bool = Field(
        default=False,
        description="Kill switch. `true` halts every charged strategy within one tick: working orders are "
        "cancelled and no new order is sent until it is set back to `false`.",
    )
    halt_policy: HaltPolicy = Field(default=HaltPolicy.CANCEL_ONLY, description="What a halt does to open positions.")
    reduce_at_pct: float = Field(
        default=80.0,
        gt=0,
        le=100,
        description="Usage of the daily-loss or drawdown limit (percent of the limit) at which the budget moves "
        "to Reducing: only orders that shrink positions are allowed.",
    )


class RiskBudgetPhase(StrEnum):
    ACTIVE = "Active"  #: strategies trade normally
    REDUCING = "Reducing"  #: reduce-only orders
    HALTED = "Halted"  #: no orders; working orders cancelled


class RiskUsage(ApiModel):
    """Live usage aggregated from the charged strategies' reports."""

    gross_notional_usdt: float = Field(default=0.0, ge=0, description="Current gross notional (USDT).")
    futures_margin_usdt: float = Field(default=0.0, ge=0, description="Current futures margin (USDT).")
    spot_quote_usdt: float = Field(default=0.0, ge=0, description="Current spot quote exposure (USDT).")
    daily_pnl_usdt: float = Field(default=0.0, description="PnL since 00:00 UTC, realized plus unrealized (USDT).")
    drawdown_pct: float = Field(default=0.0, ge=0, description="Current drawdown from the equity peak (percent).")
    orders_last_minute: int = Field(default=0, ge=0, description="Orders sent in the last minute (count).")
    consecutive_losses: int = Field(default=0, ge=0, description="Losing trades in a row (count).")


class RiskBudgetStatus(ResourceStatusBase):
    """Observed state of a RiskBudget: phase, live usage and charged strategies."""

    phase: RiskBudgetPhase | None = Field(default=None, description="Active, Reducing or Halted.")
    reason: str = Field(default="", description="Why the budget is in its phase, e.g. `KillSwitch`, `DailyLoss`.")
    usage: RiskUsage = Field(default_factory=RiskUsage, description="Live usage against the limits.")
    strategies: list[str] = Field(default_factory=list, description="Names of the strategies charged to this budget.")
    strategy_count: int = Field(default=0, ge=0, description="Number of charged strategies (printer column).")
