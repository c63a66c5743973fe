"""Shared builders for the trading tests: intents by keyword, ids that look like the contract's."""

from __future__ import annotations

import math
from hashlib import blake2b

from tradeplane.engine.decision.types import LONG, Intent
from tradeplane.engine.trading.ids import client_order_id
from tradeplane.engine.trading.lifecycle import Trade, TradeBook


def iid(name: str) -> str:
    """A 20-hex intent id, as engine/decision/types.intent_id makes them."""
    return blake2b(name.encode(), digest_size=10).hexdigest()


def make_intent(
    name: str = "a",
    *,
    symbol: str = "BTCUSDT",
    side: int = LONG,
    qty: float = 1.0,
    price: float = 100.0,
    stop_price: float = 95.0,
    take_profit_price: float = 110.0,
    leverage: int = 10,
    strategy: str = "s1",
) -> Intent:
    return Intent(
        intent_id=iid(name),
        signal_id=f"sig-{name}",
        strategy=strategy,
        symbol=symbol,
        venue="binance-usdm",
        side=side,
        qty=qty,
        notional_usdt=qty * price,
        price=price,
        stop_price=stop_price,
        take_profit_price=take_profit_price,
        leverage=leverage,
        oco=False,
        exchange_ts=1_000,
        config_rev="rev1",
    )


def coid(name: str, leg: str) -> str:
    return client_order_id(iid(name), leg)


def active(book: TradeBook, name: str = "a", *, fill_px: float = 100.0, **kw: object) -> Trade:
    """Open ``name`` and fill its entry completely at ``fill_px``."""
    trade, _ = book.open(make_intent(name, **kw), 1)  # type: ignore[arg-type]
    book.on_fill(coid(name, "entry"), trade.target_qty, fill_px, 0.0, 2)
    assert trade.state == "ACTIVE" and trade.entry_done
    return trade


def close_to(a: float, b: float, tol: float = 1e-9) -> bool:
    return math.isclose(a, b, rel_tol=tol, abs_tol=tol)
