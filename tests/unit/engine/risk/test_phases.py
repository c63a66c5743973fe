"""The phase state machine: kill switch within one tick, halt policies, reduce-only semantics, latches, the
UTC-day reset, re-arming by a spec change, transitions, headroom and usage."""

from __future__ import annotations

import pytest

from tradeplane.api.v1alpha1.riskbudget import RiskUsage
from tradeplane.engine.risk import reasons
from tradeplane.engine.risk.engine import ACTIVE, HALTED, REDUCING, OrderRequest, RiskEngine

from .support import SPOT, T0, USDM, S, config, engine, fill, ns, order


def _halt_on_daily_loss(eng: RiskEngine, ts: int = T0) -> None:
    fill(eng, 10_000, strategy="a", ts=ts)
    eng.on_mark(USDM, "BTCUSDT", 95.0, ts + S)  # −500 ≥ 400


# --- kill switch --------------------------------------------------------------------------------------------
def test_kill_switch_halts_inside_update_config_and_the_very_next_check_is_refused() -> None:
    eng = engine()
    assert eng.check_order(order(100)) is None
    eng.update_config(config(halt=True), T0)
    assert (eng.phase, eng.reason) == (HALTED, reasons.KILL_SWITCH)
    rejection = eng.check_order(order(100, ts=T0))
    assert rejection is not None and rejection.reason == reasons.KILL_SWITCH
    assert "spec.halt is true" in rejection.detail
    actions = eng.evaluate(T0 + 1)
    assert actions.cancel_all
    assert actions.flatten == ()  # cancel-only policy
    assert [(t.from_phase, t.to_phase, t.reason) for t in actions.transitions] == [
        (ACTIVE, HALTED, reasons.KILL_SWITCH)
    ]
    again = eng.evaluate(T0 + 2)
    assert not again.cancel_all and again.transitions == ()  # told once
    assert eng.headroom("s1", USDM, "BTCUSDT") is False


def test_kill_switch_release_returns_to_the_phase_the_conditions_give() -> None:
    eng = engine()
    eng.update_config(config(halt=True), T0)
    eng.update_config(config(halt=False), T0 + S)
    assert eng.phase == ACTIVE
    assert eng.check_order(order(100, ts=T0 + S)) is None


def test_kill_switch_in_the_initial_config_halts_from_the_start() -> None:
    eng = engine(config(halt=True))
    assert eng.phase == HALTED
    assert eng.evaluate(T0).cancel_all


def test_kill_switch_on_an_already_halted_budget_cancels_again_and_names_the_switch() -> None:
    eng = engine()
    _halt_on_daily_loss(eng)
    assert eng.evaluate(T0 + 2 * S).cancel_all
    eng.update_config(config(halt=True), T0 + 3 * S)
    actions = eng.evaluate(T0 + 3 * S)
    assert actions.cancel_all and actions.reason == reasons.KILL_SWITCH
    rejection = eng.check_order(order(100, strategy="z", symbol="ETHUSDT", ts=T0 + 3 * S))
    assert rejection is not None and rejection.reason == reasons.KILL_SWITCH


# --- halt policies ------------------------------------------------------------------------------------------
def _desk_with_positions(policy: str) -> RiskEngine:
    eng = engine(config(halt_policy=policy, limits={"max_concurrent_entries_per_market": 5}))
    fill(eng, 1000, strategy="a", symbol="BTCUSDT")
    fill(eng, 500, strategy="b", symbol="BTCUSDT")
    fill(eng, 300, strategy="c", symbol="ETHUSDT", side=-1)
    fill(eng, 200, strategy="d", venue=SPOT, symbol="ETHUSDT", leverage=1)
    fill(eng, 400, strategy="e", symbol="SOLUSDT")
    fill(eng, 400, strategy="f", symbol="SOLUSDT", side=-1)  # nets to zero: nothing to trade
    return eng


def test_halt_with_policy_flatten_asks_for_one_netted_order_per_market() -> None:
    eng = _desk_with_positions("flatten")
    eng.update_config(config(halt=True, halt_policy="flatten"), T0 + S)
    actions = eng.evaluate(T0 + S)
    assert actions.cancel_all
    assert actions.flatten == (
        (SPOT, "ETHUSDT", -2.0),
        (USDM, "BTCUSDT", -15.0),
        (USDM, "ETHUSDT", 3.0),
    )
    assert eng.evaluate(T0 + 2 * S).flatten == ()  # asked once; the runtime owns retries
    # the flatten orders pass (reduce-only exits); anything else is refused
    flat = order(1500, strategy="a", side=-1, reduce_only=True, is_entry=False, ts=T0 + 2 * S)
    assert eng.check_order(flat) is None
    unflagged_exit = order(1000, strategy="a", side=-1, is_entry=False, ts=T0 + 2 * S)
    rejection = eng.check_order(unflagged_exit)
    assert rejection is not None and rejection.reason == reasons.KILL_SWITCH
    growing = order(100, strategy="a", side=1, reduce_only=True, is_entry=False, ts=T0 + 2 * S)
    assert eng.check_order(growing) is not None


def test_halt_with_policy_cancel_only_keeps_positions_and_refuses_even_exits() -> None:
    eng = _desk_with_positions("cancel-only")
    eng.on_mark(USDM, "BTCUSDT", 60.0, T0 + S)  # −600 on 15 BTC... ≥ 400: daily loss
    actions = eng.evaluate(T0 + S)
    assert (actions.phase, actions.reason, actions.cancel_all, actions.flatten) == (
        HALTED,
        reasons.RISK_DAILY_LOSS,
        True,
        (),
    )
    exit_ = order(1000, strategy="a", side=-1, price=60.0, reduce_only=True, is_entry=False, ts=T0 + S)
    rejection = eng.check_order(exit_)
    assert rejection is not None and rejection.reason == reasons.RISK_HALTED
    assert "cancel-only" in rejection.detail


def test_switching_to_flatten_while_halted_asks_for_the_flatten() -> None:
    eng = _desk_with_positions("cancel-only")
    eng.update_config(config(halt=True), T0 + S)
    assert eng.evaluate(T0 + S).flatten == ()
    eng.update_config(config(halt=True, halt_policy="flatten"), T0 + 2 * S)
    assert len(eng.evaluate(T0 + 2 * S).flatten) == 3


def test_flatten_fills_bring_the_plan_to_empty() -> None:
    eng = _desk_with_positions("flatten")
    eng.update_config(config(halt=True, halt_policy="flatten"), T0 + S)
    for venue, symbol, qty in eng.evaluate(T0 + S).flatten:
        eng.on_fill("flatten", venue, symbol, 1 if qty > 0 else -1, abs(qty), 100.0, 0.0, T0 + 2 * S)
    # the flatten was netted per market, so the ledger's strategies still hold their offsetting positions
    assert eng.flatten_plan() == ()
    assert eng.ledger.net_by_market() == {}


# --- reduce-only semantics ----------------------------------------------------------------------------------
def test_exits_pass_every_exposure_limit() -> None:
    eng = engine(config(limits={"max_gross_notional_usdt": 1000.0, "max_order_notional_usdt": 100.0}))
    fill(eng, 5000, strategy="a")  # far over every limit (fills are facts, not requests)
    exit_ = order(3000, strategy="a", side=-1, is_entry=False)
    assert eng.check_order(exit_) is None
    flagged = order(3000, strategy="a", side=-1, reduce_only=True, is_entry=False)
    assert eng.check_order(flagged) is None
    flip = order(6000, strategy="a", side=-1, is_entry=False)  # through zero: opens a short, is checked
    rejection = eng.check_order(flip)
    assert rejection is not None and rejection.reason == reasons.RISK_ORDER_NOTIONAL


def test_reduce_only_flag_counts_against_the_market_position_of_all_strategies() -> None:
    """A reduce-only order sent by a strategy without a position is an exit when the market (the venue's
    account) holds the opposite position: the venue would cap it at that position."""
    eng = engine()
    fill(eng, 1000, strategy="a")
    assert eng.is_exit(order(500, strategy="b", side=-1, reduce_only=True, is_entry=False))
    assert not eng.is_exit(order(500, strategy="b", side=-1, is_entry=False))
    assert not eng.is_exit(order(500, strategy="b", side=1, reduce_only=True, is_entry=False))
    assert not eng.is_exit(order(500, strategy="b", venue=SPOT, side=-1, reduce_only=True, is_entry=False))


def test_reducing_refuses_entries_and_add_ons_but_passes_exits() -> None:
    eng = engine()
    fill(eng, 1000, strategy="a")
    for i in range(5):
        eng.on_trade_closed("x", -1.0, T0 + i)
    assert (eng.phase, eng.reason) == (REDUCING, reasons.RISK_CONSECUTIVE_LOSSES)
    for req in (order(100, strategy="b", symbol="ETHUSDT"), order(100, strategy="a", is_entry=False)):
        rejection = eng.check_order(req)
        assert rejection is not None and rejection.reason == reasons.RISK_REDUCE_ONLY
        assert "5 losing trades in a row >= 5" in rejection.detail
    assert eng.check_order(order(1000, strategy="a", side=-1, is_entry=False)) is None
    assert eng.check_order(order(400, strategy="a", side=-1, reduce_only=True, is_entry=False)) is None


def test_spot_sell_of_a_held_position_is_an_exit_without_the_flag() -> None:
    eng = engine()
    fill(eng, 1000, strategy="a", venue=SPOT, leverage=1)
    for i in range(5):
        eng.on_trade_closed("x", -1.0, T0 + i)
    assert eng.check_order(order(1000, strategy="a", venue=SPOT, side=-1, is_entry=False, leverage=1)) is None


# --- latches, UTC day, re-arming ----------------------------------------------------------------------------
def test_daily_loss_halt_holds_all_day_and_releases_at_utc_midnight() -> None:
    t = ns("2024-03-01T23:00:00")
    eng = engine()
    _halt_on_daily_loss(eng, t)
    assert eng.evaluate(t + 2 * S).phase == HALTED
    eng.on_mark(USDM, "BTCUSDT", 100.0, t + 3 * S)  # the loss is gone, the halt is not
    assert eng.usage()["daily_pnl_usdt"] == 0.0
    rejection = eng.check_order(order(100, strategy="z", symbol="ETHUSDT", ts=t + 3 * S))
    assert rejection is not None and rejection.reason == reasons.RISK_HALTED
    assert "daily loss 500.0 >= 400.0 USDT today (UTC), now 0.0; holds until the next UTC day" in rejection.detail
    eng.on_mark(USDM, "BTCUSDT", 95.0, t + 4 * S)
    midnight = ns("2024-03-02T00:00:00")
    assert eng.evaluate(midnight - 1).phase == HALTED
    actions = eng.evaluate(midnight)
    assert (actions.phase, actions.reason) == (ACTIVE, "")
    assert [(tr.from_phase, tr.to_phase) for tr in actions.transitions] == [(HALTED, ACTIVE)]
    assert eng.usage()["daily_pnl_usdt"] == 0.0  # new baseline: the equity just before the new day
    # the new day's loss is measured from the new baseline: −350 more reduces, −500 halts again
    eng.on_mark(USDM, "BTCUSDT", 91.5, midnight + S)
    assert eng.usage()["daily_pnl_usdt"] == pytest.approx(-350.0)
    assert eng.phase == REDUCING
    eng.on_mark(USDM, "BTCUSDT", 90.0, midnight + 2 * S)
    assert (eng.phase, eng.reason) == (HALTED, reasons.RISK_DAILY_LOSS)


def test_daily_pnl_includes_fees_and_realized_pnl() -> None:
    eng = engine()
    fill(eng, 1000, strategy="a", fee=0.4)
    fill(eng, 1100, strategy="a", side=-1, price=110.0, fee=0.44, ts=T0 + S)
    assert eng.usage()["daily_pnl_usdt"] == pytest.approx(100.0 - 0.84)


def test_drawdown_halt_holds_until_a_changed_spec_re_arms_it() -> None:
    eng = engine(config(limits={"max_daily_loss_usdt": 5000.0}), equity=10_000)
    fill(eng, 10_000, strategy="a", leverage=5)
    eng.on_mark(USDM, "BTCUSDT", 110.0, T0 + S)  # new peak 11000
    eng.on_mark(USDM, "BTCUSDT", 100.0, T0 + 2 * S)  # 9.09 % below it
    assert (eng.phase, eng.reason) == (HALTED, reasons.RISK_DRAWDOWN)
    eng.on_mark(USDM, "BTCUSDT", 109.0, T0 + 3 * S)  # recovered to 0.9 %: still halted
    assert eng.evaluate(T0 + 4 * S).phase == HALTED
    eng.update_config(config(limits={"max_daily_loss_usdt": 5000.0}), T0 + 5 * S)  # same spec: no re-arm
    assert eng.phase == HALTED
    eng.update_config(config(limits={"max_daily_loss_usdt": 5001.0}), T0 + 6 * S)
    # re-armed: no longer Halted, but the drawdown breaker cools down from its recovery at T0 + 3 s
    assert (eng.phase, eng.reason) == (REDUCING, reasons.BREAKER_DRAWDOWN)
    assert eng.evaluate(T0 + 63 * S).phase == ACTIVE


def test_a_changed_spec_re_arms_but_a_breach_that_still_holds_halts_again_at_once() -> None:
    eng = engine()
    _halt_on_daily_loss(eng)
    eng.update_config(config(limits={"max_orders_per_minute": 61}), T0 + 2 * S)
    assert (eng.phase, eng.reason) == (HALTED, reasons.RISK_DAILY_LOSS)
    eng.update_config(config(limits={"max_daily_loss_usdt": 600.0}), T0 + 3 * S)  # 500 < 600, but ≥ 80 %
    assert (eng.phase, eng.reason) == (REDUCING, reasons.RISK_DAILY_LOSS)


def test_consecutive_losses_end_with_a_win_or_a_spec_change_and_a_scratch_changes_nothing() -> None:
    eng = engine()
    for i in range(5):
        eng.on_trade_closed("a", -1.0, T0 + i)
    assert eng.phase == REDUCING
    eng.on_trade_closed("a", 0.0, T0 + 5)
    assert (eng.phase, eng.usage()["consecutive_losses"]) == (REDUCING, 5)
    eng.on_trade_closed("b", 3.0, T0 + 6)
    assert (eng.phase, eng.usage()["consecutive_losses"]) == (ACTIVE, 0)
    for i in range(5):
        eng.on_trade_closed("a", -1.0, T0 + 10 + i)
    eng.update_config(config(limits={"max_consecutive_losses": 6}), T0 + 20)
    assert (eng.phase, eng.usage()["consecutive_losses"]) == (ACTIVE, 0)


def test_every_change_of_phase_or_reason_is_a_transition_with_its_reason() -> None:
    eng = engine()
    eng.observe(T0, ingest_lag_ms=900.0)
    for i in range(5):
        eng.on_trade_closed("a", -1.0, T0 + 1 + i)
    eng.update_config(config(halt=True), T0 + 10)
    eng.update_config(config(halt=False), T0 + 11)
    actions = eng.evaluate(T0 + 12)
    assert [(t.from_phase, t.to_phase, t.reason) for t in actions.transitions] == [
        (ACTIVE, REDUCING, reasons.BREAKER_INGEST_LAG),
        (REDUCING, REDUCING, reasons.RISK_CONSECUTIVE_LOSSES),  # a risk reason outranks a breaker
        (REDUCING, HALTED, reasons.KILL_SWITCH),
        # halt → false is a spec change: the losing streak is reset, the breaker still holds
        (HALTED, REDUCING, reasons.BREAKER_INGEST_LAG),
    ]
    assert list(eng.history) == list(actions.transitions)


# --- headroom and usage -------------------------------------------------------------------------------------
def test_headroom_needs_active_no_breaker_and_room_for_a_probe() -> None:
    eng = engine()
    assert eng.headroom("a", USDM, "BTCUSDT")
    fill(eng, 1000, strategy="a")
    assert not eng.headroom("a", USDM, "BTCUSDT")  # one entry per market is open
    assert eng.headroom("b", USDM, "ETHUSDT")
    for i in range(4):
        fill(eng, 4750, strategy=f"f{i}", symbol=f"F{i}USDT")
    assert not eng.headroom("b", USDM, "ETHUSDT")  # gross 20000: not even 1 USDT fits, in either direction
    eng2 = engine()
    eng2.observe(T0, gap_ratio_pct=5.0)
    assert not eng2.headroom("a", USDM, "BTCUSDT")


def test_headroom_on_futures_takes_either_direction_and_on_spot_only_buys() -> None:
    eng = engine(config(limits={"max_concurrent_entries_per_market": 2}))
    fill(eng, 8000, strategy="a", symbol="BTCUSDT")  # net BTCUSDT at its limit: only a short probe fits
    assert eng.headroom("b", USDM, "BTCUSDT")
    fill(eng, 8000, strategy="a", venue=SPOT, symbol="ETHUSDT", leverage=1)  # spot quote 8000: full
    assert not eng.headroom("b", SPOT, "ETHUSDT")


def test_usage_reports_every_risk_usage_field() -> None:
    eng = engine()
    fill(eng, 1000, strategy="a", leverage=5, fee=1.0)
    eng.on_mark(USDM, "BTCUSDT", 110.0, T0 + S)
    fill(eng, 500, strategy="b", venue=SPOT, symbol="ETHUSDT", leverage=1, ts=T0 + S)
    eng.record_order(order(180, strategy="c", venue=SPOT, symbol="SOLUSDT", price=90.0, leverage=1, ts=T0 + 2 * S))
    eng.on_trade_closed("z", -2.0, T0 + 2 * S)
    usage = eng.usage()
    assert usage == pytest.approx(
        {
            "gross_notional_usdt": 1100.0 + 500.0,
            "futures_margin_usdt": 220.0,
            "spot_quote_usdt": 500.0 + 180.0,
            "daily_pnl_usdt": 100.0 - 1.0,
            "drawdown_pct": 0.0,
            "orders_last_minute": 1,
            "consecutive_losses": 1,
        }
    )
    assert RiskUsage(**usage).gross_notional_usdt == pytest.approx(1600.0)


def test_the_same_inputs_give_the_same_phases_and_rejections() -> None:
    def run() -> list[object]:
        eng = engine()
        out: list[object] = []
        fill(eng, 7000, strategy="a")
        out.append(eng.check_order(order(1500, strategy="b", symbol="ETHUSDT")))
        eng.observe(T0 + S, ingest_lag_ms=700.0, decision_latency_ns=9_000_000)
        out.append(eng.check_order(order(100, strategy="b", symbol="ETHUSDT", ts=T0 + S)))
        eng.on_mark(USDM, "BTCUSDT", 90.0, T0 + 2 * S)
        out.append(eng.evaluate(T0 + 3 * S))
        out.append(eng.usage())
        return out

    assert run() == run()


def test_unknown_venue_is_an_error_not_an_unlimited_market() -> None:
    eng = engine()
    with pytest.raises(ValueError, match="unknown venue 'kraken'"):
        eng.check_order(order(100, venue="kraken"))


@pytest.mark.parametrize(
    ("field", "value"), [("side", 0), ("qty", 0.0), ("qty", float("nan")), ("price", -1.0), ("leverage", 0)]
)
def test_order_request_rejects_nonsense(field: str, value: float) -> None:
    kwargs: dict[str, object] = {
        "strategy": "a",
        "venue": USDM,
        "symbol": "BTCUSDT",
        "side": 1,
        "qty": 1.0,
        "price": 100.0,
        "reduce_only": False,
        "is_entry": True,
        "leverage": 1,
        "ts": T0,
    }
    kwargs[field] = value
    with pytest.raises(ValueError, match=field):
        OrderRequest(**kwargs)  # type: ignore[arg-type]
