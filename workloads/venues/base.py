"""The venue adapter interface the execute workload calls, for the paper venue and for Binance alike.

Why one asynchronous protocol: the execute workload turns intents into orders and venue events into fills
without knowing where the orders go. A live venue is network I/O (REST for orders, a WebSocket for the
user-data stream), so every call is a coroutine; a paper venue implements the same coroutines without
awaiting anything.

The vocabulary is the engine's, so nothing is translated twice:

* orders carry the idempotent ``client_order_id`` of :mod:`tradeplane.engine.trading.ids` (derived from the
  intent id and the leg): a retried or replayed submit names the same order and never creates a second one;
* what the venue holds comes back as :class:`~tradeplane.engine.trading.reconcile.VenueOrder` and
  :class:`~tradeplane.engine.trading.reconcile.VenuePosition`, which the reconciler compares with the
  TradeBook directly;
* fills and order updates come back as :class:`ExecutionReport`, one normalized record per venue event.

Order types are the simulator's (``engine.sim.orders``): MARKET, LIMIT (with a time in force, GTX being
post-only), STOP_MARKET and TAKE_PROFIT_MARKET triggered at ``stop_price``, reduce-only, and an OCO pair of
take-profit and stop for spot. Quantities and prices are given as ``float`` or ``Decimal``; the adapter
formats them to the symbol's step and tick (:mod:`.filters`) and refuses what cannot be sent, naming the
field.

Errors: :class:`OrderValidationError` (refused before anything was sent), :class:`OrderRejectedError` (the
venue refused it: nothing was placed), :class:`UnknownOrderError`, and :class:`OrderStateUnknownError` when
an ambiguous failure (timeout, 5xx) could not be resolved by querying the venue: the caller must reconcile
before acting on that order again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, Final, Protocol

from ...engine.trading.ids import BINANCE_CLIENT_ID
from ...engine.trading.lifecycle import FINAL_STATUSES
from ...engine.trading.reconcile import VenueOrder, VenuePosition

BUY: Final = 1
SELL: Final = -1

Num = float | int | Decimal
"""A quantity or price as the caller has it; the adapter formats it to the symbol's step or tick."""


class OrderType(StrEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"
    STOP_MARKET = "STOP_MARKET"  #: a market order once the last price reaches ``stop_price`` (spot: STOP_LOSS)
    TAKE_PROFIT_MARKET = "TAKE_PROFIT_MARKET"  #: the same, on the profit side (spot: TAKE_PROFIT)


class TimeInForce(StrEnum):
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"
    GTX = "GTX"  #: post-only: rejected if it would take (spot: sent as LIMIT_MAKER)


class Placement(StrEnum):
    """How a submit ended up with its order."""

    PLACED = "placed"  #: the venue accepted this request
    DUPLICATE = "duplicate"  #: the venue already had an open order with this id: that order is returned
    RECOVERED = "recovered"  #: the request failed ambiguously, and the order was found at the venue


# --- errors ------------------------------------------------------------------------------------------------------
class VenueError(Exception):
    """Base of every error a venue adapter raises."""


class OrderValidationError(VenueError, ValueError):
    """The order cannot be sent as given (names the field); nothing was sent."""


class UnsupportedOrderError(VenueError, ValueError):
    """The venue has no such order type or feature (e.g. an OCO on USD-M futures); nothing was sent."""


class OrderRejectedError(VenueError):
    """The venue refused the request: nothing was placed or changed."""


class UnknownOrderError(VenueError):
    """The venue does not know the order (never placed, or too old to be queried)."""


class OrderStateUnknownError(VenueError):
    """An ambiguous failure (timeout, 5xx, lost connection) that querying the venue could not resolve.
    The order may or may not exist: reconcile before sending anything else for it."""


# --- numbers -----------------------------------------------------------------------------------------------------
def to_decimal(value: Num | str, field: str) -> Decimal:
    """``value`` as a Decimal, through its shortest repr for floats (0.1 → Decimal('0.1'), not the binary
    expansion); non-finite or non-numeric values raise naming ``field``."""
    try:
        d = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise OrderValidationError(f"{field}: {value!r} is not a number") from None
    if not d.is_finite():
        raise OrderValidationError(f"{field}: {value!r} is not finite")
    return d


def _positive(value: Num | None, field: str) -> Decimal | None:
    if value is None:
        return None
    d = to_decimal(value, field)
    if d <= 0:
        raise OrderValidationError(f"{field}: must be > 0, got {value!r}")
    return d


def _check_client_id(coid: str, field: str) -> None:
    if not BINANCE_CLIENT_ID.match(coid):
        raise OrderValidationError(f"{field}: {coid!r} must match {BINANCE_CLIENT_ID.pattern}")


# --- requests ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class OrderSpec:
    """One order to place. ``side`` +1 buy / −1 sell; ``qty`` base units; ``price`` the limit price (LIMIT
    only); ``stop_price`` the trigger (STOP_MARKET / TAKE_PROFIT_MARKET only)."""

    client_order_id: str
    symbol: str
    side: int
    qty: Num
    order_type: OrderType = OrderType.MARKET
    price: Num | None = None
    stop_price: Num | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    reduce_only: bool = False  #: futures: may only shrink the position (not sent on spot, which cannot short)

    def __post_init__(self) -> None:
        _check_client_id(self.client_order_id, "client_order_id")
        if not self.symbol:
            raise OrderValidationError("symbol: empty")
        if self.side not in (BUY, SELL):
            raise OrderValidationError(f"side: must be +1 or -1, got {self.side!r}")
        _positive(self.qty, "qty")
        price = _positive(self.price, "price")
        stop = _positive(self.stop_price, "stop_price")
        kind = OrderType(self.order_type)
        if kind is OrderType.LIMIT and price is None:
            raise OrderValidationError("price: a LIMIT order needs a price")
        if kind is not OrderType.LIMIT and price is not None:
            raise OrderValidationError(f"price: a {kind.value} order takes no limit price")
        conditional = kind in (OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET)
        if conditional and stop is None:
            raise OrderValidationError(f"stop_price: a {kind.value} order needs a trigger price")
        if not conditional and stop is not None:
            raise OrderValidationError(f"stop_price: a {kind.value} order takes no trigger price")


@dataclass(frozen=True, slots=True)
class OcoSpec:
    """A spot one-cancels-the-other exit: a take-profit limit (maker) and a stop-loss on the same quantity;
    when one fills the venue cancels the other. ``side`` is the exit side (−1 sells a long)."""

    symbol: str
    side: int
    qty: Num
    take_profit_price: Num
    stop_price: Num
    take_profit_client_order_id: str
    stop_client_order_id: str
    list_client_order_id: str  #: the pair's own id (a separate namespace at the venue)

    def __post_init__(self) -> None:
        for name in ("take_profit_client_order_id", "stop_client_order_id", "list_client_order_id"):
            _check_client_id(getattr(self, name), name)
        if self.take_profit_client_order_id == self.stop_client_order_id:
            raise OrderValidationError("stop_client_order_id: must differ from take_profit_client_order_id")
        if self.side not in (BUY, SELL):
            raise OrderValidationError(f"side: must be +1 or -1, got {self.side!r}")
        _positive(self.qty, "qty")
        tp = _positive(self.take_profit_price, "take_profit_price")
        stop = _positive(self.stop_price, "stop_price")
        assert tp is not None and stop is not None
        if (self.side == SELL and tp <= stop) or (self.side == BUY and tp >= stop):
            where = "above" if self.side == SELL else "below"
            raise OrderValidationError(
                f"take_profit_price: a {'SELL' if self.side == SELL else 'BUY'} OCO needs the take-profit "
                f"{where} the stop (got take-profit {tp}, stop {stop})"
            )


# --- results -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class OrderAck:
    """What a submit returns: the order as the venue has it now, and how we got it."""

    order: VenueOrder
    venue_order_id: str
    placement: Placement
    send_ts: int  #: ns, when the (first) request went out
    ack_ts: int  #: ns, when the answer was in
    exchange_ts: int  #: ns, the venue's transaction time (0 when it did not say)

    @property
    def client_order_id(self) -> str:
        return self.order.client_order_id

    @property
    def status(self) -> str:
        return self.order.status


@dataclass(frozen=True, slots=True)
class ExecutionReport:
    """One venue event about one of the account's orders: a fill (``qty`` > 0) or a status change.

    ``qty``/``price`` are the last fill (0 / NaN when the event is not a fill), ``cum_qty``/``avg_price`` the
    order's totals after it. ``fee`` is in ``fee_asset``; ``fee_quote`` is the same fee in the symbol's quote
    asset when the adapter can tell (fee paid in the quote or base asset), else NaN. ``exchange_ts`` is the
    venue's transaction time in ns.
    """

    venue: str
    symbol: str
    client_order_id: str
    venue_order_id: str
    side: int
    order_type: str
    exec_type: str  #: NEW, TRADE, CANCELED, EXPIRED, REJECTED, … (Binance names)
    status: str  #: the order's status after the event
    qty: float
    price: float
    cum_qty: float
    order_qty: float
    avg_price: float
    fee: float
    fee_asset: str
    fee_quote: float
    is_maker: bool
    trade_id: str
    exchange_ts: int
    reduce_only: bool = False
    realized_pnl: float = math.nan  #: futures: the venue's realized PnL of this fill
    source: str = "stream"  #: stream (user-data WebSocket) | poll (order status deltas)

    @property
    def is_fill(self) -> bool:
        return self.qty > 0

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    def fill_row(self, strategy: str, ingest_ts: int) -> dict[str, Any]:
        """The fill as a row of the ``fills`` table (the columns the local runner writes); fee in quote."""
        return {
            "strategy": strategy,
            "symbol": self.symbol,
            "ts": self.exchange_ts,
            "venue": self.venue,
            "side": self.side,
            "qty": self.qty,
            "price": self.price,
            "fee": self.fee_quote,
            "liquidity": "maker" if self.is_maker else "taker",
            "client_order_id": self.client_order_id,
            "trade_id": self.trade_id,
            "exchange_ts": self.exchange_ts,
            "ingest_ts": ingest_ts,
        }


# --- the protocol ------------------------------------------------------------------------------------------------
class VenueAdapter(Protocol):
    """What the execute workload needs from a venue (paper and Binance alike)."""

    @property
    def venue(self) -> str:
        """The venue name of the Strategy spec: ``binance-spot``, ``binance-usdm`` or ``paper``."""

    async def start(self) -> None:
        """Connect: sync the clock, load symbol filters and rate limits, open the user-data stream."""

    async def submit(self, order: OrderSpec) -> OrderAck:
        """Place ``order``; idempotent by ``client_order_id`` (a retry never creates a second order)."""

    async def submit_oco(self, oco: OcoSpec) -> tuple[OrderAck, OrderAck]:
        """Place a take-profit/stop pair as one OCO; returns (take-profit, stop). Spot only."""

    async def cancel(self, symbol: str, client_order_id: str) -> VenueOrder:
        """Cancel an open order; returns its final state. An order already final is returned as it is."""

    async def order_status(self, symbol: str, client_order_id: str) -> VenueOrder | None:
        """The order's current state; None when the venue does not know it."""

    async def open_orders(self, symbol: str | None = None) -> list[VenueOrder]:
        """Every open order of the account (on ``symbol`` when given), ours and foreign."""

    async def positions(self) -> list[VenuePosition]:
        """Non-zero positions (futures) or base-asset holdings (spot) of the traded symbols."""

    async def next_reports(self, timeout_s: float) -> list[ExecutionReport]:
        """Execution reports since the last call; waits up to ``timeout_s`` for the first one."""

    def health(self) -> dict[str, Any]:
        """Connection, clock and rate-limit state, for ``/readyz`` and logs."""

    async def close(self) -> None:
        """Stop the stream and release connections (idempotent)."""
