"""Executors on constructed books through the backtest runner: immediate, maker-then-taker with the routing
table and its degrade rule, TWAP with seeded jitter, post-only re-posts, parent cancels; slippage against
hand computations; a hypothesis property that no parent ever over-fills."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradeplane.engine.sim import orders as O  # noqa: N812
from tradeplane.engine.sim.contracts import ContractSpec
from tradeplane.engine.sim.executors import (
    PARENT_CANCELED,
    PARENT_FILLED,
    STYLE_IMMEDIATE,
    STYLE_MAKER_THEN_TAKER,
    ExecutorConfig,
    TwapSpec,
)
from tradeplane.engine.sim.latency import ConstantLatency
from tradeplane.engine.sim.result import BacktestResult
from tradeplane.engine.sim.routing import Route, RoutingTable
from tradeplane.engine.sim.runner import BacktestConfig, Context, MarketBatch, run_backtest

from .sim_tape import Tape

MS = 1_000_000
ENTRY, RESPONSE = 8 * MS, 6 * MS
CONTRACT = ContractSpec(kind="linear", tick_size=1.0, lot_size=1.0, maker_bps=-1.0, taker_bps=5.0)


def tape() -> Tape:
    return Tape().snapshot(10 * MS, {99.0: 5.0, 98.0: 4.0, 97.0: 10.0}, {101.0: 3.0, 102.0: 2.0, 104.0: 6.0})


def finish(t: Tape, end_ms: int = 30_000) -> Tape:
    return t.diff(end_ms * MS, bids={90.0: 1.0})  # a far-away level: only extends the run


class Script:
    """Calls each action once, at the first batch at or after its time (ms since the epoch of the tape)."""

    def __init__(self, *actions: tuple[float, Callable[[Context], object]]) -> None:
        self.actions = sorted(actions, key=lambda a: a[0])
        self.sent_at: list[int] = []
        self.out: list[object] = []

    def on_batch(self, ctx: Context, batch: MarketBatch) -> None:
        while self.actions and ctx.now >= self.actions[0][0] * MS:
            _, act = self.actions.pop(0)
            self.sent_at.append(ctx.now)
            self.out.append(act(ctx))


def run(t: Tape, script: Script, executor: ExecutorConfig | None = None, seed: int = 0) -> BacktestResult:
    cfg = BacktestConfig(contracts={0: CONTRACT}, batch_ms=100.0, entry_latency=ConstantLatency(ENTRY),
                         response_latency=ConstantLatency(RESPONSE), executor=executor or ExecutorConfig(), seed=seed)  # fmt: skip
    return run_backtest(t.events(), script, cfg)


def children(res: BacktestResult, types: tuple[int, ...] = (O.LIMIT, O.MARKET)) -> np.ndarray:
    """First report row of every child order (its send time is ``local_ts``), in send order."""
    r = res.reports
    _, first = np.unique(r["order_id"], return_index=True)
    rows = r[np.sort(first)]
    return rows[np.isin(rows["type"], types)]


def test_immediate_walks_the_book_and_records_slippage_against_mid_at_send() -> None:
    s = Script((1000, lambda c: c.execute(0, O.BUY, 4, "immediate")),
               (2000, lambda c: c.execute(0, O.SELL, 6, "immediate")))  # fmt: skip
    res = run(finish(tape()), s)
    buy, sell = res.parents
    assert buy["style"] == STYLE_IMMEDIATE and buy["status"] == PARENT_FILLED and buy["n_children"] == 1
    assert buy["vwap"] == pytest.approx((3 * 101 + 102) / 4)
    assert buy["mid_at_send"] == 100.0 and buy["notional"] == 400.0
    assert buy["slippage_bps"] == pytest.approx(125.0) and buy["cost_bps"] == pytest.approx(125.0)
    assert buy["fees"] == pytest.approx(405 * 5e-4) and buy["taker_qty"] == 4 and buy["maker_qty"] == 0
    vwap = (5 * 99 + 98) / 6  # sells hit the bids: slippage negative, cost positive
    assert sell["slippage_bps"] == pytest.approx((vwap - 100) / 100 * 1e4)
    assert sell["cost_bps"] == pytest.approx((100 - vwap) / 100 * 1e4)
    f = res.fills
    assert np.all(f["local_ts"] == f["exch_ts"] + RESPONSE)
    assert f["exch_ts"][0] == s.sent_at[0] + ENTRY


def test_maker_then_taker_waits_its_bucket_then_takes_after_the_cancel_round_trip() -> None:
    s = Script((1000, lambda c: c.execute(0, O.BUY, 1)))  # notional 100 → bucket 0: 1500 ms, one slice
    res = run(finish(tape()), s)
    (p,) = res.parents
    t0 = s.sent_at[0]
    maker, taker = children(res)
    assert maker["type"] == O.LIMIT and maker["tif"] == O.POST_ONLY and maker["price_tick"] == 99
    assert maker["local_ts"] == t0
    cancel = res.reports[(res.reports["order_id"] == maker["order_id"]) & (res.reports["status"] == O.CANCELED)]
    assert cancel["update_ts"][0] == t0 + 1500 * MS + ENTRY  # cancel sent at the deadline
    assert taker["type"] == O.MARKET and taker["local_ts"] == t0 + 1500 * MS + ENTRY + RESPONSE
    assert p["status"] == PARENT_FILLED and p["maker_qty"] == 0 and p["taker_qty"] == 1 and p["vwap"] == 101.0
    assert p["style"] == STYLE_MAKER_THEN_TAKER and p["degraded"] == 0


def test_maker_fill_then_the_rest_taken_slices_by_notional() -> None:
    t = tape().trade(1100 * MS, 99.0, 7.0, taker_buy=False)  # 5 ahead of us, then 1 of ours (slice 0 = 1 lot)
    s = Script((1000, lambda c: c.execute(0, O.BUY, 3)))  # notional 300 → 2 slices 600 ms apart, 2000 ms wait
    res = run(finish(t), s)
    (p,) = res.parents
    makers = children(res, (O.LIMIT,))
    assert makers["qty"].tolist() == [1.0, 2.0]
    assert (makers["local_ts"][1] - makers["local_ts"][0]) == 600 * MS
    assert p["maker_qty"] == 1 and p["taker_qty"] == 2 and p["filled"] == 3 and p["status"] == PARENT_FILLED
    assert p["vwap"] == pytest.approx((99 + 2 * 101) / 3)
    assert p["slippage_bps"] == pytest.approx(((99 + 2 * 101) / 3 - 100) / 100 * 1e4)
    assert p["fees"] == pytest.approx(99 * -1e-4 + 202 * 5e-4)


@pytest.mark.parametrize(("qty", "slices", "interval_ms"), [(7, 3, 800), (15, 4, 1000)])
def test_routing_buckets_set_slices_and_intervals(qty: int, slices: int, interval_ms: int) -> None:
    res = run(finish(tape()), Script((1000, lambda c: c.execute(0, O.BUY, qty))))
    makers = children(res, (O.LIMIT,))
    assert makers.shape[0] == slices and makers["qty"].sum() == qty
    assert np.all(np.diff(makers["local_ts"]) == interval_ms * MS)
    assert res.parents[0]["filled"] == qty


def test_low_maker_fill_ratio_degrades_to_market() -> None:
    cfg = ExecutorConfig(min_maker_attempts=2, theta=0.25)
    s = Script(*[(1000 + 3000 * k, lambda c: c.execute(0, O.BUY, 1)) for k in range(3)])
    res = run(finish(tape()), s, cfg)
    p = res.parents
    assert p["degraded"].tolist() == [0, 0, 1]
    assert p["n_children"].tolist() == [2, 2, 1]
    assert p["maker_qty"].sum() == 0 and np.all(p["status"] == PARENT_FILLED)
    third = children(res)[-1]
    assert third["type"] == O.MARKET and third["local_ts"] == s.sent_at[2]


def test_each_parent_can_carry_its_own_routing_table_and_theta() -> None:
    """Two strategies on one account: each parent waits and slices by its own table, and degrades by its own
    θ against the account's maker fill ratio."""
    fast = RoutingTable((Route(0.0, 300.0, slices=1),))  # wait 300 ms, never slice
    cfg = ExecutorConfig(min_maker_attempts=2, theta=0.0)  # the account default never degrades
    s = Script(
        (1000, lambda c: c.execute(0, O.BUY, 1, routing=fast)),
        (1000, lambda c: c.execute(0, O.BUY, 3)),  # the default table: 2 slices 600 ms apart, 2000 ms wait
        (5000, lambda c: c.execute(0, O.BUY, 1)),  # θ = 0 (account default): stays maker
        (5000, lambda c: c.execute(0, O.BUY, 1, theta=0.9)),  # this strategy's θ: degrades to market
    )
    res = run(finish(tape()), s, cfg)
    first, second, third, fourth = res.parents
    kids = children(res)
    mine = kids[kids["order_id"] == kids["order_id"].min()][0]  # the first parent's maker child
    cancel = res.reports[(res.reports["order_id"] == mine["order_id"]) & (res.reports["status"] == O.CANCELED)]
    assert cancel["update_ts"][0] == s.sent_at[0] + 300 * MS + ENTRY  # its own 300 ms wait, not 1500
    assert first["n_children"] == 2 and second["n_children"] == 4  # 1 maker + 1 taker vs 2 slices × 2
    assert third["degraded"] == 0 and fourth["degraded"] == 1
    with pytest.raises(ValueError, match="theta"):
        run(finish(tape()), Script((1000, lambda c: c.execute(0, O.BUY, 1, theta=1.5))))


def test_post_only_that_would_cross_is_reposted_at_the_new_touch() -> None:
    t = tape().diff(1012 * MS, bids={99.0: 0.0, 98.0: 0.0, 97.0: 0.0, 95.0: 5.0},
                    asks={101.0: 0.0, 102.0: 0.0, 104.0: 0.0, 99.0: 3.0})  # fmt: skip
    res = run(finish(t), Script((1000, lambda c: c.execute(0, O.BUY, 1))))
    first, second = children(res, (O.LIMIT,))[:2]
    rej = res.reports[res.reports["order_id"] == first["order_id"]][-1]
    assert rej["status"] == O.REJECTED and rej["reason"] == O.REASON_POST_ONLY_WOULD_CROSS
    assert first["price_tick"] == 99 and second["price_tick"] == 95
    assert second["local_ts"] == first["local_ts"] + ENTRY + RESPONSE


def _twap_children(seed: int, spec: TwapSpec, qty: float = 7) -> tuple[BacktestResult, np.ndarray]:
    res = run(finish(tape()), Script((1000, lambda c: c.execute(0, O.BUY, qty, "twap", twap=spec))), seed=seed)
    return res, children(res)


def test_twap_slices_jitter_within_epsilon_and_reproduce_with_the_seed() -> None:
    spec = TwapSpec(slices=5, interval_ms=1000.0, jitter=0.2)
    res, kids = _twap_children(1, spec)
    assert kids["qty"].tolist() == [1.0, 1.0, 1.0, 2.0, 2.0] and res.parents[0]["filled"] == 7
    t0 = kids["local_ts"][0]
    offsets = (kids["local_ts"] - t0 - np.arange(5) * 1000 * MS)[1:]
    assert np.all(np.abs(offsets) <= 200 * MS) and np.any(offsets != 0)
    assert np.all(np.diff(kids["local_ts"]) > 0)
    _, again = _twap_children(1, spec)
    _, other = _twap_children(2, spec)
    assert again["local_ts"].tolist() == kids["local_ts"].tolist()
    assert other["local_ts"].tolist() != kids["local_ts"].tolist()


def test_cancelling_a_parent_drops_its_remaining_slices() -> None:
    spec = TwapSpec(slices=5, interval_ms=1000.0)
    holder: list[int] = []
    s = Script((1000, lambda c: holder.append(c.execute(0, O.BUY, 5, "twap", twap=spec))),
               (3500, lambda c: c.cancel_parent(holder[0])))  # fmt: skip
    res = run(finish(tape()), s)
    (p,) = res.parents
    assert p["status"] == PARENT_CANCELED and p["filled"] == 3 and p["n_children"] == 3


def test_routing_table_validation_and_lookup() -> None:
    table = RoutingTable.default()
    assert [table.route_for(n).slices for n in (0, 199.9, 200, 499, 500, 999, 1000, 1e9)] == [1, 1, 2, 2, 3, 3, 4, 4]
    assert table.route_for(-300).slices == 2  # sells by |notional|
    with pytest.raises(ValueError, match="min_notional must be 0"):
        RoutingTable((Route(10.0, 100.0),))
    with pytest.raises(ValueError, match=r"routes\[1\].min_notional"):
        RoutingTable((Route(0.0, 100.0), Route(0.0, 50.0)))
    with pytest.raises(ValueError, match="interval_ms"):
        Route(0.0, 100.0, 2, 0.0)
    with pytest.raises(ValueError, match="routing row 0"):
        RoutingTable.from_rows([(0.0,)])
    with pytest.raises(ValueError, match="jitter"):
        TwapSpec(3, 100.0, jitter=0.5)


# venue trades are whole lots
_trade = st.tuples(st.integers(1050, 9000), st.sampled_from([97.0, 98.0, 99.0, 101.0, 102.0]),
                   st.integers(1, 8).map(float), st.booleans())  # fmt: skip
_parent = st.tuples(st.integers(1000, 8000), st.sampled_from([O.BUY, O.SELL]), st.integers(1, 11),
                    st.sampled_from(["immediate", "maker_then_taker", "twap"]))  # fmt: skip


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_trade, max_size=25), st.lists(_parent, min_size=1, max_size=5))
def test_parents_never_overfill_and_split_maker_taker_exactly(
    trades: list[tuple[int, float, float, bool]], parents: list[tuple[int, int, int, str]]
) -> None:
    t = tape()
    for ms, px, q, buy in sorted(trades):
        t.trade(ms * MS, px, q, buy)
    spec = TwapSpec(3, 700.0, 0.1, "maker_then_taker")
    acts = [(at, lambda c, side=side, q=q, style=style: c.execute(0, side, q, style, twap=spec))
            for at, side, q, style in parents]  # fmt: skip
    res = run(finish(t, 20_000), Script(*acts))
    p = res.parents
    assert np.all(p["filled"] <= p["qty"] + 1e-9)
    assert np.allclose(p["maker_qty"] + p["taker_qty"], p["filled"])
    assert np.all(p["status"] == PARENT_FILLED)  # the book always has liquidity and time to finish
    assert res.fills["qty"].sum() == pytest.approx(p["filled"].sum())
