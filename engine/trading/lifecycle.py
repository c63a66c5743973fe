"""The order lifecycle of one entry: PENDING_ENTRY → ACTIVE → PENDING_CLOSING → CLOSED.

A :class:`Trade` is everything one Intent caused: the entry order, its protective stop and take-profit, up
to two add-ons, a partial take-profit and the exit. The :class:`TradeBook` holds a strategy's trades and is
the single source of truth of "our" state; the venue's state is compared with it by the reconciler.

Why a table of legal transitions (:data:`TRANSITIONS`) instead of ad-hoc ``if``s: every event (a fill on
some leg, an order becoming final, a close request, a management action) is checked against it before
anything is mutated, so an impossible report (an add-on fill before the entry filled, an exit fill on a
closed trade) raises :class:`IllegalTransitionError` naming the trade, the state and the event, and leaves the
trade untouched for the reconciler to sort out. Fills for ids that are not ours or whose intent we do not
know return None: on a shared account that is normal, and the caller logs them.

Accounting is linear (USDT-margined futures and spot): entry and add-on fills average the entry price;
exit fills reduce the quantity and realize ``qty · (exit − avg_entry) · side``; every fee is deducted from
realized PnL when paid, so ``realized_pnl_usdt`` is net of all fees. A trade is CLOSED when what remains is
at most the dust threshold *and* the entry order is final (a late entry fill must still find the trade).
Fill de-duplication is the caller's job (by the venue's trade id): the book cannot tell a replayed fill
report from a second fill of the same size.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from ..decision.types import Intent
from .ids import ADD_LEGS, ENTRY, FLATTEN, OPENING_LEGS, PARTIAL, STOP, TAKE_PROFIT, client_order_id
from .ids import parse_client_order_id as _parse


class TradeState(StrEnum):
    PENDING_ENTRY = "PENDING_ENTRY"  #: entry order sent, nothing filled yet
    ACTIVE = "ACTIVE"  #: some entry filled; stop/take-profit working, managed every tick
    PENDING_CLOSING = "PENDING_CLOSING"  #: close requested or a stop/take-profit fired; exit in progress
    CLOSED = "CLOSED"  #: flat and the entry order final (terminal)


class TradeEvent(StrEnum):
    ENTRY_FILL = "entry-fill"
    ENTRY_FINAL = "entry-final"  #: the entry order is filled, cancelled, expired or rejected
    ADD_FILL = "add-fill"
    PARTIAL_FILL = "partial-fill"  #: a partial take-profit fill that leaves a position
    CLOSE = "close"  #: close requested, or a stop / take-profit / exit fill started the close
    EXIT_FILL = "exit-fill"
    MOVE_STOP = "move-stop"  #: the trailing ladder moved the stop (management)
    PARTIAL_SENT = "partial-sent"  #: the partial take-profit order was sent (management)
    ADD_SENT = "add-sent"  #: an add-on order was sent (management)
    RECONCILE = "reconcile"  #: the venue says the trade is over (reconciler)


_PE, _AC, _PC, _CL = TradeState.PENDING_ENTRY, TradeState.ACTIVE, TradeState.PENDING_CLOSING, TradeState.CLOSED
_E = TradeEvent

#: (state, event) → states the event may lead to; anything absent is illegal.
TRANSITIONS: Final[Mapping[tuple[TradeState, TradeEvent], frozenset[TradeState]]] = {
    (_PE, _E.ENTRY_FILL): frozenset({_AC}),
    (_PE, _E.ENTRY_FINAL): frozenset({_CL}),  # nothing filled: "entry-unfilled"
    (_PE, _E.CLOSE): frozenset({_PC}),  # cancel the working entry
    (_PE, _E.RECONCILE): frozenset({_CL}),
    (_AC, _E.ENTRY_FILL): frozenset({_AC}),  # further partial fills of the entry
    (_AC, _E.ENTRY_FINAL): frozenset({_AC}),  # entry done, partially or fully filled
    (_AC, _E.ADD_FILL): frozenset({_AC}),
    (_AC, _E.PARTIAL_FILL): frozenset({_AC}),
    (_AC, _E.CLOSE): frozenset({_PC}),
    (_AC, _E.MOVE_STOP): frozenset({_AC}),
    (_AC, _E.PARTIAL_SENT): frozenset({_AC}),
    (_AC, _E.ADD_SENT): frozenset({_AC}),
    (_AC, _E.RECONCILE): frozenset({_CL}),
    (_PC, _E.ENTRY_FILL): frozenset({_PC}),  # a late fill of the entry being cancelled: more to close
    (_PC, _E.ENTRY_FINAL): frozenset({_PC, _CL}),
    (_PC, _E.ADD_FILL): frozenset({_PC}),
    (_PC, _E.EXIT_FILL): frozenset({_PC, _CL}),
    (_PC, _E.CLOSE): frozenset({_PC}),  # repeated request: the first reason stays
    (_PC, _E.RECONCILE): frozenset({_CL}),
    (_CL, _E.ENTRY_FINAL): frozenset({_CL}),  # duplicate final report
    (_CL, _E.RECONCILE): frozenset({_CL}),
}

# Close reasons (Trade.close_reason).
ENTRY_UNFILLED: Final = "entry-unfilled"
REASON_STOP: Final = "stop"
REASON_TRAILING: Final = "trailing"
REASON_TAKE_PROFIT: Final = "take-profit"
REASON_EXIT: Final = "exit"
REASON_FLATTEN: Final = "flatten"
REASON_PARTIAL: Final = "partial"
REASON_RECONCILED: Final = "reconciled"

#: Venue order statuses that end an order (Binance names).
FINAL_STATUSES: Final = frozenset({"FILLED", "CANCELED", "EXPIRED", "EXPIRED_IN_MATCH", "REJECTED"})
#: Other spellings of the same (the simulator's parent orders: "filled", "partial" = done with part unfilled).
_STATUS_ALIASES: Final = {"CANCELLED": "CANCELED", "PARTIAL": "EXPIRED"}
_REL_DUST: Final = 1e-9  # relative float noise always treated as flat


class IllegalTransitionError(ValueError):
    """An event that the trade's state does not allow; the trade is left unchanged."""

    def __init__(self, intent_id: str, state: TradeState, event: TradeEvent, detail: str = "") -> None:
        self.intent_id, self.state, self.event = intent_id, state, event
        extra = f" ({detail})" if detail else ""
        super().__init__(f"trade {intent_id}: event {event.value} is illegal in state {state.value}{extra}")


@dataclass(slots=True)
class Trade:
    """One entry and everything it caused. Quantities are base units; ``filled_qty`` is what is held now."""

    intent_id: str
    strategy: str
    venue: str
    symbol: str
    side: int  #: +1 long, −1 short
    target_qty: float  #: the entry size asked for (also the size of each add-on)
    filled_qty: float = 0.0  #: current position of this trade (entries + add-ons − exits)
    avg_entry: float = math.nan  #: NaN until the first entry fill
    stop_price: float = math.nan  #: NaN when none
    take_profit_price: float = math.nan
    leverage: int = 1
    state: TradeState = TradeState.PENDING_ENTRY
    add_ons: int = 0  #: add-on orders sent
    trail_level: int = 0  #: trailing steps reached (0: the stop is the original one)
    partial_done: bool = False  #: the partial take-profit order was sent
    opened_ts: int = 0
    closed_ts: int = 0  #: 0 while open
    realized_pnl_usdt: float = 0.0  #: net of every fee paid so far
    fees_usdt: float = 0.0
    close_reason: str = ""
    signal_id: str = ""
    config_rev: str = ""
    oco: bool = False
    entry_done: bool = False  #: the entry order is final at the venue
    updated_ts: int = 0
    unmatched_qty: float = 0.0  #: exit fills beyond the position (a race between two exits; reconcile)
    leg_filled: dict[str, float] = field(default_factory=dict)  #: cumulative fills per leg, as the venue saw

    @property
    def is_open(self) -> bool:
        return self.state is not TradeState.CLOSED

    @property
    def signed_qty(self) -> float:
        return self.side * self.filled_qty

    def client_order_id(self, leg: str) -> str:
        return client_order_id(self.intent_id, leg)

    def roe_pct(self, mark: float) -> float:
        """Return on equity at ``mark`` in percent: side·(mark − avg_entry)/avg_entry·leverage·100."""
        return self.side * (mark - self.avg_entry) / self.avg_entry * self.leverage * 100.0


class TradeBook:
    """All trades of one strategy (or, for the reconciler, of one account), keyed by intent id."""

    def __init__(self, strategy: str = "", *, dust_qty: float = 0.0) -> None:
        """``strategy`` (when set) is checked against every intent; ``dust_qty`` (base units, e.g. the step
        size) is what may remain of a position that still counts as flat."""
        if not (dust_qty >= 0 and math.isfinite(dust_qty)):
            raise ValueError(f"dust_qty must be finite and >= 0, got {dust_qty}")
        self.strategy = strategy
        self.dust_qty = dust_qty
        self._trades: dict[str, Trade] = {}

    # --- queries -------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._trades)

    def __contains__(self, intent_id: object) -> bool:
        return intent_id in self._trades

    def trades(self) -> list[Trade]:
        """Every trade, in the order they were opened."""
        return list(self._trades.values())

    def open_trades(self) -> list[Trade]:
        return [t for t in self._trades.values() if t.state is not TradeState.CLOSED]

    def trade(self, intent_id: str) -> Trade | None:
        return self._trades.get(intent_id)

    def by_client_order_id(self, client_order_id: str) -> Trade | None:
        parsed = _parse(client_order_id)
        return None if parsed is None else self._trades.get(parsed[0])

    def dust(self, trade: Trade) -> float:
        """Remaining quantity at or below which ``trade`` counts as flat."""
        scale = max(trade.target_qty, sum(trade.leg_filled.get(leg, 0.0) for leg in OPENING_LEGS))
        return max(self.dust_qty, _REL_DUST * scale)

    # --- intents -------------------------------------------------------------------------------------------
    def open(self, intent: Intent, ts: int) -> tuple[Trade, bool]:
        """(trade, created). The same intent id again returns the existing trade (open or closed) and
        created=False: the caller sends the entry only when created, so a retried or replayed intent never
        sends a second order."""
        existing = self._trades.get(intent.intent_id)
        if existing is not None:
            return existing, False
        if self.strategy and intent.strategy != self.strategy:
            raise ValueError(
                f"intent {intent.intent_id} is for strategy {intent.strategy!r}, the book is {self.strategy!r}"
            )
        if intent.side not in (1, -1):
            raise ValueError(f"intent {intent.intent_id}: side must be +1 or -1, got {intent.side}")
        if not (intent.qty > 0 and math.isfinite(intent.qty)):
            raise ValueError(f"intent {intent.intent_id}: qty must be finite and > 0, got {intent.qty}")
        client_order_id(intent.intent_id, ENTRY)  # validates the id once, here, rather than at send time
        trade = Trade(
            intent_id=intent.intent_id,
            strategy=intent.strategy,
            venue=intent.venue,
            symbol=intent.symbol,
            side=intent.side,
            target_qty=intent.qty,
            stop_price=_price_or_nan(intent.stop_price),
            take_profit_price=_price_or_nan(intent.take_profit_price),
            leverage=max(1, intent.leverage),
            opened_ts=ts,
            updated_ts=ts,
            signal_id=intent.signal_id,
            config_rev=intent.config_rev,
            oco=intent.oco,
        )
        self._trades[trade.intent_id] = trade
        return trade, True

    def restore(self, trade: Trade) -> None:
        """Put back a persisted trade (crash recovery); an intent id already present is an error."""
        if trade.intent_id in self._trades:
            raise ValueError(f"trade {trade.intent_id} is already in the book")
        self._trades[trade.intent_id] = trade

    def forget_closed(self, before_ts: int) -> int:
        """Drop trades closed before ``before_ts``; returns how many. Only safe past the replay horizon:
        an intent replayed after its trade was forgotten would open again."""
        gone = [k for k, t in self._trades.items() if t.state is TradeState.CLOSED and t.closed_ts < before_ts]
        for k in gone:
            del self._trades[k]
        return len(gone)

    # --- venue reports -------------------------------------------------------------------------------------
    def on_fill(self, client_order_id: str, qty: float, price: float, fee_usdt: float, ts: int) -> Trade | None:
        """Apply one fill of one of our orders; None (nothing changed) for ids we do not know."""
        found = self._lookup(client_order_id)
        if found is None:
            return None
        trade, leg = found
        if not (qty > 0 and math.isfinite(qty) and price > 0 and math.isfinite(price) and math.isfinite(fee_usdt)):
            raise ValueError(
                f"fill of {client_order_id}: need qty > 0, price > 0 and a finite fee; got {qty}, {price}, {fee_usdt}"
            )
        if leg in OPENING_LEGS:
            event = _E.ENTRY_FILL if leg == ENTRY else _E.ADD_FILL
            target = _AC if trade.state is _PE else trade.state
            _check(trade, event, target)
            held = trade.filled_qty
            trade.avg_entry = price if held <= 0 else (trade.avg_entry * held + price * qty) / (held + qty)
            trade.filled_qty = held + qty
            trade.state = target
            if leg == ENTRY and trade.leg_filled.get(ENTRY, 0.0) + qty >= trade.target_qty - self.dust(trade):
                trade.entry_done = True  # a fully filled order is final, whether or not its report comes
        else:
            reduce = min(qty, trade.filled_qty)
            remaining = trade.filled_qty - reduce
            flat = remaining <= self.dust(trade)
            end = _CL if flat and trade.entry_done else _PC
            path: list[tuple[TradeEvent, TradeState]]
            if trade.state is _AC and leg == PARTIAL and not flat:
                path = [(_E.PARTIAL_FILL, _AC)]
            elif trade.state is _AC:
                path = [(_E.CLOSE, _PC), (_E.EXIT_FILL, end)]
            else:
                path = [(_E.EXIT_FILL, end)]
            state = trade.state
            for event, to in path:
                _check(trade, event, to, state)
                state = to
            if path[0][0] is _E.CLOSE:
                trade.close_reason = _leg_reason(trade, leg)
            if reduce > 0:
                trade.realized_pnl_usdt += trade.side * reduce * (price - trade.avg_entry)
            trade.unmatched_qty += qty - reduce
            trade.filled_qty = remaining
            trade.state = state
            if state is _CL:
                trade.closed_ts = ts
        trade.fees_usdt += fee_usdt
        trade.realized_pnl_usdt -= fee_usdt
        trade.leg_filled[leg] = trade.leg_filled.get(leg, 0.0) + qty
        # A fill proves the order was sent, even if the caller did not record it (management's "once" rules).
        if leg == PARTIAL:
            trade.partial_done = True
        elif leg in ADD_LEGS:
            trade.add_ons = max(trade.add_ons, ADD_LEGS.index(leg) + 1)
        trade.updated_ts = ts
        return trade

    def on_order_final(self, client_order_id: str, status: str, ts: int) -> Trade | None:
        """An order of ours is final at the venue (FILLED, CANCELED, EXPIRED, REJECTED…, any case; see
        :func:`final_status`).

        Only the entry order matters to the state: final with nothing filled closes the trade
        ("entry-unfilled"); partially filled leaves it ACTIVE with what filled. A FILLED entry whose fills
        we never saw changes nothing here (apply the fills first; the reconciler recovers lost ones).
        """
        found = self._lookup(client_order_id)
        if found is None:
            return None
        trade, leg = found
        status = final_status(status)
        trade.updated_ts = ts
        if leg != ENTRY or (status == "FILLED" and trade.leg_filled.get(ENTRY, 0.0) <= 0):
            return trade
        if trade.state is _PE:
            target = _CL
        elif trade.state is _PC:
            target = _CL if trade.filled_qty <= self.dust(trade) else _PC
        else:
            target = trade.state
        _check(trade, _E.ENTRY_FINAL, target)
        trade.entry_done = True
        if target is _CL and trade.state is not _CL:
            trade.close_reason = trade.close_reason or ENTRY_UNFILLED
            trade.closed_ts = ts
        trade.state = target
        return trade

    # --- decisions about a trade ---------------------------------------------------------------------------
    def request_close(self, intent_id: str, reason: str, ts: int) -> Trade:
        """→ PENDING_CLOSING (the caller cancels working orders and sends the exit); idempotent."""
        trade = self._require(intent_id)
        _check(trade, _E.CLOSE, _PC)
        if trade.state is not _PC:
            trade.close_reason = reason
        trade.state = _PC
        trade.updated_ts = ts
        return trade

    def force_close(self, intent_id: str, reason: str, ts: int) -> Trade:
        """→ CLOSED because the venue says so (reconciler); PnL not seen stays unrealized in the book."""
        trade = self._require(intent_id)
        _check(trade, _E.RECONCILE, _CL)
        if trade.state is not _CL:
            trade.state = _CL
            trade.close_reason = reason  # why it actually ended, even if a close was requested before
            trade.closed_ts = ts
            trade.entry_done = True
        trade.updated_ts = ts
        return trade

    def record_stop(self, intent_id: str, stop_price: float, trail_level: int, ts: int) -> Trade:
        """The trailing ladder moved the stop; a move against the position is refused."""
        trade = self._require(intent_id)
        _check(trade, _E.MOVE_STOP, _AC)
        cur = trade.stop_price
        if not (stop_price > 0 and math.isfinite(stop_price)):
            raise ValueError(f"trade {intent_id}: stop price must be finite and > 0, got {stop_price}")
        if math.isfinite(cur) and trade.side * (stop_price - cur) < 0:
            raise ValueError(f"trade {intent_id}: stop {stop_price} would move against the position (from {cur})")
        trade.stop_price = stop_price
        trade.trail_level = max(trade.trail_level, trail_level)
        trade.updated_ts = ts
        return trade

    def record_partial(self, intent_id: str, ts: int) -> Trade:
        """The partial take-profit order was sent (at most once per trade)."""
        trade = self._require(intent_id)
        _check(trade, _E.PARTIAL_SENT, _AC)
        if trade.partial_done:
            raise IllegalTransitionError(intent_id, trade.state, _E.PARTIAL_SENT, "partial take-profit already taken")
        trade.partial_done = True
        trade.updated_ts = ts
        return trade

    def record_add_on(self, intent_id: str, ts: int) -> str:
        """An add-on order is about to be sent; returns its leg ("add1", "add2")."""
        trade = self._require(intent_id)
        _check(trade, _E.ADD_SENT, _AC)
        if trade.add_ons >= len(ADD_LEGS):
            raise IllegalTransitionError(intent_id, trade.state, _E.ADD_SENT, f"at most {len(ADD_LEGS)} add-ons")
        leg = ADD_LEGS[trade.add_ons]
        trade.add_ons += 1
        trade.updated_ts = ts
        return leg

    # --- internals -----------------------------------------------------------------------------------------
    def _lookup(self, coid: str) -> tuple[Trade, str] | None:
        parsed = _parse(coid)
        if parsed is None:
            return None
        trade = self._trades.get(parsed[0])
        return None if trade is None else (trade, parsed[1])

    def _require(self, intent_id: str) -> Trade:
        trade = self._trades.get(intent_id)
        if trade is None:
            raise KeyError(f"no trade for intent {intent_id}")
        return trade


def final_status(status: str) -> str:
    """The Binance name of a final order status (case-insensitive, aliases resolved); ValueError otherwise."""
    up = status.upper()
    up = _STATUS_ALIASES.get(up, up)
    if up not in FINAL_STATUSES:
        raise ValueError(f"{status!r} is not a final order status ({', '.join(sorted(FINAL_STATUSES))})")
    return up


def is_legal(state: TradeState, event: TradeEvent, to: TradeState) -> bool:
    return to in TRANSITIONS.get((state, event), frozenset())


def _check(trade: Trade, event: TradeEvent, to: TradeState, state: TradeState | None = None) -> None:
    src = trade.state if state is None else state
    if not is_legal(src, event, to):
        raise IllegalTransitionError(trade.intent_id, src, event, f"to {to.value}")


def _leg_reason(trade: Trade, leg: str) -> str:
    """Why a fill on ``leg`` closes the trade when nobody asked for it (the venue's stop or target fired)."""
    if leg == STOP:
        return REASON_TRAILING if trade.trail_level > 0 else REASON_STOP
    if leg == TAKE_PROFIT:
        return REASON_TAKE_PROFIT
    if leg == FLATTEN:
        return REASON_FLATTEN
    if leg == PARTIAL:
        return REASON_PARTIAL
    return REASON_EXIT


def _price_or_nan(price: float) -> float:
    return price if price > 0 and math.isfinite(price) else math.nan
