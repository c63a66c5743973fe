"""Paper mode split in two: the simulator with a stand-in strategy (``execute``) and the desk over a mirror
of the venue (``decide``), exchanging encoded venue steps and order commands. The split run must produce
the same records and the same venue result as the desk run in-process — for each execution policy (twap,
maker-then-taker with a routing table, immediate) — and the protocol must reject what does not fit.

Transport here is a function call over the encoded bytes; the Kafka transport is exercised by the
four-process test (tests/integration/test_dataplane_processes.py).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tradeplane.api.v1alpha1.riskbudget import RiskBudgetSpec
from tradeplane.api.v1alpha1.strategy import StrategySpec
from tradeplane.engine.risk.config import RiskConfig
from tradeplane.engine.risk.engine import RiskEngine
from tradeplane.engine.runtime.desk import DeskRuntime
from tradeplane.engine.runtime.instruments import instrument_table
from tradeplane.engine.runtime.outbox import Outbox
from tradeplane.engine.runtime.strategy import StrategyRuntime
from tradeplane.engine.sim.routing import Route, RoutingTable
from tradeplane.engine.sim.runner import BacktestConfig, run_backtest
from tradeplane.workloads.bus.outbox import outbox_messages
from tradeplane.workloads.local.runner import backtest_config
from tradeplane.workloads.local.source import synthetic_market
from tradeplane.workloads.paper.decider import PaperDecider
from tradeplane.workloads.paper.protocol import (
    CancelParent,
    OrderCommands,
    ProtocolError,
    StartParent,
    VenueStep,
    decode_order_commands,
    decode_venue_step,
    encode_order_commands,
    encode_venue_step,
)
from tradeplane.workloads.paper.remote import RemoteDesk

REPO = Path(__file__).resolve().parents[3]
POLICIES = {
    "twap": {"policy": "twap", "twapJitterPct": 10},
    "maker": {"policy": "maker-then-taker"},
    "immediate": {"policy": "immediate"},
}


def _spec(name: str) -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load((REPO / "examples" / name).read_text())["spec"]
    return spec


def _desk(policy: str) -> DeskRuntime:
    raw = _spec("21-strategy-btc-usdm.yaml")
    raw["decision"] |= {"tau": 0.5, "kappa": 0.0, "cooldownSeconds": 5, "horizonSeconds": 20}
    raw["gates"] |= {"minTop1DepthUsdt": 0, "maxSpreadBps": 50}
    raw["features"] = {"set": "microstructure-v1", "clock": "time", "barMs": 1000}
    raw["execution"] = POLICIES[policy]
    spec = StrategySpec.model_validate(raw)
    budget = RiskBudgetSpec.model_validate(_spec("00-riskbudget.yaml"))
    instruments = instrument_table([("binance-usdm", "BTCUSDT")])
    strategy = StrategyRuntime.build("usdm-btc", spec, instruments, None)
    risk = RiskEngine("desk-default", RiskConfig.from_spec(budget), initial_equity=10_000.0)
    return DeskRuntime([strategy], {"desk-default": risk}, instruments)


def _collect(desk: DeskRuntime) -> list[list[tuple[str, str, bytes]]]:
    """Every batch's messages exactly as they would go on the bus."""
    out: list[list[tuple[str, str, bytes]]] = []
    _hooked(desk, out)
    return out


def _config(desk: DeskRuntime) -> BacktestConfig:
    return backtest_config(desk, desk.instruments, initial_balance=10_000.0, seed=0)


@pytest.fixture(scope="module")
def events() -> np.ndarray:
    ev: np.ndarray = synthetic_market(instrument_table([("binance-usdm", "BTCUSDT")]), seconds=240, seed=21).events
    return ev


@pytest.mark.parametrize("policy", list(POLICIES))
def test_split_run_equals_the_in_process_run(events: np.ndarray, policy: str) -> None:
    ref_desk = _desk(policy)
    ref_msgs = _collect(ref_desk)
    ref = run_backtest(events, ref_desk, _config(ref_desk))

    got_msgs: list[list[tuple[str, str, bytes]]] = []
    cfg = _config(_desk(policy))
    decider = PaperDecider(lambda: _hooked(_desk(policy), got_msgs), cfg)

    def exchange(seq: int, data: bytes) -> OrderCommands:
        answer = decider.answer(decode_venue_step(data))
        assert answer is not None and answer.seq == seq
        return decode_order_commands(encode_order_commands(answer))

    remote = RemoteDesk(exchange, session=42, n_symbols=1, levels=cfg.top_levels)
    got = run_backtest(events, remote, cfg)

    n_orders = sum(1 for batch in ref_msgs for t, _, _ in batch if t.startswith("fills."))
    assert n_orders >= 10  # the desk traded: the comparison covers orders, fills and positions
    assert got_msgs == ref_msgs
    assert got.digest() == ref.digest()
    assert remote.commands > 0 and decider.sessions == 1


def _hooked(desk: DeskRuntime, sink: list[list[tuple[str, str, bytes]]]) -> DeskRuntime:
    def drain(batch: Outbox) -> None:
        sink.append(outbox_messages(batch, account="paper", lineage={"run": "t"}))

    desk.on_drain = drain
    return desk


def _step(seq: int, session: int = 1) -> VenueStep:
    from tradeplane.engine.events import EVENT_DTYPE, book_top_dtype
    from tradeplane.engine.sim.orders import FILL_DTYPE, ORDER_DTYPE
    from tradeplane.engine.sim.portfolio import ACCOUNT_DTYPE
    from tradeplane.engine.sim.result import PARENT_DTYPE
    from tradeplane.workloads.paper.protocol import TOUCH_DTYPE

    ev = np.zeros(3, EVENT_DTYPE)
    ev["px"] = [1.5, math.nan, 3.0]
    touch = np.zeros(1, TOUCH_DTYPE)
    touch["bid"], touch["ask"] = 100.0, 100.1
    return VenueStep(session, seq, 1_000 * seq, ev, np.zeros(2, book_top_dtype(10)), np.zeros(0, FILL_DTYPE),
                     np.zeros(1, ORDER_DTYPE), np.zeros(0, PARENT_DTYPE), np.zeros(1, ACCOUNT_DTYPE), touch)  # fmt: skip


def test_venue_step_round_trips_and_names_what_is_broken() -> None:
    step = _step(3)
    data = encode_venue_step(step)
    back = decode_venue_step(data)
    assert (back.session, back.seq, back.now, back.levels) == (1, 3, 3_000, 10)
    assert back.events.tobytes() == step.events.tobytes() and back.tops.shape == (2,)
    assert back.touch["ask"][0] == 100.1 and math.isnan(back.events["px"][1])
    with pytest.raises(ProtocolError, match="magic"):
        decode_venue_step(b"XXXX" + data[4:])
    with pytest.raises(ProtocolError, match="events"):
        decode_venue_step(data[:80])
    with pytest.raises(ProtocolError, match="length"):
        decode_venue_step(data + b"\0" * 8)


def test_order_commands_round_trip_and_reject_bad_fields() -> None:
    routing = RoutingTable((Route(0.0, 200.0), Route(1_000.0, 300.0, slices=3, interval_ms=50.0)))
    msg = OrderCommands(1, 2, 3, [StartParent(1, 0, 1, 0.123456789012345, "maker_then_taker", None, routing, 0.35),
                                  CancelParent(1)])  # fmt: skip
    assert decode_order_commands(encode_order_commands(msg)) == msg
    with pytest.raises(ProtocolError, match=r"commands\[0\]"):
        decode_order_commands(b'{"v":1,"session":1,"seq":1,"now":0,"commands":[{"op":"start","pid":1}]}')
    with pytest.raises(ProtocolError, match="style"):
        decode_order_commands(b'{"v":1,"session":1,"seq":1,"now":0,"commands":[{"op":"start","pid":1,'
                              b'"symbol":0,"side":1,"qty":1,"style":"yolo"}]}')  # fmt: skip


def test_decider_answers_redeliveries_once_and_refuses_gaps(events: np.ndarray) -> None:
    built: list[int] = []

    def build() -> DeskRuntime:
        built.append(1)
        return _desk("immediate")

    decider = PaperDecider(build, _config(_desk("immediate")))
    with pytest.raises(ProtocolError, match="starts at step 2"):
        decider.answer(_step(2))
    first = decider.answer(_step(1))
    assert first is not None and first.seq == 1
    assert decider.answer(_step(1)) is first  # redelivered: the same answer, the desk not run again
    assert decider.desk is not None and decider.desk.batches == 1
    with pytest.raises(ProtocolError, match="lost"):
        decider.answer(_step(3))
    assert decider.answer(_step(5, session=0)) is None  # a straggler of an old session
    assert decider.answer(_step(1, session=9)) is not None  # a new session: a fresh desk
    assert len(built) == 2 and decider.desk.batches == 1
