"""Live execute's pure conversions between the executors' records and the venue adapter's vocabulary.

Why pure functions: these are the places where a unit mistake costs real money (a quantity not rounded to
the step, a post-only flag lost, a fill booked twice), so each is a function of its inputs alone and is
unit-tested against hand-computed values (tests/unit/workloads/test_live_execute_orders.py).

* :func:`client_order_id` — a child order's id at the venue, derived from (account, decide session, order
  id): a retried submit names the same order (Binance refuses a second open order with that id), and after
  a crash every order this account's execute left open is found by :func:`account_prefix`.
* :func:`order_spec` — one ORDER_DTYPE child row → :class:`~..venues.base.OrderSpec` (MARKET, or LIMIT with
  GTX for post-only, which the spot adapter sends as LIMIT_MAKER), quantity and price on the venue's grid.
* :func:`report_row` / :func:`order_row` / :func:`fill_row` — what the venue said → the ORDER_DTYPE report
  and FILL_DTYPE fill rows the simulator would have delivered (engine/sim/orders.py), so the desk and
  ``decide`` cannot tell a live venue from the simulator.
"""

from __future__ import annotations

import hashlib
import math
from decimal import Decimal
from typing import Final

import numpy as np
import numpy.typing as npt

from ...engine.sim.orders import (
    CANCELED,
    EXPIRED,
    FILL_DTYPE,
    FILLED,
    LIMIT,
    MARKET,
    OPEN,
    ORDER_DTYPE,
    PARTIALLY_FILLED,
    PENDING,
    POST_ONLY,
    REASON_NONE,
    REASON_POST_ONLY_WOULD_CROSS,
    REASON_USER_CANCEL,
    REDUCE_ONLY,
    REJECTED,
)
from ...engine.trading.ids import BINANCE_CLIENT_ID
from ..venues.base import ExecutionReport, OrderSpec, OrderType, OrderValidationError, TimeInForce
from ..venues.filters import SymbolFilters

Records = npt.NDArray[np.void]

#: Marks the children of live execute's desks (``tpl-``: not a TradeBook leg code, so the trading
#: reconciler never mistakes them for an intent's orders).
CHILD_PREFIX: Final = "tpl-"
_MAX_OID: Final = 0xFFFF_FFFF  #: 8 hex digits keep the id within Binance's 36 characters

#: Binance order status → the simulator's (engine/sim/orders.py).
STATUS: Final = {
    "NEW": OPEN,
    "PARTIALLY_FILLED": PARTIALLY_FILLED,
    "FILLED": FILLED,
    "CANCELED": CANCELED,
    "EXPIRED": EXPIRED,
    "EXPIRED_IN_MATCH": EXPIRED,
    "REJECTED": REJECTED,
    "PENDING_CANCEL": OPEN,
}


def account_tag(account: str) -> str:
    """6 hex digits naming the account (account names may be longer than Binance's id allows)."""
    return hashlib.blake2b(account.encode(), digest_size=3).hexdigest()


def account_prefix(account: str) -> str:
    """The client-id prefix of every child order of ``account``: startup cancels open orders carrying it."""
    return f"{CHILD_PREFIX}{account_tag(account)}-"


def client_order_id(account: str, session: int, order_id: int) -> str:
    """``tpl-<account tag>-<session hex>-<order id hex>``, at most 36 characters of ``[0-9a-z-]``."""
    if not 0 <= session < 1 << 64:
        raise ValueError(f"session {session} is not a 64-bit unsigned int")
    if not 1 <= order_id <= _MAX_OID:
        raise ValueError(f"order id {order_id} is outside 1..{_MAX_OID}")
    coid = f"{account_prefix(account)}{session:x}-{order_id:x}"
    assert BINANCE_CLIENT_ID.match(coid), coid
    return coid


def parse_client_order_id(account: str, coid: str) -> tuple[int, int] | None:
    """(session, order id) of one of ``account``'s child ids; None for anything else."""
    prefix = account_prefix(account)
    if not coid.startswith(prefix):
        return None
    parts = coid[len(prefix) :].split("-")
    if len(parts) != 2:
        return None
    try:
        return int(parts[0], 16), int(parts[1], 16)
    except ValueError:
        return None


def venue_qty(qty: float, step: Decimal) -> Decimal:
    """``qty`` in whole steps, rounded down, tolerant of float noise (0.30000000000000004 and
    0.29999999999999993 are both 0.3 at step 0.001): the executors' child quantities are multiples of the
    lot computed in floats, and rounding their noise down would drop a whole step."""
    units = math.floor(qty / float(step) + 1e-9)
    return units * step


def order_spec(row: np.void, coid: str, symbol: str, tick: float, filters: SymbolFilters) -> OrderSpec:
    """One executors' child row as the order the adapter sends.

    MARKET → MARKET; LIMIT with POST_ONLY → LIMIT GTX (post-only; spot: LIMIT_MAKER); other LIMITs keep
    GTC/IOC/FOK. The price is ``price_tick`` × the desk's tick, rounded to the venue's tick; the quantity is
    rounded down to the venue's step. REDUCE_ONLY is carried over (the USD-M adapter sends it)."""
    qty = venue_qty(float(row["qty"]), filters.step_size)
    if qty <= 0 or qty < filters.min_qty:
        raise OrderValidationError(f"qty: {float(row['qty'])} rounds to {qty} at step {filters.step_size}, "
                                   f"below the minimum {filters.min_qty}")  # fmt: skip
    reduce_only = bool(int(row["flags"]) & REDUCE_ONLY)
    kind = int(row["type"])
    if kind == MARKET:
        return OrderSpec(coid, symbol, int(row["side"]), qty, OrderType.MARKET, reduce_only=reduce_only)
    if kind != LIMIT:
        raise OrderValidationError(f"type: order type {kind} is not MARKET or LIMIT (the executors send no other)")
    price = filters.price(Decimal(int(row["price_tick"])) * Decimal(str(tick)))
    tif = {POST_ONLY: TimeInForce.GTX, 2: TimeInForce.IOC, 3: TimeInForce.FOK}.get(int(row["tif"]), TimeInForce.GTC)
    return OrderSpec(coid, symbol, int(row["side"]), qty, OrderType.LIMIT, price=price, time_in_force=tif,
                     reduce_only=reduce_only)  # fmt: skip


def order_row(
    child: np.void, status: int, filled: float, avg_px: float, ts: int, *, reason: int = REASON_NONE
) -> Records:
    """The child's report row: the submitted row with the venue's status, filled quantity, average price and
    the time of the change (``exch_ts`` stays the time it reached the venue, as in the simulator)."""
    out = np.zeros(1, ORDER_DTYPE)
    out[0] = child
    out["status"], out["filled"], out["reason"] = status, filled, reason
    if math.isfinite(avg_px) and avg_px > 0:
        out["avg_px"] = avg_px
    if ts:
        out["update_ts"] = ts
        if int(child["exch_ts"]) == 0:
            out["exch_ts"] = ts
    return out


def status_code(status: str) -> int:
    """A Binance status as the simulator's code (an unknown one stays PENDING: nothing final is inferred)."""
    return STATUS.get(status.upper(), PENDING)


def report_reason(child: np.void, status: int, filled: float, cancel_sent: bool) -> int:
    """Why an order ended: our cancel, or a post-only order the venue expired because it would have taken
    (USD-M GTX) — the executors treat both as the maker attempt's end and take the rest."""
    if status == CANCELED and cancel_sent:
        return REASON_USER_CANCEL
    if status in (EXPIRED, REJECTED) and int(child["tif"]) == POST_ONLY and filled == 0:
        return REASON_POST_ONLY_WOULD_CROSS
    return REASON_NONE


def report_row(child: np.void, r: ExecutionReport, *, cancel_sent: bool = False) -> Records:
    """An execution report as the child's ORDER_DTYPE report row (exchange truth: ``cum_qty`` is filled)."""
    status = status_code(r.status)
    return order_row(child, status, r.cum_qty, r.avg_price, r.exchange_ts,
                     reason=report_reason(child, status, r.cum_qty, cancel_sent))  # fmt: skip


def fill_row(child: np.void, r: ExecutionReport, *, local_ts: int, mid_at_send: float, fee_bps: float) -> Records:
    """An execution report's fill as a FILL_DTYPE row. The fee is the venue's in quote (``fee_quote``); when
    the venue charged another asset (BNB) it is estimated at the account's ``fee_bps`` of the notional, so
    the account's balance stays comparable with the simulator's."""
    out = np.zeros(1, FILL_DTYPE)
    f = out[0]
    f["order_id"], f["symbol"], f["side"] = child["order_id"], child["symbol"], child["side"]
    f["maker"] = 1 if r.is_maker else 0
    f["px"], f["qty"] = r.price, r.qty
    f["fee"] = r.fee_quote if math.isfinite(r.fee_quote) else r.price * r.qty * fee_bps / 1e4
    f["exch_ts"], f["local_ts"], f["mid_at_send"] = r.exchange_ts, local_ts, mid_at_send
    return out


__all__ = [
    "CHILD_PREFIX",
    "account_prefix",
    "client_order_id",
    "fill_row",
    "order_row",
    "order_spec",
    "parse_client_order_id",
    "report_row",
    "status_code",
    "venue_qty",
]
