"""Record layouts and flag bits of everything the feature kernels emit.

Three row streams leave the feature engine, each a preallocated structured array (the same discipline as
``engine.events``: one layout per stream, read by numba kernels, written to the bus and the store as is):

- **book feature rows** (:data:`BOOK_FEATURE_DTYPE`): one per *valid* book top (synced, not crossed).
  Tops that are not valid produce no row; the next valid row carries :data:`FEAT_AFTER_SKIP`, so a
  consumer can tell "nothing happened" from "the book was not trustworthy".
- **bars** (:data:`BAR_DTYPE`): one per closed bar of a clock (time, quote-volume bucket, trade count).
- **bar feature rows** (:data:`BAR_FEATURE_DTYPE`): one per bar, the rolling-window features.

Units are in the field comments and in ``docs/features.md``; "bps" is always ×1e4 of a ratio.
"""

from __future__ import annotations

from typing import Final

import numpy as np

# --- book feature row flags --------------------------------------------------------------------------------
FEAT_FIRST: Final = 1  #: no comparable previous top (first valid top of the symbol, or first after a skip)
FEAT_AFTER_SKIP: Final = 2  #: one or more unsynced/crossed tops were skipped right before this row
FEAT_DEGRADED: Final = 4  #: the top was flagged degraded by the book (clock/latency quality)

# --- bar flags (also copied to bar feature rows) -------------------------------------------------------------
BAR_FILLED: Final = 1  #: time bar in which nothing was observed (OHLC carried from the previous close)
BAR_CAPPED: Final = 2  #: volume bucket closed by its time cap before reaching its quote-volume target
BAR_GAP: Final = 4  #: more than ``max_fill`` empty periods were skipped right before this bar
BAR_NO_PRICE: Final = 8  #: no price was observed in the bar (OHLC carried from the previous close)
BAR_BOOK_INVALID: Final = 16  #: an unsynced or crossed top was seen during the bar (mid may be missing)

#: Maximum number of return horizons a bar feature row carries (unused slots are NaN).
MAX_HORIZONS: Final = 4

BOOK_FEATURE_DTYPE: Final = np.dtype(
    [
        ("symbol", "u4"),
        ("flags", "u4"),  # FEAT_*
        ("exchange_ts", "i8"),  # ns, copied from the top
        ("ingest_ts", "i8"),  # ns, copied from the top
        ("seq", "i8"),  # book update id of the top
        ("mid", "f8"),  # quote per base
        ("microprice", "f8"),  # quote per base
        ("dmicro_bps", "f8"),  # bps, change of microprice since the previous valid top
        ("spread_bps", "f8"),  # bps of mid
        ("bid_depth1_quote", "f8"),  # quote currency
        ("ask_depth1_quote", "f8"),  # quote currency
        ("depth1_quote", "f8"),  # quote currency
        ("qi1", "f8"),  # [-1, 1]
        ("qi_n", "f8"),  # [-1, 1], levels weighted by decay**(level-1)
        ("ofi1", "f8"),  # base units, level-1 OFI since the previous valid top
        ("ofi_n", "f8"),  # base units, sum of per-level OFI over N levels
        ("bid_slope", "f8"),  # quote currency per bp
        ("ask_slope", "f8"),  # quote currency per bp
        ("bid_void", "f8"),  # [0, 1), fraction of empty ticks in the near-touch window
        ("ask_void", "f8"),  # [0, 1)
    ],
    align=True,
)

BAR_DTYPE: Final = np.dtype(
    [
        ("symbol", "u4"),
        ("flags", "u4"),  # BAR_*
        ("start_ts", "i8"),  # ns, inclusive
        ("end_ts", "i8"),  # ns: period end (time), completing trade or start+cap (volume), last trade (count)
        ("open", "f8"),  # quote per base, of the clock's price source (trade or mid)
        ("high", "f8"),
        ("low", "f8"),
        ("close", "f8"),
        ("mid_close", "f8"),  # prevailing valid mid at bar close, NaN when the book is not valid
        ("volume", "f8"),  # base units, all trades
        ("quote_volume", "f8"),  # quote currency, sum of px*qty
        ("buy_volume", "f8"),  # base units, taker buys
        ("sell_volume", "f8"),  # base units, taker sells
        ("buy_quote", "f8"),  # quote currency, taker buys
        ("sell_quote", "f8"),  # quote currency, taker sells
        ("count", "i8"),  # trades (a trade split across volume buckets counts in each)
        ("n_tops", "i8"),  # valid book tops observed
        ("funding_rate", "f8"),  # last known funding rate (fraction per funding period), NaN if none yet
        ("mark_px", "f8"),  # last known mark price
        ("open_interest", "f8"),  # last known open interest, base units
        ("liq_buy_quote", "f8"),  # quote currency of BUY-side liquidation orders (shorts liquidated)
        ("liq_sell_quote", "f8"),  # quote currency of SELL-side liquidation orders (longs liquidated)
    ],
    align=True,
)

BAR_FEATURE_DTYPE: Final = np.dtype(
    [
        ("symbol", "u4"),
        ("flags", "u4"),  # BAR_* of the bar
        ("start_ts", "i8"),
        ("end_ts", "i8"),
        ("close", "f8"),  # quote per base
        ("ret_bps", "f8", (MAX_HORIZONS,)),  # log return over each horizon (bars), ×1e4
        ("signed_volume", "f8"),  # base units, buy - sell in this bar
        ("signed_quote", "f8"),  # quote currency, buy - sell in this bar
        ("trade_imbalance", "f8"),  # [-1, 1] over flow_n bars
        ("kyle_lambda", "f8"),  # quote per base per base unit of signed volume (OLS slope)
        ("amihud", "f8"),  # bps per 1e6 quote currency
        ("vpin", "f8"),  # [0, 1] over vpin_n bars
        ("rv", "f8"),  # annualized realized volatility over rv_short bars
        ("rv_long", "f8"),  # annualized realized volatility over rv_long bars
        ("rv_ratio", "f8"),  # rv / rv_long
        ("rv_pct", "f8"),  # (0, 1], percentile rank of rv among the last rv_pct_lookback values
        ("atr", "f8"),  # quote per base, Wilder ATR over atr_n bars
        ("atr_bps", "f8"),  # bps of close
        ("bb_width", "f8"),  # (upper - lower) / middle band, fraction
        ("bb_squeeze_turn", "f8"),  # +1 / -1 expansion out of a squeeze (direction of close vs middle), 0
        ("funding_rate", "f8"),  # fraction per funding period
        ("funding_delta_bps", "f8"),  # bps, change of funding rate since the previous bar
        ("oi_delta_bps", "f8"),  # bps, relative change of open interest since the previous bar
        ("liq_intensity", "f8"),  # quote currency per second over liq_n bars
        ("liq_imbalance", "f8"),  # [-1, 1], (buy - sell) liquidation quote over liq_n bars
    ],
    align=True,
)
