"""What the desk knows about each instrument after each micro-batch: the book top, book features, the latest
closed bar's features on every decision clock, funding, and feed health.

Why one view for the whole desk: every strategy on the same instrument must decide on the same numbers (and a
replay must reproduce them), so the feature engine runs once per batch for all instruments and clocks, and
the strategies read from here. The view keeps only the latest values; the decision happens on a clock tick,
not per event. It also owns the online slippage fit (``slippage.py``): what taker orders paid against the mid
before them, per notional bucket, which the decision charges as the cost of its taker legs.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..events import EventArray
from ..features.clocks import ClockSpec
from ..features.online import FeatureEngine, FeatureSpec
from ..features.schema import BOOK_FEATURE_DTYPE, FEAT_DEGRADED
from ..models.datasets import FEATURE_COLUMNS, feature_columns
from .slippage import SlippageFitConfig, SlippageFitter

_NS_PER_MS = 1_000_000
_BOOK_FIELDS = tuple(n for n in BOOK_FEATURE_DTYPE.names or () if n not in ("symbol", "flags", "exchange_ts",
                                                                             "ingest_ts", "seq"))  # fmt: skip
_BAR_NAMES = tuple(FEATURE_COLUMNS)
#: Every feature name a model signature or a rule may use: bar columns of the decision clock, book features.
RUNTIME_FEATURES: frozenset[str] = (
    frozenset(_BAR_NAMES) | frozenset(_BOOK_FIELDS) | {"atr", "bar_close", "book_degraded"}
)
#: A top older than this (local time) makes the data "not ok" for a decision.
STALE_AFTER_NS = 5_000 * _NS_PER_MS


def clock_for(clock: str, bar_ms: int, volume_bucket_usdt: float) -> ClockSpec:
    """The feature clock of a Strategy's ``features`` spec; the name encodes its parameters so strategies
    with the same clock share it. Trade-priced like the klines the research pipeline trains on."""
    if clock == "time":
        return ClockSpec.time(f"time{bar_ms}ms", bar_ms * _NS_PER_MS, price="trade")
    if clock == "volume":
        return ClockSpec.volume(f"vol{volume_bucket_usdt:g}", volume_bucket_usdt, cap_ns=60_000 * _NS_PER_MS,
                                price="trade")  # fmt: skip
    raise ValueError(f"features.clock {clock!r}: time or volume")


def _last_row_per_symbol(symbols: npt.NDArray[np.uint32]) -> list[tuple[int, int]]:
    """(symbol, index of its last row) for each symbol in a batch: the view keeps only the latest values."""
    last = symbols.shape[0] - 1 - np.unique(symbols[::-1], return_index=True)[1]
    return list(zip(np.unique(symbols).tolist(), last.tolist(), strict=True))


@dataclass(slots=True)
class TopView:
    """The last book top the desk received for one instrument."""

    bid: float = math.nan
    bid_qty: float = math.nan
    ask: float = math.nan
    ask_qty: float = math.nan
    exchange_ts: int = 0
    ingest_ts: int = 0
    synced: bool = False
    crossed: bool = False
    degraded: bool = False


class MarketView:
    """Latest market state per instrument id, updated batch by batch (see the module docstring)."""

    def __init__(
        self, n_instruments: int, clocks: Mapping[str, ClockSpec], slippage: SlippageFitConfig | None = None
    ) -> None:
        self.engine = FeatureEngine(FeatureSpec(clocks=tuple(clocks.values())))
        #: taker slippage per instrument, fitted online from this view's trades and tops (the decision's cost)
        self.slippage = SlippageFitter(n_instruments, slippage)
        self.clock_names = tuple(clocks)
        self.tops = [TopView() for _ in range(n_instruments)]
        self.book: list[dict[str, float]] = [{} for _ in range(n_instruments)]
        self.bars: dict[str, list[dict[str, float]]] = {c: [{} for _ in range(n_instruments)] for c in clocks}
        self.bar_end: dict[str, list[int]] = {c: [0] * n_instruments for c in clocks}
        self.funding = [math.nan] * n_instruments
        self.ingest_lag_ms = 0.0  #: receive minus exchange time of the batch's last event
        self.events = 0
        self._synced_once = [False] * n_instruments
        self._minute = -1
        self._window = [0, 0, 0, 0]  #: gaps and tops of (previous minute, this minute)

    def update(self, events: EventArray, tops: npt.NDArray[np.void]) -> None:
        """Feed one micro-batch: the events and the book tops the desk received in it."""
        self.observe(events, tops)
        self.settle()

    def observe(self, events: EventArray, tops: npt.NDArray[np.void]) -> None:
        """Feed a piece of the next micro-batch ahead of its :meth:`settle` (arrival order, pieces cut between
        receive times, as a live feed releases them).

        Why: live decide hands the view each md fetch as it arrives, so the tick itself only computes the last
        fetch's features. Every value here is a function of the events so far, whatever the cuts — the book
        and bar features (the feature engine is streamed), the last top, book row and bar per instrument (a bar
        carries the last known funding rate), gaps counted in each top's own minute — and the slippage fit only
        decides when to refit at :meth:`settle`. So observe-then-settle equals one :meth:`update` of the whole batch.
        """
        n = int(events.shape[0])
        self.events += n
        if n:
            self.ingest_lag_ms = float(events["ingest_ts"][-1] - events["exchange_ts"][-1]) / _NS_PER_MS
        index = None
        if tops.shape[0]:
            self._count_gaps(tops)
            self._read_tops(tops)
            index = np.searchsorted(events["ingest_ts"], tops["ingest_ts"], side="right").astype(np.int64) - 1
            np.maximum(index, 0, out=index)
        batch = self.engine.update(events, tops if index is not None else None, index)
        self.slippage.feed(events, tops)
        self._read_book(batch.book)
        for clock in self.clock_names:
            self._read_bars(clock, batch.bars[clock], batch.bar_features[clock])

    def settle(self) -> None:
        """The end of a micro-batch (the decision tick): the slippage fit refits if due."""
        self.slippage.settle()

    def _count_gaps(self, tops: npt.NDArray[np.void]) -> None:
        """Unsynced tops of books that were synced before (the wait for the first snapshot is not a gap),
        counted in the minute of local time each top was received in."""
        minutes = tops["ingest_ts"] // (60_000 * _NS_PER_MS)
        if minutes[0] == minutes[-1]:
            self._count_gaps_in_minute(int(minutes[0]), tops)
            return
        cuts = [0, *(np.flatnonzero(np.diff(minutes)) + 1).tolist(), int(tops.shape[0])]
        for a, b in itertools.pairwise(cuts):
            self._count_gaps_in_minute(int(minutes[a]), tops[a:b])

    def _count_gaps_in_minute(self, minute: int, tops: npt.NDArray[np.void]) -> None:
        if minute != self._minute:
            w = self._window
            self._window = [w[2], w[3], 0, 0] if minute == self._minute + 1 else [0, 0, 0, 0]
            self._minute = minute
        unsynced = tops["synced"] == 0
        gaps = 0
        for s in np.unique(tops["symbol"]).tolist():
            mine = tops["symbol"] == s
            if self._synced_once[s]:
                gaps += int(np.count_nonzero(unsynced & mine))
            elif not np.all(unsynced[mine]):
                first = int(np.flatnonzero(mine & ~unsynced)[0])
                gaps += int(np.count_nonzero(unsynced[first:] & mine[first:]))
                self._synced_once[s] = True
        self._window[2] += gaps
        self._window[3] += int(tops.shape[0])

    def _read_tops(self, tops: npt.NDArray[np.void]) -> None:
        for s, i in _last_row_per_symbol(tops["symbol"]):
            r = tops[i]
            t = self.tops[s]
            t.bid, t.bid_qty = float(r["bid_px"][0]), float(r["bid_qty"][0])
            t.ask, t.ask_qty = float(r["ask_px"][0]), float(r["ask_qty"][0])
            t.exchange_ts, t.ingest_ts = int(r["exchange_ts"]), int(r["ingest_ts"])
            t.synced, t.crossed, t.degraded = bool(r["synced"]), bool(r["crossed"]), bool(r["degraded"])

    def _read_book(self, rows: EventArray) -> None:
        if not rows.shape[0]:
            return
        for s, i in _last_row_per_symbol(rows["symbol"]):
            r = rows[i]
            values = {name: float(r[name]) for name in _BOOK_FIELDS}
            values["book_degraded"] = float(bool(int(r["flags"]) & FEAT_DEGRADED))
            self.book[s] = values

    def _read_bars(self, clock: str, bars: EventArray, rows: EventArray) -> None:
        if not bars.shape[0]:
            return
        for s, i in _last_row_per_symbol(bars["symbol"]):
            funding = np.asarray(bars["funding_rate"][i : i + 1], dtype=np.float64)
            x = feature_columns(rows[i : i + 1], bars[i : i + 1], funding, _BAR_NAMES)[0]
            values = dict(zip(_BAR_NAMES, x.tolist(), strict=True))
            values["atr"] = float(rows["atr"][i])
            values["bar_close"] = float(bars["close"][i])
            self.bars[clock][s] = values
            self.bar_end[clock][s] = int(bars["end_ts"][i])
            if math.isfinite(float(bars["funding_rate"][i])):  # a bar carries the last known rate, NaN before any
                self.funding[s] = float(bars["funding_rate"][i])

    def features(self, clock: str, instrument: int) -> dict[str, float]:
        """Every feature a model or a rule may name: the latest bar's columns on ``clock`` and the latest
        book feature row (book names win nothing: the two sets do not overlap)."""
        return self.bars[clock][instrument] | self.book[instrument]

    def gap_ratio_pct(self) -> float:
        """Share of the tops received over the last one to two minutes that were unsynced after a gap (%)."""
        gaps, tops = self._window[0] + self._window[2], self._window[1] + self._window[3]
        return 100.0 * gaps / tops if tops else 0.0
