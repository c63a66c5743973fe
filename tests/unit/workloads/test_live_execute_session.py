"""Live execute's session rules (workloads/live/execute_session.py), with plain calls instead of Kafka and
Binance: sessions and sequence numbers, child orders queued from the desk, venue answers → report and fill
rows, the account, and what the venue report to decide carries."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tradeplane.engine.runtime.instruments import instrument_table
from tradeplane.engine.sim.executors import PARENT_FILLED
from tradeplane.engine.sim.orders import FILLED, MARKET, OPEN, REASON_USER_CANCEL
from tradeplane.engine.sim.portfolio import Portfolio
from tradeplane.engine.sim.routing import Route, RoutingTable
from tradeplane.engine.trading.reconcile import VenueOrder
from tradeplane.workloads.live.execute_orders import client_order_id
from tradeplane.workloads.live.execute_session import LiveExecution
from tradeplane.workloads.paper.protocol import (
    ANNOUNCE_SESSION,
    TOUCH_DTYPE,
    CancelParent,
    OrderCommands,
    ProtocolError,
    StartParent,
    decode_venue_step,
    encode_venue_step,
)
from tradeplane.workloads.venues import ExecutionReport

ACCOUNT = "unit"
S1, S2 = 0x51, 0x52
T0 = 1_700_000_000_000_000_000


def touch(_symbol: int) -> tuple[float, float]:
    return 60000.0, 60000.1


def live() -> LiveExecution:
    inst = instrument_table([("binance-usdm", "BTCUSDT")])
    spec = inst[0].contract(leverage=1.0)
    return LiveExecution(ACCOUNT, ["BTCUSDT"], {0: spec.tick_size}, {0: spec.lot_size}, Portfolio([spec], 10_000.0))


def start(pid: int, qty: float, style: str = "immediate", wait_ms: float = 1000.0) -> StartParent:
    routing = RoutingTable((Route(0.0, wait_ms),)) if style == "maker_then_taker" else None
    return StartParent(pid, 0, 1, qty, style, routing=routing)


def trade(
    coid: str, qty: float, cum: float, status: str, price: float = 60000.1, maker: bool = False
) -> ExecutionReport:
    return ExecutionReport("binance-usdm", "BTCUSDT", coid, "1", 1, "MARKET", "TRADE", status, qty, price, cum, cum,
                           price, 0.0, "USDT", qty * price * 4e-4, maker, "t", T0 + 5)  # fmt: skip


def test_immediate_parent_queues_one_market_child_and_its_fill_reaches_account_and_report() -> None:
    x = live()
    assert x.apply(OrderCommands(S1, 1, T0, [start(1, 0.0037)]), T0, touch) == "applied"
    x.step(T0, touch)
    out = x.take_outbound()
    assert len(out.submit) == 1 and not out.cancel
    coid, child = out.submit[0]
    assert coid == client_order_id(ACCOUNT, S1, 1)
    assert (int(child.row["type"]), float(child.row["qty"])) == (MARKET, pytest.approx(0.003))
    assert child.mid_at_send == pytest.approx(60000.05)
    x.on_order(coid, VenueOrder(coid, "BTCUSDT", 1, 0.003, 0.0, 0.0, "NEW"), T0 + 1)
    x.on_report(trade(coid, 0.003, 0.003, "FILLED"), T0 + 2)
    x.on_order(coid, VenueOrder(coid, "BTCUSDT", 1, 0.003, 0.0, 0.0, "NEW"), T0 + 3)  # late ack: no step back
    assert float(x.portfolio.acct["position"][0]) == pytest.approx(0.003)
    x.step(T0 + 4, touch)
    step = decode_venue_step(encode_venue_step(x.report(T0 + 4, np.zeros(1, TOUCH_DTYPE))))  # type: ignore[arg-type]
    assert (step.session, step.seq, step.events.shape[0], step.tops.shape[0]) == (S1, 1, 0, 0)
    assert [int(s) for s in step.reports["status"]] == [OPEN, FILLED]
    assert step.fills.shape[0] == 1 and float(step.fills["px"][0]) == 60000.1
    assert float(step.account["position"][0]) == pytest.approx(0.003)
    p = step.parents[0]
    assert (int(p["parent_id"]), int(p["status"]), float(p["filled"]), float(p["vwap"])) == (
        1, PARENT_FILLED, pytest.approx(0.003), pytest.approx(60000.1))  # fmt: skip
    assert x.report(T0 + 5, np.zeros(1, TOUCH_DTYPE)) is None  # nothing changed since


def test_sequence_rules_redelivery_gap_old_session_and_new_session() -> None:
    x = live()
    assert x.apply(OrderCommands(S1, 2, T0, []), T0, touch) == "ignored"  # a session not seen from its start
    assert x.apply(OrderCommands(S1, 1, T0, [start(1, 0.01, "maker_then_taker")]), T0, touch) == "applied"
    x.step(T0, touch)
    ((coid, _),) = x.take_outbound().submit
    x.on_order(coid, VenueOrder(coid, "BTCUSDT", 1, 0.01, 0.0, 60000.0, "NEW"), T0)
    assert x.apply(OrderCommands(S1, 1, T0, [start(1, 0.01)]), T0, touch) == "redelivered"
    assert x.counts["parents"] == 1  # the redelivered start made no second parent
    with pytest.raises(ProtocolError, match="lost"):
        x.apply(OrderCommands(S1, 3, T0, []), T0, touch)
    assert x.apply(OrderCommands(S2, 1, T0, []), T0, touch) == "applied"  # decide restarted: new desk
    assert x.take_outbound().cancel == [coid]  # the old session's working child is cancelled
    assert x.apply(OrderCommands(S1, 2, T0, []), T0, touch) == "ignored"  # the old session is over
    with pytest.raises(ProtocolError, match="pid"):
        x.apply(OrderCommands(S2, 2, T0, [start(5, 0.01)]), T0, touch)  # the new desk numbers from 1


def test_maker_cancel_then_taker_takes_exactly_the_remainder() -> None:
    x = live()
    x.apply(OrderCommands(S1, 1, T0, [start(1, 0.005, "maker_then_taker", wait_ms=100.0)]), T0, touch)
    x.step(T0, touch)
    ((maker, child),) = x.take_outbound().submit
    assert int(child.row["price_tick"]) == 600000  # at the bid
    x.on_order(maker, VenueOrder(maker, "BTCUSDT", 1, 0.005, 0.0, 60000.0, "NEW"), T0 + 1)
    x.on_report(trade(maker, 0.002, 0.002, "PARTIALLY_FILLED", 60000.0, maker=True), T0 + 2)
    x.step(T0 + 50 * 1_000_000, touch)
    assert not x.take_outbound().cancel  # the wait is not over
    x.step(T0 + 100 * 1_000_000, touch)
    assert x.take_outbound().cancel == [maker]
    x.on_order(maker, VenueOrder(maker, "BTCUSDT", 1, 0.005, 0.002, 60000.0, "CANCELED", 60000.0), T0 + 101)
    x.step(T0 + 102 * 1_000_000, touch)
    ((taker, tchild),) = x.take_outbound().submit
    assert taker == client_order_id(ACCOUNT, S1, 2)
    assert int(tchild.row["type"]) == MARKET and float(tchild.row["qty"]) == pytest.approx(0.003)
    rep = x.report(T0, np.zeros(1, TOUCH_DTYPE))
    assert rep is not None
    cancelled = rep.reports[rep.reports["order_id"] == 1][-1]
    assert int(cancelled["reason"]) == REASON_USER_CANCEL and float(cancelled["filled"]) == pytest.approx(0.002)
    assert math.isclose(float(rep.account["position"][0]), 0.002)


def test_cancel_of_a_parent_cancels_its_working_child_and_unknown_ids_are_protocol_errors() -> None:
    x = live()
    x.apply(OrderCommands(S1, 1, T0, [start(1, 0.01, "maker_then_taker")]), T0, touch)
    x.step(T0, touch)
    ((coid, _),) = x.take_outbound().submit
    x.on_order(coid, VenueOrder(coid, "BTCUSDT", 1, 0.01, 0.0, 60000.0, "NEW"), T0)
    x.apply(OrderCommands(S1, 2, T0, [CancelParent(1)]), T0, touch)
    assert x.take_outbound().cancel == [coid]
    with pytest.raises(ProtocolError, match="never started"):
        x.apply(OrderCommands(S1, 3, T0, [CancelParent(9)]), T0, touch)


def test_the_account_is_seeded_from_the_venue_and_announced_and_each_session_is_greeted_with_it() -> None:
    x = live()
    assert x.seed_positions({"BTCUSDT": (-0.02, 61000.0), "ETHUSDT": (1.0, 3000.0)}) == ["ETHUSDT"]  # not traded
    ann = decode_venue_step(encode_venue_step(x.announcement(T0, np.zeros(1, TOUCH_DTYPE))))  # type: ignore[arg-type]
    assert (ann.session, ann.seq, ann.now) == (ANNOUNCE_SESSION, 0, T0)
    assert (float(ann.account["position"][0]), float(ann.account["entry_px"][0])) == (-0.02, 61000.0)
    assert ann.parents.shape[0] == ann.fills.shape[0] == 0
    assert x.report(T0, np.zeros(1, TOUCH_DTYPE)) is None  # no session yet: nothing to report to
    assert x.apply(OrderCommands(S1, 1, T0, []), T0, touch) == "applied"  # a decide session's hello
    assert x.pending_report()
    hello = x.report(T0 + 1, np.zeros(1, TOUCH_DTYPE))
    assert hello is not None and (hello.session, hello.seq) == (S1, 1)  # answered although nothing changed
    assert float(hello.account["position"][0]) == -0.02
    assert x.report(T0 + 2, np.zeros(1, TOUCH_DTYPE)) is None and not x.pending_report()
    assert x.apply(OrderCommands(S2, 1, T0, []), T0, touch) == "applied"  # the next session is greeted too
    again = x.report(T0 + 3, np.zeros(1, TOUCH_DTYPE))
    assert again is not None and (again.session, again.seq) == (S2, 1)
    x.seed_positions({"BTCUSDT": (0.0, math.nan)})
    assert float(x.portfolio.acct["position"][0]) == 0.0 and math.isnan(float(x.portfolio.acct["entry_px"][0]))
