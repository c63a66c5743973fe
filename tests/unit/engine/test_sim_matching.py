"""Matching engine on constructed books: every order type, the queue models against hand computations, the two
clocks (entry and response latency), unsynced books, determinism, and hypothesis properties."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradeplane.engine import events as E  # noqa: N812 (short names keep the tapes readable)
from tradeplane.engine.sim import orders as O  # noqa: N812
from tradeplane.engine.sim.latency import (
    ConstantLatency,
    RecordedLatency,
    SampledLatency,
    align_local_clock,
)
from tradeplane.engine.sim.matching import OrderTableFullError, SimConfig, Simulator, new_order
from tradeplane.engine.sim.queue import QueueModel, on_cancel

from .sim_tape import Tape


def book(ts: int = 10) -> Tape:
    return Tape().snapshot(ts, {99.0: 5.0, 98.0: 4.0, 97.0: 10.0}, {101.0: 3.0, 102.0: 2.0, 104.0: 6.0})


def make(tape: Tape, **kw: object) -> Simulator:
    cfg = SimConfig(tick_sizes={0: 1.0}, maker_bps={0: -1.0}, taker_bps={0: 5.0})
    return Simulator(tape.events(), cfg, **kw)  # type: ignore[arg-type]


def status_of(sim: Simulator, oid: int) -> tuple[int, int]:
    r = sim.reports
    row = r[r["order_id"] == oid][-1]
    return int(row["status"]), int(row["reason"])


def filled(sim: Simulator, oid: int) -> float:
    f = sim.fills
    return float(f["qty"][f["order_id"] == oid].sum())


# --- takers -------------------------------------------------------------------------------------------------------


def test_market_walks_levels_then_expires_the_rest() -> None:
    sim = make(book().trade(1000, 50.0, 0.0, True))
    sim.run_until(20)
    sim.submit(new_order(1, O.BUY, 4.0, type=O.MARKET))
    sim.run_to_end()
    f = sim.fills
    assert f["px"].tolist() == [101.0, 102.0] and f["qty"].tolist() == [3.0, 1.0]
    assert np.all(f["maker"] == 0)
    assert f["fee"].tolist() == pytest.approx([101 * 3 * 5e-4, 102 * 1 * 5e-4])
    sim2 = make(book())
    sim2.run_until(20)
    sim2.submit(new_order(2, O.BUY, 20.0, type=O.MARKET))
    sim2.run_to_end()
    assert filled(sim2, 2) == 11.0
    assert status_of(sim2, 2) == (O.EXPIRED, O.REASON_NO_LIQUIDITY)


def test_limit_crossing_takes_up_to_its_price_then_rests() -> None:
    sim = make(book())
    sim.run_until(20)
    sim.submit(new_order(1, O.BUY, 6.0, price_tick=102))
    sim.run_to_end()
    assert sim.fills["px"].tolist() == [101.0, 102.0] and filled(sim, 1) == 5.0
    rep = sim.reports[-1]
    assert rep["status"] == O.PARTIALLY_FILLED and rep["queue_ahead"] == 0.0
    assert sim.live_orders()["order_id"].tolist() == [1]


def test_post_only_rejected_if_it_would_cross_else_rests() -> None:
    sim = make(book())
    sim.run_until(20)
    sim.submit(new_order(1, O.BUY, 1.0, price_tick=101, tif=O.POST_ONLY))
    sim.submit(new_order(2, O.BUY, 1.0, price_tick=100, tif=O.POST_ONLY))
    sim.run_to_end()
    assert status_of(sim, 1) == (O.REJECTED, O.REASON_POST_ONLY_WOULD_CROSS)
    assert status_of(sim, 2) == (O.OPEN, O.REASON_NONE)
    assert sim.fills.shape[0] == 0


def test_ioc_partial_then_expire() -> None:
    sim = make(book())
    sim.run_until(20)
    sim.submit(new_order(1, O.SELL, 8.0, price_tick=98, tif=O.IOC))
    sim.run_to_end()
    assert sim.fills["px"].tolist() == [99.0, 98.0] and filled(sim, 1) == 8.0
    sim = make(book())
    sim.run_until(20)
    sim.submit(new_order(2, O.SELL, 12.0, price_tick=98, tif=O.IOC))
    sim.run_to_end()
    assert filled(sim, 2) == 9.0 and status_of(sim, 2)[0] == O.EXPIRED
    assert sim.live_orders().shape[0] == 0


def test_fok_rejects_without_any_fill_or_fills_fully() -> None:
    sim = make(book())
    sim.run_until(20)
    sim.submit(new_order(1, O.BUY, 6.0, price_tick=102, tif=O.FOK))
    sim.submit(new_order(2, O.BUY, 5.0, price_tick=102, tif=O.FOK))
    sim.run_to_end()
    assert status_of(sim, 1) == (O.REJECTED, O.REASON_FOK_NOT_FILLABLE) and filled(sim, 1) == 0.0
    assert status_of(sim, 2)[0] == O.FILLED and filled(sim, 2) == 5.0


def test_reduce_only_rejects_when_flat_and_clips_to_the_position() -> None:
    sim = make(book())
    sim.run_until(20)
    sim.submit(new_order(1, O.SELL, 1.0, type=O.MARKET, flags=O.REDUCE_ONLY))
    sim.submit(new_order(2, O.BUY, 2.0, type=O.MARKET))
    sim.submit(new_order(3, O.SELL, 5.0, type=O.MARKET, flags=O.REDUCE_ONLY))
    sim.submit(new_order(4, O.SELL, 1.0, type=O.MARKET, flags=O.REDUCE_ONLY))
    sim.run_to_end()
    assert status_of(sim, 1) == (O.REJECTED, O.REASON_REDUCE_ONLY)
    assert filled(sim, 3) == 2.0 and status_of(sim, 3)[0] == O.FILLED
    assert sim.reports[sim.reports["order_id"] == 3]["qty"][-1] == 2.0
    assert status_of(sim, 4) == (O.REJECTED, O.REASON_REDUCE_ONLY)
    assert sim.position[0] == 0.0


def test_stop_market_triggers_on_a_trade_at_or_through_the_stop() -> None:
    tape = book().trade(30, 99.0, 1.0, False).trade(40, 98.0, 1.0, False)
    sim = make(tape)
    sim.run_until(20)
    sim.submit(new_order(1, O.SELL, 6.0, type=O.STOP_MARKET, stop_tick=98))
    sim.run_until(35)
    assert filled(sim, 1) == 0.0 and status_of(sim, 1)[0] == O.OPEN
    sim.run_to_end()
    f = sim.fills
    assert f["px"].tolist() == [99.0, 98.0] and f["qty"].tolist() == [5.0, 1.0] and f["exch_ts"][0] == 40
    assert status_of(sim, 1)[0] == O.FILLED


def test_oco_first_fill_expires_the_sibling_never_both() -> None:
    # a buy at 99 and a sell at 101 in one OCO; trades later hit both prices
    tape = book().trade(30, 98.0, 1.0, False).trade(40, 102.0, 5.0, True)
    sim = make(tape)
    sim.run_until(20)
    sim.submit(new_order(1, O.BUY, 1.0, price_tick=99, oco_id=7))
    sim.submit(new_order(2, O.SELL, 1.0, price_tick=101, oco_id=7))
    sim.run_to_end()
    assert filled(sim, 1) == 1.0 and filled(sim, 2) == 0.0
    assert status_of(sim, 2) == (O.EXPIRED, O.REASON_OCO_SIBLING)


def test_oco_cancel_of_one_leg_cancels_the_other() -> None:
    # both legs rest; cancelling the buy cancels the sell (Binance: a cancel of one leg cancels the list), so the
    # later trade through the sell's price fills nothing; cancelling the sell afterwards finds nothing live
    tape = book().trade(60, 102.0, 5.0, True)
    sim = make(tape, response_latency=ConstantLatency(3))
    sim.run_until(20)
    sim.submit(new_order(1, O.BUY, 1.0, price_tick=98, oco_id=7))
    sim.submit(new_order(2, O.SELL, 1.0, price_tick=101, oco_id=7))
    sim.submit(new_order(3, O.SELL, 1.0, price_tick=102))  # not in the list: untouched
    sim.run_until(30)
    sim.cancel([1])
    step = sim.run_until(33)
    assert [(int(r["order_id"]), int(r["status"]), int(r["reason"])) for r in step.reports] == [
        (1, O.CANCELED, O.REASON_USER_CANCEL),
        (2, O.CANCELED, O.REASON_OCO_SIBLING),
    ]
    assert step.report_ts.tolist() == [33, 33] and step.reports["update_ts"].tolist() == [30, 30]
    assert sim.live_orders()["order_id"].tolist() == [3]
    sim.cancel([2])
    sim.run_to_end()
    assert sim.fills["order_id"].tolist() == [3] and sim.cancel_misses == 1


def test_oco_cancel_also_cancels_a_sibling_still_in_flight() -> None:
    # the buy arrives at 25; the sell is sent at 40 with 50 ns of entry latency, and the cancel of the buy at 41
    # with 5: the cancel reaches the exchange first, and the sell is cancelled before it ever arrives
    sim = make(book().trade(120, 101.0, 5.0, True), entry_latency=RecordedLatency([0, 40, 41], [5, 50, 5]))
    sim.run_until(20)
    sim.submit(new_order(1, O.BUY, 1.0, price_tick=98, oco_id=4))
    sim.run_until(40)
    sim.submit(new_order(2, O.SELL, 1.0, price_tick=101, oco_id=4))
    sim.run_until(41)
    sim.cancel([1])
    sim.run_until(60)
    assert status_of(sim, 1) == (O.CANCELED, O.REASON_USER_CANCEL)
    assert status_of(sim, 2) == (O.CANCELED, O.REASON_OCO_SIBLING)
    rep2 = sim.reports[sim.reports["order_id"] == 2]
    assert rep2.shape[0] == 1 and rep2["update_ts"][0] == 46 and rep2["exch_ts"][0] == 90  # ended before arrival
    sim.run_to_end()  # its arrival at 90 is skipped: it never rests, the trade at its price fills nothing
    rep = sim.reports
    assert list(zip(rep["order_id"].tolist(), rep["status"].tolist(), strict=True)) == [
        (1, O.OPEN),
        (1, O.CANCELED),
        (2, O.CANCELED),
    ]
    assert sim.fills.shape[0] == 0 and sim.live_orders().shape[0] == 0 and sim.cancel_misses == 0


# --- queue position ------------------------------------------------------------------------------------------------


def test_queue_advances_by_trades_and_partial_passive_fills() -> None:
    tape = book().trade(30, 99.0, 2.0, False).trade(40, 99.0, 4.0, False).trade(50, 99.0, 1.5, True)
    tape.trade(60, 99.0, 10.0, False)
    sim = make(tape)
    sim.run_until(20)
    sim.submit(new_order(1, O.BUY, 3.0, price_tick=99))
    sim.run_until(35)
    assert sim.orders[sim.orders["order_id"] == 1]["queue_ahead"][0] == 3.0  # 5 shown − 2 traded
    sim.run_until(55)  # 4 more: 3 consume the queue, 1 fills; a taker *buy* at 99 does not touch bids
    f = sim.fills
    assert f["qty"].tolist() == [1.0] and f["px"][0] == 99.0 and f["maker"][0] == 1
    assert f["fee"][0] == pytest.approx(-99 * 1e-4)
    sim.run_to_end()
    assert filled(sim, 1) == 3.0 and status_of(sim, 1)[0] == O.FILLED


def test_trade_through_fills_fully() -> None:
    sim = make(book().trade(30, 98.0, 0.5, False))
    sim.run_until(20)
    sim.submit(new_order(1, O.BUY, 3.0, price_tick=99))
    sim.run_to_end()
    assert filled(sim, 1) == 3.0 and sim.fills["px"][0] == 99.0


def test_risk_averse_cancellations_only_clip() -> None:
    tape = book().diff(30, bids={99.0: 4.0}).diff(40, bids={99.0: 9.0}).diff(50, bids={99.0: 2.0})
    sim = make(tape)
    sim.run_until(20)
    sim.submit(new_order(1, O.BUY, 1.0, price_tick=99))
    qa = []
    for t in (35, 45, 55):
        sim.run_until(t)
        qa.append(float(sim.orders[sim.orders["order_id"] == 1]["queue_ahead"][0]))
    assert qa == [4.0, 4.0, 2.0]


def test_probabilistic_cancellation_split_matches_hand_computation() -> None:
    # arrive behind 5; level grows to 8 (3 behind us); 4 cancelled (8 → 4); n = 2:
    # share ahead = 5²/(5²+3²) = 25/34 → front = 5 − 4·25/34; behind part 4·9/34 ≤ 3, no spill
    tape = book().diff(30, bids={99.0: 8.0}).diff(40, bids={99.0: 4.0})
    sim = make(tape, queue_model=QueueModel.power_prob(2.0))
    sim.run_until(20)
    sim.submit(new_order(1, O.BUY, 1.0, price_tick=99))
    sim.run_to_end()
    expect = 5.0 - 4.0 * 25.0 / 34.0
    assert sim.orders[sim.orders["order_id"] == 1]["queue_ahead"][0] == pytest.approx(expect)
    # a decrease explained by a trade is not a cancellation: trade 2 at 99, then the level shows 5 → 3
    tape = book().trade(30, 99.0, 2.0, False).diff(31, bids={99.0: 3.0})
    sim = make(tape, queue_model=QueueModel.power_prob(2.0))
    sim.run_until(20)
    sim.submit(new_order(1, O.BUY, 1.0, price_tick=99))
    sim.run_to_end()
    assert sim.orders[sim.orders["order_id"] == 1]["queue_ahead"][0] == pytest.approx(3.0)


def test_on_cancel_spills_over_and_clips() -> None:
    # front 1, back 1 of level 2, 2 cancelled: everything goes, front 0
    assert on_cancel(1, 1.0, 1.0, 2.0, 0.0, 2.0) == 0.0
    assert on_cancel(0, 1.0, 5.0, 6.0, 3.0, 3.0) == 3.0
    assert on_cancel(1, 1.0, 4.0, 8.0, 6.0, 2.0) == pytest.approx(3.0)


# --- clocks --------------------------------------------------------------------------------------------------------


def test_entry_latency_sees_the_book_at_arrival_not_at_send() -> None:
    tape = book().diff(50, asks={101.0: 0.0, 102.0: 0.0, 103.0: 5.0})
    for lat, px in ((2, 101.0), (10, 103.0)):
        sim = make(tape, entry_latency=ConstantLatency(lat))
        step = sim.run_until(45)
        assert step.events["exchange_ts"].max() == 10  # the strategy has not seen the change
        sim.submit(new_order(1, O.BUY, 1.0, type=O.MARKET))
        sim.run_to_end()
        assert sim.fills["px"].tolist() == [px] and sim.fills["exch_ts"][0] == 45 + lat


def test_response_latency_delays_reports_and_fills() -> None:
    sim = make(book().trade(100, 0.0, 0.0, True), entry_latency=ConstantLatency(5),
               response_latency=ConstantLatency(7))  # fmt: skip
    sim.run_until(20)
    sim.submit(new_order(1, O.BUY, 1.0, type=O.MARKET))
    step = sim.run_until(31)
    assert step.fills.shape[0] == 0 and step.reports.shape[0] == 0  # done at 25, known at 32
    step = sim.run_until(32)
    assert step.fills["local_ts"].tolist() == [32] and step.fills["exch_ts"].tolist() == [25]
    assert step.report_ts.tolist() == [32]


def test_feed_latency_controls_what_the_strategy_sees() -> None:
    ev = book().events()
    ev["ingest_ts"] = ev["exchange_ts"] - 50  # recorder clock behind the venue
    with pytest.raises(ValueError, match="align_local_clock"):
        Simulator(ev, SimConfig(tick_sizes={0: 1.0}))
    ev2 = align_local_clock(ev, 3)
    assert np.all(ev2["ingest_ts"] - ev2["exchange_ts"] == 3)
    sim = Simulator(ev2, SimConfig(tick_sizes={0: 1.0}))
    assert sim.run_until(12).events.shape[0] == 0
    assert sim.run_until(13).events.shape[0] == 6


def test_latency_models() -> None:
    rec = RecordedLatency([10, 20], [5, 9])
    assert rec.draw(np.array([0, 10, 19, 25])).tolist() == [5, 5, 5, 9]
    a = SampledLatency.lognormal(1e6, 0.5, seed=3, block=7).draw(np.zeros(20, np.int64))
    b = SampledLatency.lognormal(1e6, 0.5, seed=3, block=7).draw(np.zeros(20, np.int64))
    assert np.array_equal(a, b) and np.all(a > 0)


# --- book tops: the book as the strategy could have seen it ---------------------------------------------------------


def test_tops_wait_for_their_receive_time_and_local_top_is_the_last_one_seen() -> None:
    ev = book().diff(30, asks={101.0: 1.0}).events()
    ev["ingest_ts"][ev["exchange_ts"] == 30] = 50  # the diff is received 20 ns after it happened
    sim = Simulator(ev, SimConfig(tick_sizes={0: 1.0}))
    step = sim.run_until(10)  # the snapshot happened at 10 and is received at 11
    assert step.tops.shape[0] == 0 and step.tops.dtype == E.book_top_dtype(5)
    assert np.isnan(sim.local_top(0)).all()
    top = sim.run_until(11).tops
    assert top.shape[0] == 1 and top["synced"][0] == 1 and top["exchange_ts"][0] == 10 and top["ingest_ts"][0] == 11
    assert top["bid_px"][0, :3].tolist() == [99.0, 98.0, 97.0] and top["ask_qty"][0, :3].tolist() == [3.0, 2.0, 6.0]
    assert np.isnan(top["bid_px"][0, 3:]).all()  # beyond the book's depth
    assert sim.local_top(0) == (99.0, 5.0, 101.0, 3.0)
    step = sim.run_until(45)  # the exchange applied the diff at 30; the strategy has not received it
    assert step.tops.shape[0] == 0 and sim.exchange_ts == 30 and sim.local_top(0) == (99.0, 5.0, 101.0, 3.0)
    assert sim.depth.level_qty(0, False, 101) == 1.0
    assert sim.run_until(50).tops["exchange_ts"].tolist() == [30] and sim.local_top(0) == (99.0, 5.0, 101.0, 1.0)
    with pytest.raises(ValueError, match="not configured"):
        sim.local_top(1)


def test_tops_come_in_receive_order_and_unsynced_tops_are_nan() -> None:
    tape = book().diff(30, bids={98.0: 1.0}).diff(40, bids={97.0: 2.0}).diff(50, asks={102.0: 9.0}, pu=3)
    ev = tape.events()  # the last diff breaks the pu chain
    ev["ingest_ts"][ev["exchange_ts"] == 30] = 60  # received after the later diffs
    sim = Simulator(ev, SimConfig(tick_sizes={0: 1.0}))
    assert sim.run_until(35).tops["exchange_ts"].tolist() == [10]
    tops = sim.run_until(55).tops
    assert tops["exchange_ts"].tolist() == [40, 50] and tops["synced"].tolist() == [1, 0]
    assert tops["bid_qty"][0, :3].tolist() == [5.0, 1.0, 2.0]  # the exchange book after both earlier diffs
    assert np.isnan(tops["bid_px"][1]).all() and np.isnan(sim.local_top(0)).all()
    last = sim.run_to_end().tops
    assert last["exchange_ts"].tolist() == [30] and sim.local_top(0) == (99.0, 5.0, 101.0, 3.0)


def test_tops_buffer_grows_and_steps_deliver_the_same_rows() -> None:
    tape = book()
    for k in range(40):
        tape.diff(20 + 5 * k, bids={98.0: 1.0 + k}, asks={102.0: 2.0 + k})
    whole = Simulator(tape.events(), SimConfig(tick_sizes={0: 1.0})).run_to_end().tops
    small = Simulator(tape.events(), SimConfig(tick_sizes={0: 1.0}, top_capacity=2, top_levels=2))
    parts = [small.run_until(t).tops for t in range(15, 230, 7)] + [small.run_to_end().tops]
    stepped = np.concatenate(parts)
    assert whole.shape[0] == 41 and stepped.dtype == E.book_top_dtype(2)
    assert stepped["exchange_ts"].tolist() == whole["exchange_ts"].tolist()
    assert np.array_equal(stepped["ask_qty"], whole["ask_qty"][:, :2])
    with pytest.raises(ValueError, match="top_levels"):
        Simulator(tape.events(), SimConfig(tick_sizes={0: 1.0}, top_levels=0))


# --- sync, capacity, determinism -------------------------------------------------------------------------------------


def test_unsynced_book_rejects_takers_and_fills_nothing() -> None:
    tape = (
        book().diff(25, bids={98.0: 3.0}).diff(30, bids={99.0: 4.0}, pu=55).trade(40, 95.0, 5.0, False)
    )  # pu breaks the chain
    sim = make(tape)
    sim.run_until(20)
    sim.submit(new_order(1, O.BUY, 1.0, price_tick=99))
    sim.run_until(35)
    assert not sim.depth.is_synced(0)
    sim.submit(new_order(2, O.BUY, 1.0, type=O.MARKET))
    sim.submit(new_order(3, O.SELL, 1.0, price_tick=105, tif=O.IOC))
    sim.run_to_end()
    assert status_of(sim, 2) == (O.REJECTED, O.REASON_BOOK_NOT_SYNCED)
    assert status_of(sim, 3) == (O.REJECTED, O.REASON_BOOK_NOT_SYNCED)
    assert sim.fills.shape[0] == 0  # the trade through order 1's price came while unsynced


def test_order_table_full_is_a_clear_error() -> None:
    sim = Simulator(book().events(), SimConfig(tick_sizes={0: 1.0}, order_capacity=2))
    sim.run_until(20)
    sim.submit(np.concatenate([new_order(1, O.BUY, 1.0, price_tick=90), new_order(2, O.BUY, 1.0, price_tick=90)]))
    with pytest.raises(OrderTableFullError):
        sim.submit(new_order(3, O.BUY, 1.0, price_tick=90))


def _quote_run(seed: int) -> npt.NDArray[np.void]:
    rng = np.random.default_rng(0)
    tape = book()
    for k in range(300):
        tape.trade(20 + 10 * k, float(rng.choice([98.0, 99.0, 101.0, 102.0])), float(rng.uniform(0.1, 3)),
                   bool(rng.integers(2)))  # fmt: skip
    sim = make(tape, entry_latency=SampledLatency.lognormal(15, 0.8, seed, block=16),
               response_latency=SampledLatency.lognormal(15, 0.8, seed + 1, block=16))  # fmt: skip
    oid = 0
    for t in range(15, 3000, 40):
        sim.run_until(t)
        sim.cancel(sim.live_orders()["order_id"])
        oid += 2
        sim.submit(np.concatenate([new_order(oid, O.BUY, 1.0, price_tick=99), new_order(oid + 1, O.SELL, 1.0,
                                                                                        price_tick=101)]))  # fmt: skip
    sim.run_to_end()
    return sim.fills


def test_same_data_and_seed_give_identical_fills() -> None:
    a, b, c = _quote_run(1), _quote_run(1), _quote_run(2)
    assert a.shape[0] > 10 and a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()


def test_small_output_buffers_drain_and_continue() -> None:
    rng = np.random.default_rng(1)
    tape = book()
    for k in range(200):
        tape.trade(20 + k, 98.0, float(rng.uniform(0.1, 1)), False)
    small = Simulator(tape.events(), SimConfig(tick_sizes={0: 1.0}, fill_capacity=8, report_capacity=8))
    big = make(tape)
    for sim in (small, big):
        sim.run_until(19)
        for k in range(30):
            sim.submit(new_order(k + 1, O.BUY, 1.0, price_tick=99))
        sim.run_to_end()
    assert small.fills[["order_id", "qty", "px"]].tolist() == big.fills[["order_id", "qty", "px"]].tolist()


# --- properties ----------------------------------------------------------------------------------------------------

_order = st.tuples(
    st.sampled_from([O.BUY, O.SELL]),
    st.sampled_from([(O.MARKET, O.GTC), (O.LIMIT, O.GTC), (O.LIMIT, O.IOC), (O.LIMIT, O.FOK), (O.LIMIT, O.POST_ONLY)]),
    st.integers(95, 106),
    st.floats(0.1, 8.0),
    st.integers(0, 3),  # oco group (0: none)
    st.integers(11, 400),  # send time
)
_trade = st.tuples(st.integers(11, 500), st.integers(94, 107), st.floats(0.1, 6.0), st.booleans())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_order, min_size=1, max_size=12), st.lists(_trade, max_size=40), st.integers(0, 30),
       st.sampled_from([QueueModel.risk_averse(), QueueModel.power_prob(1.5)]))  # fmt: skip
def test_properties(orders: list[tuple[int, tuple[int, int], int, float, int, int]],
                    trades: list[tuple[int, int, float, bool]], lat: int, qm: QueueModel) -> None:  # fmt: skip
    tape = book()
    diffs = sorted({t for t, *_ in trades} | {200, 300})
    for k, t in enumerate(diffs):  # the book moves a little between trades
        if k % 3 == 0:
            tape.diff(t, bids={99.0: 2.0 + k % 5}, asks={101.0: 1.0 + k % 4})
        for tt, px, q, buy in trades:
            if tt == t:
                tape.trade(t, float(px), q, buy)
    sim = make(tape, entry_latency=ConstantLatency(lat), queue_model=qm)
    ex = sim._ex  # exchange-ordered events, to rebuild the book at each arrival
    sent = sorted(enumerate(orders), key=lambda x: x[1][5])
    for k, (side, (typ, tif), px, qty, oco, t) in sent:
        if t > sim.now:
            sim.run_until(t)
        sim.submit(new_order(k + 1, side, qty, type=typ, tif=tif, price_tick=px, oco_id=oco * (k % 2 + 1)))
    sim.run_to_end()
    f, rep, all_orders = sim.fills, sim.reports, {k + 1: o for k, o in enumerate(orders)}
    assert np.all(rep["queue_ahead"] >= 0.0)
    for oid, o in all_orders.items():
        got = f["qty"][f["order_id"] == oid].sum()
        assert got <= o[3] + 1e-9
        mine = f[f["order_id"] == oid]
        if mine.shape[0] == 0:
            continue
        arrival = int(rep["exch_ts"][rep["order_id"] == oid][0])
        asks, bids = _book_at(ex, arrival)
        for row in mine:
            if row["maker"] == 1:
                assert row["px"] == o[2]
            elif o[0] == O.BUY:
                assert row["px"] in asks and row["px"] >= min(asks)
            else:
                assert row["px"] in bids and row["px"] <= max(bids)
    # OCO: two legs never both fill, unless one was only sent after its sibling had already filled
    first_fill = {int(i): int(f["exch_ts"][f["order_id"] == i].min()) for i in np.unique(f["order_id"])}
    sent_at = {int(r["order_id"]): int(r["exch_ts"]) for r in rep}
    for a, oa in all_orders.items():
        for b, ob in all_orders.items():
            ga, gb = oa[4] * ((a - 1) % 2 + 1), ob[4] * ((b - 1) % 2 + 1)
            if a < b and ga == gb != 0 and a in first_fill and b in first_fill:
                assert sent_at[b] > first_fill[a] or sent_at[a] > first_fill[b]


def _book_at(ex: npt.NDArray[np.void], t: int) -> tuple[set[float], set[float]]:
    """Independent replay: levels as of exchange time t (events with exchange_ts <= t)."""
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    for e in ex[ex["exchange_ts"] <= t]:
        k = int(e["kind"])
        if (k & E.KIND_MASK) not in (E.DEPTH, E.SNAPSHOT):
            continue
        side = bids if k & E.BID else asks
        if e["qty"] > 0:
            side[float(e["px"])] = float(e["qty"])
        else:
            side.pop(float(e["px"]), None)
    return set(asks), set(bids)
