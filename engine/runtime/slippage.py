"""The slippage the decision charges, fitted online per instrument from the taker orders of the live feed.

What is measured: what a taker order paid against the mid the desk saw just before it, in bps,
``side · (VWAP − mid) / mid · 1e4``, with its notional in quote currency (docs/costs.md).

- **A taker order** is one run of consecutive trades of an instrument (arrival order) with the same exchange
  time and taker side: Binance reports one trade per maker order filled, all stamped with the taker order's
  transaction time, so one order that walks three levels arrives as three (or thirty) trades. Per trade, the
  buckets would mostly see the fragments, at the fragments' sizes. Notional Σ px·qty, VWAP Σ px·qty / Σ qty,
  both summed in arrival order.
- **The mid just before** is the mid of the last book top of that instrument received before the order's
  first trade (arrival order, ``top.ingest_ts < trade.ingest_ts``, as :class:`~.market.MarketView` aligns
  tops with events), carried over from earlier batches. No sample when that top is not valid (unsynced or
  crossed) or older than ``max_mid_age_ns``. The decision's reference price is that same mid, so the
  staleness of the top is part of the cost it pays, and a negative sample (the mid had moved the taker's way)
  is kept.
- **Batches do not matter**: the last run may continue in the next batch, so it is held back (as its running
  sums and its mid) until a trade with another key arrives, and the sums are sequential (each order's trades
  added one at a time, in order, as a plain loop adds them; numpy's reductions sum pairwise, which would make
  a VWAP depend on where a batch cut its order). The samples are the same however the stream is cut.

Work per batch is a byte copy of its events and tops into a waiting list. Every ``process_events`` events,
``max_waiting_tops`` tops or ``process_after_ns`` of arrival time, the waiting rows are measured in one
vectorised pass: selection by kind, ``np.searchsorted`` of the trades' arrival times into the instrument's
tops, run boundaries by comparison with the previous trade, and the sequential sums as a cumulative sum along
a zero-padded (runs × longest run) matrix. No Python loop over events or orders.

Per instrument, a ring buffer (numpy) keeps the last ``capacity`` samples. After a pass, an instrument refits
once ``refit_every`` new samples arrived or its newest sample is ``refit_after_ns`` of exchange time past the
last fit: :func:`~tradeplane.engine.costs.fit_slippage_quantiles` over the whole buffer and the config's
notional buckets. A bucket is trusted at quantile q once it holds ``max(min_samples, min_tail / min(q, 1 − q))``
samples (a tail quantile needs samples in the tail); an untrusted bucket is NaN and the decision falls back to
the half-spread proxy. Nothing reads a clock and every step is a function of the batches, so a replay (and
the backtest of a local run, which feeds the same batches) charges the same costs at the same decisions.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..costs import SlippageQuantiles, fit_slippage_quantiles
from ..events import AGG_TRADE, BUY, EVENT_DTYPE, KIND_MASK, SELL, TRADE, EventArray, book_top_dtype

_NS_PER_S = 1_000_000_000
_BPS = 1e4
_NO_TS = np.iinfo(np.int64).min

#: Default notional buckets (USDT lower edges): the desk's own orders (tens to a few thousand USDT) sit in the
#: fine low end; the high end keeps large orders from polluting it.
DEFAULT_EDGES_USDT: tuple[float, ...] = (
    0.0, 100.0, 250.0, 500.0, 1_000.0, 2_500.0, 5_000.0, 10_000.0, 25_000.0, 50_000.0, 100_000.0, 250_000.0,
)  # fmt: skip

Curve = tuple[tuple[float, ...], tuple[float, ...]]
"""(bucket lower edges in USDT, one-way slippage in bps per bucket, NaN where untrusted) at one quantile."""


@dataclass(frozen=True)
class SlippageFitConfig:
    """How the online fit samples, keeps and refits (defaults suit a liquid USD-M or spot pair)."""

    edges_usdt: tuple[float, ...] = DEFAULT_EDGES_USDT
    capacity: int = 4096  #: samples (taker orders) kept per instrument, the most recent
    refit_every: int = 256  #: refit after this many new samples ...
    refit_after_ns: int = 30 * _NS_PER_S  #: ... or this much exchange time since the last fit (≥ 1 new sample)
    min_samples: int = 50  #: a bucket with fewer samples is not trusted at any quantile
    min_tail: int = 5  #: samples needed beyond the quantile: trusted from min_tail / min(q, 1 − q) samples
    max_mid_age_ns: int = _NS_PER_S  #: a top older than this (arrival time) before the order: no sample
    trade_kinds: tuple[int, ...] = (TRADE, AGG_TRADE)  #: feed trades or aggTrades (not both of one pair)
    #: batches wait and are measured together once this many events are waiting ...
    process_events: int = 16384
    #: ... or they span this much local (arrival) time, or this many tops are waiting
    process_after_ns: int = 5 * _NS_PER_S
    max_waiting_tops: int = 1024

    def __post_init__(self) -> None:
        e = self.edges_usdt
        if not e or any(b <= a for a, b in itertools.pairwise(e)):
            raise ValueError(f"edges_usdt must be non-empty and strictly ascending, got {e}")
        if min(self.capacity, self.refit_every, self.min_samples, self.process_events, self.max_waiting_tops) < 1:
            raise ValueError("capacity, refit_every, min_samples, process_events and max_waiting_tops must be >= 1")
        if self.min_tail < 0:
            raise ValueError(f"min_tail must be >= 0, got {self.min_tail}")

    def trusted_count(self, q: float) -> int:
        """Samples a bucket needs before its ``q``-quantile is charged."""
        if not 0.0 < q < 1.0:
            raise ValueError(f"slippage quantile must be within (0, 1), got {q}")
        return max(self.min_samples, math.ceil(self.min_tail / min(q, 1.0 - q)))


class SlippageFitter:
    """Per-instrument online slippage fit (see the module docstring); fed by :meth:`update` every batch."""

    def __init__(self, n_instruments: int, config: SlippageFitConfig | None = None) -> None:
        self.config = cfg = config or SlippageFitConfig()
        n, c = n_instruments, cfg.capacity
        self._edges = np.asarray(cfg.edges_usdt, dtype=np.float64)
        self._is_trade = np.zeros(KIND_MASK + 1, dtype=bool)  #: by kind (low byte)
        self._is_trade[list(cfg.trade_kinds)] = True
        self._notional = np.zeros((n, c))
        self._slip = np.zeros((n, c))
        self._total = [0] * n  #: samples ever written per instrument
        self._new = [0] * n  #: samples since the last fit
        self._last_ts = [0] * n  #: exchange time of the newest sample
        self._fit_ts: list[int | None] = [None] * n  #: exchange time of the newest sample at the last fit
        self._fits: list[SlippageQuantiles | None] = [None] * n
        self._curves: list[dict[float, Curve]] = [{} for _ in range(n)]
        # the last top before the batch (arrival time, mid; NaN when not valid)
        self._top_ts = np.full(n, _NO_TS, dtype=np.int64)
        self._top_mid = np.full(n, np.nan)
        # the taker order still open at the end of the last batch: key, running sums, mid before it
        self._open = [False] * n
        self._open_ts = [0] * n
        self._open_side = [0.0] * n
        self._open_qty = [0.0] * n
        self._open_quote = [0.0] * n
        self._open_mid = [math.nan] * n
        # batches not measured yet: their events and tops (bytes), and the span of their arrival times
        self._waiting_events: list[npt.NDArray[np.uint8]] = []
        self._waiting_tops: list[npt.NDArray[np.uint8]] = []
        self._tops_dtype: np.dtype[np.void] = book_top_dtype(1)
        self._n_events = self._n_tops = 0
        self._first_arrival = self._newest_arrival = 0
        self._touched: set[int] = set()  #: instruments with new samples since the last refit check
        self.fits = 0  #: refits so far, all instruments

    # --- feeding ---------------------------------------------------------------------------------------------
    def update(self, events: EventArray, tops: npt.NDArray[np.void]) -> None:
        """One micro-batch: its events (arrival order) and the book tops received with them (arrival order).

        Batches wait (copied as bytes, the cheapest copy of structured rows) until enough events, local time or
        tops have gathered, and are then measured in one vectorised pass (:meth:`process`), after which the
        instruments that got new samples refit if due. Samples do not depend on where the stream was cut, so
        neither on when it is processed; refits happen at the same batches whenever the batches are the same.
        """
        self.feed(events, tops)
        self.settle()

    def feed(self, events: EventArray, tops: npt.NDArray[np.void]) -> None:
        """A piece of a micro-batch, fed ahead of the batch's :meth:`settle` (the batch is the pieces joined).

        Why pieces: a live desk's market view takes each md fetch as it arrives and settles at the decision
        tick (``MarketView.observe``). Only :meth:`settle` decides whether to measure and refit, so the fit
        at a tick is the same however the tick's batch reached the fitter.
        """
        n = events.shape[0]
        if n:
            arrival = events["ingest_ts"]
            if not self._n_events:
                self._first_arrival = int(arrival[0])
            self._newest_arrival = int(arrival[-1])
            self._waiting_events.append(_bytes(events))
            self._n_events += n
        if tops.shape[0]:
            self._tops_dtype = tops.dtype
            self._waiting_tops.append(_bytes(tops))
            self._n_tops += tops.shape[0]

    def settle(self) -> None:
        """The end of a micro-batch: measure the waiting pieces if enough have gathered, then refit the
        instruments that are due."""
        cfg = self.config
        if (
            self._n_events >= cfg.process_events
            or self._n_tops >= cfg.max_waiting_tops
            or (self._n_events and self._newest_arrival - self._first_arrival >= cfg.process_after_ns)
        ):
            self.process()
            for s in sorted(self._touched):
                if self._due(s):
                    self.refit(s)
            self._touched.clear()

    def process(self) -> None:
        """Measure the waiting batches now (into the buffers; refits stay with :meth:`update`)."""
        tops = _join(self._waiting_tops, self._tops_dtype)
        if self._n_events:
            events = _join(self._waiting_events, EVENT_DTYPE)
            trades = events[self._is_trade[events["kind"] & KIND_MASK]]
            if trades.shape[0]:
                self._ingest_trades(trades, tops)
        if tops.shape[0]:
            self._carry_tops(tops)
        self._waiting_events, self._waiting_tops = [], []
        self._n_events = self._n_tops = 0

    def _carry_tops(self, tops: npt.NDArray[np.void]) -> None:
        """Remember each instrument's last top of the batch: the mid before the next batch's first trades."""
        sym = tops["symbol"]
        s = int(sym[-1])
        if int(sym[0]) == s and bool((sym == s).all()):  # one instrument (the usual batch)
            if s < len(self._total):
                r = tops[-1]
                bid, ask = float(r["bid_px"][0]), float(r["ask_px"][0])
                ok = r["synced"] and not r["crossed"] and bid > 0 and ask > 0
                self._top_ts[s] = int(r["ingest_ts"])
                self._top_mid[s] = 0.5 * (bid + ask) if ok else math.nan
            return
        last = sym.shape[0] - 1 - np.unique(sym[::-1], return_index=True)[1]
        last = last[sym[last] < len(self._total)]
        self._top_ts[sym[last]] = tops["ingest_ts"][last]
        self._top_mid[sym[last]] = _valid_mid(tops[last])

    def _ingest_trades(self, trades: EventArray, tops: npt.NDArray[np.void]) -> None:
        kind = trades["kind"]
        side = (kind & BUY != 0).astype(np.float64) - (kind & SELL != 0)
        px, qty = trades["px"], trades["qty"]
        ok = (side != 0) & (px > 0) & (qty > 0) & np.isfinite(px * qty) & (trades["symbol"] < len(self._total))
        if not ok.all():
            trades, side = trades[ok], side[ok]
            if not trades.shape[0]:
                return
        syms = trades["symbol"]
        s0 = int(syms[0])
        one = bool((syms == s0).all())
        for s in [s0] if one else np.unique(syms).tolist():
            if one:
                t, t_side = trades, side
            else:
                mine = syms == s
                t, t_side = trades[mine], side[mine]
            top_sym = tops["symbol"]
            mine_tops = tops if not tops.shape[0] or bool((top_sym == s).all()) else tops[top_sym == s]
            self._ingest_instrument(s, t, t_side, mine_tops)

    def _ingest_instrument(self, s: int, t: EventArray, side: npt.NDArray[np.float64],
                           tops: npt.NDArray[np.void]) -> None:  # fmt: skip
        arrival, ts = t["ingest_ts"], t["exchange_ts"]
        # the mid just before each trade: the last top received strictly before it (these batches' or the
        # carry; a sentinel first, so that a trade no top precedes finds no mid)
        top_ts = np.concatenate(([_NO_TS, self._top_ts[s]], tops["ingest_ts"]))
        top_mid = np.concatenate(([np.nan, self._top_mid[s]], _valid_mid(tops)))
        j = np.searchsorted(top_ts, arrival, "left") - 1
        mid = top_mid[j]
        mid[arrival - self.config.max_mid_age_ns > top_ts[j]] = np.nan
        # taker orders: runs of equal (exchange time, side); the first run may continue the open one
        start = np.empty(ts.shape[0], dtype=bool)
        start[0] = True
        np.not_equal(ts[1:], ts[:-1], out=start[1:])
        start[1:] |= side[1:] != side[:-1]
        starts = np.flatnonzero(start)
        lengths = np.diff(starts, append=ts.shape[0])
        is_open = self._open[s]
        cont = is_open and int(ts[0]) == self._open_ts[s] and float(side[0]) == self._open_side[s]
        init = np.zeros((starts.shape[0], 2))
        if cont:  # the sums go on from the open order's running sums, as one unbroken run adds them
            init[0] = self._open_qty[s], self._open_quote[s]
        px, q = t["px"], t["qty"]
        sums = _run_sums(np.stack((q, px * q), axis=1), starts, lengths, init)
        qty, quote = sums[:, 0], sums[:, 1]
        o_side, o_ts, o_mid = side[starts], ts[starts], mid[starts]
        if cont:
            o_mid[0] = self._open_mid[s]
        elif is_open:  # the open order is complete: it goes first
            qty = np.concatenate(([self._open_qty[s]], qty))
            quote = np.concatenate(([self._open_quote[s]], quote))
            o_side = np.concatenate(([self._open_side[s]], o_side))
            o_ts = np.concatenate(([self._open_ts[s]], o_ts))
            o_mid = np.concatenate(([self._open_mid[s]], o_mid))
        # the last order stays open
        self._open[s] = True
        self._open_ts[s], self._open_side[s] = int(o_ts[-1]), float(o_side[-1])
        self._open_qty[s], self._open_quote[s], self._open_mid[s] = float(qty[-1]), float(quote[-1]), float(o_mid[-1])
        if qty.shape[0] == 1:
            return
        slip = o_side[:-1] * (quote[:-1] / qty[:-1] - o_mid[:-1]) / o_mid[:-1] * _BPS
        good = np.isfinite(slip)
        if good.all():
            self._push(s, quote[:-1], slip, int(o_ts[-2]))
        elif good.any():
            self._push(s, quote[:-1][good], slip[good], int(o_ts[:-1][good][-1]))

    def _push(self, s: int, notional: npt.NDArray[np.float64], slip: npt.NDArray[np.float64], ts: int) -> None:
        c = self.config.capacity
        k = slip.shape[0]
        if k > c:
            notional, slip = notional[-c:], slip[-c:]
        pos = (self._total[s] + k - notional.shape[0] + np.arange(notional.shape[0])) % c
        self._notional[s, pos] = notional
        self._slip[s, pos] = slip
        self._total[s] += k
        self._new[s] += k
        self._last_ts[s] = ts
        self._touched.add(s)

    def _due(self, s: int) -> bool:
        if not self._new[s]:
            return False
        fit_ts = self._fit_ts[s]
        return (
            self._new[s] >= self.config.refit_every
            or fit_ts is None
            or self._last_ts[s] - fit_ts >= self.config.refit_after_ns
        )

    # --- fitting and reading ---------------------------------------------------------------------------------
    def refit(self, instrument: int) -> SlippageQuantiles:
        """Fit the instrument's buffer now (the runtime calls this lazily, see the module docstring)."""
        notional, slip = self.samples(instrument)
        fit = fit_slippage_quantiles(notional, slip, self._edges)
        self._fits[instrument] = fit
        self._curves[instrument] = {}
        self._new[instrument] = 0
        self._fit_ts[instrument] = self._last_ts[instrument]
        self.fits += 1
        return fit

    def samples(self, instrument: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """(notional USDT, slippage bps) of the buffered taker orders, oldest first (copies; batches still
        waiting are not in them, see :meth:`process`)."""
        c = self.config.capacity
        total = self._total[instrument]
        idx = np.arange(max(total - c, 0), total) % c
        return self._notional[instrument, idx], self._slip[instrument, idx]

    def fitted(self, instrument: int) -> SlippageQuantiles | None:
        """The instrument's last fit (None before the first)."""
        return self._fits[instrument]

    def curve(self, instrument: int, q: float) -> Curve:
        """Bucket edges and the one-way slippage at quantile ``q`` per bucket, NaN where the bucket is not
        trusted (or nothing is fitted yet). Plain tuples for the decision's float lookup; cached per fit."""
        cached = self._curves[instrument].get(q)
        if cached is None:
            fit = self._fits[instrument]
            need = self.config.trusted_count(q)
            bps = fit.at(q, min_count=need) if fit is not None else np.full(len(self._edges), np.nan)
            cached = self._curves[instrument][q] = (self.config.edges_usdt, tuple(bps.tolist()))
        return cached


def _bytes(rows: npt.NDArray[np.void]) -> npt.NDArray[np.uint8]:
    """A copy of 1-D structured rows as raw bytes (copying them as records costs several times more)."""
    if rows.flags.c_contiguous:
        return rows.view(np.uint8).copy()
    return np.ascontiguousarray(rows).view(np.uint8)


def _join(parts: list[npt.NDArray[np.uint8]], dtype: np.dtype[np.void]) -> npt.NDArray[np.void]:
    """The rows held as bytes in ``parts``, as one array of ``dtype``."""
    if not parts:
        return np.zeros(0, dtype)
    return (parts[0] if len(parts) == 1 else np.concatenate(parts)).view(dtype)


def _valid_mid(tops: npt.NDArray[np.void]) -> npt.NDArray[np.float64]:
    """Level-1 mid of each top; NaN when the top is unsynced, crossed or has no positive prices."""
    bid, ask = tops["bid_px"][:, 0], tops["ask_px"][:, 0]
    ok = (tops["synced"] != 0) & (tops["crossed"] == 0) & (bid > 0) & (ask > 0)
    return np.where(ok, 0.5 * (bid + ask), np.nan)


def _run_sums(
    values: npt.NDArray[np.float64], starts: npt.NDArray[np.intp], lengths: npt.NDArray[np.intp],
    init: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:  # fmt: skip
    """``init`` plus the column sums of ``values`` over each run, added one row at a time in order, as a loop
    adds them (numpy's reductions sum pairwise, which would make an order's VWAP depend on where a batch cut
    it). The runs are laid out zero-padded in a matrix and accumulated along it (x + 0 is exact); runs of very
    different lengths go in power-of-two length classes, so no matrix is much larger than its trades."""
    n, g = values.shape[0], starts.shape[0]
    out = np.empty((g, values.shape[1]))
    width = int(lengths.max())
    if g * width <= max(16 * n, 8192):  # one matrix (at most 16 cells per trade, or 64 kB per column)
        classes = [(np.arange(g), width)]
    else:
        cls = np.ceil(np.log2(lengths)).astype(np.int64)
        classes = [(np.flatnonzero(cls == c), 1 << c) for c in np.unique(cls).tolist()]
    for rows, w in classes:
        offset = np.arange(w)
        inside = offset < lengths[rows, None]
        m = np.zeros((rows.shape[0], w + 1, values.shape[1]))
        m[:, 0] = init[rows]
        m[:, 1:][inside] = values[(starts[rows, None] + offset)[inside]]
        out[rows] = np.cumsum(m, axis=1)[:, -1]
    return out
