"""Position management: trailing stop ladder, partial take-profit and add-ons, decided per mark.

Everything is in return on equity (ROE, percent), because that is how the Strategy spec states its
thresholds and how a leveraged position's risk is felt: ROE = side·(mark − avg_entry)/avg_entry·leverage·100.
A locked ROE L converts back to a stop price avg_entry·(1 + side·L/(100·leverage)).

:func:`manage` is pure: it reads a Trade and a mark and returns actions; :func:`apply_action` records an
action in the book (before the order is sent, so the next mark does not ask again) and names the client
order id to send. Rules, in order, per mark of an ACTIVE trade:

1. the stop is hit (long: mark ≤ stop; short: mark ≥ stop) → close, reason "stop", or "trailing" once the
   ladder has moved it; the venue's own stop order normally fires first, this is the backstop;
2. the take-profit is hit → close, reason "take-profit";
3. the trailing ladder: the highest step whose ``at`` ROE is reached gives a stop locking its ``lock`` ROE;
   the stop moves only if that is strictly in the position's favour (it never moves back, whatever the
   mark path, and an add-on that moves the average entry cannot loosen it);
4. the partial take-profit, once, at ``partial_roe_pct`` for ``partial_fraction`` of the current quantity;
5. otherwise the next add-on, at ROE ≥ k·``add_on_roe_step_pct`` for k = 1..``max_add_ons`` (≤ 2), each
   once, of the original target quantity, and only after the entry order is final. Not in the same mark
   as a partial take-profit: taking profit and pressing the position at once would pay fees both ways.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from tradeplane.api.v1alpha1.strategy import PositionManagementSpec

from .ids import ADD_LEGS, EXIT, PARTIAL, STOP, client_order_id
from .lifecycle import (
    REASON_PARTIAL,
    REASON_STOP,
    REASON_TAKE_PROFIT,
    REASON_TRAILING,
    Trade,
    TradeBook,
    TradeState,
)

MOVE_STOP: Final = "move_stop"
PARTIAL_CLOSE: Final = "partial_close"
ADD_ON: Final = "add_on"
CLOSE: Final = "close"
REASON_ADD_ON: Final = "add-on"
MAX_ADD_ONS: Final = len(ADD_LEGS)
_ROUND_EPS: Final = 1e-9  # price/tick ratios within this of an integer are that integer


@dataclass(frozen=True)
class ManagementConfig:
    """Compiled PositionManagementSpec: ladder steps sorted by ROE, fractions as fractions."""

    trailing: tuple[tuple[float, float], ...] = ((10.0, 0.0), (20.0, 10.0))  #: (at_roe_pct, lock_roe_pct)
    partial_roe_pct: float | None = None  #: None disables the partial take-profit
    partial_fraction: float = 0.5  #: share of the current quantity taken off (0, 1]
    max_add_ons: int = 2
    add_on_roe_step_pct: float = 5.0

    def __post_init__(self) -> None:
        prev = -math.inf
        for i, (at, lock) in enumerate(self.trailing):
            if not (math.isfinite(at) and at > prev):
                raise ValueError(f"trailing[{i}].atRoePct must be finite and increasing, got {at} after {prev}")
            if not (0 <= lock < at):
                raise ValueError(f"trailing[{i}].lockRoePct must be in [0, atRoePct={at}), got {lock}")
            prev = at
        if self.partial_roe_pct is not None and not (self.partial_roe_pct > 0 and math.isfinite(self.partial_roe_pct)):
            raise ValueError(f"partial_roe_pct must be finite and > 0, got {self.partial_roe_pct}")
        if not 0 < self.partial_fraction <= 1:
            raise ValueError(f"partial_fraction must be in (0, 1], got {self.partial_fraction}")
        if not 0 <= self.max_add_ons <= MAX_ADD_ONS:
            raise ValueError(f"max_add_ons must be in [0, {MAX_ADD_ONS}], got {self.max_add_ons}")
        if not (self.add_on_roe_step_pct > 0 and math.isfinite(self.add_on_roe_step_pct)):
            raise ValueError(f"add_on_roe_step_pct must be finite and > 0, got {self.add_on_roe_step_pct}")

    @classmethod
    def from_spec(cls, pm: PositionManagementSpec) -> ManagementConfig:
        """Steps are sorted by ``atRoePct``; a lock at or above its trigger (a stop at or beyond the mark that
        reached it) is rejected, naming the step."""
        steps = sorted((s.at_roe_pct, s.lock_roe_pct) for s in pm.trailing)
        return cls(
            trailing=tuple(steps),
            partial_roe_pct=pm.partial_take_profit_roe_pct,
            partial_fraction=pm.partial_take_profit_fraction_pct / 100.0,
            max_add_ons=pm.max_add_ons,
            add_on_roe_step_pct=pm.add_on_roe_step_pct,
        )


@dataclass(frozen=True)
class ManagementAction:
    """What the runtime should do for one trade. ``qty`` in base units (0 for move_stop), ``price`` the new
    stop (move_stop) or the reference mark (others)."""

    kind: str  #: MOVE_STOP | PARTIAL_CLOSE | ADD_ON | CLOSE
    intent_id: str
    qty: float
    price: float
    reason: str  #: "stop" | "take-profit" | "trailing" | "partial" | "add-on"
    leg: str = ""  #: order leg: "stop", "partial", "add1"/"add2", "exit"
    level: int = 0  #: trailing step reached (move_stop) or add-on number (add_on)


def stop_for_roe(avg_entry: float, side: int, leverage: int, roe_pct: float) -> float:
    """The price at which the position's ROE is ``roe_pct``."""
    return avg_entry * (1.0 + side * roe_pct / (100.0 * leverage))


def manage(
    trade: Trade, mark: float, cfg: ManagementConfig, ts: int, *, tick_size: float = 0.0, step_size: float = 0.0
) -> list[ManagementAction]:
    """Actions for ``trade`` at ``mark`` (see the module docstring for the rules and their order).

    ``tick_size`` rounds a moved stop away from the mark (long down, short up: never tighter than the ladder
    asks); ``step_size`` floors the partial quantity (a partial that floors to zero is skipped). ``ts`` is
    accepted for symmetry with the other engine calls; nothing here depends on time.
    """
    del ts
    if trade.state is not TradeState.ACTIVE or not trade.filled_qty > 0:
        return []
    if not (mark > 0 and math.isfinite(mark) and math.isfinite(trade.avg_entry) and trade.avg_entry > 0):
        return []
    side, stop, tp = trade.side, trade.stop_price, trade.take_profit_price
    if math.isfinite(stop) and side * (mark - stop) <= 0:
        reason = REASON_TRAILING if trade.trail_level > 0 else REASON_STOP
        return [ManagementAction(CLOSE, trade.intent_id, trade.filled_qty, mark, reason, EXIT)]
    if math.isfinite(tp) and side * (mark - tp) >= 0:
        return [ManagementAction(CLOSE, trade.intent_id, trade.filled_qty, mark, REASON_TAKE_PROFIT, EXIT)]

    roe = trade.roe_pct(mark)
    actions: list[ManagementAction] = []
    level = sum(1 for at, _ in cfg.trailing if at <= roe)
    if level > 0:
        lock = cfg.trailing[level - 1][1]
        new_stop = _round_away(stop_for_roe(trade.avg_entry, side, trade.leverage, lock), side, tick_size)
        if not math.isfinite(stop) or side * (new_stop - stop) > 0:
            actions.append(ManagementAction(MOVE_STOP, trade.intent_id, 0.0, new_stop, REASON_TRAILING, STOP, level))

    partial_sent = False
    if cfg.partial_roe_pct is not None and not trade.partial_done and roe >= cfg.partial_roe_pct:
        qty = trade.filled_qty * cfg.partial_fraction
        if step_size > 0:
            qty = round(math.floor(qty / step_size + _ROUND_EPS) * step_size, 12)
        if qty > 0:
            actions.append(ManagementAction(PARTIAL_CLOSE, trade.intent_id, qty, mark, REASON_PARTIAL, PARTIAL))
            partial_sent = True
    k = trade.add_ons + 1
    if not partial_sent and trade.entry_done and k <= cfg.max_add_ons and roe >= k * cfg.add_on_roe_step_pct:
        leg = ADD_LEGS[k - 1]
        actions.append(ManagementAction(ADD_ON, trade.intent_id, trade.target_qty, mark, REASON_ADD_ON, leg, k))
    return actions


def apply_action(book: TradeBook, action: ManagementAction, ts: int) -> str:
    """Record ``action`` in the book and return the client order id to send (for move_stop: cancel the stop
    and re-place it under the same id). Call it before sending, so the next mark does not repeat it."""
    if action.kind == MOVE_STOP:
        book.record_stop(action.intent_id, action.price, action.level, ts)
        return client_order_id(action.intent_id, STOP)
    if action.kind == PARTIAL_CLOSE:
        book.record_partial(action.intent_id, ts)
        return client_order_id(action.intent_id, PARTIAL)
    if action.kind == ADD_ON:
        return client_order_id(action.intent_id, book.record_add_on(action.intent_id, ts))
    if action.kind == CLOSE:
        book.request_close(action.intent_id, action.reason, ts)
        return client_order_id(action.intent_id, EXIT)
    raise ValueError(f"unknown management action kind {action.kind!r}")


def _round_away(price: float, side: int, tick: float) -> float:
    if tick <= 0:
        return price
    n = price / tick
    ticks = math.floor(n + _ROUND_EPS) if side > 0 else math.ceil(n - _ROUND_EPS)
    return round(ticks * tick, 12)
