"""The orders an Intent becomes, in the venue adapters' vocabulary.

Why here and not in the execute workload: every order id must be the one :mod:`...engine.trading.ids`
derives from the intent and the leg, and the protective orders must match what the TradeBook expects
(exit side, reduce-only on futures, an OCO pair on spot when the intent asks for it). Building them in one
place keeps the execute workload, the tests and a replay in agreement.
"""

from __future__ import annotations

import math
from typing import Final

from ...engine.decision.types import Intent
from ...engine.trading.ids import ENTRY, PREFIX, STOP, TAKE_PROFIT, client_order_id
from .base import Num, OcoSpec, OrderSpec, OrderType, TimeInForce

SPOT_VENUES: Final = frozenset({"binance-spot"})


def oco_list_id(intent_id: str) -> str:
    """The order-list id of an intent's OCO exit (``tpl_<intent>``; list ids are not order ids)."""
    return f"{PREFIX}l_{intent_id}"


def entry_order(
    intent: Intent,
    *,
    order_type: OrderType = OrderType.MARKET,
    price: Num | None = None,
    time_in_force: TimeInForce = TimeInForce.GTC,
) -> OrderSpec:
    """The entry order of ``intent``: its side and quantity under the entry leg's id."""
    return OrderSpec(
        client_order_id=client_order_id(intent.intent_id, ENTRY),
        symbol=intent.symbol,
        side=intent.side,
        qty=intent.qty,
        order_type=order_type,
        price=price if order_type is OrderType.LIMIT else None,
        time_in_force=time_in_force,
    )


def protective_orders(intent: Intent, qty: Num) -> OcoSpec | tuple[OrderSpec, ...]:
    """The stop and take-profit protecting ``qty`` (what filled) of ``intent``'s position.

    Spot with ``intent.oco``: one OCO pair (on spot two separate sell orders would lock the same coins).
    Otherwise reduce-only STOP_MARKET / TAKE_PROFIT_MARKET orders for whichever prices the intent set.
    """
    exit_side = -intent.side
    stop, tp = intent.stop_price, intent.take_profit_price
    has_stop, has_tp = _set(stop), _set(tp)
    if intent.oco and intent.venue in SPOT_VENUES and has_stop and has_tp:
        return OcoSpec(
            symbol=intent.symbol,
            side=exit_side,
            qty=qty,
            take_profit_price=tp,
            stop_price=stop,
            take_profit_client_order_id=client_order_id(intent.intent_id, TAKE_PROFIT),
            stop_client_order_id=client_order_id(intent.intent_id, STOP),
            list_client_order_id=oco_list_id(intent.intent_id),
        )
    reduce_only = intent.venue not in SPOT_VENUES
    out = []
    if has_stop:
        coid = client_order_id(intent.intent_id, STOP)
        kind = OrderType.STOP_MARKET
        out.append(OrderSpec(coid, intent.symbol, exit_side, qty, kind, stop_price=stop, reduce_only=reduce_only))
    if has_tp:
        coid = client_order_id(intent.intent_id, TAKE_PROFIT)
        kind = OrderType.TAKE_PROFIT_MARKET
        out.append(OrderSpec(coid, intent.symbol, exit_side, qty, kind, stop_price=tp, reduce_only=reduce_only))
    return tuple(out)


def _set(price: float) -> bool:
    return price > 0 and math.isfinite(price)
