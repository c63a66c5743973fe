"""Mid prices per market, and the labels of decisions from them: sign of the mid move over the horizon.

Why a small series object of its own: the cluster reads the mids from the store's ``book_top`` table, the
local run records them from its own market view (the local store has no ``book_top``), and both must label
identically. So the label join lives here, once, vectorized per market (``np.searchsorted``, never a Python
loop over decisions).

Label of a decision at ``t`` with horizon ``h``: ``sign(mid(t + h) − mid(t))`` (−1, 0, +1), where ``mid(x)``
is the as-of mid (the last book top at or before ``x``). It is NaN until it has *matured*: some top at or
after ``t + h`` has been seen (only then is ``mid(t + h)`` final), and NaN when either mid is unknown. Tops
after the analysis time are never used (``until_ns``), so a replayed store cannot look ahead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Market = tuple[str, str]  #: (market-data venue, symbol), as ``book_top`` names them


@dataclass(frozen=True)
class MidSeries:
    """Sorted book-top times and mids per market (only finite, uncrossed tops with bid, ask > 0)."""

    series: Mapping[Market, tuple[IntArray, FloatArray]] = field(default_factory=dict)

    @classmethod
    def from_columns(
        cls, venue: npt.ArrayLike, symbol: npt.ArrayLike, ts: npt.ArrayLike, bid: npt.ArrayLike, ask: npt.ArrayLike
    ) -> MidSeries:
        """From parallel columns (a ``book_top`` query); rows with an unusable bid/ask are dropped."""
        v, s = np.asarray(venue, dtype=object), np.asarray(symbol, dtype=object)
        t = np.asarray(ts, dtype=np.int64)
        b, a = np.asarray(bid, dtype=np.float64), np.asarray(ask, dtype=np.float64)
        ok = np.isfinite(b) & np.isfinite(a) & (b > 0) & (a >= b)
        out: dict[Market, tuple[IntArray, FloatArray]] = {}
        keys = np.char.add(np.char.add(v[ok].astype(str), "|"), s[ok].astype(str)) if ok.any() else np.array([])
        t, mid = t[ok], (b[ok] + a[ok]) / 2.0
        for key in np.unique(keys).tolist():
            rows = keys == key
            order = np.argsort(t[rows], kind="stable")
            venue_name, sym = str(key).split("|", 1)
            out[(venue_name, sym)] = (t[rows][order], mid[rows][order])
        return cls(out)

    def markets(self) -> Iterable[Market]:
        return self.series.keys()

    def labels(
        self, market: Market, t: npt.ArrayLike, horizon_ns: int, *, until_ns: int | None = None
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """(mid at t, mid at t + horizon, label) for decision times ``t`` of one market; see the module doc."""
        tt = np.asarray(t, dtype=np.int64)
        nan = np.full(tt.shape[0], np.nan)
        got = self.series.get(market)
        if got is None or got[0].shape[0] == 0 or tt.shape[0] == 0:
            return nan, nan.copy(), nan.copy()
        ts, mid = got
        if until_ns is not None:
            keep = int(np.searchsorted(ts, until_ns, side="right"))
            ts, mid = ts[:keep], mid[:keep]
            if ts.shape[0] == 0:
                return nan, nan.copy(), nan.copy()
        i0 = np.searchsorted(ts, tt, side="right") - 1
        i1 = np.searchsorted(ts, tt + horizon_ns, side="right") - 1
        m0 = np.where(i0 >= 0, mid[np.maximum(i0, 0)], np.nan)
        m1 = np.where(i1 >= 0, mid[np.maximum(i1, 0)], np.nan)
        matured = ts[-1] >= tt + horizon_ns
        m1 = np.where(matured, m1, np.nan)
        label = np.where(np.isfinite(m0) & np.isfinite(m1), np.sign(m1 - m0), np.nan)
        return m0, m1, label


class TopRecorder:
    """The local run's mids: the last book top per instrument, recorded at every drain of the desk.

    Why from the desk's market view: a local run's store has no ``book_top`` table, and the view holds exactly
    the tops the desk decided on. A top is appended only when its exchange time moved, so a quiet market does
    not grow the series."""

    def __init__(self, markets: Iterable[Market]) -> None:
        self.markets = list(markets)
        self._ts: list[list[int]] = [[] for _ in self.markets]
        self._mid: list[list[float]] = [[] for _ in self.markets]

    def observe(self, tops: Iterable[tuple[int, float, float]]) -> None:
        """``tops``: (exchange_ts, bid, ask) per instrument, in the order of ``markets``."""
        for i, (ts, bid, ask) in enumerate(tops):
            if ts <= 0 or not (bid > 0 and ask >= bid):  # also rejects NaN
                continue
            series = self._ts[i]
            if series and ts <= series[-1]:
                continue
            series.append(ts)
            self._mid[i].append((bid + ask) / 2.0)

    def series(self) -> MidSeries:
        return MidSeries(
            {
                m: (np.asarray(t, dtype=np.int64), np.asarray(x, dtype=np.float64))
                for m, t, x in zip(self.markets, self._ts, self._mid, strict=True)
            }
        )
