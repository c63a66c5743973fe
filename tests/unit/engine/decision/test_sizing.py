"""Sizing: hand-computed quantities, stops and take-profits; the loss cap and the net target as properties."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tradeplane.api.v1alpha1.strategy import SizingSpec
from tradeplane.engine.decision.sizing import (
    DEFAULT_BUCKETS,
    Sizing,
    SizingConfig,
    net_pnl_at_take_profit,
    probability_mult,
    size_entry,
)
from tradeplane.engine.decision.types import MarketState

LONG, SHORT = 1, -1


def _state(**over: Any) -> MarketState:
    """mid 100.0 on a 0.01 tick, 0.001 step, ATR 0.5."""
    base: dict[str, Any] = dict(
        symbol="BTCUSDT",
        venue="binance-usdm",
        exchange_ts=1,
        ingest_ts=2,
        bid=99.99,
        ask=100.01,
        bid_qty=500.0,
        ask_qty=500.0,
        tick_size=0.01,
        step_size=0.001,
        min_qty=0.001,
        min_notional=5.0,
        next_funding_rate=0.0001,
        data_ok=True,
        atr=0.5,
    )
    base.update(over)
    return MarketState(**base)


FUT = SizingConfig(
    margin_base_usdt=200.0, leverage=3, atr_mult=2.0, max_loss_usdt=15.0, target_net_pnl_usdt=10.0, futures=True
)
SPOT = SizingConfig(margin_base_usdt=100.0, atr_mult=1.5, max_loss_usdt=5.0, target_net_pnl_usdt=3.0, futures=False)


# Hand computations (mid 100, futures fee 7 bps round trip, spot 2 bps):
# futures mult 1: notional 200·1·3 = 600 → qty 6; ATR stop 2·0.5 = 1.0 < loss cap 15/6 = 2.5 → d = 1.0.
#   long tp: (10/6 + 100)/(1 − 0.0007) = 101.7379 → up to 101.74 (net 10.44 − 0.0007·6·101.74 = 10.0127;
#   101.73 would net 9.953). short tp: 100 − 10/6 − 0.0007·100 = 98.2633 → down to 98.26 (net 10.02).
# ATR 0.001: d = 0.002 rounds toward the entry onto 100.00 itself → the first tick beyond, 99.99.
# ATR NaN: only the cap, d = 2.5. sl_mult 2: d = 1.0·2 = 2.0; sl_mult 5: 5.0 capped at 2.5.
# tp_mult 2: (20/6 + 100)/0.9993 = 103.4057 → 103.41.
# loss cap not on the grid: max_loss 10 → d = 10/6 = 1.6667 → long stop 98.3333 rounds UP to 98.34 (toward the
#   entry: loss 9.96 ≤ 10), short stop 101.6667 rounds DOWN to 101.66.
# spot mult 1.2: notional 120 → qty 1.2; ATR stop 1.5·0.5 = 0.75 < 5/1.2 → 99.25;
#   tp (3/1.2 + 100)/0.9998 = 102.5205 → 102.53 (102.52 nets 2.9994 once the exit fee is on 123.02).
MATRIX: dict[str, tuple[int, float, dict[str, Any], SizingConfig, dict[str, float], Sizing | None]] = {
    "futures-long": (LONG, 1.0, {}, FUT, {}, Sizing(6.0, 600.0, 1.0, 99.0, 101.74)),
    "futures-short": (SHORT, 1.0, {}, FUT, {}, Sizing(6.0, 600.0, 1.0, 101.0, 98.26)),
    "sub-tick-atr-stop-goes-one-tick-out": (
        LONG,
        1.0,
        {"atr": 0.001},
        FUT,
        {},
        Sizing(6.0, 600.0, 0.01, 99.99, 101.74),
    ),
    "futures-long-atr-nan": (LONG, 1.0, {"atr": math.nan}, FUT, {}, Sizing(6.0, 600.0, 2.5, 97.5, 101.74)),
    "futures-long-sl-mult-2": (LONG, 1.0, {}, FUT, {"sl_mult": 2.0}, Sizing(6.0, 600.0, 2.0, 98.0, 101.74)),
    "sl-mult-cannot-pass-the-loss-cap": (LONG, 1.0, {}, FUT, {"sl_mult": 5.0}, Sizing(6.0, 600.0, 2.5, 97.5, 101.74)),
    "futures-long-tp-mult-2": (LONG, 1.0, {}, FUT, {"tp_mult": 2.0}, Sizing(6.0, 600.0, 1.0, 99.0, 103.41)),
    "cap-off-grid-long-rounds-toward-entry": (
        LONG,
        1.0,
        {"atr": math.nan},
        dataclasses.replace(FUT, max_loss_usdt=10.0),
        {},
        Sizing(6.0, 600.0, 1.66, 98.34, 101.74),
    ),
    "cap-off-grid-short-rounds-toward-entry": (
        SHORT,
        1.0,
        {"atr": math.nan},
        dataclasses.replace(FUT, max_loss_usdt=10.0),
        {},
        Sizing(6.0, 600.0, 1.66, 101.66, 98.26),
    ),
    "spot-long": (
        LONG,
        1.2,
        {"venue": "binance-spot", "next_funding_rate": math.nan},
        SPOT,
        {"fee": 2.0},
        Sizing(1.2, 120.0, 0.75, 99.25, 102.53),
    ),
    "tiny-margin-below-min-notional": (LONG, 1.0, {}, dataclasses.replace(SPOT, margin_base_usdt=4.0), {}, None),
    "below-min-qty": (LONG, 1.0, {"min_qty": 10.0}, FUT, {}, None),
    "zero-multiplier": (LONG, 0.0, {}, FUT, {}, None),
    "no-mid": (LONG, 1.0, {"bid": math.nan}, FUT, {}, None),
}


@pytest.mark.parametrize(("side", "mult", "over", "cfg", "kw", "expected"), MATRIX.values(), ids=MATRIX.keys())
def test_sizing_matrix(
    side: int, mult: float, over: dict[str, Any], cfg: SizingConfig, kw: dict[str, float], expected: Sizing | None
) -> None:
    got = size_entry(
        side,
        mult,
        _state(**over),
        cfg,
        tp_mult=kw.get("tp_mult", 1.0),
        sl_mult=kw.get("sl_mult", 1.0),
        round_trip_fee_bps=kw.get("fee", 7.0),
    )
    if expected is None:
        assert got is None
        return
    assert got is not None
    assert dataclasses.astuple(got) == pytest.approx(dataclasses.astuple(expected), rel=1e-12, abs=1e-9)


def test_quantity_spot_floors_futures_rounds_to_nearest() -> None:
    # raw quantity 5.96 on a 0.1 step: spot 5.9 (never more quote than it has), futures 6.0 (nearest)
    st_ = _state(step_size=0.1, min_qty=0.1)
    spot = size_entry(
        LONG,
        1.0,
        st_,
        dataclasses.replace(SPOT, margin_base_usdt=596.0),
        tp_mult=1.0,
        sl_mult=1.0,
        round_trip_fee_bps=2.0,
    )
    fut = size_entry(
        LONG,
        1.0,
        st_,
        dataclasses.replace(FUT, margin_base_usdt=596.0, leverage=1),
        tp_mult=1.0,
        sl_mult=1.0,
        round_trip_fee_bps=7.0,
    )
    assert spot is not None and fut is not None
    assert (spot.qty, fut.qty) == (5.9, 6.0)
    assert spot.notional_usdt == pytest.approx(590.0) and fut.notional_usdt == pytest.approx(600.0)
    # float noise in raw / step must not lose a whole step: 0.3 / 0.1 = 2.9999999999999996
    exact = size_entry(
        LONG,
        1.0,
        _state(step_size=0.1, min_qty=0.1),
        dataclasses.replace(SPOT, margin_base_usdt=30.0),
        tp_mult=1.0,
        sl_mult=1.0,
        round_trip_fee_bps=2.0,
    )
    assert exact is not None and exact.qty == 0.3


def test_multiplier_is_clamped_but_zero_stays_zero() -> None:
    cfg = dataclasses.replace(FUT, min_size_mult=0.5, max_size_mult=1.5)
    hi = size_entry(LONG, 4.0, _state(), cfg, tp_mult=1.0, sl_mult=1.0, round_trip_fee_bps=7.0)
    lo = size_entry(LONG, 0.1, _state(), cfg, tp_mult=1.0, sl_mult=1.0, round_trip_fee_bps=7.0)
    assert hi is not None and hi.qty == 9.0  # 200·1.5·3 / 100
    assert lo is not None and lo.qty == 3.0  # 200·0.5·3 / 100
    assert size_entry(LONG, 0.0, _state(), cfg, tp_mult=1.0, sl_mult=1.0, round_trip_fee_bps=7.0) is None


def test_a_stop_that_cannot_honour_the_cap_on_the_grid_is_refused() -> None:
    # cap 0.01 USDT on 6 units = 0.0017 of price: smaller than one 0.01 tick from the mid
    cfg = dataclasses.replace(FUT, max_loss_usdt=0.01)
    assert size_entry(LONG, 1.0, _state(), cfg, tp_mult=1.0, sl_mult=1.0, round_trip_fee_bps=7.0) is None


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="side"):
        size_entry(0, 1.0, _state(), FUT, tp_mult=1.0, sl_mult=1.0, round_trip_fee_bps=7.0)
    with pytest.raises(ValueError, match="round_trip_fee_bps"):
        size_entry(LONG, 1.0, _state(), FUT, tp_mult=1.0, sl_mult=1.0, round_trip_fee_bps=1e4)


P_MATRIX = {
    "above-0.85": (0.9, 1.2),
    "at-0.85-inclusive": (0.85, 1.2),
    "just-below-0.85": (0.8499, 1.0),
    "at-0.6": (0.6, 1.0),
    "mid-bucket": (0.5, 0.5),
    "at-0.4": (0.4, 0.5),
    "below-0.4-skips": (0.39, 0.0),
    "zero": (0.0, 0.0),
    "nan-skips": (math.nan, 0.0),
}


@pytest.mark.parametrize(("p", "mult"), P_MATRIX.values(), ids=P_MATRIX.keys())
def test_probability_mult_defaults(p: float, mult: float) -> None:
    assert probability_mult(p, DEFAULT_BUCKETS) == mult


def test_probability_mult_without_a_floor_bucket_is_zero_below_all() -> None:
    assert probability_mult(0.55, ((0.9, 1.5), (0.6, 1.0))) == 0.0
    assert probability_mult(0.95, ((0.9, 1.5), (0.6, 1.0))) == 1.5


def test_from_spec() -> None:
    assert SizingConfig.from_spec(SizingSpec(), futures=False) == SizingConfig()
    spec = SizingSpec.model_validate(
        {
            "marginBaseUsdt": 200,
            "leverage": 3,
            "probabilityBuckets": [{"minP": 0.4, "mult": 0.5}, {"minP": 0.85, "mult": 1.2}, {"minP": 0.6, "mult": 1}],
            "atrMult": 2.0,
            "maxLossUsdt": 15,
            "targetNetPnlUsdt": 10,
        }
    )
    fut = SizingConfig.from_spec(spec, futures=True)
    assert fut.buckets == ((0.85, 1.2), (0.6, 1.0), (0.4, 0.5))  # sorted descending
    assert (fut.leverage, fut.margin_base_usdt, fut.atr_mult, fut.max_loss_usdt, fut.target_net_pnl_usdt) == (
        3,
        200.0,
        2.0,
        15.0,
        10.0,
    )
    assert SizingConfig.from_spec(spec, futures=False).leverage == 1  # spot ignores leverage


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="descending"):
        SizingConfig(buckets=((0.4, 0.5), (0.8, 1.0)))
    with pytest.raises(ValueError, match="leverage"):
        SizingConfig(leverage=3, futures=False)
    with pytest.raises(ValueError, match="min_size_mult"):
        SizingConfig(min_size_mult=3.0, max_size_mult=2.0)


@settings(max_examples=400, deadline=None)
@given(
    side=st.sampled_from([LONG, SHORT]),
    futures=st.booleans(),
    price=st.floats(0.5, 100_000.0),
    spread_ticks=st.integers(1, 5),
    tick=st.sampled_from([1e-5, 1e-4, 0.001, 0.01, 0.1, 0.5, 1.0]),
    step=st.sampled_from([1e-5, 0.001, 0.01, 0.1, 1.0]),
    margin=st.floats(5.0, 5_000.0),
    leverage=st.integers(1, 20),
    mult=st.floats(0.05, 2.0),
    atr=st.one_of(st.just(math.nan), st.floats(0.0, 0.05)),
    atr_mult=st.floats(0.1, 5.0),
    max_loss=st.floats(0.5, 100.0),
    target=st.floats(0.5, 100.0),
    fee_bps=st.floats(-3.0, 20.0),  # negative: a maker rebate larger than the other leg's fee
    tp_mult=st.floats(0.1, 10.0),
    sl_mult=st.floats(0.1, 10.0),
)
def test_loss_at_stop_within_cap_and_net_at_take_profit_meets_target(
    side: int,
    futures: bool,
    price: float,
    spread_ticks: int,
    tick: float,
    step: float,
    margin: float,
    leverage: int,
    mult: float,
    atr: float,
    atr_mult: float,
    max_loss: float,
    target: float,
    fee_bps: float,
    tp_mult: float,
    sl_mult: float,
) -> None:
    assume(tick * 100 < price)
    bid = round(price / tick) * tick
    state = _state(
        bid=bid, ask=bid + spread_ticks * tick, tick_size=tick, step_size=step, min_qty=step, atr=atr * price
    )
    cfg = SizingConfig(
        margin_base_usdt=margin,
        leverage=leverage if futures else 1,
        atr_mult=atr_mult,
        max_loss_usdt=max_loss,
        target_net_pnl_usdt=target,
        futures=futures,
    )
    s = size_entry(side, mult, state, cfg, tp_mult=tp_mult, sl_mult=sl_mult, round_trip_fee_bps=fee_bps)
    if s is None:
        return
    mid = state.mid
    # the loss cap, exactly as the floats compute it: no rounding tolerance (the stop rounds toward the entry)
    assert s.qty * side * (mid - s.stop_price) <= max_loss
    assert side * (mid - s.stop_price) > 0 and s.stop_price > 0
    # the net target after the round trip, exactly; and under the contract's fee-on-entry-notional definition
    assert net_pnl_at_take_profit(side, s.qty, mid, s.take_profit_price, fee_bps) >= target * tp_mult
    contract_net = s.qty * abs(s.take_profit_price - mid) - fee_bps / 1e4 * s.notional_usdt
    assert contract_net >= target * tp_mult * (1 - 1e-12)
    assert side * (s.take_profit_price - mid) > 0 and s.take_profit_price > 0
    # the stop is no further out than the requested distance (ATR × sl_mult, capped by the loss)
    loss_d = max_loss / s.qty
    atr_d = atr_mult * state.atr if state.atr > 0 else math.inf
    # (or, when that is below one tick, the first grid price beyond the entry)
    d = min(min(atr_d, loss_d) * sl_mult, loss_d)
    noise = 1e-9 * tick + 4 * math.ulp(mid)  # prices are decimal grid points held in binary floats
    assert s.stop_distance <= d * (1 + 1e-9) + noise or s.stop_distance <= tick + noise
    assert s.stop_distance > 1e-9 * tick  # never on the entry itself
    # grids: quantity on the step, prices on the tick, spot never spends more than it was given
    assert s.qty / step == pytest.approx(round(s.qty / step), rel=1e-12, abs=1e-6)
    for px in (s.stop_price, s.take_profit_price):
        assert px / tick == pytest.approx(round(px / tick), rel=1e-12, abs=1e-6)
    if not futures:
        assert s.notional_usdt <= margin * mult * (1 + 1e-8) or mult > cfg.max_size_mult
    assert s.qty >= step and s.notional_usdt >= state.min_notional
