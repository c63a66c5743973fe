"""Seeded random-walk book tops and events for exercising the feature kernels without a book or a capture.

Why here and not in the tests: the benchmark and several test modules need the same inputs, and the shape
must match what ``engine.book`` emits (``book_top_dtype`` rows aligned with an event batch through
``top_event_index``). The generator is vectorised (no per-event Python) so it can make millions of events.

What it produces, per event (kinds drawn at random):
- DEPTH events, some followed by a book top (the top's ``top_event_index`` is that event): the mid walks on
  a tick grid, the spread is 1–3 ticks, levels sit 1–3 ticks apart (so near-touch voids exist), the
  deepest levels are sometimes missing (NaN), and short unsynced runs, crossed and degraded tops appear;
- TRADE events (BUY/SELL), MARK (funding random walk), OPEN_INTEREST and LIQUIDATION events;
- ``exchange_ts`` increasing with exponential gaps and rare long silences (to exercise time-bar filling).

It is not a market model (see ``engine.synth`` for that); it is a stress input with every edge case.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..events import (
    ASK,
    BID,
    BUY,
    DEPTH,
    EVENT_DTYPE,
    LAST_IN_MSG,
    LIQUIDATION,
    MARK,
    OPEN_INTEREST,
    SELL,
    TRADE,
    EventArray,
    book_top_dtype,
)


@dataclass(frozen=True)
class SyntheticStream:
    """Events, the tops a book would emit for them, and each top's event index (as ``BookBatch`` has)."""

    events: EventArray
    tops: EventArray
    top_event_index: npt.NDArray[np.int64]


def synthetic_stream(
    n_events: int,
    *,
    levels: int = 10,
    n_symbols: int = 1,
    seed: int = 0,
    tick: float = 0.1,
    start_ts: int = 1_723_100_000_000_000_000,
    mean_gap_ns: float = 2e6,
    p_top: float = 0.35,
    p_depth_only: float = 0.25,
    p_trade: float = 0.35,
    p_mark: float = 0.02,
    p_oi: float = 0.01,
    p_liq: float = 0.01,
    p_unsynced_start: float = 0.005,
    p_crossed: float = 0.002,
    p_long_gap: float = 0.0005,
) -> SyntheticStream:
    """A reproducible mixed stream of ``n_events`` events over ``n_symbols`` symbols."""
    rng = np.random.default_rng(seed)
    probs = np.array([p_top, p_depth_only, p_trade, p_mark, p_oi, p_liq])
    choice = rng.choice(6, size=n_events, p=probs / probs.sum())
    sym = rng.integers(0, n_symbols, n_events).astype(np.uint32)
    gaps = rng.exponential(mean_gap_ns, n_events)
    long_gap = rng.random(n_events) < p_long_gap
    gaps[long_gap] += rng.uniform(5e9, 400e9, int(long_gap.sum()))
    ts = start_ts + np.cumsum(gaps).astype(np.int64)

    # per-symbol random walk of the mid, in ticks
    base = 60_000.0 / tick
    steps = rng.choice(np.array([-1, 0, 0, 0, 1]), size=n_events)
    mid_ticks = np.empty(n_events, dtype=np.int64)
    for s in range(n_symbols):  # symbols, not events
        m = sym == s
        mid_ticks[m] = int(base) + int(s * 1000) + np.cumsum(steps[m])

    ev = np.zeros(n_events, EVENT_DTYPE)
    ev["symbol"] = sym
    ev["exchange_ts"] = ts
    ev["ingest_ts"] = ts + rng.integers(100_000, 5_000_000, n_events)
    ev["seq"] = np.arange(n_events)
    ev["first_seq"] = ev["seq"]
    ev["prev_seq"] = ev["seq"] - 1

    is_top = choice == 0
    depth = (choice == 0) | (choice == 1)
    ev["kind"][depth] = DEPTH | LAST_IN_MSG | np.where(rng.random(int(depth.sum())) < 0.5, BID, ASK)
    ev["px"][depth] = mid_ticks[depth] * tick
    ev["qty"][depth] = rng.exponential(1.0, int(depth.sum()))

    trade = choice == 2
    nt = int(trade.sum())
    side_buy = rng.random(nt) < 0.5
    ev["kind"][trade] = TRADE | np.where(side_buy, BUY, SELL)
    ev["px"][trade] = (mid_ticks[trade] + np.where(side_buy, 1, -1)) * tick
    ev["qty"][trade] = rng.lognormal(-3.0, 1.5, nt)

    mark = choice == 3
    nm = int(mark.sum())
    ev["kind"][mark] = MARK
    ev["px"][mark] = mid_ticks[mark] * tick
    ev["qty"][mark] = 1e-4 + np.cumsum(rng.normal(0.0, 2e-6, nm))
    ev["seq"][mark] = ts[mark] // 1_000_000 + 3_600_000

    oi = choice == 4
    ev["kind"][oi] = OPEN_INTEREST
    ev["px"][oi] = 0.0
    ev["qty"][oi] = 80_000.0 + np.cumsum(rng.normal(0.0, 20.0, int(oi.sum())))

    liq = choice == 5
    nl = int(liq.sum())
    ev["kind"][liq] = LIQUIDATION | np.where(rng.random(nl) < 0.5, BUY, SELL)
    ev["px"][liq] = mid_ticks[liq] * tick
    ev["qty"][liq] = rng.exponential(0.5, nl)

    top_event_index = np.flatnonzero(is_top).astype(np.int64)
    tops = _tops(rng, top_event_index, ev, mid_ticks, levels, tick, p_unsynced_start, p_crossed)
    return SyntheticStream(ev, tops, top_event_index)


def _tops(
    rng: np.random.Generator,
    idx: npt.NDArray[np.int64],
    ev: EventArray,
    mid_ticks: npt.NDArray[np.int64],
    levels: int,
    tick: float,
    p_unsynced_start: float,
    p_crossed: float,
) -> EventArray:
    n = idx.shape[0]
    tops = np.zeros(n, book_top_dtype(levels))
    tops["symbol"] = ev["symbol"][idx]
    tops["exchange_ts"] = ev["exchange_ts"][idx]
    tops["ingest_ts"] = ev["ingest_ts"][idx]
    tops["seq"] = ev["seq"][idx]
    spread = rng.integers(1, 4, n)
    bid1 = mid_ticks[idx] - spread // 2
    ask1 = bid1 + spread
    gap_choices = np.array([1, 1, 1, 1, 2, 3])
    bid_off = np.cumsum(rng.choice(gap_choices, size=(n, levels)), axis=1) - gap_choices[0]
    ask_off = np.cumsum(rng.choice(gap_choices, size=(n, levels)), axis=1) - gap_choices[0]
    bid_px = (bid1[:, None] - bid_off) * tick
    ask_px = (ask1[:, None] + ask_off) * tick
    bid_qty = rng.lognormal(0.0, 1.0, (n, levels))
    ask_qty = rng.lognormal(0.0, 1.0, (n, levels))
    # thin books: the deepest few levels missing
    thin = np.asarray(rng.random(n) < 0.02)
    cut = np.asarray(rng.integers(1, levels + 1, n))
    lvl = np.arange(levels)[None, :]
    missing = thin[:, None] & (lvl >= cut[:, None])
    for arr in (bid_px, bid_qty, ask_px, ask_qty):
        arr[missing] = np.nan
    tops["bid_px"] = bid_px
    tops["bid_qty"] = bid_qty
    tops["ask_px"] = ask_px
    tops["ask_qty"] = ask_qty
    # unsynced runs of 1..8 tops
    synced = np.ones(n, np.uint8)
    for start in np.flatnonzero(rng.random(n) < p_unsynced_start):  # a handful of runs, not per event
        synced[start : start + int(rng.integers(1, 9))] = 0
    tops["synced"] = synced
    crossed = rng.random(n) < p_crossed
    tops["crossed"] = crossed
    tops["ask_px"][crossed, 0] = tops["bid_px"][crossed, 0] - tick
    tops["degraded"] = rng.random(n) < 0.01
    return tops
