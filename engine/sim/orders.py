"""Order and fill records shared by the matcher, the portfolio, executors, paper trading and the RL env.

Why structured arrays with int constants (as in hftbacktest's ``order.py``): numba kernels read and write
them natively, a fills log is a ready-made table for ClickHouse, and a strategy's orders are plain rows a
backtest and a live adapter both understand. Prices are integer ticks inside the matcher (no float
equality at a price level); fills carry float prices for accounting.
"""

from __future__ import annotations

from typing import Final

import numpy as np

# --- side ---------------------------------------------------------------------------------------------------
BUY: Final = 1
SELL: Final = -1

# --- order type -----------------------------------------------------------------------------------------------
MARKET: Final = 0  #: take liquidity now, walking the book
LIMIT: Final = 1  #: rest at a price (or take what crosses, then rest, per time in force)
STOP_MARKET: Final = 2  #: becomes a market order when the last trade reaches ``stop_tick``

# --- time in force --------------------------------------------------------------------------------------------
GTC: Final = 0  #: rest until filled or cancelled
POST_ONLY: Final = 1  #: GTX: rejected if it would cross on arrival (never takes)
IOC: Final = 2  #: take what is available on arrival, cancel the rest
FOK: Final = 3  #: fill completely on arrival or not at all

# --- flags ----------------------------------------------------------------------------------------------------
REDUCE_ONLY: Final = 1  #: may only shrink the position; clipped (or rejected) otherwise

# --- status ---------------------------------------------------------------------------------------------------
PENDING: Final = 0  #: sent, not yet at the exchange (entry latency)
OPEN: Final = 1  #: resting at the exchange
PARTIALLY_FILLED: Final = 2
FILLED: Final = 3
CANCELED: Final = 4
REJECTED: Final = 5
EXPIRED: Final = 6  #: IOC/FOK remainder, or an OCO leg cancelled by its sibling's fill

# --- reject / cancel reasons ----------------------------------------------------------------------------------
REASON_NONE: Final = 0
REASON_POST_ONLY_WOULD_CROSS: Final = 1
REASON_FOK_NOT_FILLABLE: Final = 2
REASON_REDUCE_ONLY: Final = 3
REASON_NO_LIQUIDITY: Final = 4
REASON_OCO_SIBLING: Final = 5
REASON_BOOK_NOT_SYNCED: Final = 6
REASON_USER_CANCEL: Final = 7

#: One order as the strategy submitted it and as the matcher tracks it (timestamps in ns).
ORDER_DTYPE: Final = np.dtype(
    [
        ("order_id", "i8"),  # unique per run; client_order_id derives from the intent id at the edges
        ("symbol", "u4"),
        ("side", "i1"),  # BUY / SELL
        ("type", "i1"),  # MARKET / LIMIT / STOP_MARKET
        ("tif", "i1"),  # GTC / POST_ONLY / IOC / FOK
        ("flags", "i1"),  # REDUCE_ONLY
        ("status", "i1"),
        ("reason", "i1"),
        ("price_tick", "i8"),  # limit price in ticks (LIMIT)
        ("stop_tick", "i8"),  # trigger in ticks (STOP_MARKET)
        ("qty", "f8"),  # base units (linear, spot) or contracts (inverse)
        ("filled", "f8"),  # base units
        ("avg_px", "f8"),  # quote per base, NaN before the first fill
        ("queue_ahead", "f8"),  # base units displayed ahead of the order at its price (resting only)
        ("oco_id", "i8"),  # 0: none; two orders with the same id form an OCO pair
        ("local_ts", "i8"),  # when the strategy sent it
        ("exch_ts", "i8"),  # when it reached the exchange (local_ts + entry latency)
        ("update_ts", "i8"),  # exchange time of the last status change
    ],
    align=True,
)

#: One fill (a trade of an own order). ``fee`` is in quote currency, negative for a maker rebate.
FILL_DTYPE: Final = np.dtype(
    [
        ("order_id", "i8"),
        ("symbol", "u4"),
        ("side", "i1"),
        ("maker", "u1"),  # 1: passive fill of a resting order, 0: taker
        ("px", "f8"),  # quote per base
        ("qty", "f8"),  # base units (linear, spot) or contracts (inverse)
        ("fee", "f8"),  # quote currency (linear) or base/coin (inverse), + paid, − rebate
        ("exch_ts", "i8"),  # exchange time of the fill
        ("local_ts", "i8"),  # when the strategy learns of it (exch_ts + response latency)
        ("mid_at_send", "f8"),  # mid when the parent order was sent, for slippage in bps
    ],
    align=True,
)
