"""Dropping the messages two connections both delivered while one replaces the other (rotation overlap).

During a rotation the new connection is opened before the old one is closed, so for a second or two every
message arrives twice. Each message is identified by what the exchange numbered it with — its
*order key*: the update id ``u`` of depth diffs and book tickers, the trade id of trades, the aggregate id
of aggTrades, and the event time for kinds without an id (mark price, liquidations, open interest) — per
(symbol, kind). Within a batch the first connection to deliver a key owns it (all events of that message
are kept, the other connection's copy is dropped); across batches a key at or below the highest key kept
since the overlap began was already published and is dropped.

Why only during an overlap: outside it every message arrives once, and a rule that drops "old" keys would
also drop a message the network reordered, which the book's own sequence checks must see as a gap. Why
the high-water marks need no history from before the overlap: the overlap begins *before* the new
connection subscribes, and a connection only carries messages produced after it subscribed; whatever the
old one delivered before the overlap began, the new one can never deliver. Events from REST (snapshots,
polls) are never de-duplicated.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from ...engine.events import AGG_TRADE, BBO, DEPTH, KIND_MASK, SNAPSHOT, TRADE, EventArray

_SEQ_KINDS: Final = (DEPTH, BBO, TRADE, AGG_TRADE, SNAPSHOT)
_N_KINDS: Final = 16
_MIN: Final = np.iinfo(np.int64).min


def order_keys(events: EventArray) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(cell, key) per event: cell = symbol × 16 + kind, key = the exchange id (or the event time)."""
    kind = (events["kind"] & KIND_MASK).astype(np.int64)
    seq_kind = np.isin(kind, _SEQ_KINDS)
    key = np.where(seq_kind, events["seq"], events["exchange_ts"]).astype(np.int64)
    cell = events["symbol"].astype(np.int64) * _N_KINDS + kind
    return cell, key


class OverlapDedupe:
    """High-water marks per (symbol, kind) since the overlap began, and the keep-mask of each batch."""

    def __init__(self) -> None:
        self._hw = np.full(0, _MIN, np.int64)
        self.dropped = 0  #: events dropped since construction

    def reset(self) -> None:
        """Forget the marks (a new overlap begins)."""
        self._hw[:] = _MIN

    def keep(self, events: EventArray, conn: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        """Mask of the events to keep; ``conn`` is the connection id of each event's frame (< 0: not from a
        websocket, always kept). Updates the high-water marks with the kept events."""
        n = events.shape[0]
        if n == 0:
            return np.ones(0, np.bool_)
        cell, key = order_keys(events)
        need = int(cell.max()) + 1
        if need > self._hw.size:
            self._hw = np.concatenate([self._hw, np.full(need - self._hw.size, _MIN, np.int64)])
        pairs = np.empty(n, dtype=[("c", np.int64), ("k", np.int64)])
        pairs["c"] = cell
        pairs["k"] = key
        _, first, inverse = np.unique(pairs, return_index=True, return_inverse=True)
        owner = conn[first][inverse.reshape(-1)]
        keep = ((conn == owner) & (key > self._hw[cell])) | (conn < 0)
        from_ws = keep & (conn >= 0)
        np.maximum.at(self._hw, cell[from_ws], key[from_ws])
        self.dropped += int(n - keep.sum())
        return np.asarray(keep, np.bool_)
