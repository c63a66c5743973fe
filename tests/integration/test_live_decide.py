"""``tradeplane workload decide`` in live mode as a real OS process on Kafka (Tansu), execute NOT running.

Market data, in receive order on ``md.binance-usdm.BTCUSDT``: first 65 s of the real USD-M capture published
directly with live-like clocks (received up to now, exchange times moved by the same amount) — the window in
which the demo desk enters; then the replay server (the capture, exchange times rebased to the send time as
a live exchange stamps them) → ``tradeplane workload ingest``. The second phase replays the capture from its
start again, so its update ids would go back below the first phase's (a stale stream the book drops, a
restart no venue makes): the first phase's book ids are moved down by :data:`ID_SHIFT`, and the book resyncs
from ingest's REST snapshot as after a reconnect.

Checked, on one process run:

* signals appear on ``signals.<strategy>`` and equal, field by field, what the desk decides when the
  backtester runs it in-process over the events decide consumed (the md batches read back from Kafka, put
  in receive order as decide does) — every decision until the reference's first fill (after it the
  reference's simulator has filled the order; live, nobody has: execute is not running), and the model's
  score of every tick after it;
* the desk's entries go out on ``orders.<account>`` once the session is greeted (the test answers the hello
  as execute would, before any market data) and without a further answer: one session, seq 1 (the hello, no
  commands), 2, …, parents numbered 1, 2, … — as many entries as the reference made before its first fill;
* decide's book syncs on ingest's stream (the REST snapshot and the rebased diffs): decisions there see a
  touch, not only ``GATE_SPREAD`` (a NaN touch);
* a poison md record goes to ``dlq.md`` and the stream continues past it;
* a venue report fed on ``venue.<account>`` (seq 2: parent 1 filled) reaches the desk at its next tick: the fill
  and the position appear on ``fills.<account>`` / ``desk.<account>``;
* a report that skips a seq stops the process with exit code 5, the reason logged.

The broker is the test's own: decide reads ``md.binance-usdm.BTCUSDT`` from the earliest offset, which on
the session's shared broker holds other tests' market data.
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from tests.fixtures.binance_replay import ReplayServer
from tests.integration.test_dataplane_processes import CONSUMER, _env
from tests.integration.test_ingest_replay import USDM, capture
from tests.integration.test_ingest_workload import launch, stop
from tests.integration.test_workload_process import WorkloadProcess, http
from tests.services.kafka import KafkaBroker
from tradeplane.engine.decision.types import Signal
from tradeplane.engine.events import BBO, DEPTH, EVENT_DTYPE, KIND_MASK, SNAPSHOT, book_top_dtype
from tradeplane.engine.runtime.outbox import Outbox
from tradeplane.engine.sim.contracts import ContractSpec
from tradeplane.engine.sim.executors import PARENT_FILLED, STYLE_NAMES
from tradeplane.engine.sim.orders import FILL_DTYPE, ORDER_DTYPE
from tradeplane.engine.sim.portfolio import new_account
from tradeplane.engine.sim.result import PARENT_DTYPE
from tradeplane.engine.sim.runner import run_backtest
from tradeplane.workloads.bus.dedup import SequenceFilter
from tradeplane.workloads.bus.kafka import KafkaBus, parse_dead_letter
from tradeplane.workloads.bus.mdbatch import MdBatch, MdBatchError, decode_md_batch, encode_md_batch
from tradeplane.workloads.bus.rows import decode_rows
from tradeplane.workloads.bus.topics import md_topic, orders_topic, signals_topic, venue_topic
from tradeplane.workloads.codec import signal_from_proto
from tradeplane.workloads.local.manifests import load_desk
from tradeplane.workloads.local.runner import backtest_config, build_desk
from tradeplane.workloads.local.source import capture_market
from tradeplane.workloads.paper.feed import MarketFeed
from tradeplane.workloads.paper.protocol import (
    TOUCH_DTYPE,
    StartParent,
    VenueStep,
    decode_order_commands,
    encode_venue_step,
)

from .conftest import usdm_only

ACCOUNT = "live-it"
MD_TOPIC = md_topic("binance-usdm", "BTCUSDT")
S = 1_000_000_000
#: subtracted from the book update ids of the capture published directly (see the module docstring)
ID_SHIFT = 1_000_000_000_000
#: every decision field that does not depend on wall time (latency_ns) — equal to the reference's
DECISION_FIELDS = ("id", "strategy", "symbol", "exchange_ts", "ingest_ts", "infer_ts", "p_up", "expected_return_bps",
                   "cost_bps", "utility", "decision", "reason", "model_version", "config_rev", "size_mult")  # fmt: skip
SCORE_FIELDS = ("id", "infer_ts", "p_up", "model_version")


def _fields(s: Signal, names: tuple[str, ...]) -> list[Any]:
    """The named fields, NaN spelled "nan" so that equal decisions compare equal."""
    values = [getattr(s, f) for f in names]
    return ["nan" if isinstance(v, float) and math.isnan(v) else v for v in values]


def live_manifests(manifests: Path) -> Path:
    """The demo desk's USD-M manifests with every Strategy switched to ``spec.mode: live``, and the RiskBudget's
    decision-latency breaker out of reach: live decide times its decisions by the wall clock (the reference by
    none), so on a loaded 2-core box a 5 ms p99 could trip and stop entries the reference takes — these tests
    compare decisions, not the breaker (tests/unit/engine/risk/test_breakers.py covers it)."""
    out = manifests.parent / "live"
    out.mkdir(exist_ok=True)
    for f in usdm_only(manifests).glob("*.yaml"):
        docs = [d for d in yaml.safe_load_all(f.read_text()) if d]
        for d in docs:
            if d.get("kind") == "Strategy":
                d["spec"]["mode"] = "live"
            if d.get("kind") == "RiskBudget":
                d["spec"].setdefault("breakers", {})["maxDecisionLatencyP99Ms"] = 60_000
        (out / f.name).write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return out


def _reference(manifests: Path, home: Path, events: np.ndarray) -> tuple[list[Signal], int]:
    """The desk in-process over ``events`` (the backtester drives it): its signals, and its first fill's time."""
    desk, instruments, _ = build_desk(load_desk([manifests]), home, initial_balance=10_000.0)
    signals: list[Signal] = []
    fills: list[int] = []

    def drain(batch: Outbox) -> None:
        signals.extend(batch.signals)
        fills.extend(int(f["ts"]) for f in batch.fills)

    desk.on_drain = drain
    run_backtest(events, desk, backtest_config(desk, instruments, initial_balance=10_000.0, seed=0))
    return signals, min(fills, default=np.iinfo(np.int64).max)


def _read(bootstrap: str, topics: list[str], *, until: float = 3.0, timeout: float = 60.0) -> dict[str, list[Any]]:
    """Every record of ``topics`` so far (quiet for ``until`` s ends the read)."""
    bus = KafkaBus(bootstrap, client_id="it-reader", consumer_config=CONSUMER, fetch_wait_max_ms=10)
    out: dict[str, list[Any]] = defaultdict(list)
    try:
        cons = bus.consumer(topics[0] if len(topics) == 1 else "*", max_queue=100_000,
                            name=f"it-reader-{time.monotonic_ns()}")  # fmt: skip
        cons.wait_assigned(timeout=30)
        deadline, last = time.monotonic() + timeout, time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - last < until:
            for r in cons.fetch(10_000, timeout=0.2):
                last = time.monotonic()
                if r.topic in topics:
                    out[r.topic].append(r)
    finally:
        bus.close(timeout=5)
    return out


def _md_batches(bootstrap: str) -> list[MdBatch]:
    """What decide consumed: every md batch on the topic, de-duplicated by tp-seq, the poison left out."""
    seen, out = SequenceFilter(), []
    for r in _read(bootstrap, [MD_TOPIC])[MD_TOPIC]:
        try:
            batch = decode_md_batch(r.value)
        except MdBatchError:
            continue
        if r.seq is None or seen.accept(r.topic, r.key, r.seq):
            out.append(batch)
    return out


def _desk_reason(port: int) -> str:
    _, body = http(port, "/readyz")
    checks = json.loads(body).get("checks", {})
    return str(checks.get("market-data", {}).get("reason", "")) + " | " + str(checks.get("desk", {}).get("reason", ""))


def _wait_released(port: int, n: int, timeout: float = 120.0) -> None:
    deadline, last = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        last = _desk_reason(port)
        if last.startswith(f"{n} events released"):
            return
        time.sleep(0.2)
    raise AssertionError(f"decide did not release all {n} events: {last}")


def _greeting(session: int, contract: ContractSpec) -> bytes:
    """execute's answer to the session's hello (seq 1): no parents, the venue's (flat) account."""
    step = VenueStep(session, 1, time.time_ns(), np.zeros(0, EVENT_DTYPE), np.zeros(0, book_top_dtype(10)),
                     np.zeros(0, FILL_DTYPE), np.zeros(0, ORDER_DTYPE), np.zeros(0, PARENT_DTYPE),
                     new_account([contract], 10_000.0), np.zeros(1, TOUCH_DTYPE))  # fmt: skip
    return encode_venue_step(step)


def _greet(bootstrap: str, producer: KafkaBus, port: int, contract: ContractSpec) -> int:
    """Stand in for execute: answer the session's hello; returns the session once decide applied it."""
    deadline, said = time.monotonic() + 30, []
    while not said and time.monotonic() < deadline:
        said = _read(bootstrap, [orders_topic(ACCOUNT)], until=2.5)[orders_topic(ACCOUNT)]
    assert said, "decide said no hello"
    hello = decode_order_commands(said[0].value)
    assert hello.seq == 1 and not hello.commands
    producer.publish(venue_topic(ACCOUNT), ACCOUNT, _greeting(hello.session, contract), seq=1)
    producer.flush(10)
    deadline = time.monotonic() + 30
    while "1 venue reports" not in _desk_reason(port) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "1 venue reports" in _desk_reason(port)
    return hello.session


def _report(start: StartParent, session: int, seq: int, price: float, contract: ContractSpec) -> bytes:
    """A venue report as execute sends it: parent ``start.pid`` filled completely at ``price``."""
    parent = np.zeros(1, PARENT_DTYPE)
    parent["parent_id"], parent["symbol"], parent["side"] = start.pid, start.symbol, start.side
    parent["style"] = {v: k for k, v in STYLE_NAMES.items()}[start.style]
    parent["status"], parent["qty"], parent["filled"], parent["taker_qty"] = (
        PARENT_FILLED,
        start.qty,
        start.qty,
        start.qty,
    )
    parent["vwap"], parent["fees"], parent["n_children"] = price, start.qty * price * 5e-4, 1
    fills = np.zeros(1, FILL_DTYPE)
    fills["symbol"], fills["side"], fills["qty"], fills["px"] = start.symbol, start.side, start.qty, price
    account = new_account([contract], 10_000.0)
    account["position"] = start.qty * start.side
    touch = np.zeros(1, TOUCH_DTYPE)
    step = VenueStep(session, seq, time.time_ns(), np.zeros(0, EVENT_DTYPE), np.zeros(0, book_top_dtype(10)), fills,
                     np.zeros(0, ORDER_DTYPE), parent, account, touch)  # fmt: skip
    return encode_venue_step(step)


class _CaptureFeed:
    """Capture events as md batches with live-like clocks: received from ``start`` on, each event's exchange
    time moved by the same amount (what a venue connection would publish, book snapshot included)."""

    def __init__(self, events: np.ndarray, start: int) -> None:
        self.events = events.copy()
        shift = start - int(self.events["ingest_ts"][0])
        self.events["ingest_ts"] += shift
        self.events["exchange_ts"] += shift
        book = np.isin(self.events["kind"] & KIND_MASK, (DEPTH, SNAPSHOT, BBO))
        for name in ("seq", "first_seq", "prev_seq"):
            ids = self.events[name]
            ids[book & (ids >= 0)] -= ID_SHIFT  # prev_seq −1 (none) stays

    def publish(self, bus: KafkaBus, batch: int = 500) -> None:
        for at in range(0, self.events.shape[0], batch):
            seq = time.time_ns()
            data = encode_md_batch(self.events[at : at + batch], venue="binance-usdm", symbol="BTCUSDT", seq=seq)
            bus.publish(MD_TOPIC, "BTCUSDT", data, seq=seq)
        bus.flush(10)


def test_live_decide_decides_on_market_data_as_it_arrives(trained: tuple[Path, Path], shared_dir: Path,
                                                           tmp_path: Path) -> None:  # fmt: skip
    home, all_manifests = trained
    manifests = live_manifests(all_manifests)
    strategy = next(iter(load_desk([manifests]).strategies))
    options = {"manifests": [str(manifests)], "account": ACCOUNT, "home": str(home), "run_id": "live-it"}
    desk_def = load_desk([manifests])
    _, instruments, _ = build_desk(desk_def, home, initial_balance=10_000.0)
    recorded = capture_market([capture(shared_dir, USDM)], instruments).events
    broker = KafkaBroker(tmp_path / "broker")
    broker.start().wait_ready(30)
    started: list[WorkloadProcess] = []
    try:
        bootstrap = broker.bootstrap_servers
        decide = WorkloadProcess(["decide", "--port", "0"], _env(bootstrap, options), tmp_path)
        started.append(decide)
        port = int(decide.wait_log("http endpoints listening", timeout=120)["port"])
        session_log = decide.wait_log("live session started", timeout=120)
        assert session_log["strategies"] == [strategy]
        producer = KafkaBus(bootstrap, client_id="it-producer")
        cfg = backtest_config(*build_desk(desk_def, home, initial_balance=10_000.0)[:2], initial_balance=10_000.0,
                              seed=0)  # fmt: skip
        # execute's greeting first: before it the desk refuses every parent (nothing would carry it out)
        greeted = _greet(bootstrap, producer, port, cfg.contracts[0])
        # phase 1: the first 65 s of the capture with live-like clocks, received up to now (the demo desk
        # enters in that window); phase 2: the replay server → ingest → md, a poison record in the middle
        window = int(np.searchsorted(recorded["ingest_ts"], recorded["ingest_ts"][0] + 65 * S))
        _CaptureFeed(recorded[:window], time.time_ns() - 66 * S).publish(producer)
        with ReplayServer([capture(shared_dir, USDM)], max_lines=30_000, speed=8.0, rebase_times=True) as server:
            ingest_from = time.time_ns()
            ingest, _ = launch(started, tmp_path, _env(bootstrap, {}), broker, server, "ingest-live")
            time.sleep(2.0)
            poisoned = time.time_ns()
            producer.publish(MD_TOPIC, "BTCUSDT", b"not a batch")  # no tp-seq, too short for a header
            producer.flush(10)
            server.wait_finished(120)
            time.sleep(1.0)  # the last frames reach ingest
            stop(ingest)
        batches = _md_batches(bootstrap)
        feed = MarketFeed({("binance-usdm", "BTCUSDT"): 0})
        for b in batches:
            feed.add(b)
        events = feed.take()
        assert events.shape[0] > window + 20_000
        _wait_released(port, events.shape[0])
        time.sleep(1.0)
        got = _read(bootstrap, [signals_topic(strategy), orders_topic(ACCOUNT), "dlq.md"])

        # --- signals equal the in-process desk over the same events -------------------------------------
        reference, first_fill = _reference(manifests, home, events)
        t_end = int(events["ingest_ts"][-1])
        ref = [s for s in reference if s.infer_ts <= t_end]  # the backtest's last call comes after the data
        live = [signal_from_proto(r.value) for r in got[signals_topic(strategy)]]
        assert len(ref) > 700 and len(live) == len(ref)
        before = [i for i, s in enumerate(ref) if s.infer_ts < first_fill]
        assert len(before) > 350  # 40 s of 100 ms ticks
        for i in before:
            assert _fields(live[i], DECISION_FIELDS) == _fields(ref[i], DECISION_FIELDS), i
        for a, b in zip(live, ref, strict=True):
            assert _fields(a, SCORE_FIELDS) == _fields(b, SCORE_FIELDS)
        assert all(s.exchange_ts <= s.infer_ts and s.strategy == strategy and 0.0 <= s.p_up <= 1.0 for s in live)
        # on ingest's stream (REST snapshot, rebased diffs) decide's book is synced: decisions see a touch
        on_ingest = [s for s in live if s.infer_ts > ingest_from + 5 * S]
        assert len(on_ingest) > 100
        gated = sum(s.reason == "GATE_SPREAD" for s in on_ingest)
        assert gated < len(on_ingest) // 10, f"{gated} of {len(on_ingest)} decisions on ingest's stream spread-gated"

        # --- orders went out without an answer ---------------------------------------------------------
        orders = [decode_order_commands(r.value) for r in got[orders_topic(ACCOUNT)]]
        entered = [s for s in ref if s.infer_ts < first_fill and s.entered]
        assert entered, "the window must hold an entry (the demo desk enters in the capture's first minute)"
        assert len({o.session for o in orders}) == 1
        # seq 1 is the session's hello, said again every 2 s while no execute greets it and nothing was sent
        hellos = [o for o in orders if not o.commands]
        assert hellos and orders[: len(hellos)] == hellos and {o.seq for o in hellos} == {1}
        orders = orders[len(hellos) :]
        assert [o.seq for o in orders] == list(range(2, len(orders) + 2))
        starts = [c for o in orders for c in o.commands if isinstance(c, StartParent)]
        assert [c.pid for c in starts] == list(range(1, len(starts) + 1))
        assert len(starts) >= len(entered) and orders[0].now == entered[0].infer_ts
        assert starts[0].qty > 0 and starts[0].symbol == 0

        # --- the poison went to the dead letters, the stream went on ----------------------------------
        dlq = [parse_dead_letter(r) for r in got["dlq.md"]]
        assert len(dlq) == 1 and dlq[0].source_topic == MD_TOPIC and dlq[0].reason == "md_length"
        assert sum(s.infer_ts > poisoned for s in live) > 50  # decisions on data published after the poison

        # --- a venue report reaches the desk at its next tick -----------------------------------------
        session = orders[0].session
        assert session == greeted
        price = round(float(np.median(recorded["px"][:1000])), 1)
        report = _report(starts[0], session, 2, price, cfg.contracts[0])
        producer.publish(venue_topic(ACCOUNT), ACCOUNT, report, seq=2)
        producer.publish(venue_topic(ACCOUNT), ACCOUNT, report, seq=2)  # a redelivery: ignored
        producer.flush(10)
        deadline = time.monotonic() + 30
        while "2 venue reports" not in _desk_reason(port) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "2 venue reports" in _desk_reason(port)
        _CaptureFeed(recorded[window : window + 3_000], time.time_ns()).publish(producer)  # data past a tick
        rows = _read(bootstrap, [f"fills.{ACCOUNT}", f"desk.{ACCOUNT}"], until=4.0)
        fills = [row for r in rows[f"fills.{ACCOUNT}"] if (m := decode_rows(r.value)).kind == "fill" for row in m.rows]
        assert len(fills) == 1 and fills[0]["qty"] == starts[0].qty and fills[0]["price"] == price
        positions = [row for r in rows[f"desk.{ACCOUNT}"] if (m := decode_rows(r.value)).kind == "position"
                     for row in m.rows]  # fmt: skip
        assert positions and positions[-1]["qty"] != 0

        # --- a lost report stops the process --------------------------------------------------------
        producer.publish(venue_topic(ACCOUNT), ACCOUNT, _report(starts[0], session, 4, price, cfg.contracts[0]), seq=4)
        producer.flush(10)
        assert decide.proc.wait(timeout=60) == 5, "".join(decide.lines[-20:])
        assert any("reports were lost" in line for line in decide.lines)
        producer.close(timeout=5)
    finally:
        for p in started:
            p.stop()
        broker.stop()


def test_strategies_of_one_account_must_agree_on_the_mode(trained: tuple[Path, Path], tmp_path: Path) -> None:
    from tradeplane.workloads.local.manifests import ManifestError, trading_mode

    _, all_manifests = trained
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for f in all_manifests.glob("*.yaml"):
        docs = [d for d in yaml.safe_load_all(f.read_text()) if d]
        for d in docs:
            if d.get("kind") == "Strategy" and d["spec"]["venue"] == "binance-usdm":
                d["spec"]["mode"] = "live"
        (mixed / f.name).write_text(yaml.safe_dump_all(docs, sort_keys=False))
    desk = load_desk([mixed])
    assert len(desk.strategies) >= 2
    try:
        trading_mode(desk)
    except ManifestError as exc:
        assert all(name in str(exc) for name in desk.strategies)
    else:
        raise AssertionError("mixed modes were accepted")
    assert str(trading_mode(load_desk([live_manifests(all_manifests)]))) == "live"
