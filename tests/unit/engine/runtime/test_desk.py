"""The desk runtime on a synthetic market with the rules-only model: entries flow through risk and the
executors into trades, the kill switch stops everything within one tick, and a replay is identical.

The strategy is the example USD-M strategy with its thresholds opened up (``support.open_desk``), so that
entries happen every few seconds and each property has something to bite on.
"""

from __future__ import annotations

import math

import pytest

from tradeplane.engine.risk.config import RiskConfig
from tradeplane.engine.runtime.desk import DeskRuntime
from tradeplane.engine.sim.runner import Context, MarketBatch, run_backtest
from tradeplane.workloads.local.runner import backtest_config
from tradeplane.workloads.local.source import synthetic_market

from .support import INSTRUMENTS, budget_spec, open_desk

_S = 1_000_000_000


def _desk(halt_at_s: float | None = None, refuse_until_s: float | None = None) -> tuple[DeskRuntime, object]:
    desk, budget, instruments = open_desk(), budget_spec(), INSTRUMENTS
    risk = desk.budgets["desk-default"]
    data = synthetic_market(instruments, seconds=300, seed=21)
    cfg = backtest_config(desk, instruments, initial_balance=10_000.0, seed=0)
    if halt_at_s is None and refuse_until_s is None:
        return desk, run_backtest(data.events, desk, cfg)
    t0 = int(data.events["ingest_ts"][0])
    halted = {"at": 0}

    class Interfering:
        """The desk, plus an operator flipping ``halt: true`` at one moment, or a venue side that refuses
        every parent until another (as live decide's does until execute greets its session)."""

        def on_batch(self, ctx: Context, batch: MarketBatch) -> None:
            if halt_at_s is not None and not halted["at"] and batch.now - t0 >= halt_at_s * _S:
                halted["at"] = batch.now
                risk.update_config(RiskConfig.from_spec(budget.model_copy(update={"halt": True})), batch.now)
            if refuse_until_s is not None:
                refusing = batch.now - t0 < refuse_until_s * _S
                setattr(ctx, "order_refusal", (lambda: "venue_down") if refusing else (lambda: None))  # noqa: B010
            desk.on_batch(ctx, batch)

    run_backtest(data.events, Interfering(), cfg)
    return desk, halted["at"]


@pytest.fixture(scope="module")
def free_run() -> DeskRuntime:
    return _desk()[0]


def test_entries_flow_through_risk_and_executors_into_closed_trades(free_run: DeskRuntime) -> None:
    out = free_run.outbox
    assert len(out.intents) >= 5
    entries = [o for o in out.orders if o["status"] == "NEW" and o["client_order_id"].startswith("tpe_")]
    assert len(entries) == len(out.intents)
    # every trade ended (horizon, stop or target) and was booked with fills on both legs
    trades = free_run.strategies[0].trades.trades()
    closed = [t for t in trades if str(t.state) == "CLOSED" and t.filled_qty == 0]
    assert len(closed) >= 3
    assert {t.close_reason for t in closed} <= {"horizon", "stop", "take-profit", "trailing", "entry-unfilled"}
    legs = {f["client_order_id"][:3] for f in out.fills}
    assert {"tpe", "tpx"} <= legs
    # every signal is accounted for: entered, or skipped with a reason that is also a rejection row
    skipped = [s for s in out.signals if s.decision == "skip"]
    assert all(s.reason for s in skipped)
    assert len([r for r in out.rejections if r["stage"] == "decision"]) == len(skipped)
    assert all(math.isfinite(s.p_up) for s in out.signals if s.model_version == "rules-fallback")


def test_kill_switch_stops_new_orders_within_one_tick() -> None:
    desk, halted_at = _desk(halt_at_s=150)
    assert isinstance(halted_at, int) and halted_at > 0
    tick = desk.strategies[0].tick_ns
    before = [o for o in desk.outbox.orders if o["status"] == "NEW" and o["ts"] < halted_at]
    after = [o for o in desk.outbox.orders if o["status"] == "NEW" and o["ts"] >= halted_at]
    assert before, "no orders before the halt: the test would prove nothing"
    assert after == []
    late = [s for s in desk.outbox.signals if s.infer_ts >= halted_at + tick]
    assert late and all(s.decision == "skip" and s.reason == "GATE_RISK_HEADROOM" for s in late)
    events = [e for e in desk.outbox.risk_events if e["to_phase"] == "Halted"]
    assert events and events[0]["reason"] == "KILL_SWITCH" and events[0]["ts"] <= halted_at + tick


def test_the_same_desk_on_the_same_data_decides_and_fills_identically(free_run: DeskRuntime) -> None:
    again = _desk()[0]
    assert [s.id for s in again.outbox.signals] == [s.id for s in free_run.outbox.signals]
    assert [(f["client_order_id"], f["qty"], f["price"]) for f in again.outbox.fills] == [
        (f["client_order_id"], f["qty"], f["price"]) for f in free_run.outbox.fills
    ]


def test_a_venue_side_that_refuses_gets_no_parent_and_the_desk_enters_once_it_accepts(
    free_run: DeskRuntime,
) -> None:
    desk, _ = _desk(refuse_until_s=100)
    out = desk.outbox
    t0 = min(s.infer_ts for s in out.signals)
    refused = [r for r in out.rejections if r["stage"] == "venue"]
    # the free run entered in that window: here each of those entries is a rejection instead of a parent
    early = [o for o in free_run.outbox.orders if o["status"] == "NEW" and o["ts"] - t0 < 100 * _S]
    assert early, "the free run sent nothing in the window: the test would prove nothing"
    assert refused and all(r["reason"] == "venue_down" and r["ts"] - t0 < 100 * _S for r in refused)
    assert all(r["intent_id"] and r["detail"].startswith("entry of ") for r in refused)
    orders = [o for o in out.orders if o["status"] == "NEW"]
    assert orders and all(o["ts"] - t0 >= 100 * _S for o in orders)
    entries = [o for o in orders if o["client_order_id"].startswith("tpe_")]
    assert out.intents and len(out.intents) == len(entries)  # only the entries that went out are intents
    assert len(desk.strategies[0].trades.trades()) == len(out.intents)  # a refused entry opened no trade
