"""The risk engine of one RiskBudget: pre-trade checks, continuous checks and the trading phase.

One :class:`RiskEngine` serves every strategy charged to the budget, so each limit bounds the strategies
*together*. The runtime feeds it everything that changes risk (orders sent and finished, fills, marks, closed
trades, data-health observations) and asks two questions: may this order go out (:meth:`~RiskEngine.check_order`,
never records anything) and what must happen now (:meth:`~RiskEngine.evaluate`, every tick).

Phases (``docs/risk.md`` has the diagram)::

    Active ──(reduce threshold, consecutive losses, breaker)──► Reducing ──(condition gone)──► Active
    Active / Reducing ──(daily loss, drawdown, kill switch)──► Halted
    Halted ──(next UTC day / spec change re-evaluated / halt: false)──► the phase the conditions give

The phase is the most severe condition that holds; within a phase the first condition in this order names
the reason: Halted — KILL_SWITCH, RISK_DAILY_LOSS, RISK_DRAWDOWN; Reducing — RISK_DAILY_LOSS, RISK_DRAWDOWN
(at ``reduceAtPct`` of their limits), RISK_CONSECUTIVE_LOSSES, then the breakers. Latches: a daily-loss halt
holds until the next UTC day; a drawdown halt and the consecutive-loss count hold until a winning trade
(losses only) or a *changed* spec (:meth:`~RiskEngine.update_config` with a different configuration clears
them and re-evaluates against the new values at once; the same spec applied again changes nothing).

Pre-trade order of checks (the first failure is the rejection):

1. Halted → KILL_SWITCH when ``spec.halt``, else RISK_HALTED; only reduce-only exits pass, and only with
   ``haltPolicy: flatten`` (the engine's own flatten orders).
2. Exits pass. An *exit* shrinks the strategy's own position without flipping it, or is flagged reduce-only
   and shrinks the market's net position (a venue caps a reduce-only order at the account's position).
   Closing risk is never blocked by a risk limit, a breaker or the order rate (exits still count in the rate).
3. Reducing (for a risk reason) → RISK_REDUCE_ONLY; an active breaker → its BREAKER_* code.
4. Limits, each after a hypothetical fill of this order and of every working order: RISK_ORDER_NOTIONAL,
   RISK_GROSS_NOTIONAL, RISK_NET_NOTIONAL (per symbol), RISK_FUTURES_MARGIN (futures venues), RISK_SPOT_QUOTE
   (spot buys), RISK_CONCURRENT_ENTRIES (entries only), RISK_ORDER_RATE (orders recorded in (ts − 60 s, ts],
   this one included). A value exactly at its limit passes.

Kill switch: :meth:`~RiskEngine.update_config` with ``halt: true`` moves to Halted inside the call, so the very
next :meth:`~RiskEngine.check_order` is refused; the next :meth:`~RiskEngine.evaluate` returns ``cancel_all``
(and the flatten orders with ``haltPolicy: flatten``): "within one tick".
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass
from typing import Final

from tradeplane.api.v1alpha1.riskbudget import RiskBudgetPhase

from . import reasons
from .breakers import Breaker, Breakers
from .config import RiskConfig
from .ledger import After, Ledger, is_futures, shrinks

ACTIVE: Final = RiskBudgetPhase.ACTIVE.value
REDUCING: Final = RiskBudgetPhase.REDUCING.value
HALTED: Final = RiskBudgetPhase.HALTED.value

RATE_WINDOW_NS: Final = 60 * 1_000_000_000
#: Notional of the probe order :meth:`RiskEngine.headroom` checks (the smallest order worth asking about).
PROBE_NOTIONAL_USDT: Final = 1.0
#: How many transitions :attr:`RiskEngine.history` keeps.
HISTORY_LEN: Final = 1000


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """An order a strategy wants to send, as the risk engine sees it.

    ``side`` is +1 buy / −1 sell; ``qty`` base units; ``price`` the limit or reference price (quote per base);
    ``is_entry`` marks the order that opens a new trade (add-ons, exits and protective orders are not entries);
    ``leverage`` is 1 on spot.
    """

    strategy: str
    venue: str
    symbol: str
    side: int
    qty: float
    price: float
    reduce_only: bool
    is_entry: bool
    leverage: int
    ts: int

    def __post_init__(self) -> None:
        if self.side not in (1, -1):
            raise ValueError(f"side must be +1 or -1, got {self.side}")
        if not (math.isfinite(self.qty) and self.qty > 0.0):
            raise ValueError(f"qty must be positive and finite, got {self.qty}")
        if not (math.isfinite(self.price) and self.price > 0.0):
            raise ValueError(f"price must be positive and finite, got {self.price}")
        if self.leverage < 1:
            raise ValueError(f"leverage must be >= 1, got {self.leverage}")

    @property
    def notional_usdt(self) -> float:
        """qty × price (USDT)."""
        return self.qty * self.price


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why an order may not go out: one reason code and the values that broke the limit."""

    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Transition:
    """A change of phase or of its reason (the ``risk_events`` the runtime stores)."""

    ts: int
    from_phase: str
    to_phase: str
    reason: str
    detail: str


@dataclass(frozen=True)
class RiskActions:
    """What the runtime must do after :meth:`RiskEngine.evaluate`.

    ``cancel_all`` is set once, when the budget enters Halted (or the kill switch engages). ``flatten`` lists
    (venue, symbol, signed quantity to trade) per market, all strategies netted, also only once, and only with
    ``haltPolicy: flatten``; the runtime sends them as reduce-only orders and owns retries. ``transitions``
    are those since the previous evaluate.
    """

    cancel_all: bool
    flatten: tuple[tuple[str, str, float], ...]
    phase: str
    reason: str
    transitions: tuple[Transition, ...]


def _num(x: float) -> str:
    """A value for a rejection detail: rounded, without float noise (20500.0, 0.25)."""
    return repr(round(float(x), 4) + 0.0)  # + 0.0: no "-0.0"


def _over(value: float, limit: float) -> bool:
    """value > limit, with a relative tolerance for float noise: a value at its limit passes."""
    return value > limit + 1e-9 * max(1.0, abs(limit))


class RiskEngine:
    """Pre-trade and continuous risk checks of one RiskBudget (see the module docstring for the rules)."""

    def __init__(self, name: str, config: RiskConfig, *, initial_equity: float) -> None:
        self.name = name
        self.config = config
        self.ledger = Ledger(initial_equity)
        self.breakers = Breakers(config)
        self.phase: str = ACTIVE
        self.reason: str = ""
        self.detail: str = ""
        self.consecutive_losses = 0
        self.history: deque[Transition] = deque(maxlen=HISTORY_LEN)
        self._order_ts: list[int] = []
        self._loss_latch_day = -1  # UTC day of a daily-loss halt; the latch releases when the day changes
        self._loss_latched = 0.0  # worst daily loss seen while latched (for the detail)
        self._drawdown_latched = False
        self._drawdown_worst = 0.0  # worst drawdown seen while latched (for the detail)
        self._now = 0
        self._pending: list[Transition] = []
        self._pending_cancel = False
        self._pending_flatten = False
        if config.halt:
            self._refresh(0)

    # --- configuration --------------------------------------------------------------------------------------
    def update_config(self, config: RiskConfig, ts: int) -> None:
        """Apply a new spec revision at once (hot). ``halt: true`` moves to Halted inside this call.

        A *changed* configuration re-arms: the drawdown and daily-loss latches and the consecutive-loss count
        are cleared, and every condition is re-evaluated against the new values right away.
        """
        self._now = max(self._now, ts)
        self.ledger.roll_day(ts)
        if config != self.config:
            was_flatten = self.config.flatten
            self._loss_latch_day = -1
            self._drawdown_latched = False
            self.consecutive_losses = 0
            self.config = config
            self.breakers.config = config
            if self.phase == HALTED and config.flatten and not was_flatten:
                self._pending_flatten = True
        self._refresh(ts)

    # --- pre-trade ------------------------------------------------------------------------------------------
    def is_exit(self, req: OrderRequest) -> bool:
        """Whether the order only shrinks a position (see the module docstring)."""
        delta = req.side * req.qty
        if shrinks(self.ledger.position(req.strategy, req.venue, req.symbol), delta):
            return True
        return req.reduce_only and shrinks(self.ledger.market_qty(req.venue, req.symbol), delta)

    def check_order(self, req: OrderRequest) -> Rejection | None:
        """None when the order may go out, else the first rule it breaks. Records nothing."""
        exit_ = self.is_exit(req)
        if self.phase == HALTED:
            if exit_ and req.reduce_only and self.config.flatten:
                return None
            code = reasons.KILL_SWITCH if self.reason == reasons.KILL_SWITCH else reasons.RISK_HALTED
            only = "only reduce-only exits pass" if self.config.flatten else "no order passes (haltPolicy cancel-only)"
            return Rejection(code, f"budget {self.name} is Halted by {self.reason} ({self.detail}); {only}")
        if exit_:
            return None
        if self.phase == REDUCING and self.reason not in reasons.BREAKERS:
            return Rejection(
                reasons.RISK_REDUCE_ONLY,
                f"budget {self.name} is Reducing by {self.reason} ({self.detail}); only orders that shrink a position",
            )
        cd = self.config.cooldown_ns
        for br in self.breakers.all:
            if br.active(req.ts, cd):
                return Rejection(br.code, self._breaker_detail(br))
        return self._limits_rejection(req)

    def _limits_rejection(self, req: OrderRequest) -> Rejection | None:
        lim = self.config.limits
        notional = req.notional_usdt
        if _over(notional, lim.max_order_notional_usdt):
            return Rejection(
                reasons.RISK_ORDER_NOTIONAL, f"order {_num(notional)} > {_num(lim.max_order_notional_usdt)} USDT"
            )
        a = self.ledger.after(
            req.strategy, req.venue, req.symbol, req.side, req.qty, req.price, req.leverage, is_entry=req.is_entry
        )
        exposure = self._exposure_rejection(req.venue, req.symbol, req.side, req.leverage, a)
        if exposure is not None:
            return exposure
        if req.is_entry and a.entries > lim.max_concurrent_entries_per_market:
            return Rejection(
                reasons.RISK_CONCURRENT_ENTRIES,
                f"entries {req.venue}:{req.symbol} {a.entries} > {lim.max_concurrent_entries_per_market} "
                "after this order",
            )
        rate = self._orders_in_window(req.ts) + 1
        if rate > lim.max_orders_per_minute:
            return Rejection(
                reasons.RISK_ORDER_RATE,
                f"orders {rate} > {lim.max_orders_per_minute} in the 60 s to ts={req.ts} after this order",
            )
        return None

    def _exposure_rejection(self, venue: str, symbol: str, side: int, leverage: int, a: After) -> Rejection | None:
        lim = self.config.limits
        if _over(a.gross_usdt, lim.max_gross_notional_usdt):
            return Rejection(
                reasons.RISK_GROSS_NOTIONAL,
                f"gross {_num(a.gross_usdt)} > {_num(lim.max_gross_notional_usdt)} USDT after this order",
            )
        if _over(a.net_usdt, lim.max_net_notional_per_symbol_usdt):
            return Rejection(
                reasons.RISK_NET_NOTIONAL,
                f"net {symbol} {_num(a.net_usdt)} > {_num(lim.max_net_notional_per_symbol_usdt)} USDT after this order",
            )
        if is_futures(venue):
            if _over(a.margin_usdt, lim.max_futures_margin_usdt):
                return Rejection(
                    reasons.RISK_FUTURES_MARGIN,
                    f"futures margin {_num(a.margin_usdt)} > {_num(lim.max_futures_margin_usdt)} USDT after this "
                    f"order (leverage {leverage})",
                )
        elif side > 0 and _over(a.spot_quote_usdt, lim.max_spot_quote_usdt):
            return Rejection(
                reasons.RISK_SPOT_QUOTE,
                f"spot quote {_num(a.spot_quote_usdt)} > {_num(lim.max_spot_quote_usdt)} USDT after this order",
            )
        return None

    def record_order(self, req: OrderRequest, *, key: str = "") -> None:
        """An order was sent: count it in the rate and, unless it is an exit, keep it as working exposure.

        ``key`` (the client order id) lets :meth:`order_done` drop exactly this order later.
        """
        self._now = max(self._now, req.ts)
        bisect.insort(self._order_ts, req.ts)
        del self._order_ts[: bisect.bisect_right(self._order_ts, self._now - RATE_WINDOW_NS)]
        if not self.is_exit(req):
            self.ledger.add_working(
                key,
                req.strategy,
                req.venue,
                req.symbol,
                req.side,
                req.qty,
                req.price,
                req.leverage,
                is_entry=req.is_entry,
                ts=req.ts,
            )

    def order_done(self, strategy: str, venue: str, symbol: str, key: str, ts: int) -> None:
        """An order is final (filled, cancelled, rejected, expired): its unfilled rest stops counting."""
        self._now = max(self._now, ts)
        self.ledger.remove_working(strategy, venue, symbol, key)

    def _orders_in_window(self, ts: int) -> int:
        lo = bisect.bisect_right(self._order_ts, ts - RATE_WINDOW_NS)
        return bisect.bisect_right(self._order_ts, ts) - lo

    # --- inputs ---------------------------------------------------------------------------------------------
    def on_fill(
        self,
        strategy: str,
        venue: str,
        symbol: str,
        side: int,
        qty: float,
        price: float,
        fee_usdt: float,
        ts: int,
        *,
        leverage: int = 1,
    ) -> None:
        """Book a fill (any strategy of the budget) and re-check the continuous limits."""
        self.ledger.roll_day(ts)
        self.ledger.apply_fill(strategy, venue, symbol, side, qty, price, fee_usdt, leverage)
        self._refresh(ts)

    def on_mark(self, venue: str, symbol: str, price: float, ts: int) -> None:
        """A new mark of a market: unrealized PnL, equity, drawdown; re-check the continuous limits."""
        self.ledger.roll_day(ts)
        self.ledger.set_mark(venue, symbol, price)
        self._refresh(ts)

    def on_trade_closed(self, strategy: str, pnl_usdt: float, ts: int) -> None:
        """A trade closed: a loss extends the losing streak, a win ends it, a zero PnL changes nothing."""
        self.ledger.roll_day(ts)
        if pnl_usdt < 0.0:
            self.consecutive_losses += 1
        elif pnl_usdt > 0.0:
            self.consecutive_losses = 0
        self._refresh(ts)

    def observe(
        self,
        ts: int,
        *,
        ingest_lag_ms: float | None = None,
        gap_ratio_pct: float | None = None,
        decision_latency_ns: int | None = None,
    ) -> None:
        """Data-health inputs of the breakers (any subset)."""
        self.ledger.roll_day(ts)
        self.breakers.observe(
            ts, ingest_lag_ms=ingest_lag_ms, gap_ratio_pct=gap_ratio_pct, decision_latency_ns=decision_latency_ns
        )
        self._refresh(ts)

    # --- continuous -----------------------------------------------------------------------------------------
    def evaluate(self, ts: int) -> RiskActions:
        """Let time pass to ``ts`` (UTC day, breaker cooldowns, latency window), re-check, say what to do now."""
        self.ledger.roll_day(ts)
        self.breakers.tick(ts)
        self._refresh(ts)
        flatten = self.flatten_plan() if self._pending_flatten and self.phase == HALTED else ()
        actions = RiskActions(self._pending_cancel, flatten, self.phase, self.reason, tuple(self._pending))
        self._pending.clear()
        self._pending_cancel = self._pending_flatten = False
        return actions

    def flatten_plan(self) -> tuple[tuple[str, str, float], ...]:
        """(venue, symbol, signed qty to trade) that brings every market's net position to zero."""
        return tuple((v, s, -q) for (v, s), q in self.ledger.net_by_market().items())

    def _refresh(self, ts: int) -> None:
        self._now = max(self._now, ts)
        lim = self.config.limits
        loss = -self.ledger.daily_pnl()
        dd = self.ledger.drawdown_pct()
        if loss >= lim.max_daily_loss_usdt:
            if self._loss_latch_day != self.ledger.day:
                self._loss_latch_day, self._loss_latched = self.ledger.day, loss
            self._loss_latched = max(self._loss_latched, loss)
        if dd >= lim.max_drawdown_pct:
            self._drawdown_worst = max(self._drawdown_worst, dd) if self._drawdown_latched else dd
            self._drawdown_latched = True
        self.breakers.observe_drawdown(ts, dd)
        phase, reason, detail = self._condition(ts, loss, dd)
        self._set_phase(ts, phase, reason, detail)

    def _condition(self, ts: int, loss: float, dd: float) -> tuple[str, str, str]:
        cfg = self.config
        lim = cfg.limits
        if cfg.halt:
            return HALTED, reasons.KILL_SWITCH, "spec.halt is true"
        if self._loss_latch_day >= 0 and self._loss_latch_day == self.ledger.day:
            return (
                HALTED,
                reasons.RISK_DAILY_LOSS,
                f"daily loss {_num(self._loss_latched)} >= {_num(lim.max_daily_loss_usdt)} USDT today (UTC), "
                f"now {_num(loss)}; holds until the next UTC day",
            )
        if self._drawdown_latched:
            return (
                HALTED,
                reasons.RISK_DRAWDOWN,
                f"drawdown {_num(self._drawdown_worst)} >= {_num(lim.max_drawdown_pct)} %, now {_num(dd)}; "
                "holds until the spec changes",
            )
        f = cfg.reduce_fraction
        if loss >= f * lim.max_daily_loss_usdt:
            return (
                REDUCING,
                reasons.RISK_DAILY_LOSS,
                (
                    f"daily loss {_num(loss)} >= {_num(f * lim.max_daily_loss_usdt)} USDT "
                    f"({_num(cfg.reduce_at_pct)} % of {_num(lim.max_daily_loss_usdt)})"
                ),
            )
        if dd >= f * lim.max_drawdown_pct:
            return (
                REDUCING,
                reasons.RISK_DRAWDOWN,
                (
                    f"drawdown {_num(dd)} >= {_num(f * lim.max_drawdown_pct)} % "
                    f"({_num(cfg.reduce_at_pct)} % of {_num(lim.max_drawdown_pct)})"
                ),
            )
        if self.consecutive_losses >= lim.max_consecutive_losses:
            return (
                REDUCING,
                reasons.RISK_CONSECUTIVE_LOSSES,
                (f"{self.consecutive_losses} losing trades in a row >= {lim.max_consecutive_losses}"),
            )
        for br in self.breakers.all:
            if br.active(ts, cfg.cooldown_ns):
                return REDUCING, br.code, self._breaker_detail(br)
        return ACTIVE, "", ""

    def _set_phase(self, ts: int, phase: str, reason: str, detail: str) -> None:
        old_phase, old_reason = self.phase, self.reason
        self.detail = detail
        if (phase, reason) == (old_phase, old_reason):
            return
        t = Transition(ts, old_phase, phase, reason, detail)
        self._pending.append(t)
        self.history.append(t)
        if phase == HALTED and (old_phase != HALTED or reason == reasons.KILL_SWITCH):
            self._pending_cancel = True
            self._pending_flatten = self._pending_flatten or self.config.flatten
        if phase != HALTED:
            self._pending_flatten = False
        self.phase, self.reason = phase, reason

    def _breaker_detail(self, br: Breaker) -> str:
        b = self.config.breakers
        label, unit, op, limit = {
            reasons.BREAKER_INGEST_LAG: ("ingest lag", "ms", ">", b.max_ingest_lag_ms),
            reasons.BREAKER_FEED_GAP: ("feed gap ratio", "%", ">", b.max_feed_gap_ratio_pct),
            reasons.BREAKER_DECISION_LATENCY: ("decision latency p99", "ms", ">", b.max_decision_latency_p99_ms),
            reasons.BREAKER_DRAWDOWN: (
                "drawdown",
                "%",
                ">=",
                self.config.reduce_fraction * self.config.limits.max_drawdown_pct,
            ),
        }[br.code]
        if br.recovered_at >= 0:
            until = br.recovered_at + self.config.cooldown_ns
            return (
                f"{label} recovered at ts={br.recovered_at} (now {_num(br.value)} {unit}, limit {_num(limit)} {unit}); "
                f"cooling down until ts={until}"
            )
        return f"{label} {_num(br.value)} {unit} {op} {_num(limit)} {unit} (tripped at ts={br.tripped_at})"

    # --- views ----------------------------------------------------------------------------------------------
    def headroom(self, strategy: str, venue: str, symbol: str) -> bool:
        """True when a new entry could pass: Active, no breaker, and a 1 USDT probe entry passes every limit.

        The decision's L0 gate asks this before sizing, so the direction is not known: on futures a probe in
        either direction is enough; on spot only a buy is an entry. Cheap (no allocation beyond the probe's
        exposure): the decision calls it on every tick.
        """
        if self.phase != ACTIVE or self.breakers.active(self._now):
            return False
        lim = self.config.limits
        if _over(PROBE_NOTIONAL_USDT, lim.max_order_notional_usdt):
            return False
        if self.ledger.entries(venue, symbol) + 1 > lim.max_concurrent_entries_per_market:
            return False
        if self._orders_in_window(self._now) + 1 > lim.max_orders_per_minute:
            return False
        px = self.ledger.price(venue, symbol)
        if math.isnan(px):
            px = 1.0
        pos = self.ledger.positions.get((strategy, venue, symbol))
        lev = pos.leverage if pos is not None else 1
        qty = PROBE_NOTIONAL_USDT / px
        for side in (1, -1) if is_futures(venue) else (1,):
            a = self.ledger.after(strategy, venue, symbol, side, qty, px, lev, is_entry=True)
            if self._exposure_rejection(venue, symbol, side, lev, a) is None:
                return True
        return False

    def breakers_tripped(self) -> tuple[str, ...]:
        """Codes of the breakers that block entries now (as of the latest timestamp seen)."""
        return self.breakers.active(self._now)

    def usage(self) -> dict[str, float | int]:
        """Live usage with the keys of ``tradeplane.api.v1alpha1.RiskUsage`` (``RiskUsage(**usage)`` works)."""
        led = self.ledger
        return {
            "gross_notional_usdt": led.gross_notional(),
            "futures_margin_usdt": led.futures_margin(),
            "spot_quote_usdt": led.spot_quote(),
            "daily_pnl_usdt": led.daily_pnl(),
            "drawdown_pct": led.drawdown_pct(),
            "orders_last_minute": self._orders_in_window(self._now),
            "consecutive_losses": self.consecutive_losses,
        }
