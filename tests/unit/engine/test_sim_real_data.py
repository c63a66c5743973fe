"""The matcher on the real USD-M BTCUSDT capture (345 s), checked against independent replays.

- A passive quoting loop (every second of local time: cancel, then post-only quotes at the touch) runs end to
  end, and every passive fill is recomputed from the raw TRADE events and an engine ``BookSet`` replay: the
  order's queue starts at the ``queue_ahead`` its OPEN report recorded at arrival, trades at its price (by the
  opposite takers) consume it, depth at its price clips it (risk-averse), the excess fills it, and a trade
  through its price fills it. Fills must match that reference exactly, order by order and time by time.
- A taker loop's market buys fill exactly the ask levels a ``BookSet`` holds at the order's arrival.
- The book tops handed to the strategy (``Step.tops``) arrive no earlier than their receive time and are, in
  sequence, exactly an engine ``BookSet`` replay in exchange order, re-sorted by receive time; with and without
  live orders (the matcher feeds the book per message, or in runs while nothing rests).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from tradeplane.engine.book import BookConfig, BookSet
from tradeplane.engine.events import DEPTH, KIND_MASK, LAST_IN_MSG, SNAPSHOT, TRADE, SymbolTable
from tradeplane.engine.events import SELL as TAKER_SELL
from tradeplane.engine.replay import read_capture
from tradeplane.engine.sim import orders as O  # noqa: N812
from tradeplane.engine.sim.latency import ConstantLatency, align_local_clock
from tradeplane.engine.sim.matching import SimConfig, Simulator, exchange_order, new_order

CAPTURE = Path("/work/shared/data/binance/ws/usdm_btcusdt_20240808.jsonl.gz")
TICK = 0.1
MS = 1_000_000

pytestmark = pytest.mark.skipif(not CAPTURE.exists(), reason="capture not available")


@pytest.fixture(scope="module")
def events() -> npt.NDArray[np.void]:
    ev = read_capture(CAPTURE, SymbolTable()).events
    return align_local_clock(ev, 1 * MS)  # the recorder's clock ran 1.27 s behind Binance


def _ticks(px: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    return np.rint(px / TICK).astype(np.int64)


@pytest.fixture(scope="module")
def quoting(events: npt.NDArray[np.void]) -> Simulator:
    sim = Simulator(events, SimConfig(tick_sizes={0: TICK}, maker_bps={0: -0.5}),
                    entry_latency=ConstantLatency(8 * MS), response_latency=ConstantLatency(6 * MS))  # fmt: skip
    start, end = int(events["ingest_ts"].min()), int(events["ingest_ts"].max())
    oid = 0
    for t in range(start + 2_000 * MS, end, 1_000 * MS):
        sim.run_until(t)
        live = sim.live_orders()
        sim.cancel(live["order_id"])
        bid, ask = sim.depth.best_ticks(0)
        if bid is None or ask is None or not sim.depth.is_synced(0):
            continue
        inside = bid + 1 if ask - bid > 1 else bid  # 1 tick inside when the spread allows, else at the touch
        oid += 2
        sim.submit(np.concatenate([new_order(oid, O.BUY, 0.01, price_tick=inside, tif=O.POST_ONLY),
                                   new_order(oid + 1, O.SELL, 0.01, price_tick=ask, tif=O.POST_ONLY)]))  # fmt: skip
    sim.run_to_end()
    return sim


def test_quoting_runs_end_to_end(quoting: Simulator) -> None:
    f, rep = quoting.fills, quoting.reports
    opened = rep[rep["status"] == O.OPEN]
    assert opened.shape[0] > 500 and f.shape[0] > 20
    assert np.all(f["maker"] == 1) and np.all(f["fee"] < 0)
    assert np.all(f["local_ts"] == f["exch_ts"] + 6 * MS)
    assert np.all(opened["exch_ts"] == opened["local_ts"] + 8 * MS)
    assert np.all(rep["queue_ahead"] >= 0)
    assert quoting.live_orders().shape[0] == 0 or quoting.exchange_ts > 0


def test_every_passive_fill_is_backed_by_trades_after_the_queue(events: npt.NDArray[np.void],
                                                               quoting: Simulator) -> None:  # fmt: skip
    rep, fills = quoting.reports, quoting.fills
    opened = rep[rep["status"] == O.OPEN]
    last = {int(r["order_id"]): int(r["update_ts"]) for r in rep}  # terminal (or last) status change
    ords = sorted(
        (int(o["exch_ts"]), int(o["order_id"]), int(o["side"]), int(o["price_tick"]), float(o["qty"]),
         float(o["queue_ahead"]), last[int(o["order_id"])] if last[int(o["order_id"])] > o["exch_ts"] else 2**62)
        for o in opened
    )  # fmt: skip
    ex = events[exchange_order(events)]
    typ = ex["kind"] & KIND_MASK
    cuts = np.flatnonzero(((typ == DEPTH) | (typ == SNAPSHOT)) & ((ex["kind"] & LAST_IN_MSG) != 0)) + 1
    trades = np.flatnonzero(typ == TRADE)
    t_tick, t_qty, t_ts = _ticks(ex["px"][trades]), ex["qty"][trades], ex["exchange_ts"][trades]
    t_sell = (ex["kind"][trades] & TAKER_SELL) != 0
    ets = ex["exchange_ts"]
    books = BookSet(BookConfig(levels=1, tick_sizes={0: TICK}))
    state: dict[int, list[float]] = {}  # order id -> [queue, filled]
    ref: dict[int, list[tuple[int, float]]] = {}
    nxt, ti, start = 0, 0, 0
    live: list[tuple[int, int, int, int, float, float, int]] = []

    def admit(ts: int) -> None:
        nonlocal nxt, live
        while nxt < len(ords) and ords[nxt][0] < ts:
            o = ords[nxt]
            live.append(o)
            state[o[1]] = [o[5], 0.0]
            nxt += 1
        live = [o for o in live if o[6] >= ts and state[o[1]][1] < o[4] - 1e-12]

    for end in [*cuts.tolist(), ex.shape[0]]:
        while ti < trades.shape[0] and trades[ti] < end:
            admit(int(t_ts[ti]))
            for _, oid, side, p, qty, _, _ in live:
                s = state[oid]
                if (side == O.BUY and not t_sell[ti]) or (side == O.SELL and t_sell[ti]):
                    continue
                through = t_tick[ti] < p if side == O.BUY else t_tick[ti] > p
                f = 0.0
                if through:
                    f = qty - s[1]
                elif t_tick[ti] == p:
                    f = max(0.0, t_qty[ti] - s[0])
                    s[0] = max(0.0, s[0] - t_qty[ti])
                f = min(f, qty - s[1])
                if f > 1e-12:
                    s[1] += f
                    ref.setdefault(oid, []).append((int(t_ts[ti]), f))
            ti += 1
        books.apply(ex[start:end])
        if end > start:
            admit(int(ets[end - 1]))
        if end > start and live:
            lv = books.levels(0)
            bids = dict(zip(_ticks(lv.bid_px).tolist(), lv.bid_qty.tolist(), strict=True))
            asks = dict(zip(_ticks(lv.ask_px).tolist(), lv.ask_qty.tolist(), strict=True))
            for _, oid, side, p, _, _, _ in live:
                shown = (bids if side == O.BUY else asks).get(p, 0.0)
                state[oid][0] = min(state[oid][0], shown)
        start = end

    got: dict[int, list[tuple[int, float]]] = {}
    for f in fills:
        got.setdefault(int(f["order_id"]), []).append((int(f["exch_ts"]), float(f["qty"])))
    assert set(got) == set(ref) and len(ref) > 20
    for oid, want in ref.items():
        assert [t for t, _ in got[oid]] == [t for t, _ in want], oid
        assert [q for _, q in got[oid]] == pytest.approx([q for _, q in want]), oid
    # and each passive fill is at its order's price, where (or through which) a trade printed at that time
    by_id = {int(o["order_id"]): o for o in opened}
    for f in fills:
        o = by_id[int(f["order_id"])]
        assert _ticks(np.array([f["px"]]))[0] == o["price_tick"]
        at = t_ts == f["exch_ts"]
        if o["side"] == O.BUY:
            assert np.any(at & t_sell & (t_tick <= o["price_tick"]))
        else:
            assert np.any(at & ~t_sell & (t_tick >= o["price_tick"]))


def test_market_buys_fill_at_the_asks_the_book_held_at_arrival(events: npt.NDArray[np.void]) -> None:
    sim = Simulator(events, SimConfig(tick_sizes={0: TICK}, taker_bps={0: 4.0}),
                    entry_latency=ConstantLatency(12 * MS))  # fmt: skip
    start, end = int(events["ingest_ts"].min()), int(events["ingest_ts"].max())
    for oid, t in enumerate(range(start + 3_000 * MS, end, 5_000 * MS), start=1):
        sim.run_until(t)
        sim.submit(new_order(oid, O.BUY, 1.5 + 0.5 * (oid % 4), type=O.MARKET))
    sim.run_to_end()
    rep, fills = sim.reports, sim.fills
    ex = events[exchange_order(events)]
    books = BookSet(BookConfig(levels=1, tick_sizes={0: TICK}))
    pos = 0
    checked = 0
    for r in rep[np.argsort(rep["exch_ts"], kind="stable")]:
        k = int(np.searchsorted(ex["exchange_ts"], r["exch_ts"], side="right"))
        books.apply(ex[pos:k])
        pos = k
        lv = books.levels(0)
        mine = fills[fills["order_id"] == r["order_id"]]
        want_px, want_q, left = [], [], float(r["qty"])
        for px, q in zip(lv.ask_px.tolist(), lv.ask_qty.tolist(), strict=True):
            if left <= 1e-12:
                break
            take = min(q, left)
            want_px.append(px)
            want_q.append(take)
            left -= take
        assert mine["px"].tolist() == want_px
        assert mine["qty"].tolist() == pytest.approx(want_q)
        assert np.all(mine["exch_ts"] == r["exch_ts"]) and np.all(mine["maker"] == 0)
        assert mine["fee"] == pytest.approx(mine["px"] * mine["qty"] * 4e-4)
        checked += 1
    assert checked > 50 and (fills["px"] > 0).all()


@pytest.mark.parametrize("quote", [False, True], ids=["no_orders", "quoting"])
def test_tops_are_the_book_as_received(events: npt.NDArray[np.void], quote: bool) -> None:
    sim = Simulator(events, SimConfig(tick_sizes={0: TICK}), entry_latency=ConstantLatency(8 * MS))
    start, end = int(events["ingest_ts"].min()), int(events["ingest_ts"].max())
    got: list[npt.NDArray[np.void]] = []
    prev, oid, quotes = -(2**62), 0, 0
    for k, t in enumerate(range(start, end, 97 * MS)):  # a step not aligned with the data's 100 ms cadence
        tops = sim.run_until(t).tops
        assert np.all(tops["ingest_ts"] <= t) and np.all(tops["ingest_ts"] > prev)
        assert np.all(np.diff(tops["ingest_ts"]) >= 0)
        got.append(tops)
        prev = t
        touch = sim.local_top(0)
        if tops.shape[0]:
            last = tops[-1]
            want = (last["bid_px"][0], last["bid_qty"][0], last["ask_px"][0], last["ask_qty"][0])
            assert np.array_equal(touch, want, equal_nan=True)
        if quote and k % 10 == 0:  # re-quote at the touch the strategy has seen, about once a second
            sim.cancel(sim.live_orders()["order_id"])
            if not np.isnan(touch[0]) and not np.isnan(touch[2]):
                oid += 2
                quotes += 1
                sim.submit(np.concatenate([
                    new_order(oid, O.BUY, 0.01, price_tick=round(touch[0] / TICK), tif=O.POST_ONLY),
                    new_order(oid + 1, O.SELL, 0.01, price_tick=round(touch[2] / TICK), tif=O.POST_ONLY),
                ]))  # fmt: skip
    got.append(sim.run_to_end().tops)
    mine = np.concatenate(got)
    ex = events[exchange_order(events)]
    ref = BookSet(BookConfig(levels=5, tick_sizes={0: TICK})).apply(ex).tops
    ref = ref[np.argsort(ref["ingest_ts"], kind="stable")]
    assert mine.shape[0] == ref.shape[0] > 5000 and mine.dtype == ref.dtype
    for name in ("symbol", "synced", "exchange_ts", "ingest_ts"):
        assert np.array_equal(mine[name], ref[name]), name
    for name in ("bid_px", "bid_qty", "ask_px", "ask_qty"):
        assert np.array_equal(mine[name], ref[name], equal_nan=True), name
    if quote:
        assert quotes > 300 and sim.reports.shape[0] > 1000
