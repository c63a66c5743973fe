"""The canonical event record: one 64-byte structured dtype for every market-data event.

Decoders write it, replay streams it, the book and feature kernels read it, and it is the payload of the
binary micro-batches on the bus. One layout for everything (as in hftbacktest's event_dtype) means one set
of numba kernels and no per-type plumbing; the ``kind`` bit field says how to read the generic slots.

Slots per kind (``px``/``qty`` are floats in quote/base units; ids are exchange ids):

=================  ===========================  ==========================  ==========================
kind               px, qty                      seq, first_seq, prev_seq    flags
=================  ===========================  ==========================  ==========================
DEPTH (diff)       level price, new qty (0=del) u, U, pu (−1 on spot)       BID/ASK, LAST_IN_MSG
SNAPSHOT           level price, qty             lastUpdateId, same, −1      BID/ASK, LAST_IN_MSG
BBO (bookTicker)   best price, qty of one side  update id u, u, −1          BID/ASK (two events)
TRADE / AGG_TRADE  price, qty                   trade id (agg id), first, last  BUY (taker buy) / SELL
MARK               mark price, funding rate     next funding time (ms), 0, −1    —
LIQUIDATION        avg price, filled qty        0, 0, −1                    BUY/SELL (order side)
OPEN_INTEREST      0, open interest (base)      0, 0, −1                    —
=================  ===========================  ==========================  ==========================

Timestamps are int64 nanoseconds since the epoch: ``exchange_ts`` from the venue (event time ``E``, or
transaction time ``T`` where the venue sends one), ``ingest_ts`` when our process received the message.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

#: Bumped whenever the layout or the meaning of a slot changes; carried in micro-batch headers.
SCHEMA_VERSION: Final = 1

# --- kinds (low byte of ``kind``) -------------------------------------------------------------------------
DEPTH: Final = 1  #: one level of an L2 diff message
SNAPSHOT: Final = 2  #: one level of a REST depth snapshot
BBO: Final = 3  #: one side of a best bid/offer update (bookTicker)
TRADE: Final = 4  #: an individual trade
AGG_TRADE: Final = 5  #: an aggregated trade
MARK: Final = 6  #: mark price and funding rate (markPriceUpdate)
LIQUIDATION: Final = 7  #: a forced order (forceOrder)
OPEN_INTEREST: Final = 8  #: polled open interest
KIND_MASK: Final = 0xFF

# --- flags (higher bits of ``kind``) ---------------------------------------------------------------------
BID: Final = 1 << 8  #: book side bid (DEPTH/SNAPSHOT/BBO)
ASK: Final = 1 << 9  #: book side ask
BUY: Final = 1 << 10  #: trades: the taker bought (buyer was not the maker); liquidations: order side
SELL: Final = 1 << 11  #: trades: the taker sold
LAST_IN_MSG: Final = 1 << 12  #: the last event decoded from one exchange message (apply messages whole)
DEGRADED: Final = 1 << 13  #: quality: clock offset or latency above the configured limit

EVENT_DTYPE: Final = np.dtype(
    [
        ("kind", "u4"),
        ("symbol", "u4"),
        ("exchange_ts", "i8"),
        ("ingest_ts", "i8"),
        ("px", "f8"),
        ("qty", "f8"),
        ("seq", "i8"),
        ("first_seq", "i8"),
        ("prev_seq", "i8"),
    ],
    align=True,
)
assert EVENT_DTYPE.itemsize == 64

EventArray = npt.NDArray[np.void]

#: Klines are bars, not ticks: their own record.
KLINE_DTYPE: Final = np.dtype(
    [
        ("symbol", "u4"),
        ("open_ts", "i8"),
        ("close_ts", "i8"),
        ("open", "f8"),
        ("high", "f8"),
        ("low", "f8"),
        ("close", "f8"),
        ("volume", "f8"),  #: base units
        ("quote_volume", "f8"),  #: NaN when the source has no quote volume
        ("taker_buy_volume", "f8"),  #: base units; NaN when unknown
        ("trades", "i8"),  #: −1 when unknown
    ],
    align=True,
)


def empty_events(n: int) -> EventArray:
    """A zeroed event array of length ``n`` (preallocate, then fill)."""
    return np.zeros(n, dtype=EVENT_DTYPE)


def book_top_dtype(levels: int) -> np.dtype[np.void]:
    """Record of the top ``levels`` of a book after one applied message, as the book kernels emit it.

    Prices and quantities are NaN beyond the book's depth. ``synced`` is 0 while the book waits for a
    snapshot or after a gap; feature kernels emit nothing from unsynced rows.
    """
    return np.dtype(
        [
            ("symbol", "u4"),
            ("synced", "u1"),
            ("crossed", "u1"),
            ("degraded", "u1"),
            ("exchange_ts", "i8"),
            ("ingest_ts", "i8"),
            ("seq", "i8"),
            ("bid_px", "f8", (levels,)),
            ("bid_qty", "f8", (levels,)),
            ("ask_px", "f8", (levels,)),
            ("ask_qty", "f8", (levels,)),
        ],
        align=True,
    )


class SymbolTable:
    """Interns ``venue:SYMBOL`` strings to dense u4 ids, stable within a run and recorded with its data.

    Kernels see only ids; names come back at the edges (reports, bus keys).
    """

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._names: list[str] = []

    def intern(self, venue: str, symbol: str) -> int:
        key = f"{venue}:{symbol.upper()}"
        found = self._ids.get(key)
        if found is None:
            found = self._ids[key] = len(self._names)
            self._names.append(key)
        return found

    def name(self, symbol_id: int) -> str:
        return self._names[symbol_id]

    def __len__(self) -> int:
        return len(self._names)

    def to_list(self) -> list[str]:
        return list(self._names)
