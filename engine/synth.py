"""A seeded synthetic market: stochastic order flow driving a true L2 book, emitted as Binance-like events.

Why: the demo, tests and the RL environment need unlimited, reproducible market data with the same event
types and sequencing rules as the real feeds (snapshot + chained diffs, bookTicker, trades, mark price and
funding), so every downstream kernel runs unchanged on it. Same seed and config → identical events.

What it imitates
- A price grid in integer ticks; limit orders arrive at a geometric distance from the touch, cancels
  remove part of a level (larger levels are hit more often), market orders sweep the book level by level
  and print one trade per level crossed (so queues deplete and refill: queue dynamics at the touch).
- Two volatility regimes (calm / volatile) switching as a Markov chain per second; the volatile regime
  raises market-order intensity and size, which produces volatility clustering.
- Fat tails: market-order sizes are Pareto distributed (tail index ``size_tail_alpha``).
- Funding: an AR(1) funding rate published with the mark price every second and settled every 8 h.
- Timestamps: ``exchange_ts`` on a nanosecond clock; ``ingest_ts`` adds a constant clock offset and a
  log-normal network latency.
- Sequencing: diffs are flushed every ``diff_interval_ms`` with Binance's ids (futures: U, u, pu; spot:
  U = previous u + 1) and the initial REST snapshot is taken exactly as the exchange would serve it
  (its lastUpdateId equals the last id of a diff already in the stream), so both first-diff rules hold.

What it does not imitate
- No individual order identities or queue priority of other participants (levels are aggregate sizes).
- No cross-asset correlation, intraday seasonality, news jumps, or exchange outages (inject gaps yourself).
- Order-flow parameters are not fitted to any real market; the numbers are plausible, not calibrated.
  The defaults give a calm market (1-minute return std ≈ 4e-5, 1-second kurtosis well above 3); settings
  where taking and cancelling outpace limit supply exhaust a side, which raises a clear error.
- Liquidations and open interest are not generated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from .events import (
    ASK,
    BBO,
    BID,
    BUY,
    DEPTH,
    EVENT_DTYPE,
    LAST_IN_MSG,
    MARK,
    SELL,
    SNAPSHOT,
    TRADE,
    EventArray,
)

_NS = 1_000_000_000
_FUNDING_PERIOD_NS = 8 * 3600 * _NS


@dataclass(frozen=True)
class SyntheticMarketConfig:
    """Parameters of the synthetic market. Rates are per second of exchange time."""

    symbol: int = 0
    futures: bool = True  #: futures sequencing (pu) and funding; False = spot sequencing, no mark events
    tick_size: float = 0.1
    start_price: float = 60_000.0
    grid_ticks: int = 200_000  #: price grid width (ticks), centred on the start price; leaving it is an error
    max_sweep_ticks: int = 300  #: a market order walks at most this far from the touch (an exchange price band)
    snapshot_levels: int = 1000  #: levels per side in a REST snapshot
    diff_interval_ms: int = 100  #: how often changed levels are flushed as one diff message
    limit_rate: float = 400.0  #: limit-order arrivals per second (both sides)
    cancel_rate: float = 350.0  #: cancellations per second (both sides)
    market_rate: float = 8.0  #: market orders per second in the calm regime
    depth_decay: float = 0.15  #: geometric parameter of the distance (ticks) from the touch
    deep_share: float = 0.2  #: share of limit orders and cancels placed uniformly within ``deep_window_ticks``
    deep_window_ticks: int = 500  #: the deep book is refilled (and thinned) uniformly over this many ticks
    limit_size_mean: float = 0.05  #: mean limit order size (base units, exponential)
    market_size_min: float = 0.002  #: Pareto scale of market-order sizes (base units)
    size_tail_alpha: float = 1.6  #: Pareto tail index of market-order sizes (lower = fatter)
    volatile_multiplier: float = 4.0  #: market-order rate and size multiplier in the volatile regime
    p_calm_to_volatile: float = 0.002  #: per-second switching probabilities
    p_volatile_to_calm: float = 0.02
    initial_depth_levels: int = 2000  #: levels per side seeded at start
    funding_mean: float = 0.0001  #: long-run funding rate per 8 h
    funding_phi: float = 0.999  #: AR(1) persistence per second
    funding_sigma: float = 2e-6  #: AR(1) innovation per second
    clock_offset_ms: float = 5.0  #: ingest clock minus exchange clock
    latency_median_ms: float = 20.0  #: median feed latency
    latency_sigma: float = 0.5  #: log-normal sigma of the feed latency
    start_ts_ns: int = 1_723_161_600 * _NS  #: 2024-08-09 00:00 UTC

    def __post_init__(self) -> None:
        positive = ("tick_size", "start_price", "limit_rate", "cancel_rate", "market_rate", "limit_size_mean",
                    "market_size_min", "size_tail_alpha", "volatile_multiplier", "latency_median_ms")  # fmt: skip
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"SyntheticMarketConfig.{name} must be > 0, got {getattr(self, name)!r}")
        if not 0 < self.depth_decay < 1:
            raise ValueError(f"SyntheticMarketConfig.depth_decay must be in (0, 1), got {self.depth_decay!r}")
        if self.grid_ticks < 4 * self.initial_depth_levels:
            raise ValueError("SyntheticMarketConfig.grid_ticks must be at least 4 × initial_depth_levels")
        if self.diff_interval_ms < 1:
            raise ValueError("SyntheticMarketConfig.diff_interval_ms must be ≥ 1")


# Scalar state slots (int64 array), so the whole state is a few arrays that numba can carry across calls.
_T, _UPDATE_ID, _LAST_FLUSHED_U, _BEST_BID, _BEST_ASK, _REGIME, _NEXT_FLUSH, _NEXT_MARK = range(8)
_NEXT_FUNDING, _TRADE_ID, _N_CHANGED, _RNG, _ORIGIN, _NEXT_EVENT, _N_SLOTS = 8, 9, 10, 11, 12, 13, 14
# Float state slots.
_FUNDING_RATE, _N_FSLOTS = 0, 1


@numba.njit(cache=True, inline="always")
def _next_u64(st: np.ndarray) -> np.uint64:
    """xorshift64* in the state array: deterministic, resumable across calls, independent of numpy's RNG."""
    x = np.uint64(st[_RNG])
    x ^= x >> np.uint64(12)
    x ^= x << np.uint64(25)
    x ^= x >> np.uint64(27)
    st[_RNG] = np.int64(x)
    return x * np.uint64(2685821657736338717)


@numba.njit(cache=True, inline="always")
def _uniform(st: np.ndarray) -> float:
    return (float(_next_u64(st) >> np.uint64(11)) + 0.5) / 9007199254740992.0


@numba.njit(cache=True, inline="always")
def _normal(st: np.ndarray) -> float:
    return float(np.sqrt(-2.0 * np.log(_uniform(st))) * np.cos(2.0 * np.pi * _uniform(st)))


@numba.njit(cache=True, inline="always")
def _distance(st: np.ndarray, decay: float, deep_share: float, deep_window: int) -> int:
    """Ticks from the reference price: mostly geometric (near the touch), sometimes uniform (deep book)."""
    if _uniform(st) < deep_share:
        return int(_uniform(st) * deep_window)
    return int(np.log(_uniform(st)) / np.log(1.0 - decay))


@numba.njit(cache=True)
def _mark_changed(side: int, idx: int, changed: np.ndarray, changed_list: np.ndarray, st: np.ndarray) -> None:
    flag = 1 if side == 0 else 2
    if changed[idx] & flag == 0:
        changed[idx] |= flag
        n = st[_N_CHANGED]
        changed_list[n, 0] = side
        changed_list[n, 1] = idx
        st[_N_CHANGED] = n + 1
    st[_UPDATE_ID] += 1


@numba.njit(cache=True)
def _emit(out: np.ndarray, n: int, kind: int, sym: int, ts: int, ingest: int, px: float, qty: float,
          seq: int, first: int, prev: int) -> int:  # fmt: skip
    if n >= out.shape[0]:
        return -1
    out[n]["kind"] = kind
    out[n]["symbol"] = sym
    out[n]["exchange_ts"] = ts
    out[n]["ingest_ts"] = ingest
    out[n]["px"] = px
    out[n]["qty"] = qty
    out[n]["seq"] = seq
    out[n]["first_seq"] = first
    out[n]["prev_seq"] = prev
    return n + 1


@numba.njit(cache=True)
def _refresh_best(bid_q: np.ndarray, ask_q: np.ndarray, st: np.ndarray) -> None:
    b = st[_BEST_BID]
    while b >= 0 and bid_q[b] <= 0.0:
        b -= 1
    st[_BEST_BID] = b
    a = st[_BEST_ASK]
    while a < ask_q.shape[0] and ask_q[a] <= 0.0:
        a += 1
    st[_BEST_ASK] = a


@numba.njit(cache=True)
def _simulate(
    bid_q: np.ndarray, ask_q: np.ndarray, changed: np.ndarray, changed_list: np.ndarray,
    st: np.ndarray, fst: np.ndarray, params: np.ndarray, iparams: np.ndarray, t_end: int, out: np.ndarray,
) -> int:  # fmt: skip
    """Advance the market to ``t_end`` (ns), writing events into ``out``; returns the count, −1 if full.

    On −1 the state is consistent but ``t_end`` was not reached: the caller retries with a new buffer.
    """
    tick, limit_rate, cancel_rate, market_rate, decay, lim_size = params[0:6]
    mkt_min, alpha, vol_mult, p_cv, p_vc = params[6:11]
    f_mean, f_phi, f_sigma, offset_ns, lat_med_ns, lat_sigma = params[11:17]
    deep_share = params[17]
    deep_window = iparams[4]
    sym, futures, diff_ns, band = iparams[0], iparams[1], iparams[2], iparams[3]
    grid = bid_q.shape[0]
    n = 0
    while True:
        regime_mult = vol_mult if st[_REGIME] == 1 else 1.0
        total = limit_rate + cancel_rate + market_rate * regime_mult
        if st[_NEXT_EVENT] == 0:  # drawn once and kept, so a run split at any t_end is bit-identical
            st[_NEXT_EVENT] = st[_T] + int(-np.log(_uniform(st)) / total * 1e9) + 1
        t_next = st[_NEXT_EVENT]
        # Timers (diff flush, mark price) fire before the next order-flow event.
        while min(st[_NEXT_FLUSH], st[_NEXT_MARK]) <= min(t_next, t_end):
            if st[_NEXT_FLUSH] <= st[_NEXT_MARK]:
                ts = st[_NEXT_FLUSH]
                st[_NEXT_FLUSH] += diff_ns
                k = st[_N_CHANGED]
                if k == 0 and st[_UPDATE_ID] == st[_LAST_FLUSHED_U]:
                    continue
                ingest = ts + int(offset_ns + lat_med_ns * np.exp(lat_sigma * _normal(st)))
                first = st[_LAST_FLUSHED_U] + 1
                last = st[_UPDATE_ID]
                prev = st[_LAST_FLUSHED_U] if futures == 1 else -1
                origin = st[_ORIGIN]
                for side in range(2):  # bids first, then asks
                    for j in range(k):
                        if changed_list[j, 0] != side:
                            continue
                        idx = changed_list[j, 1]
                        q = bid_q[idx] if side == 0 else ask_q[idx]
                        flag = BID if side == 0 else ASK
                        n = _emit(out, n, DEPTH | flag, sym, ts, ingest, (origin + idx) * tick, q, last, first, prev)
                        if n < 0:
                            return -1
                        changed[idx] = 0
                if k > 0:
                    out[n - 1]["kind"] |= LAST_IN_MSG
                st[_N_CHANGED] = 0
                st[_LAST_FLUSHED_U] = last
            else:
                ts = st[_NEXT_MARK]
                st[_NEXT_MARK] += 1_000_000_000
                if _uniform(st) < (p_cv if st[_REGIME] == 0 else p_vc):
                    st[_REGIME] = 1 - st[_REGIME]
                fst[_FUNDING_RATE] = f_mean + f_phi * (fst[_FUNDING_RATE] - f_mean) + f_sigma * _normal(st)
                if futures == 1:
                    if ts >= st[_NEXT_FUNDING]:
                        st[_NEXT_FUNDING] += 8 * 3600 * 1_000_000_000
                    mid = 0.5 * (st[_BEST_BID] + st[_BEST_ASK] + 2 * st[_ORIGIN]) * tick
                    ingest = ts + int(offset_ns + lat_med_ns * np.exp(lat_sigma * _normal(st)))
                    n = _emit(out, n, MARK | LAST_IN_MSG, sym, ts, ingest, mid, fst[_FUNDING_RATE],
                              st[_NEXT_FUNDING] // 1_000_000, 0, -1)  # fmt: skip
                    if n < 0:
                        return -1
        if t_next > t_end:
            st[_T] = t_end
            return n
        st[_T] = t_next
        st[_NEXT_EVENT] = 0
        ts = t_next
        bb0, ba0 = st[_BEST_BID], st[_BEST_ASK]
        u = _uniform(st) * total
        if u < limit_rate:  # limit order at a geometric distance from the opposite touch (fills spread gaps)
            side = 0 if _uniform(st) < 0.5 else 1
            dist = _distance(st, decay, deep_share, deep_window)
            size = max(0.001, np.round(-lim_size * np.log(_uniform(st)), 3))
            if side == 0:
                idx = max(0, st[_BEST_ASK] - 1 - dist)
                bid_q[idx] = np.round(bid_q[idx] + size, 4)
                if idx > st[_BEST_BID]:
                    st[_BEST_BID] = idx
            else:
                idx = min(grid - 1, st[_BEST_BID] + 1 + dist)
                ask_q[idx] = np.round(ask_q[idx] + size, 4)
                if idx < st[_BEST_ASK]:
                    st[_BEST_ASK] = idx
            _mark_changed(side, idx, changed, changed_list, st)
        elif u < limit_rate + cancel_rate:  # cancel part of a level near the touch
            side = 0 if _uniform(st) < 0.5 else 1
            dist = _distance(st, decay, deep_share, deep_window)
            idx = st[_BEST_BID] - dist if side == 0 else st[_BEST_ASK] + dist
            if 0 <= idx < grid:
                q = bid_q[idx] if side == 0 else ask_q[idx]
                if q > 0.0:
                    new_q = q * _uniform(st) if q > lim_size else 0.0
                    new_q = 0.0 if new_q < 1e-4 else np.round(new_q, 4)
                    if side == 0:
                        bid_q[idx] = new_q
                    else:
                        ask_q[idx] = new_q
                    _mark_changed(side, idx, changed, changed_list, st)
                    _refresh_best(bid_q, ask_q, st)
        else:  # market order sweeping the opposite side, one trade per level
            buy = _uniform(st) < 0.5
            size = mkt_min * regime_mult * (_uniform(st) ** (-1.0 / alpha))
            ingest = ts + int(offset_ns + lat_med_ns * np.exp(lat_sigma * _normal(st)))
            touch = st[_BEST_ASK] if buy else st[_BEST_BID]
            while size > 1e-9:
                idx = st[_BEST_ASK] if buy else st[_BEST_BID]
                if idx < 0 or idx >= grid or abs(idx - touch) > band:
                    break  # the rest of the order is not filled (price protection), as on the exchange
                avail = ask_q[idx] if buy else bid_q[idx]
                take = min(avail, size)
                take = np.round(take, 4) if take < avail else avail
                if take <= 0.0:
                    break
                st[_TRADE_ID] += 1
                n = _emit(out, n, TRADE | (BUY if buy else SELL) | LAST_IN_MSG, sym, ts, ingest,
                          (st[_ORIGIN] + idx) * tick, take, st[_TRADE_ID], st[_TRADE_ID], -1)  # fmt: skip
                if n < 0:
                    return -1
                left = avail - take
                left = 0.0 if left < 1e-4 else np.round(left, 4)
                if buy:
                    ask_q[idx] = left
                else:
                    bid_q[idx] = left
                _mark_changed(1 if buy else 0, idx, changed, changed_list, st)
                size -= take
                _refresh_best(bid_q, ask_q, st)
        if st[_BEST_BID] < 0 or st[_BEST_ASK] >= grid:
            return -2  # walked off the grid: the caller re-centres
        if st[_BEST_BID] != bb0 or st[_BEST_ASK] != ba0:
            ingest = ts + int(offset_ns + lat_med_ns * np.exp(lat_sigma * _normal(st)))
            b, a = st[_BEST_BID], st[_BEST_ASK]
            uid = st[_UPDATE_ID]
            n = _emit(out, n, BBO | BID, sym, ts, ingest, (st[_ORIGIN] + b) * tick, bid_q[b], uid, uid, -1)
            if n < 0:
                return -1
            n = _emit(
                out, n, BBO | ASK | LAST_IN_MSG, sym, ts, ingest, (st[_ORIGIN] + a) * tick, ask_q[a], uid, uid, -1
            )
            if n < 0:
                return -1


class SyntheticMarket:
    """Stateful generator: call :meth:`advance` repeatedly to stream micro-batches of events.

    The first call also emits the initial REST snapshot (after one diff, as a real recorder sees it).
    """

    def __init__(self, config: SyntheticMarketConfig, seed: int) -> None:
        self.config = config
        c = config
        g = c.grid_ticks
        self._bid = np.zeros(g)
        self._ask = np.zeros(g)
        self._changed = np.zeros(g, dtype=np.uint8)
        self._changed_list = np.zeros((2 * g, 2), dtype=np.int64)
        self._st = np.zeros(_N_SLOTS, dtype=np.int64)
        self._fst = np.zeros(_N_FSLOTS)
        rng = np.random.default_rng(seed)
        mid_tick = round(c.start_price / c.tick_size)
        origin = mid_tick - g // 2
        centre = g // 2
        for i in range(c.initial_depth_levels):
            self._bid[centre - 1 - i] = round(float(rng.exponential(c.limit_size_mean * 4)) + 1e-3, 4)
            self._ask[centre + i] = round(float(rng.exponential(c.limit_size_mean * 4)) + 1e-3, 4)
        st = self._st
        st[_T] = c.start_ts_ns
        st[_UPDATE_ID] = 1_000_000 + int(rng.integers(0, 1_000_000))
        st[_LAST_FLUSHED_U] = st[_UPDATE_ID]
        st[_BEST_BID], st[_BEST_ASK] = centre - 1, centre
        st[_NEXT_FLUSH] = c.start_ts_ns + c.diff_interval_ms * 1_000_000
        st[_NEXT_MARK] = c.start_ts_ns + _NS
        st[_NEXT_FUNDING] = (c.start_ts_ns // _FUNDING_PERIOD_NS + 1) * _FUNDING_PERIOD_NS
        st[_TRADE_ID] = 10_000_000
        st[_RNG] = int(rng.integers(1, 2**62))
        st[_ORIGIN] = origin
        self._fst[_FUNDING_RATE] = c.funding_mean
        self._params = np.array([
            c.tick_size, c.limit_rate, c.cancel_rate, c.market_rate, c.depth_decay, c.limit_size_mean,
            c.market_size_min, c.size_tail_alpha, c.volatile_multiplier, c.p_calm_to_volatile, c.p_volatile_to_calm,
            c.funding_mean, c.funding_phi, c.funding_sigma, c.clock_offset_ms * 1e6, c.latency_median_ms * 1e6,
            c.latency_sigma, c.deep_share,
        ])  # fmt: skip
        self._iparams = np.array(
            [c.symbol, 1 if c.futures else 0, c.diff_interval_ms * 1_000_000, c.max_sweep_ticks, c.deep_window_ticks],
            dtype=np.int64,
        )
        self._started = False

    @property
    def now_ns(self) -> int:
        """Exchange time the market has been simulated up to."""
        return int(self._st[_T])

    @property
    def regime(self) -> int:
        """0 = calm, 1 = volatile."""
        return int(self._st[_REGIME])

    def book(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The true book now: (bid prices desc, bid qtys, ask prices asc, ask qtys), non-empty levels only."""
        tick, origin = self.config.tick_size, int(self._st[_ORIGIN])
        bi = np.nonzero(self._bid > 0)[0][::-1]
        ai = np.nonzero(self._ask > 0)[0]
        return (origin + bi) * tick, self._bid[bi].copy(), (origin + ai) * tick, self._ask[ai].copy()

    def snapshot(self, levels: int | None = None) -> EventArray:
        """A REST depth snapshot of the book as of the last flushed diff (lastUpdateId = that diff's u).

        Only valid at a flush boundary, which :meth:`advance` and :meth:`resync` guarantee; in between,
        the live arrays hold changes no diff has announced yet and the snapshot would contradict its id.
        """
        if self._st[_N_CHANGED] or self._st[_UPDATE_ID] != self._st[_LAST_FLUSHED_U]:
            raise RuntimeError("snapshot() between flushes; use resync() to advance to a flush boundary first")
        levels = levels or self.config.snapshot_levels
        bp, bq, ap, aq = self.book()
        bp, bq, ap, aq = bp[:levels], bq[:levels], ap[:levels], aq[:levels]
        ev = np.zeros(len(bp) + len(ap), dtype=EVENT_DTYPE)
        ev["kind"][: len(bp)] = SNAPSHOT | BID
        ev["kind"][len(bp) :] = SNAPSHOT | ASK
        ev["kind"][-1] |= LAST_IN_MSG
        ev["px"] = np.concatenate([bp, ap])
        ev["qty"] = np.concatenate([bq, aq])
        ev["symbol"] = self.config.symbol
        ev["exchange_ts"] = self.now_ns
        ev["ingest_ts"] = self.now_ns + int((self.config.clock_offset_ms + self.config.latency_median_ms) * 1e6)
        ev["seq"] = ev["first_seq"] = self._st[_LAST_FLUSHED_U]
        ev["prev_seq"] = -1
        return ev

    def resync(self, capacity: int = 1 << 20) -> EventArray:
        """Events up to the next diff flush, then a fresh REST snapshot: what a recovering client receives."""
        stream = self._run_until(int(self._st[_NEXT_FLUSH]), capacity)
        return np.concatenate([stream, self.snapshot()])

    def advance(self, seconds: float, capacity: int = 1 << 20) -> EventArray:
        """Simulate ``seconds`` of exchange time and return the events, in exchange order.

        The first call starts with one diff and the REST snapshot taken right after it, as a recorder that
        subscribes and then fetches the snapshot sees them (so both Binance first-diff rules hold).
        """
        t_end = self.now_ns + int(seconds * _NS)
        chunks: list[EventArray] = []
        if not self._started:
            self._started = True
            chunks.append(self.resync(capacity))
        chunks.append(self._run_until(t_end, capacity))
        return np.concatenate(chunks) if len(chunks) > 1 else chunks[0]

    def _run_until(self, t_end: int, capacity: int) -> EventArray:
        parts: list[EventArray] = []
        while True:
            out = np.zeros(capacity, dtype=EVENT_DTYPE)
            saved = self._save()
            n = _simulate(self._bid, self._ask, self._changed, self._changed_list, self._st, self._fst,
                          self._params, self._iparams, t_end, out)  # fmt: skip
            if n == -1:  # buffer full: restore and retry with a larger buffer (deterministic replay)
                self._restore(saved)
                capacity *= 4
                continue
            if n == -2:
                raise RuntimeError(
                    "synthetic market: a side of the book was exhausted or the price left the grid "
                    f"(grid_ticks={self.config.grid_ticks}); market-order and cancel flow outpace limit-order "
                    "supply — lower market_rate, market_size_min or cancel_rate, or raise limit_rate"
                )
            parts.append(out[:n].copy())
            return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def _state(self) -> tuple[np.ndarray, ...]:
        return (self._bid, self._ask, self._changed, self._changed_list, self._st, self._fst)

    def _save(self) -> tuple[np.ndarray, ...]:
        return tuple(a.copy() for a in self._state())

    def _restore(self, saved: tuple[np.ndarray, ...]) -> None:
        for dst, src in zip(self._state(), saved, strict=True):
            dst[...] = src
