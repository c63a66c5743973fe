"""Bar clocks: time bars, quote-volume buckets with a time cap, and trade-count bars.

Why several clocks: features that are rates of something (volatility, liquidity, toxicity) are cleaner when
sampled on the clock of that something — VPIN wants equal-volume buckets, ATR and returns want regular time,
tick bars sample activity. One kernel serves all three; the clock kind is an int argument, so a state
object per clock is just a few arrays and a compiled loop shared by all.

Input is the merged stream of an event batch and the book tops aligned to it (``top_event_index[j]`` is
the event after which top ``j`` was applied — exactly what ``BookSet.apply`` returns), so trades and mids
interleave in arrival order. Observations per symbol:

- trades (TRADE/AGG_TRADE by default; BUY/SELL flags give the side): price, volumes, count;
- valid book tops (synced, not crossed): the prevailing mid; invalid tops set the mid to NaN and flag
  the bar ``BAR_BOOK_INVALID``;
- MARK (mark price, funding rate), OPEN_INTEREST, LIQUIDATION: carried forward / summed into the bar.
  DEPTH/SNAPSHOT/BBO events themselves are not observations (their effect arrives as the top).

An :class:`Observer` first merges a batch into that compact observation stream (``OBS_DTYPE``, one pass
over the 64-byte events, shared by every clock of a ``FeatureEngine``); clock kernels read only it.

All times are ``exchange_ts``. An event older than the open bar's start is counted in the open bar (the
stream is assumed ordered per symbol; the book's message ordering can put a trade's ``T`` slightly behind).

Closing rules (per symbol; a bar closes when the first observation past its end arrives — there is no
wall clock in a pure engine):

- **time**: periods aligned to multiples of ``period_ns`` since the epoch. Empty periods between two
  observations are emitted as flat ``BAR_FILLED`` bars (OHLC = previous close) so the series stays
  regular; a silence longer than ``max_fill`` periods is skipped and the next bar carries ``BAR_GAP``.
- **volume**: a bucket opens at a trade and closes when its quote volume (Σ px·qty) reaches
  ``quote_volume``; a trade that overflows the bucket is split (qty pro rata, same side) and the rest
  opens the next bucket(s), so every full bucket holds exactly the target. With ``cap_ns > 0`` a bucket
  also closes, flagged ``BAR_CAPPED`` with ``end_ts = start_ts + cap_ns``, at the first observation at
  or after that time, even if it is not full.
- **count**: a bar opens at a trade and closes at its ``trades``-th trade.

Price source: ``trade`` (OHLC of trade prices; open = first trade) or ``mid`` (OHLC of the prevailing
valid mid, seeded with the mid prevailing when the bar opens). A bar that saw no price carries the
previous close flat and is flagged ``BAR_NO_PRICE``.

The kernel is resumable: when the preallocated output is full it stops *between* two emissions with its
state consistent and reports its position; the Python wrapper enlarges the output and calls again. No
per-event Python, no exceptions inside the loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numba
import numpy as np
import numpy.typing as npt

from ..events import (
    AGG_TRADE,
    BUY,
    KIND_MASK,
    LIQUIDATION,
    MARK,
    OPEN_INTEREST,
    SELL,
    TRADE,
    EventArray,
    book_top_dtype,
)
from ._state import capacity_for, copy_rows, enlarge, grow, max_symbol
from .schema import BAR_BOOK_INVALID, BAR_CAPPED, BAR_DTYPE, BAR_FILLED, BAR_GAP, BAR_NO_PRICE

CLOCK_TIME: int = 0
CLOCK_VOLUME: int = 1
CLOCK_COUNT: int = 2
PRICE_TRADE: int = 0
PRICE_MID: int = 1

_CLOCK_CODES = {"time": CLOCK_TIME, "volume": CLOCK_VOLUME, "count": CLOCK_COUNT}
_PRICE_CODES = {"trade": PRICE_TRADE, "mid": PRICE_MID}

# int state per symbol
_I_ACTIVE = 0  # a bar is open
_I_START = 1  # open bar's start_ts
_I_END = 2  # time clock: open bar's period end
_I_COUNT = 3  # trades in the open bar
_I_NTOPS = 4  # valid tops since the last emission
_I_FLAGS = 5  # flags accumulated since the last emission
_I_NOBS = 6  # observations since the last emission
_N_I = 7
# float state per symbol
_F_OPEN, _F_HIGH, _F_LOW, _F_CLOSE, _F_PREV_CLOSE, _F_MID = 0, 1, 2, 3, 4, 5
_F_VOL, _F_QV, _F_BV, _F_SV, _F_BQ, _F_SQ = 6, 7, 8, 9, 10, 11
_F_FUND, _F_MARK, _F_OI, _F_LIQB, _F_LIQS = 12, 13, 14, 15, 16
_N_F = 17

# position slots of the resumable kernel
_POS_EVENT, _POS_TOP, _POS_OUT, _POS_NEEDED = 0, 1, 2, 3
_RC_DONE = 0
_RC_FULL = 1


@dataclass(frozen=True)
class ClockSpec:
    """One bar clock. Build with :meth:`time`, :meth:`volume` or :meth:`count`.

    ``name`` keys the clock's bars in a ``FeatureBatch``. ``period_ns`` (time), ``quote_volume`` and
    ``cap_ns`` (volume, quote currency and ns; ``cap_ns = 0`` means no cap), ``trades`` (per count bar).
    ``price``: ``"trade"`` or ``"mid"``. ``max_fill``: longest silence, in periods, that a time clock fills
    with flat bars. ``trade_kinds``: which event kinds are trades (feed trades or aggTrades, not both).
    """

    name: str
    kind: Literal["time", "volume", "count"]
    period_ns: int = 0
    quote_volume: float = 0.0
    cap_ns: int = 0
    trades: int = 0
    price: Literal["trade", "mid"] = "trade"
    max_fill: int = 3600
    trade_kinds: tuple[int, ...] = (TRADE, AGG_TRADE)

    def __post_init__(self) -> None:
        if self.kind not in _CLOCK_CODES:
            raise ValueError(f"ClockSpec.kind must be one of {sorted(_CLOCK_CODES)}, got {self.kind!r}")
        if self.price not in _PRICE_CODES:
            raise ValueError(f"ClockSpec.price must be one of {sorted(_PRICE_CODES)}, got {self.price!r}")
        if self.kind == "time" and self.period_ns <= 0:
            raise ValueError(f"ClockSpec({self.name!r}).period_ns must be > 0 for a time clock, got {self.period_ns}")
        if self.kind == "volume" and not self.quote_volume > 0.0:
            raise ValueError(f"ClockSpec({self.name!r}).quote_volume must be > 0, got {self.quote_volume}")
        if self.cap_ns < 0:
            raise ValueError(f"ClockSpec({self.name!r}).cap_ns must be >= 0, got {self.cap_ns}")
        if self.kind == "count" and self.trades <= 0:
            raise ValueError(f"ClockSpec({self.name!r}).trades must be > 0 for a count clock, got {self.trades}")
        if self.max_fill < 0:
            raise ValueError(f"ClockSpec({self.name!r}).max_fill must be >= 0, got {self.max_fill}")

    @classmethod
    def time(
        cls, name: str, period_ns: int, *, price: Literal["trade", "mid"] = "trade", max_fill: int = 3600
    ) -> ClockSpec:
        """Time bars of ``period_ns`` nanoseconds, aligned to the epoch."""
        return cls(name=name, kind="time", period_ns=period_ns, price=price, max_fill=max_fill)

    @classmethod
    def volume(
        cls, name: str, quote_volume: float, *, cap_ns: int = 0, price: Literal["trade", "mid"] = "trade"
    ) -> ClockSpec:
        """Buckets of ``quote_volume`` quote currency (Σ px·qty), closed early after ``cap_ns``."""
        return cls(name=name, kind="volume", quote_volume=quote_volume, cap_ns=cap_ns, price=price)

    @classmethod
    def count(cls, name: str, trades: int, *, price: Literal["trade", "mid"] = "trade") -> ClockSpec:
        """Bars of ``trades`` trades."""
        return cls(name=name, kind="count", trades=trades, price=price)

    def trade_mask(self) -> int:
        """Bit ``1 << kind`` set for each trade kind (tested inside the kernel)."""
        mask = 0
        for k in self.trade_kinds:
            mask |= 1 << k
        return mask


@numba.njit(cache=True, error_model="numpy")
def _price(f: npt.NDArray[np.float64], s: int, px: float) -> None:
    if math.isnan(f[s, _F_OPEN]):
        f[s, _F_OPEN] = px
        f[s, _F_HIGH] = px
        f[s, _F_LOW] = px
    else:
        if px > f[s, _F_HIGH]:
            f[s, _F_HIGH] = px
        if px < f[s, _F_LOW]:
            f[s, _F_LOW] = px
    f[s, _F_CLOSE] = px


@numba.njit(cache=True, error_model="numpy")
def _open(f: npt.NDArray[np.float64], g: npt.NDArray[np.int64], s: int, start: int, end: int, price_src: int) -> None:
    g[s, _I_ACTIVE] = 1
    g[s, _I_START] = start
    g[s, _I_END] = end
    g[s, _I_COUNT] = 0
    f[s, _F_OPEN] = np.nan
    f[s, _F_HIGH] = np.nan
    f[s, _F_LOW] = np.nan
    f[s, _F_CLOSE] = np.nan
    if price_src == PRICE_MID and not math.isnan(f[s, _F_MID]):
        _price(f, s, f[s, _F_MID])


@numba.njit(cache=True, error_model="numpy")
def _emit(
    f: npt.NDArray[np.float64],
    g: npt.NDArray[np.int64],
    s: int,
    end_ts: int,
    extra_flags: int,
    clock: int,
    out: EventArray,
    k: int,
) -> None:
    """Write the open bar of symbol ``s`` to ``out[k]`` and reset the per-bar accumulators."""
    r = out[k]
    flags = g[s, _I_FLAGS] | extra_flags
    if math.isnan(f[s, _F_OPEN]):
        flags |= BAR_NO_PRICE
        pc = f[s, _F_PREV_CLOSE]
        f[s, _F_OPEN] = pc
        f[s, _F_HIGH] = pc
        f[s, _F_LOW] = pc
        f[s, _F_CLOSE] = pc
    if clock == CLOCK_TIME and g[s, _I_NOBS] == 0:
        flags |= BAR_FILLED
    r.symbol = s
    r.flags = flags
    r.start_ts = g[s, _I_START]
    r.end_ts = end_ts
    r.open = f[s, _F_OPEN]
    r.high = f[s, _F_HIGH]
    r.low = f[s, _F_LOW]
    r.close = f[s, _F_CLOSE]
    r.mid_close = f[s, _F_MID]
    r.volume = f[s, _F_VOL]
    r.quote_volume = f[s, _F_QV]
    r.buy_volume = f[s, _F_BV]
    r.sell_volume = f[s, _F_SV]
    r.buy_quote = f[s, _F_BQ]
    r.sell_quote = f[s, _F_SQ]
    r.count = g[s, _I_COUNT]
    r.n_tops = g[s, _I_NTOPS]
    r.funding_rate = f[s, _F_FUND]
    r.mark_px = f[s, _F_MARK]
    r.open_interest = f[s, _F_OI]
    r.liq_buy_quote = f[s, _F_LIQB]
    r.liq_sell_quote = f[s, _F_LIQS]
    f[s, _F_PREV_CLOSE] = f[s, _F_CLOSE]
    for x in range(_F_VOL, _F_SQ + 1):
        f[s, x] = 0.0
    f[s, _F_LIQB] = 0.0
    f[s, _F_LIQS] = 0.0
    g[s, _I_ACTIVE] = 0
    g[s, _I_COUNT] = 0
    g[s, _I_NTOPS] = 0
    g[s, _I_FLAGS] = 0
    g[s, _I_NOBS] = 0


@numba.njit(cache=True, error_model="numpy")
def _advance(
    f: npt.NDArray[np.float64],
    g: npt.NDArray[np.int64],
    s: int,
    ts: int,
    clock: int,
    period: int,
    cap_ns: int,
    max_fill: int,
    price_src: int,
    out: EventArray,
    pos: npt.NDArray[np.int64],
) -> int:
    """Close (and, for time bars, fill) every bar of ``s`` that ends at or before ``ts``; 1 if ``out`` is full."""
    if clock == CLOCK_TIME:
        if g[s, _I_ACTIVE] == 0:
            start = (ts // period) * period
            _open(f, g, s, start, start + period, price_src)
            return _RC_DONE
        while ts >= g[s, _I_END]:
            k = pos[_POS_OUT]
            if k >= out.shape[0]:
                pos[_POS_NEEDED] = 1
                return _RC_FULL
            nxt = g[s, _I_END]
            _emit(f, g, s, nxt, 0, clock, out, k)
            pos[_POS_OUT] = k + 1
            ev_start = (ts // period) * period
            if (ev_start - nxt) // period > max_fill:
                _open(f, g, s, ev_start, ev_start + period, price_src)
                g[s, _I_FLAGS] |= BAR_GAP
            else:
                _open(f, g, s, nxt, nxt + period, price_src)
    elif clock == CLOCK_VOLUME and cap_ns > 0 and g[s, _I_ACTIVE] == 1 and ts >= g[s, _I_START] + cap_ns:
        k = pos[_POS_OUT]
        if k >= out.shape[0]:
            pos[_POS_NEEDED] = 1
            return _RC_FULL
        _emit(f, g, s, g[s, _I_START] + cap_ns, BAR_CAPPED, clock, out, k)
        pos[_POS_OUT] = k + 1
    return _RC_DONE


@numba.njit(cache=True, error_model="numpy", inline="always")
def _ohlc(op: float, hi: float, lo: float, px: float) -> tuple[float, float, float]:
    """(open, high, low) after a price ``px``; scalars only, so inlining adds no reference counting."""
    if math.isnan(op):
        return px, px, px
    return op, max(hi, px), min(lo, px)


#: Compact merged stream the clocks read: the few events that matter plus one record per top.
OBS_DTYPE = np.dtype([("symbol", "u4"), ("kind", "u4"), ("ts", "i8"), ("px", "f8"), ("qty", "f8")], align=True)
#: Kinds whose ``px``/``qty`` are not a positive price and size (funding can be negative, OI has no price).
_UNPRICED_KINDS = (1 << MARK) | (1 << OPEN_INTEREST)
#: ``kind`` of a top observation: a valid top (``px`` = mid) and an unsynced/crossed one.
OBS_TOP_VALID: int = 0xFE
OBS_TOP_INVALID: int = 0xFF


@numba.njit(cache=True, error_model="numpy")
def _observe_kernel(
    events: EventArray,
    tops: EventArray,
    top_ev: npt.NDArray[np.int64],
    keep_mask: int,
    pos: npt.NDArray[np.int64],
    out: EventArray,
) -> int:
    """Merge the kept events and the tops into ``out`` (``OBS_DTYPE``) from ``pos``; 0 = done, 1 = full.

    Why a separate pass: events are 64-byte records and most of them (depth levels, bookTicker) are not
    clock observations, so scanning them once here instead of once per clock keeps memory traffic at one
    pass. Merged order: top ``j`` comes right after event ``top_ev[j]``. Trades and liquidations without
    a positive finite price and quantity are dropped here (the decoder should never emit one).
    """
    ne = events.shape[0]
    nt = tops.shape[0]
    i = pos[_POS_EVENT]
    j = pos[_POS_TOP]
    k = pos[_POS_OUT]
    cap = out.shape[0]
    while i < ne or j < nt:
        if k >= cap:
            break
        if j < nt and (top_ev[j] < i or i >= ne):
            t = tops[j]
            r = out[k]
            r.symbol = t.symbol
            r.ts = t.exchange_ts
            b1 = t.bid_px[0]
            a1 = t.ask_px[0]
            if t.synced != 0 and t.crossed == 0 and b1 < a1:  # NaN compares false
                r.kind = OBS_TOP_VALID
                r.px = 0.5 * (b1 + a1)
            else:
                r.kind = OBS_TOP_INVALID
                r.px = np.nan
            r.qty = 0.0
            k += 1
            j += 1
            continue
        e = events[i]
        low = e.kind & KIND_MASK
        keep = low < 64 and ((keep_mask >> low) & 1) == 1
        if keep and (((_UNPRICED_KINDS >> low) & 1) == 1 or (0.0 < e.px < np.inf and 0.0 < e.qty < np.inf)):
            r = out[k]
            r.symbol = e.symbol
            r.kind = e.kind
            r.ts = e.exchange_ts
            r.px = e.px
            r.qty = e.qty
            k += 1
        i += 1
    pos[_POS_EVENT] = i
    pos[_POS_TOP] = j
    pos[_POS_OUT] = k
    return _RC_DONE if (i >= ne and j >= nt) else _RC_FULL


_NO_TOPS = np.zeros(0, book_top_dtype(1))
_NO_INDEX = np.zeros(0, np.int64)
_NO_BARS = np.zeros(0, BAR_DTYPE)  # shared: nothing can be written into an empty array
_OBS_KINDS = (1 << MARK) | (1 << OPEN_INTEREST) | (1 << LIQUIDATION)


class Observer:
    """Builds the observation stream of each batch into a reusable buffer (see :func:`observations`).

    The returned array is a view that the next :meth:`observe` call overwrites: it is meant to be handed
    straight to the clocks of the same batch, as :class:`~.online.FeatureEngine` does.
    """

    def __init__(self, trade_kinds: tuple[int, ...] = (TRADE, AGG_TRADE)) -> None:
        mask = _OBS_KINDS
        for kind in trade_kinds:
            mask |= 1 << kind
        self._mask = mask
        self._buf = np.empty(256, OBS_DTYPE)
        self._pos = np.zeros(4, dtype=np.int64)

    def observe(
        self,
        events: EventArray,
        tops: EventArray | None,
        top_event_index: npt.NDArray[np.int64] | None,
    ) -> EventArray:
        """Observations of one batch, in stream order (a view into the reusable buffer)."""
        if tops is None or top_event_index is None:
            tops, top_event_index = _NO_TOPS, _NO_INDEX
        if tops.shape[0] != top_event_index.shape[0]:
            raise ValueError(f"tops ({tops.shape[0]}) and top_event_index ({top_event_index.shape[0]}) differ")
        want = 16 + tops.shape[0] + events.shape[0] // 8
        if self._buf.shape[0] < want:
            self._buf = np.empty(max(want, 2 * self._buf.shape[0]), OBS_DTYPE)
        pos = self._pos
        pos[:] = 0
        while _observe_kernel(events, tops, top_event_index, self._mask, pos, self._buf) != _RC_DONE:
            self._buf = enlarge(self._buf, 2 * self._buf.shape[0])
        return self._buf[: pos[_POS_OUT]]


def observations(
    events: EventArray,
    tops: EventArray | None,
    top_event_index: npt.NDArray[np.int64] | None,
    trade_kinds: tuple[int, ...] = (TRADE, AGG_TRADE),
) -> EventArray:
    """The clock observations of a batch, in stream order (``OBS_DTYPE``): trades of ``trade_kinds``,
    MARK, OPEN_INTEREST and LIQUIDATION events, and every top (valid ones carry their mid). An owned
    array; :class:`Observer` is the allocation-free form."""
    return copy_rows(Observer(trade_kinds).observe(events, tops, top_event_index))


@numba.njit(cache=True, error_model="numpy")
def _clock_kernel(
    clock: int,
    period: int,
    target: float,
    cap_ns: int,
    count_n: int,
    price_src: int,
    max_fill: int,
    trade_mask: int,
    f: npt.NDArray[np.float64],
    g: npt.NDArray[np.int64],
    obs: EventArray,
    pos: npt.NDArray[np.int64],
    out: EventArray,
) -> int:
    """Feed observations (``OBS_DTYPE``) into the clock from ``pos``; 0 = done, 1 = output full.

    ``pos`` = [next observation, unused, rows written, rows needed by the blocked observation]; it is
    updated in place, so a call after enlarging ``out`` resumes exactly where this one stopped. The check
    for room always happens before an observation changes any state.
    """
    n_obs = obs.shape[0]
    i = pos[_POS_EVENT]
    # Hot path: scalar code on the state rows only. Helpers that take arrays (_advance, _open, _emit) run
    # only when a bar closes or opens: inlining array arguments makes numba count references per event.
    while i < n_obs:
        o = obs[i]
        s = o.symbol
        ts = o.ts
        kind = o.kind & KIND_MASK
        is_trade = kind < 32 and ((trade_mask >> kind) & 1) == 1
        if not (is_trade or kind in (MARK, OPEN_INTEREST, LIQUIDATION) or kind >= OBS_TOP_VALID):
            i += 1
            continue
        if clock == CLOCK_TIME:
            boundary = g[s, _I_ACTIVE] == 0 or ts >= g[s, _I_END]
        elif clock == CLOCK_VOLUME:
            boundary = cap_ns > 0 and g[s, _I_ACTIVE] == 1 and ts >= g[s, _I_START] + cap_ns
        else:
            boundary = False
        if boundary and _advance(f, g, s, ts, clock, period, cap_ns, max_fill, price_src, out, pos) != 0:
            pos[_POS_EVENT] = i
            return _RC_FULL
        px = o.px
        qty = o.qty
        g[s, _I_NOBS] += 1
        if is_trade:
            side = 1 if (o.kind & BUY) != 0 else (-1 if (o.kind & SELL) != 0 else 0)
            if clock == CLOCK_VOLUME:
                needed = 2 + int((f[s, _F_QV] + px * qty) / target)
                if pos[_POS_OUT] + needed > out.shape[0]:
                    g[s, _I_NOBS] -= 1
                    pos[_POS_NEEDED] = needed
                    pos[_POS_EVENT] = i
                    return _RC_FULL
                left = qty
                while True:
                    if g[s, _I_ACTIVE] == 0:
                        _open(f, g, s, ts, ts, price_src)
                        g[s, _I_NOBS] += 1
                    g[s, _I_COUNT] += 1
                    if price_src == PRICE_TRADE:
                        f[s, _F_OPEN], f[s, _F_HIGH], f[s, _F_LOW] = _ohlc(
                            f[s, _F_OPEN], f[s, _F_HIGH], f[s, _F_LOW], px
                        )
                        f[s, _F_CLOSE] = px
                    room = target - f[s, _F_QV]
                    full = px * left >= room - target * 1e-12
                    part = min(left, room / px) if full else left
                    q = px * part
                    f[s, _F_VOL] += part
                    f[s, _F_QV] += q
                    if side > 0:
                        f[s, _F_BV] += part
                        f[s, _F_BQ] += q
                    elif side < 0:
                        f[s, _F_SV] += part
                        f[s, _F_SQ] += q
                    if not full:
                        break
                    f[s, _F_QV] = target  # exact: the bucket holds its target, not a rounding of it
                    _emit(f, g, s, ts, 0, clock, out, pos[_POS_OUT])
                    pos[_POS_OUT] += 1
                    left -= part
                    if left * px <= target * 1e-12:
                        break
            else:
                closes = clock == CLOCK_COUNT and g[s, _I_COUNT] + 1 >= count_n
                if closes and pos[_POS_OUT] >= out.shape[0]:
                    g[s, _I_NOBS] -= 1
                    pos[_POS_NEEDED] = 1
                    pos[_POS_EVENT] = i
                    return _RC_FULL
                if g[s, _I_ACTIVE] == 0:  # count clock (a time bar is always open after _advance)
                    _open(f, g, s, ts, ts, price_src)
                g[s, _I_COUNT] += 1
                if price_src == PRICE_TRADE:
                    f[s, _F_OPEN], f[s, _F_HIGH], f[s, _F_LOW] = _ohlc(f[s, _F_OPEN], f[s, _F_HIGH], f[s, _F_LOW], px)
                    f[s, _F_CLOSE] = px
                q = px * qty
                f[s, _F_VOL] += qty
                f[s, _F_QV] += q
                if side > 0:
                    f[s, _F_BV] += qty
                    f[s, _F_BQ] += q
                elif side < 0:
                    f[s, _F_SV] += qty
                    f[s, _F_SQ] += q
                if closes:
                    _emit(f, g, s, ts, 0, clock, out, pos[_POS_OUT])
                    pos[_POS_OUT] += 1
        elif kind == OBS_TOP_VALID:
            f[s, _F_MID] = px
            g[s, _I_NTOPS] += 1
            if price_src == PRICE_MID and g[s, _I_ACTIVE] == 1:
                f[s, _F_OPEN], f[s, _F_HIGH], f[s, _F_LOW] = _ohlc(f[s, _F_OPEN], f[s, _F_HIGH], f[s, _F_LOW], px)
                f[s, _F_CLOSE] = px
        elif kind == OBS_TOP_INVALID:
            f[s, _F_MID] = np.nan
            g[s, _I_FLAGS] |= BAR_BOOK_INVALID
        elif kind == MARK:
            f[s, _F_MARK] = px
            f[s, _F_FUND] = qty
        elif kind == OPEN_INTEREST:
            f[s, _F_OI] = qty
        elif (o.kind & BUY) != 0:
            f[s, _F_LIQB] += px * qty
        elif (o.kind & SELL) != 0:
            f[s, _F_LIQS] += px * qty
        i += 1
    pos[_POS_EVENT] = i
    return _RC_DONE


class BarClock:
    """Online bar builder for one :class:`ClockSpec`: feed micro-batches, get the bars closed in each.

    Any split of a stream into batches yields the same bars as one call over the whole stream (all carried
    state — the open bar, the prevailing mid, funding/OI — lives in per-symbol arrays).
    """

    def __init__(self, spec: ClockSpec) -> None:
        self.spec = spec
        self._clock = _CLOCK_CODES[spec.kind]
        self._price = _PRICE_CODES[spec.price]
        self._mask = spec.trade_mask()
        self._n_sym = 0
        self._f: npt.NDArray[np.float64] = np.zeros((0, _N_F))
        self._g: npt.NDArray[np.int64] = np.zeros((0, _N_I), dtype=np.int64)
        self._pos = np.zeros(4, dtype=np.int64)
        self._scratch = np.empty(64, BAR_DTYPE)
        self._observer = Observer(spec.trade_kinds)

    def _ensure_symbols(self, n: int) -> None:
        if n <= self._n_sym:
            return
        cap = capacity_for(n, self._n_sym)
        f = grow(self._f, cap, 0.0)
        f[self._n_sym :, _F_OPEN : _F_MID + 1] = np.nan
        f[self._n_sym :, _F_FUND : _F_OI + 1] = np.nan
        self._f = f
        self._g = grow(self._g, cap, 0)
        self._n_sym = cap

    def update(
        self,
        events: EventArray,
        tops: EventArray | None = None,
        top_event_index: npt.NDArray[np.int64] | None = None,
    ) -> EventArray:
        """Bars (``BAR_DTYPE``) closed by this batch, in closing order."""
        return self.update_observations(self._observer.observe(events, tops, top_event_index))

    def update_observations(self, obs: EventArray) -> EventArray:
        """:meth:`update` over a prepared :func:`observations` array (shared by several clocks)."""
        self._ensure_symbols(max_symbol(obs) + 1)
        # a reusable scratch output: most batches close no bar, and those that do are copied out
        want = 16 + obs.shape[0] // 8
        if self._scratch.shape[0] < want:
            self._scratch = np.empty(max(want, 2 * self._scratch.shape[0]), BAR_DTYPE)
        out = self._scratch
        pos = self._pos
        pos[:] = 0
        spec = self.spec
        while True:
            rc = _clock_kernel(
                self._clock,
                spec.period_ns,
                spec.quote_volume,
                spec.cap_ns,
                spec.trades,
                self._price,
                spec.max_fill,
                self._mask,
                self._f,
                self._g,
                obs,
                pos,
                out,
            )
            if rc == _RC_DONE:
                k = int(pos[_POS_OUT])
                return copy_rows(out[:k]) if k else _NO_BARS
            out = self._scratch = enlarge(out, max(2 * out.shape[0], int(pos[_POS_OUT] + pos[_POS_NEEDED])))


def build_bars(
    spec: ClockSpec,
    events: EventArray,
    tops: EventArray | None = None,
    top_event_index: npt.NDArray[np.int64] | None = None,
) -> EventArray:
    """Batch path: every bar of a whole stream (a fresh :class:`BarClock` fed one batch)."""
    return BarClock(spec).update(events, tops, top_event_index)


def bars_from_klines(klines: EventArray) -> EventArray:
    """Klines (``KLINE_DTYPE``) as bars, so the bar-feature kernel runs on exchange candles unchanged.

    ``end_ts`` is the kline's ``close_ts``; sell volume is ``volume − taker_buy_volume`` (NaN when the
    source has no taker split); there is no book, funding or liquidation data (NaN / 0).
    """
    bars = np.zeros(klines.shape[0], BAR_DTYPE)
    bars["symbol"] = klines["symbol"]
    bars["start_ts"] = klines["open_ts"]
    bars["end_ts"] = klines["close_ts"]
    for name in ("open", "high", "low", "close", "volume", "quote_volume"):
        bars[name] = klines[name]
    bars["mid_close"] = np.nan
    buy = klines["taker_buy_volume"]
    bars["buy_volume"] = buy
    bars["sell_volume"] = klines["volume"] - buy
    vwap = klines["quote_volume"] / np.where(klines["volume"] > 0, klines["volume"], np.nan)
    bars["buy_quote"] = buy * vwap
    bars["sell_quote"] = (klines["volume"] - buy) * vwap
    bars["count"] = klines["trades"]
    for name in ("funding_rate", "mark_px", "open_interest"):
        bars[name] = np.nan
    return bars
