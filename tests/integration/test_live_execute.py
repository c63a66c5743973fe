"""``tradeplane workload execute`` in live mode as a real OS process: decide's commands (published here on
``orders.<account>``) carried out on a local Binance (tests/fixtures/binance_venue.py, USD-M) over the Tansu
broker, market data from the real USD-M capture as md batches, venue reports read back from
``venue.<account>``.

What each test proves is what the exchange saw (orders, ids, quantities, prices, cancels) and what decide
would receive (fills, order reports, parent rows, the account).
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest

from tests.fixtures.binance_venue import FakeBinance, FixtureOrder, Position, fake_binance
from tradeplane.engine.runtime.instruments import instrument_table
from tradeplane.engine.sim.executors import PARENT_FILLED
from tradeplane.engine.sim.routing import Route, RoutingTable
from tradeplane.workloads.bus.kafka import KafkaBus
from tradeplane.workloads.bus.mdbatch import encode_md_batch
from tradeplane.workloads.bus.topics import md_topic, orders_topic, venue_topic
from tradeplane.workloads.live.execute_orders import client_order_id
from tradeplane.workloads.local.source import capture_market
from tradeplane.workloads.paper.protocol import (
    ANNOUNCE_SESSION,
    Command,
    OrderCommands,
    StartParent,
    VenueStep,
    decode_order_commands,
    decode_venue_step,
    encode_order_commands,
)

from ..services.kafka import KafkaBroker
from .test_workload_process import WorkloadProcess, http

T = TypeVar("T")
CONSUMER = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}
REPO = Path(__file__).resolve().parents[2]
SYMBOL = "BTCUSDT"


def _manifests(tmp_path: Path) -> Path:
    out = tmp_path / "manifests"
    out.mkdir()
    (out / "00-riskbudget.yaml").write_text((REPO / "examples" / "00-riskbudget.yaml").read_text())
    text = (REPO / "examples" / "21-strategy-btc-usdm.yaml").read_text()
    assert "mode: paper" in text
    (out / "21-strategy.yaml").write_text(text.replace("mode: paper", "mode: live"))
    return out


def _env(bootstrap: str, fake: FakeBinance, manifests: Path, account: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEPLANE_", "BINANCE_"))}
    options: dict[str, Any] = {"manifests": [str(manifests)], "account": account, "binance_base_url": fake.base_url,
                               "binance_ws_url": fake.ws_url, "binance_timeout_s": 2.0, "binance_settle_s": 0.05,
                               "binance_poll_interval_s": 0.1}  # fmt: skip
    env |= {"TRADEPLANE_KAFKA__BOOTSTRAP_SERVERS": bootstrap, "OMP_NUM_THREADS": "1", "TRADEPLANE_LOG_LEVEL": "INFO",
            "BINANCE_API_KEY": fake.api_key, "BINANCE_API_SECRET": fake.secret}  # fmt: skip
    for key, value in options.items():
        env[f"TRADEPLANE_WORKLOAD__OPTIONS__{key.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    return env


def _until(what: str, probe: Callable[[], T | None], timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = probe()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def md_events(shared_dir: Path) -> np.ndarray:
    capture = shared_dir / "data" / "binance" / "ws" / "usdm_btcusdt_20240808.jsonl.gz"
    events: np.ndarray = capture_market([capture], instrument_table([("binance-usdm", SYMBOL)])).events[:20_000]
    return events


class Desk:
    """The test's stand-in for decide: publishes commands, feeds md, reads venue reports."""

    def __init__(self, bootstrap: str, account: str) -> None:
        self.account = account
        self.bus = KafkaBus(bootstrap, client_id=f"it-{account}", consumer_config=CONSUMER, fetch_wait_max_ms=10)
        self.bus.ensure_topics([orders_topic(account), venue_topic(account), md_topic("binance-usdm", SYMBOL)])
        self.reports = self.bus.consumer(venue_topic(account), max_queue=10_000, name=f"it-{account}-venue",
                                         auto_offset_reset="earliest")  # fmt: skip
        self.steps: list[VenueStep] = []  #: decide sessions' reports
        self.announcements: list[VenueStep] = []  #: execute starts (session 0)
        self.md_seq = 0

    def send(self, session: int, seq: int, commands: list[Command]) -> None:
        msg = OrderCommands(session, seq, time.time_ns(), commands)
        self.bus.publish(orders_topic(self.account), self.account, encode_order_commands(msg), seq=seq)
        self.bus.flush(timeout=10)

    def feed(self, events: np.ndarray, batch: int = 500) -> None:
        for start in range(0, events.shape[0], batch):
            data = encode_md_batch(events[start : start + batch], venue="binance-usdm", symbol=SYMBOL, seq=self.md_seq)
            self.bus.publish(md_topic("binance-usdm", SYMBOL), SYMBOL, data, seq=self.md_seq)
            self.md_seq += 1
        self.bus.flush(timeout=10)

    def read(self) -> list[VenueStep]:
        for r in self.reports.fetch(1000, timeout=0.1):
            step = decode_venue_step(bytes(r.value))
            (self.announcements if step.session == ANNOUNCE_SESSION else self.steps).append(step)
        return self.steps

    def close(self) -> None:
        self.bus.close(timeout=5)


def _ready(port: int, check: str, text: str) -> bool:
    _, body = http(port, "/readyz")
    return text in json.loads(body)["checks"][check]["reason"]


def _start(env: dict[str, str], tmp_path: Path, desk: Desk, events: np.ndarray) -> tuple[WorkloadProcess, int]:
    proc = WorkloadProcess(["execute", "--port", "0"], env, tmp_path)
    port = int(proc.wait_log("http endpoints listening", timeout=120)["port"])
    proc.wait_log("live execute started", timeout=60)
    # assigned and announced: waiting for a session, or already holding one (a decide that started first)
    _until("orders assignment", lambda: _ready(port, "session", "waiting for a decide session")
           or _ready(port, "session", "working children"))  # fmt: skip

    def touch_known() -> bool:
        desk.feed(events[:2000])  # the md consumer starts at the end: feed until execute has a touch
        return _ready(port, "market-data", "1 of 1 symbols with a touch")

    _until("a touch", touch_known, timeout=60)
    desk.feed(events[2000:])
    time.sleep(0.5)  # the orders consumer reads from the end: let its position settle
    return proc, port


def _orders(fake: FakeBinance, coid: str) -> list[FixtureOrder]:
    return fake.orders(SYMBOL, coid)


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    with fake_binance(market="usdm", prices={SYMBOL: "60000"}) as f:
        yield f


def test_commands_become_binance_orders_and_fills_come_back(
    kafka_broker: KafkaBroker, fake: FakeBinance, md_events: np.ndarray, tmp_path: Path
) -> None:
    account = f"live-{uuid.uuid4().hex[:8]}"
    desk = Desk(kafka_broker.bootstrap_servers, account)
    env = _env(kafka_broker.bootstrap_servers, fake, _manifests(tmp_path), account)
    proc, port = _start(env, tmp_path, desk, md_events)
    s, s2 = 0x5EED_0001, 0x5EED_0002
    try:
        # an immediate parent: one MARKET order, the quantity rounded down to the 0.001 step
        desk.send(s, 1, [StartParent(1, 0, 1, 0.0037, "immediate")])
        mkt = _until("the market order", lambda: _orders(fake, client_order_id(account, s, 1)))
        assert (len(mkt), mkt[0].type, str(mkt[0].qty), mkt[0].side) == (1, "MARKET", "0.003", "BUY")

        # maker then taker: a post-only LIMIT at the touch, partly filled, cancelled after the wait, rest taken
        wait = RoutingTable((Route(0.0, 1500.0),))
        desk.send(s, 2, [StartParent(2, 0, 1, 0.005, "maker_then_taker", routing=wait)])
        maker_id = client_order_id(account, s, 2)
        lim = _until("the maker order", lambda: _orders(fake, maker_id))[0]
        assert (lim.type, lim.tif, str(lim.qty)) == ("LIMIT", "GTX", "0.005")
        touch = _until("a report with the touch", lambda: [st for st in desk.read() if st.seq >= 1])[-1].touch
        assert float(lim.price) == pytest.approx(float(touch["bid"][0]))  # posted at the bid execute saw
        fake.fill(SYMBOL, maker_id, qty="0.002")
        taker = _until("the taker order", lambda: _orders(fake, client_order_id(account, s, 3)), timeout=10)
        assert _orders(fake, maker_id)[0].status == "CANCELED"
        assert (taker[0].type, str(taker[0].qty)) == ("MARKET", "0.003")  # exactly what the venue did not fill

        # a redelivered command (same seq) creates nothing
        desk.send(s, 2, [StartParent(2, 0, 1, 0.005, "maker_then_taker", routing=wait)])
        time.sleep(1.0)
        assert not _orders(fake, client_order_id(account, s, 4)) and len(_orders(fake, maker_id)) == 1

        def parents_done() -> list[VenueStep] | None:
            steps = desk.read()
            rows = {int(p["parent_id"]): p for st in steps for p in st.parents}
            return steps if len(rows) == 2 and all(int(p["status"]) == PARENT_FILLED for p in rows.values()) else None

        steps = _until("both parents filled", parents_done, timeout=20)
        assert [st.seq for st in steps] == list(range(1, len(steps) + 1)) and {st.session for st in steps} == {s}
        assert all(st.events.shape[0] == 0 and st.tops.shape[0] == 0 for st in steps)
        fills = np.concatenate([st.fills for st in steps])
        by_order = {int(o): (float(fills["qty"][fills["order_id"] == o].sum()),
                             sorted(set(fills["px"][fills["order_id"] == o].tolist()))) for o in (1, 2, 3)}  # fmt: skip
        limit_px = float(lim.price)
        assert by_order == {1: (pytest.approx(0.003), [60000.0]), 2: (pytest.approx(0.002), [limit_px]),
                            3: (pytest.approx(0.003), [60000.0])}  # fmt: skip
        assert int(fills["maker"][fills["order_id"] == 2][0]) == 1
        rows = {int(p["parent_id"]): p for st in steps for p in st.parents}
        assert float(rows[1]["filled"]) == pytest.approx(0.003) and float(rows[1]["vwap"]) == pytest.approx(60000.0)
        vwap2 = (0.002 * limit_px + 0.003 * 60000.0) / 0.005
        assert float(rows[2]["filled"]) == pytest.approx(0.005) and float(rows[2]["vwap"]) == pytest.approx(vwap2)
        assert float(steps[-1].account["position"][0]) == pytest.approx(0.008)  # = the fills
        assert float(fake.positions[SYMBOL].qty) == pytest.approx(0.008)

        # a working maker order, then decide restarts (session s2, seq 1): the old session's order is cancelled
        desk.send(s, 3, [StartParent(3, 0, -1, 0.004, "maker_then_taker", routing=RoutingTable((Route(0, 60e3),)))])
        old = client_order_id(account, s, 4)
        assert _until("the working order", lambda: _orders(fake, old))[0].status == "NEW"
        desk.send(s2, 1, [])
        _until("the old session's order cancelled", lambda: _orders(fake, old)[0].status == "CANCELED")
        desk.send(s2, 2, [StartParent(1, 0, 1, 0.002, "immediate")])  # the new desk numbers parents from 1
        _until("the new session's order", lambda: _orders(fake, client_order_id(account, s2, 1)))
        _until("a report of the new session", lambda: any(st.session == s2 and st.seq == 1 for st in desk.read()))

        # graceful shutdown: the working parent is stopped and its child cancelled before the process exits
        desk.send(s2, 3, [StartParent(2, 0, -1, 0.004, "maker_then_taker", routing=RoutingTable((Route(0, 60e3),)))])
        working = client_order_id(account, s2, 2)
        assert _until("the working order", lambda: _orders(fake, working))[0].status == "NEW"
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.proc.wait(timeout=60) == 0, "".join(proc.lines[-20:])
        assert _orders(fake, working)[0].status == "CANCELED"
        stopped = proc.wait_log("live execute stopped", timeout=5)
        assert stopped["working"] == 0 and stopped["command_to_ack_ms_p50"] > 0
        print("command → venue ack ms: p50", stopped["command_to_ack_ms_p50"], "max", stopped["command_to_ack_ms_max"])
    finally:
        proc.stop()
        desk.close()
    text = "".join(proc.lines)
    assert "Traceback" not in text, text[-3000:]
    assert port > 0


def test_restart_cancels_left_orders_and_a_seq_gap_exits_5(
    kafka_broker: KafkaBroker, fake: FakeBinance, md_events: np.ndarray, tmp_path: Path
) -> None:
    account = f"live-{uuid.uuid4().hex[:8]}"
    desk = Desk(kafka_broker.bootstrap_servers, account)
    env = _env(kafka_broker.bootstrap_servers, fake, _manifests(tmp_path), account)
    s = 0x7001
    proc, _ = _start(env, tmp_path, desk, md_events)
    second: WorkloadProcess | None = None
    try:
        desk.send(s, 1, [StartParent(1, 0, 1, 0.003, "maker_then_taker", routing=RoutingTable((Route(0, 60e3),)))])
        left = client_order_id(account, s, 1)
        assert _until("the resting order", lambda: _orders(fake, left))[0].status == "NEW"
        first = _until("the first execute's announcement", lambda: desk.read() is not None and desk.announcements)
        assert len(first) == 1 and float(first[0].account["position"][0]) == 0.0  # the venue held nothing
        proc.stop()  # SIGKILL: a crash, nothing cancelled
        assert _orders(fake, left)[0].status == "NEW"
        fake.positions[SYMBOL] = Position(qty=Decimal("-0.012"), entry=Decimal("59000.5"))  # e.g. a manual trade
        second, _ = _start(env, tmp_path, desk, md_events)
        assert _orders(fake, left)[0].status == "CANCELED"  # cancelled at start, before any command
        rec = next(json.loads(x) for x in second.lines if "cancelled orders left open at start" in x)
        assert rec["count"] == 1 and rec["orders"] == [left]
        # the restarted execute announces itself with the account seeded from the venue, not flat
        announced = _until("the second announcement", lambda: desk.read() is not None and desk.announcements[1:])
        acct = announced[0].account
        assert (float(acct["position"][0]), float(acct["entry_px"][0])) == (-0.012, 59000.5)
        assert announced[0].now > first[0].now
        desk.send(s + 1, 1, [])  # a decide session's hello: answered at once with the account
        greeting = _until("the greeting", lambda: [st for st in desk.read() if st.session == s + 1])
        assert greeting[0].seq == 1 and float(greeting[0].account["position"][0]) == -0.012
        assert greeting[0].parents.shape[0] == 0 and greeting[0].fills.shape[0] == 0
        desk.send(s + 1, 3, [])  # seq 2 lost
        assert second.proc.wait(timeout=60) == 5
        assert "command message 3 after 1 (1 lost)" in "".join(second.lines)
    finally:
        for p in (proc, second):
            if p is not None:
                p.stop()
        desk.close()


def test_a_decide_session_started_before_execute_is_taken_with_the_venues_account(
    fake: FakeBinance, trained: tuple[Path, Path], tmp_path: Path
) -> None:
    """decide first (its hello goes out while no execute reads), execute later: execute's announcement makes
    decide say the hello again, execute takes the session and greets it with the account seeded from the
    venue (a short position held before either started), and decide applies that report.

    The broker is the test's own: decide reads ``md.binance-usdm.*`` from the earliest offset, and on the
    session's shared broker other tests' market data would make it trade (send commands) before execute
    starts — a session execute then rightly ends."""
    from tests.integration.test_dataplane_processes import _env as decide_env
    from tests.integration.test_live_decide import live_manifests

    home, all_manifests = trained
    manifests = live_manifests(all_manifests)
    account = f"live-{uuid.uuid4().hex[:8]}"
    kafka_broker = KafkaBroker(tmp_path / "broker")
    kafka_broker.start().wait_ready(30)
    desk = Desk(kafka_broker.bootstrap_servers, account)
    fake.positions[SYMBOL] = Position(qty=Decimal("-0.007"), entry=Decimal("60100"))
    opts = {"manifests": [str(manifests)], "account": account, "home": str(home), "run_id": "hello-it"}
    decide = WorkloadProcess(["decide", "--port", "0"], decide_env(kafka_broker.bootstrap_servers, opts), tmp_path)
    execute: WorkloadProcess | None = None
    try:
        d_port = int(decide.wait_log("http endpoints listening", timeout=120)["port"])
        session = int(decide.wait_log("live session started", timeout=120)["session"])
        # no market data in this test: a desk that traded before execute's start would (rightly) end its session
        execute = WorkloadProcess(["execute", "--port", "0"], _env(kafka_broker.bootstrap_servers, fake, manifests,
                                                                  account), tmp_path)  # fmt: skip
        execute.wait_log("live execute started", timeout=120)

        def taken() -> str | None:
            _, body = http(d_port, "/readyz")
            reason = str(json.loads(body)["checks"]["desk"]["reason"])
            return reason if "1 venue reports" in reason else None

        assert "has not taken" not in _until("decide applied execute's greeting", taken, timeout=60)
        steps = _until("the greeting", lambda: [st for st in desk.read() if st.session == session])
        assert steps[0].seq == 1 and float(steps[0].account["position"][0]) == -0.007
        assert float(steps[0].account["entry_px"][0]) == 60100.0
        orders = desk.bus.consumer(orders_topic(account), max_queue=100, name=f"it-{account}-orders",
                                   auto_offset_reset="earliest")  # fmt: skip
        hellos: list[OrderCommands] = []
        _until("both hellos", lambda: hellos.extend(decode_order_commands(r.value) for r in orders.fetch(100, timeout=0.5))
               or len(hellos) >= 2)  # fmt: skip
        assert len(hellos) >= 2 and all((h.session, h.seq, h.commands) == (session, 1, []) for h in hellos)
    finally:
        for p in (execute, decide):
            if p is not None:
                p.stop()
        desk.close()
        kafka_broker.stop()
