"""The touch (best bid and ask) per desk symbol, as live execute sees it from ``md.*``.

Why not paper mode's :class:`~..paper.feed.MarketFeed`: its frontier holds every symbol back until the
slowest one has caught up, which a simulator needs (one receive-ordered stream) and a touch does not — a
quiet symbol must never freeze the touch the executors post at on a busy one. Each batch is applied as it
comes (every topic is in receive order on its own).

Two sources, both per batch without a per-event Python loop: the L2 book (:class:`~...engine.book.sync.BookSet`,
one numba call per batch; exact once a snapshot arrived) and ``bookTicker`` (BBO) events, the last bid and
ask per symbol found with numpy. The newer of the two (by receive time) wins: an execute that joins a running
ingest has no snapshot until the next resync, and the BBO stream gives it a touch at once.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from ...engine.book.sync import BookConfig, BookSet
from ...engine.events import ASK, BBO, BID, EVENT_DTYPE, KIND_MASK, EventArray
from ..bus.mdbatch import MdBatch
from ..paper.protocol import TOUCH_DTYPE

Records = npt.NDArray[np.void]


def _last_per_symbol(symbols: npt.NDArray[np.uint32]) -> npt.NDArray[np.int64]:
    """Index of the last row of each distinct symbol in ``symbols``."""
    rev = symbols[::-1]
    _, first_in_rev = np.unique(rev, return_index=True)
    out: npt.NDArray[np.int64] = (symbols.shape[0] - 1 - first_in_rev).astype(np.int64)
    return out


class TouchBook:
    """Touch per desk symbol id (TOUCH_DTYPE rows, NaN until known) and when it last changed."""

    def __init__(self, instruments: Mapping[tuple[str, str], int], ticks: Mapping[int, float]) -> None:
        self.instruments = dict(instruments)  #: (md venue, symbol) → desk symbol id
        n = len(self.instruments)
        self.books = BookSet(BookConfig(levels=1, tick_sizes=dict(ticks)), n_symbols=n)
        self.touch: Records = np.zeros(n, TOUCH_DTYPE)
        for name in ("bid", "bid_qty", "ask", "ask_qty"):
            self.touch[name] = np.nan
        self._bid_ts = np.full(n, np.iinfo(np.int64).min, np.int64)
        self._ask_ts = np.full(n, np.iinfo(np.int64).min, np.int64)
        self.events = 0
        self.ignored = 0  #: batches of symbols the desk does not trade

    def add(self, batch: MdBatch) -> bool:
        """Apply one decoded md batch; False for a symbol the desk does not trade."""
        sid = self.instruments.get((batch.venue, batch.symbol))
        if sid is None:
            self.ignored += 1
            return False
        if batch.count == 0:
            return True
        events = np.array(batch.events, dtype=EVENT_DTYPE)  # writable, with the desk's symbol id
        events["symbol"] = sid
        self.apply(events)
        return True

    def apply(self, events: EventArray) -> None:
        """Events already carrying desk symbol ids (one or more symbols, each in receive order)."""
        self.events += int(events.shape[0])
        tops = self.books.apply(events).tops
        synced = tops[tops["synced"] == 1]
        if synced.shape[0]:
            rows = synced[_last_per_symbol(synced["symbol"])]
            self._take(rows["symbol"], rows["bid_px"][:, 0], rows["bid_qty"][:, 0], rows["ingest_ts"], bid=True)
            self._take(rows["symbol"], rows["ask_px"][:, 0], rows["ask_qty"][:, 0], rows["ingest_ts"], bid=False)
        kind = events["kind"]
        bbo = (kind & KIND_MASK) == BBO
        for side, bid in ((BID, True), (ASK, False)):
            sel = events[bbo & ((kind & side) != 0)]
            if sel.shape[0]:
                rows = sel[_last_per_symbol(sel["symbol"])]
                self._take(rows["symbol"], rows["px"], rows["qty"], rows["ingest_ts"], bid=bid)

    def _take(self, sym: npt.NDArray[np.uint32], px: npt.NDArray[np.float64], qty: npt.NDArray[np.float64],
              ts: npt.NDArray[np.int64], *, bid: bool) -> None:  # fmt: skip
        """Keep the newer quote per symbol (a BBO and a book top of the same batch: the later receive time)."""
        last = self._bid_ts if bid else self._ask_ts
        s = sym.astype(np.int64)
        newer = (ts >= last[s]) & np.isfinite(px) & (px > 0)
        s, px, qty, ts = s[newer], px[newer], qty[newer], ts[newer]
        last[s] = ts
        self.touch["bid" if bid else "ask"][s] = px
        self.touch["bid_qty" if bid else "ask_qty"][s] = qty

    def __call__(self, symbol: int) -> tuple[float, float]:
        """(bid, ask) of ``symbol``: the executors' :data:`~...engine.sim.executors.Touch`."""
        row = self.touch[symbol]
        return float(row["bid"]), float(row["ask"])

    @property
    def known(self) -> int:
        """Symbols with both sides of the touch known."""
        return int((np.isfinite(self.touch["bid"]) & np.isfinite(self.touch["ask"])).sum())
