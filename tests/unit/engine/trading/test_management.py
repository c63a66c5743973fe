"""Position management: hand-computed ladder prices for longs and shorts, partial take-profit, add-ons, and the
property that the stop never moves against the position over any mark path."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeplane.api.v1alpha1.strategy import PositionManagementSpec, TrailingStep
from tradeplane.engine.decision.types import LONG, SHORT
from tradeplane.engine.trading.lifecycle import Trade, TradeBook, TradeState
from tradeplane.engine.trading.management import (
    ManagementAction,
    ManagementConfig,
    apply_action,
    manage,
    stop_for_roe,
)

from .factory import active, close_to, coid, iid

TRAIL_ONLY = ManagementConfig(max_add_ons=0)


def trade(
    side: int = LONG,
    entry: float = 100.0,
    lev: int = 10,
    *,
    qty: float = 1.0,
    stop: float = math.nan,
    tp: float = math.nan,
    trail: int = 0,
    add_ons: int = 0,
    partial_done: bool = False,
    entry_done: bool = True,
    state: TradeState = TradeState.ACTIVE,
) -> Trade:
    return Trade(
        intent_id=iid("m"), strategy="s1", venue="binance-usdm", symbol="BTCUSDT", side=side, target_qty=qty,
        filled_qty=qty, avg_entry=entry, stop_price=stop, take_profit_price=tp, leverage=lev, state=state,
        add_ons=add_ons, trail_level=trail, partial_done=partial_done, entry_done=entry_done,
    )  # fmt: skip


def summary(actions: list[ManagementAction]) -> list[tuple[str, float, str, int]]:
    return [(a.kind, round(a.qty if a.kind != "move_stop" else a.price, 9), a.reason, a.level) for a in actions]


# --- config -------------------------------------------------------------------------------------------------------
def test_from_spec_defaults() -> None:
    cfg = ManagementConfig.from_spec(PositionManagementSpec())
    assert cfg == ManagementConfig(((10.0, 0.0), (20.0, 10.0)), None, 0.5, 2, 5.0)


def test_from_spec_sorts_steps_and_converts_percentages() -> None:
    pm = PositionManagementSpec(
        trailing=[TrailingStep(at_roe_pct=30, lock_roe_pct=20), TrailingStep(at_roe_pct=10, lock_roe_pct=0)],
        partial_take_profit_roe_pct=15,
        partial_take_profit_fraction_pct=25,
        max_add_ons=1,
        add_on_roe_step_pct=7.5,
    )
    cfg = ManagementConfig.from_spec(pm)
    assert cfg.trailing == ((10.0, 0.0), (30.0, 20.0))
    assert (cfg.partial_roe_pct, cfg.partial_fraction, cfg.max_add_ons, cfg.add_on_roe_step_pct) == (15, 0.25, 1, 7.5)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        pytest.param({"trailing": ((10.0, 10.0),)}, r"trailing\[0\]\.lockRoePct", id="lock-at-trigger"),
        pytest.param({"trailing": ((10.0, 0.0), (20.0, 25.0))}, r"trailing\[1\]", id="lock-above-trigger"),
        pytest.param({"trailing": ((20.0, 0.0), (10.0, 0.0))}, r"trailing\[1\]\.atRoePct", id="unsorted"),
        pytest.param({"partial_fraction": 0.0}, "partial_fraction", id="no-fraction"),
        pytest.param({"max_add_ons": 3}, "max_add_ons", id="three-add-ons"),
        pytest.param({"add_on_roe_step_pct": 0.0}, "add_on_roe_step_pct", id="zero-step"),
    ],
)
def test_bad_config_raises_naming_the_field(kw: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ManagementConfig(**kw)  # type: ignore[arg-type]


def test_from_spec_names_the_bad_step() -> None:
    pm = PositionManagementSpec(
        trailing=[TrailingStep(at_roe_pct=10, lock_roe_pct=0), TrailingStep(at_roe_pct=5, lock_roe_pct=5)]
    )
    with pytest.raises(ValueError, match=r"trailing\[0\]\.lockRoePct"):  # sorted first: (5, 5) is step 0
        ManagementConfig.from_spec(pm)


@pytest.mark.parametrize(
    ("side", "entry", "lev", "roe", "price"),
    [
        (LONG, 100.0, 10, 10.0, 101.0),
        (SHORT, 100.0, 10, 10.0, 99.0),
        (LONG, 200.0, 1, 0.0, 200.0),
        (SHORT, 50.0, 5, 10.0, 49.0),
    ],
)
def test_stop_for_roe_inverts_roe(side: int, entry: float, lev: int, roe: float, price: float) -> None:
    assert close_to(stop_for_roe(entry, side, lev, roe), price)
    assert close_to(trade(side, entry, lev).roe_pct(price), roe)


# --- trailing ladder, stop and take-profit: hand-computed -----------------------------------------------------------
# Long 100 ×10: ROE = (mark − 100)/100·1000, so +10 % at 101 (stop → 100) and +20 % at 102 (lock 10 % → 101).
# Short 100 ×10: +10 % at 99 (stop → 100), +20 % at 98 (lock 10 % → 99). Long 200 ×1: +10 % at 220, +20 % at 240.
# Short 50 ×5: ROE = (50 − mark)/50·500: +10 % at 49, +20 % at 48 (lock 10 % → 49).
@pytest.mark.parametrize(
    ("t", "mark", "expected"),
    [
        pytest.param(trade(stop=95, tp=110), 100.5, [], id="long-roe5-nothing"),
        pytest.param(trade(stop=95, tp=110), 101.0, [("move_stop", 100.0, "trailing", 1)], id="long-roe10-breakeven"),
        pytest.param(trade(stop=95, tp=110), 102.0, [("move_stop", 101.0, "trailing", 2)], id="long-roe20-lock10"),
        pytest.param(trade(stop=100, tp=110, trail=1), 102.0, [("move_stop", 101.0, "trailing", 2)], id="long-level1-to-2"),
        pytest.param(trade(stop=101, tp=110, trail=2), 101.5, [], id="long-no-regress"),
        pytest.param(trade(stop=100, tp=110, trail=1), 101.2, [], id="long-same-level-no-move"),
        pytest.param(trade(stop=95, tp=110), 95.0, [("close", 1.0, "stop", 0)], id="long-stop-touched"),
        pytest.param(trade(stop=95, tp=110), 90.0, [("close", 1.0, "stop", 0)], id="long-gap-through-stop"),
        pytest.param(trade(stop=100, tp=110, trail=1), 99.99, [("close", 1.0, "trailing", 0)], id="long-trailing-hit"),
        pytest.param(trade(stop=95, tp=110), 110.0, [("close", 1.0, "take-profit", 0)], id="long-tp-hit"),
        pytest.param(trade(LONG, 200, 1, stop=150), 220.0, [("move_stop", 200.0, "trailing", 1)], id="long-x1-breakeven"),
        pytest.param(trade(LONG, 200, 1, stop=150), 240.0, [("move_stop", 220.0, "trailing", 2)], id="long-x1-lock10"),
        pytest.param(trade(SHORT, stop=105, tp=90), 99.5, [], id="short-roe5-nothing"),
        pytest.param(trade(SHORT, stop=105, tp=90), 99.0, [("move_stop", 100.0, "trailing", 1)], id="short-roe10-breakeven"),
        pytest.param(trade(SHORT, stop=105, tp=90), 98.0, [("move_stop", 99.0, "trailing", 2)], id="short-roe20-lock10"),
        pytest.param(trade(SHORT, stop=99, tp=90, trail=2), 98.5, [], id="short-no-regress"),
        pytest.param(trade(SHORT, stop=105, tp=90), 105.0, [("close", 1.0, "stop", 0)], id="short-stop-touched"),
        pytest.param(trade(SHORT, stop=100, tp=90, trail=1), 100.01, [("close", 1.0, "trailing", 0)], id="short-trailing-hit"),
        pytest.param(trade(SHORT, stop=105, tp=90), 89.0, [("close", 1.0, "take-profit", 0)], id="short-tp-hit"),
        pytest.param(trade(SHORT, 50, 5, stop=52), 49.0, [("move_stop", 50.0, "trailing", 1)], id="short-x5-breakeven"),
        pytest.param(trade(SHORT, 50, 5, stop=52), 48.0, [("move_stop", 49.0, "trailing", 2)], id="short-x5-lock10"),
        pytest.param(trade(stop=math.nan), 101.0, [("move_stop", 100.0, "trailing", 1)], id="long-no-stop-yet"),
        pytest.param(trade(stop=95, state=TradeState.PENDING_CLOSING), 90.0, [], id="closing-not-managed"),
        pytest.param(trade(stop=95, state=TradeState.PENDING_ENTRY), 90.0, [], id="pending-not-managed"),
        pytest.param(trade(stop=95), math.nan, [], id="nan-mark"),
    ],
)  # fmt: skip
def test_ladder_matrix(t: Trade, mark: float, expected: list[tuple[str, float, str, int]]) -> None:
    assert summary(manage(t, mark, TRAIL_ONLY, 0)) == expected


@pytest.mark.parametrize(
    ("side", "mark", "stop"),
    [
        pytest.param(LONG, 102.1, 101.0, id="long-floor"),  # 100.03·1.01 = 101.0303 → 101.0
        pytest.param(SHORT, 98.0, 99.1, id="short-ceil"),  # 100.03·0.99 = 99.0297 → 99.1
    ],
)
def test_moved_stop_is_rounded_away_from_the_mark(side: int, mark: float, stop: float) -> None:
    (a,) = manage(trade(side, 100.03, stop=math.nan), mark, TRAIL_ONLY, 0, tick_size=0.1)
    assert a.kind == "move_stop" and close_to(a.price, stop)


# --- partial take-profit and add-ons --------------------------------------------------------------------------------
PARTIAL = ManagementConfig(trailing=(), partial_roe_pct=15.0, partial_fraction=0.5, max_add_ons=0)
ADDS = ManagementConfig(trailing=(), max_add_ons=2, add_on_roe_step_pct=5.0)
ADDS_1 = ManagementConfig(trailing=(), max_add_ons=1, add_on_roe_step_pct=5.0)
BOTH = ManagementConfig(trailing=(), partial_roe_pct=5.0, max_add_ons=2, add_on_roe_step_pct=5.0)


@pytest.mark.parametrize(
    ("t", "mark", "cfg", "step", "expected"),
    [
        pytest.param(trade(qty=2), 101.5, PARTIAL, 0.0, [("partial_close", 1.0, "partial", 0)], id="partial-at-15"),
        pytest.param(trade(qty=2), 101.49, PARTIAL, 0.0, [], id="partial-below-15"),
        pytest.param(trade(qty=2, partial_done=True), 103.0, PARTIAL, 0.0, [], id="partial-once"),
        pytest.param(trade(SHORT, qty=4), 98.5, PARTIAL, 0.0, [("partial_close", 2.0, "partial", 0)], id="short-partial"),
        pytest.param(trade(qty=0.3), 102.0, PARTIAL, 0.1, [("partial_close", 0.1, "partial", 0)], id="partial-floored"),
        pytest.param(trade(qty=0.1), 102.0, PARTIAL, 0.1, [], id="partial-floors-to-zero"),
        pytest.param(trade(), 100.5, ADDS, 0.0, [("add_on", 1.0, "add-on", 1)], id="add1-at-5"),
        pytest.param(trade(), 100.49, ADDS, 0.0, [], id="add1-below-5"),
        pytest.param(trade(add_ons=1), 100.5, ADDS, 0.0, [], id="add1-once"),
        pytest.param(trade(add_ons=1), 101.0, ADDS, 0.0, [("add_on", 1.0, "add-on", 2)], id="add2-at-10"),
        pytest.param(trade(add_ons=2), 105.0, ADDS, 0.0, [], id="at-most-two"),
        pytest.param(trade(add_ons=1), 102.0, ADDS_1, 0.0, [], id="max-one"),
        pytest.param(trade(entry_done=False), 101.0, ADDS, 0.0, [], id="entry-still-working"),
        pytest.param(trade(SHORT, add_ons=1), 99.0, ADDS, 0.0, [("add_on", 1.0, "add-on", 2)], id="short-add2"),
        pytest.param(trade(qty=2), 101.0, BOTH, 0.0, [("partial_close", 1.0, "partial", 0)], id="partial-suppresses-add"),
        pytest.param(trade(qty=2, partial_done=True), 101.0, BOTH, 0.0, [("add_on", 2.0, "add-on", 1)], id="add-after-partial"),
    ],
)  # fmt: skip
def test_partial_and_add_on_matrix(
    t: Trade, mark: float, cfg: ManagementConfig, step: float, expected: list[tuple[str, float, str, int]]
) -> None:
    assert summary(manage(t, mark, cfg, 0, step_size=step)) == expected


def test_defaults_at_roe_10_move_the_stop_and_add_on() -> None:
    cfg = ManagementConfig.from_spec(PositionManagementSpec())
    actions = manage(trade(stop=95, tp=120), 101.0, cfg, 0)
    assert [(a.kind, a.leg) for a in actions] == [("move_stop", "stop"), ("add_on", "add1")]


def test_add_on_qty_is_the_original_target_after_a_partial_fill() -> None:
    t = trade(qty=2)
    t.filled_qty = 0.5
    (a,) = manage(t, 100.5, ADDS, 0)
    assert a.qty == 2.0


# --- applying actions to the book ---------------------------------------------------------------------------------
def test_apply_action_records_and_names_the_order() -> None:
    book = TradeBook()
    t = active(book, "a")
    mk = ManagementAction
    assert apply_action(book, mk("move_stop", t.intent_id, 0.0, 100.0, "trailing", "stop", 1), 3) == coid("a", "stop")
    assert (t.stop_price, t.trail_level) == (100.0, 1)
    assert apply_action(book, mk("add_on", t.intent_id, 1.0, 100.5, "add-on", "add1", 1), 4) == coid("a", "add1")
    assert apply_action(book, mk("add_on", t.intent_id, 1.0, 101.0, "add-on", "add2", 2), 5) == coid("a", "add2")
    assert t.add_ons == 2
    assert apply_action(book, mk("partial_close", t.intent_id, 0.5, 101.5, "partial"), 6) == coid("a", "partial")
    assert t.partial_done
    assert apply_action(book, mk("close", t.intent_id, 1.0, 101.0, "take-profit"), 7) == coid("a", "exit")
    assert t.state is TradeState.PENDING_CLOSING and t.close_reason == "take-profit"
    with pytest.raises(ValueError, match="kind"):
        apply_action(book, mk("teleport", t.intent_id, 0.0, 0.0, ""), 8)


def test_long_walkthrough_trails_then_stops_out() -> None:
    book = TradeBook()
    t = active(book, "a", fill_px=100.0)  # long 1 @ 100 ×10, stop 95, tp 110
    stops, reasons = [], []
    for k, mark in enumerate([100.5, 101.0, 102.0, 101.5, 100.9]):
        for a in manage(t, mark, TRAIL_ONLY, k):
            apply_action(book, a, k)
            reasons.append(a.reason)
        stops.append(t.stop_price)
    assert stops == [95.0, 100.0, 101.0, 101.0, 101.0]
    assert reasons == ["trailing", "trailing", "trailing"] and t.state is TradeState.PENDING_CLOSING
    book.on_fill(coid("a", "exit"), 1.0, 100.9, 0.0, 9)
    assert t.state is TradeState.CLOSED and t.close_reason == "trailing" and close_to(t.realized_pnl_usdt, 0.9)


# --- property: the stop only ratchets ------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(
    side=st.sampled_from([LONG, SHORT]),
    lev=st.integers(1, 25),
    path=st.lists(st.floats(0.8, 1.25), min_size=1, max_size=60),
    partial=st.one_of(st.none(), st.floats(1.0, 40.0)),
    tick=st.sampled_from([0.0, 0.01, 0.5]),
)
def test_stop_never_moves_against_the_position(
    side: int, lev: int, path: list[float], partial: float | None, tick: float
) -> None:
    cfg = ManagementConfig(((5.0, 0.0), (10.0, 3.0), (20.0, 10.0), (40.0, 30.0)), partial, 0.5, 2, 4.0)
    book = TradeBook()
    t = active(book, "p", side=side, leverage=lev, fill_px=100.0, stop_price=math.nan, take_profit_price=math.nan)
    for k, rel in enumerate(path):
        mark = 100.0 * rel
        for a in manage(t, mark, cfg, k, tick_size=tick):
            before = t.stop_price
            if a.kind == "move_stop":
                assert math.isnan(before) or side * (a.price - before) > 0  # manage's own output, before the book
                assert side * (mark - a.price) > 0  # never set at or beyond the mark
            leg_coid = apply_action(book, a, k)
            if a.kind in ("add_on", "partial_close"):
                book.on_fill(leg_coid, a.qty, mark, 0.0, k)  # fills move the average and the quantity
            if a.kind == "close":
                assert side * (mark - t.stop_price) <= 0 or a.reason == "take-profit"
                return
            assert math.isnan(before) or side * (t.stop_price - before) >= 0
        assert t.add_ons <= 2
