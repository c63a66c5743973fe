"""The desk reconciles its trade books with the paper venue (the simulator's executors and portfolio): at the
first batch and then periodically, over the books of every strategy on the account.

- a normal run is a consistency check of the desk against its venue: every report is clean, and the run is
  the same as without periodic reconciliation;
- a fill the desk never booked is detected at the next reconciliation and repaired per the orphan policy
  (RECLAIM_IF_SAFE adopts it, CONSERVATIVE flattens the symbol), with one order per client order id;
- a crash: a new desk is built from the trade records persisted before some fills, against the same venue;
  its reconciliation at start repairs the books, the intents replayed since the records send nothing, and
  from then on every report is clean.

The market is the synthetic one of ``test_desk.py``; two strategies with their own budgets share the
account's BTCUSDT (one also trades ETHUSDT), one sending immediate orders and one maker-then-taker.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tradeplane.api.v1alpha1.riskbudget import RiskBudgetSpec
from tradeplane.api.v1alpha1.strategy import StrategySpec
from tradeplane.engine.decision.types import Intent
from tradeplane.engine.risk.config import RiskConfig
from tradeplane.engine.risk.engine import RiskEngine
from tradeplane.engine.risk.reasons import RECONCILE_MISMATCH
from tradeplane.engine.runtime.desk import DeskRuntime
from tradeplane.engine.runtime.instruments import Instrument, instrument_table
from tradeplane.engine.runtime.strategy import StrategyRuntime
from tradeplane.engine.runtime.venue_state import venue_orders, venue_positions
from tradeplane.engine.sim.executors import PARENT_CANCELED, PARENT_FILLED, PARENT_PARTIAL, PARENT_WORKING
from tradeplane.engine.sim.portfolio import ACCOUNT_DTYPE
from tradeplane.engine.sim.result import PARENT_DTYPE, BacktestResult
from tradeplane.engine.sim.runner import Context, MarketBatch, run_backtest
from tradeplane.engine.trading.ids import client_order_id
from tradeplane.engine.trading.lifecycle import TradeState
from tradeplane.engine.trading.reconcile import OrphanPolicy, ReconcileReport, VenuePosition, reconcile
from tradeplane.engine.trading.records import to_records, trade_book_from_records
from tradeplane.workloads.local.runner import backtest_config
from tradeplane.workloads.local.source import MarketData, synthetic_market

REPO = Path(__file__).resolve().parents[4]
_S = 1_000_000_000
RECLAIM, CONSERVATIVE = OrphanPolicy.RECLAIM_IF_SAFE, OrphanPolicy.CONSERVATIVE
SECONDS = 240


def _yaml(name: str) -> dict[str, Any]:
    return yaml.safe_load((REPO / "examples" / name).read_text())["spec"]  # type: ignore[no-any-return]


def _instruments() -> list[Instrument]:
    return instrument_table([("binance-usdm", "BTCUSDT"), ("binance-usdm", "ETHUSDT")])


def _strategies(instruments: list[Instrument]) -> list[StrategyRuntime]:
    out = []
    for name, symbols, policy in (("fast", ["BTCUSDT"], "immediate"), ("patient", ["BTCUSDT", "ETHUSDT"], "maker-then-taker")):  # fmt: skip
        raw = _yaml("21-strategy-btc-usdm.yaml")
        raw["decision"] |= {"tau": 0.5, "kappa": 0.0, "cooldownSeconds": 5, "horizonSeconds": 20}
        raw["gates"] |= {"minTop1DepthUsdt": 0, "maxSpreadBps": 50}
        raw["features"] = {"set": "microstructure-v1", "clock": "time", "barMs": 1000}
        raw["execution"] = {"policy": policy}
        raw["symbols"] = symbols
        raw["riskBudgetRef"] = {"name": f"budget-{name}"}
        spec = StrategySpec.model_validate(raw)
        out.append(StrategyRuntime.build(name, spec, [i for i in instruments if i.symbol in symbols], None))
    return out


def _budgets() -> dict[str, RiskEngine]:
    raw = _yaml("00-riskbudget.yaml")
    raw["limits"] |= {"maxConsecutiveLosses": 1000}  # keep trading all run long: more to reconcile
    cfg = RiskConfig.from_spec(RiskBudgetSpec.model_validate(raw))
    return {f"budget-{n}": RiskEngine(f"budget-{n}", cfg, initial_equity=10_000.0) for n in ("fast", "patient")}


def _desk(policy: OrphanPolicy, every_s: float, **kw: Any) -> DeskRuntime:
    instruments = _instruments()
    return DeskRuntime(_strategies(instruments), _budgets(), instruments, orphan_policy=policy,
                       reconcile_every_s=every_s, **kw)  # fmt: skip


@pytest.fixture(scope="module")
def market() -> MarketData:
    return synthetic_market(_instruments(), seconds=SECONDS, seed=21)


def _run(desk: DeskRuntime, market: MarketData, strategy: Any = None) -> BacktestResult:
    cfg = backtest_config(desk, desk.instruments, initial_balance=10_000.0, seed=0)
    return run_backtest(market.events, strategy or desk, cfg)


def _final_report(desk: DeskRuntime, result: BacktestResult, sent: list[str]) -> ReconcileReport:
    """The venue at the end of the run, listing every order ever ``sent`` (parent ids are in sending order),
    against the desk's books."""
    ids = dict(enumerate(sent, start=1))
    books = [s.trades for s in desk.strategies]
    return reconcile(books, venue_orders(result.parents, ids, desk.instruments),
                     venue_positions(result.account, desk.instruments), desk.orphan_policy)  # fmt: skip


def _sent_ids(*desks: DeskRuntime) -> list[str]:
    """Client order ids of the orders sent, in sending order (one parent each)."""
    return [o["client_order_id"] for d in desks for o in d.outbox.orders if o["status"] == "NEW"]


def _mismatch_events(desk: DeskRuntime) -> list[dict[str, Any]]:
    return [e for e in desk.outbox.risk_events if e["reason"] == RECONCILE_MISMATCH]


# --- a normal run ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", [RECLAIM, CONSERVATIVE])
def test_in_a_normal_run_every_reconciliation_is_clean(policy: OrphanPolicy, market: MarketData) -> None:
    desk = _desk(policy, every_s=1.0)
    result = _run(desk, market)
    assert desk.reconciles >= SECONDS - 2  # at start, then once a second, for the one account
    reports = [r for _, _, r in desk.reconcile_reports]
    assert all(r.clean for r in reports), next(r for r in reports if not r.clean)
    assert not _mismatch_events(desk)
    # it had something to bite on: orders of open trades of both strategies were compared, many trades made
    trades = {t.intent_id: s.name for s in desk.strategies for t in s.trades.trades()}
    seen = {trades[a.intent_id] for r in reports for a in r.adopted if not a.final}
    assert seen == {"fast", "patient"}
    assert len(desk.outbox.intents) >= 10
    assert len(result.parents) == len(_sent_ids(desk)) == len(set(_sent_ids(desk)))
    assert _final_report(desk, result, _sent_ids(desk)).clean
    # and it changed nothing: the same run reconciling only at start decides and fills identically
    once = _desk(policy, every_s=10 * SECONDS)
    _run(once, market)
    assert once.reconciles == 1
    assert [s.id for s in once.outbox.signals] == [s.id for s in desk.outbox.signals]
    assert [_fill(f) for f in once.outbox.fills] == [_fill(f) for f in desk.outbox.fills]


def _fill(f: dict[str, Any]) -> tuple[Any, ...]:
    return f["client_order_id"], f["qty"], f["price"], f["ts"]


# --- a fill the desk never booked ---------------------------------------------------------------------------------
class DropOneFill:
    """The desk, except that the first entry fill of ``victim`` after ``after_ns`` is never booked: the parent's
    record at the desk is moved past it, as if the fill report had been lost."""

    def __init__(self, desk: DeskRuntime, victim: str, after_ns: int) -> None:
        self.desk, self.victim, self.after_ns = desk, victim, after_ns
        self.dropped: tuple[str, float, int] | None = None  # (client order id, qty, ts)

    def on_batch(self, ctx: Context, batch: MarketBatch) -> None:
        if self.dropped is None and batch.now >= self.after_ns:
            for pid, p in self.desk._parents.items():
                _, filled, vwap, fees, maker = ctx.desk.parent_state(pid)
                if p.strategy.name == self.victim and p.leg == "entry" and filled > p.filled:
                    self.dropped = (p.coid, filled - p.filled, batch.now)
                    p.filled, p.cost, p.fees, p.maker = filled, filled * vwap, fees, maker
                    break
        self.desk.on_batch(ctx, batch)


@pytest.mark.parametrize("policy", [RECLAIM, CONSERVATIVE])
def test_a_lost_fill_is_found_and_repaired_per_policy(policy: OrphanPolicy, market: MarketData) -> None:
    desk = _desk(policy, every_s=5.0)
    t0 = int(market.events["ingest_ts"][0])
    run = DropOneFill(desk, "fast", t0 + 60 * _S)
    result = _run(desk, market, run)
    assert run.dropped is not None
    coid, qty, ts = run.dropped
    intent_id = coid.split("_", 1)[1]
    bad = [(at, r) for at, _, r in desk.reconcile_reports if not r.clean]
    assert len(bad) == 1, bad  # found once, at the first reconciliation after the loss, and repaired then
    at, report = bad[0]
    assert ts <= at < ts + 5 * _S + _S
    trade = next(t for s in desk.strategies for t in s.trades.trades() if t.intent_id == intent_id)
    if policy is RECLAIM:  # adopted: the trade went on as if the fill had been booked
        assert [(a.client_order_id, a.fill_qty) for a in report.adopted if a.fill_qty > 0] == [(coid, qty)]
        assert not report.cancel and not report.flatten and not report.closed
        assert trade.leg_filled["entry"] == qty and trade.close_reason != "reconciled"
        assert trade.state is TradeState.CLOSED and trade.leg_filled.get("exit", 0.0) == qty  # and was exited
    else:  # conservative: the symbol is reset, the account flattened by one order of the reconciler
        assert report.flatten and report.flatten[0][0] == "BTCUSDT" and intent_id in report.closed
        assert trade.state is TradeState.CLOSED and trade.close_reason == "reconciled"
        assert "entry" not in trade.leg_filled  # the fill it never saw stays unseen
        flat = [c for c in _sent_ids(desk) if c.startswith("tpf_rc")]
        assert len(flat) == 1
        assert sum(f["qty"] for f in desk.outbox.fills if f["client_order_id"] == flat[0]) == pytest.approx(
            abs(report.flatten[0][1])
        )
    events = _mismatch_events(desk)
    assert {e["budget"] for e in events} == {"budget-fast", "budget-patient"} and len(events) == 2
    assert all(e["ts"] == at and coid in e["detail"] for e in events)
    assert all(n == 1 for n in Counter(_sent_ids(desk)).values())  # no order sent twice
    assert len(result.parents) == len(_sent_ids(desk))
    assert _final_report(desk, result, _sent_ids(desk)).clean
    _assert_ledgers_follow_books(desk)


def _assert_ledgers_follow_books(desk: DeskRuntime) -> None:
    """Each risk ledger holds what its strategy's open trades hold (the repair reached risk too)."""
    for s in desk.strategies:
        for inst in s.instruments:
            held = sum(t.signed_qty for t in s.trades.open_trades() if t.symbol == inst.symbol)
            ledger = desk.budgets[s.budget].ledger.position(s.name, inst.venue, inst.symbol)
            assert ledger == pytest.approx(held, abs=1e-12), (s.name, inst.symbol)


# --- a crash ------------------------------------------------------------------------------------------------------
class CrashAndRestart:
    """Desk ``a`` persists its trades write-ahead (each trade's record when it is opened, before its entry is
    sent) and the whole books every ``snapshot_s``. At the first batch after ``crash_ns`` with an entry of
    ``a`` working at the venue, ``a`` dies; desk ``b`` is built from the records (and the venue's order ids),
    takes over at that batch and replays the intents ``a`` emitted since its last snapshot."""

    def __init__(self, a: DeskRuntime, build: Callable[[dict[str, list[dict[str, Any]]]], DeskRuntime],
                 crash_ns: int, snapshot_s: float) -> None:  # fmt: skip
        self.a, self.build, self.crash_ns, self.snapshot_ns = a, build, crash_ns, round(snapshot_s * _S)
        self.records: dict[str, dict[str, dict[str, Any]]] = {s.name: {} for s in a.strategies}
        self.next_snapshot = 0
        self.since_snapshot: list[Intent] = []
        self.b: DeskRuntime | None = None
        self.crashed_at = 0
        self.working: list[str] = []  # intent ids of the entries working at the venue at the crash
        self.replayed = 0

    def on_batch(self, ctx: Context, batch: MarketBatch) -> None:
        working = [p.intent_id for pid, p in self.a._parents.items()
                   if p.leg == "entry" and ctx.desk.parent_state(pid)[0] == PARENT_WORKING]  # fmt: skip
        if self.b is None and batch.now >= self.crash_ns and working:
            self.crashed_at, self.working = batch.now, working
            self.b = self.build({n: list(r.values()) for n, r in self.records.items()})
        if self.b is not None:
            self.b.on_batch(ctx, batch)
            if self.replayed == 0:  # the bus redelivers what came after the snapshot: nothing may go out again
                for intent in self.since_snapshot:
                    s = next(x for x in self.b.strategies if x.name == intent.strategy)
                    inst = next(i for i in s.instruments if i.symbol == intent.symbol)
                    self.b._enter(ctx, s, inst, intent, batch.now)
                    self.replayed += 1
            return
        n_intents = len(self.a.outbox.intents)
        self.a.on_batch(ctx, batch)
        self.since_snapshot += self.a.outbox.intents[n_intents:]
        for s in self.a.strategies:
            recs = self.records[s.name]
            if batch.now >= self.next_snapshot:
                recs.update((r["intent_id"], r) for r in to_records(s.trades))
            else:  # write-ahead: a trade opened in this batch has its entry sent at the end of it
                recs.update((t.intent_id, r) for t, r in zip(s.trades.trades(), to_records(s.trades), strict=True)
                            if t.intent_id not in recs)  # fmt: skip
        if batch.now >= self.next_snapshot:
            self.next_snapshot = batch.now + self.snapshot_ns
            self.since_snapshot = []


@pytest.mark.parametrize("policy", [RECLAIM, CONSERVATIVE])
def test_after_a_crash_the_books_are_repaired_and_nothing_is_sent_twice(policy: OrphanPolicy,
                                                                      market: MarketData) -> None:  # fmt: skip
    a = _desk(policy, every_s=5.0)

    def build(records: dict[str, list[dict[str, Any]]]) -> DeskRuntime:
        b = _desk(policy, every_s=5.0, venue_order_ids=a.venue_order_ids)
        for s in b.strategies:
            s.trades = trade_book_from_records(records[s.name])
        return b

    t0 = int(market.events["ingest_ts"][0])
    run = CrashAndRestart(a, build, t0 + 90 * _S, snapshot_s=20.0)
    result = _run(a, market, run)
    b = run.b
    assert b is not None and run.crashed_at > 0 and run.replayed > 0
    before = {t.intent_id for s in a.strategies for t in s.trades.trades()}
    assert {t.intent_id for s in b.strategies for t in s.trades.trades()} >= before
    # reconciliation at start, at the first batch of the new desk
    start_at, _, start = b.reconcile_reports[0]
    assert start_at == run.crashed_at
    later = [r for _, _, r in b.reconcile_reports][1:]
    assert later and all(r.clean for r in later), [r for r in later if not r.clean]
    # the restored books were behind the venue and got repaired (or the symbol reset, conservatively)
    stale = [a_t for s in a.strategies for a_t in s.trades.open_trades()]
    assert stale, "nothing in flight at the crash: the test would prove nothing"
    assert not start.clean
    trades = {t.intent_id: t for s in b.strategies for t in s.trades.trades()}
    if policy is RECLAIM:  # missed fills adopted; the working entries taken over and booked by the new desk
        assert not start.flatten and not start.cancel and any(a.fill_qty > 0 for a in start.adopted)
        assert all(trades[i].entry_done and trades[i].close_reason != "reconciled" for i in run.working)
    else:  # missed fills are not adopted: the symbols reset, the working entries cancelled
        assert not any(a.fill_qty > 0 for a in start.adopted) and start.closed
        assert all(trades[i].close_reason == "reconciled" for i in run.working)
        assert {client_order_id(i, "entry") for i in run.working} <= set(start.cancel)
    # nothing sent twice: every client order id went out once, across both desks
    sent = _sent_ids(a, b)
    assert all(n == 1 for n in Counter(sent).values()), Counter(sent).most_common(3)
    assert len(result.parents) == len(sent)
    b_sent = _sent_ids(b)
    assert not {c.split("_", 1)[1] for c in b_sent if c.startswith("tpe_")} & before
    assert _final_report(b, result, sent).clean


# --- the venue view -------------------------------------------------------------------------------------------------
def test_the_venue_view_speaks_client_order_ids_binance_statuses_and_the_step_grid() -> None:
    btc, eth = _instruments()
    parents = np.zeros(5, PARENT_DTYPE)
    rows = [(btc, 1, 0.003, 0.0, PARENT_WORKING), (btc, 1, 0.003, 0.001 + 0.002, PARENT_FILLED),
            (eth, -1, 0.5, 0.2, PARENT_WORKING), (eth, -1, 0.5, 0.2, PARENT_PARTIAL), (btc, -1, 0.002, 0.0, PARENT_CANCELED)]  # fmt: skip
    for i, (inst, side, qty, filled, status) in enumerate(rows):
        parents[i] = np.zeros((), PARENT_DTYPE)
        for k, v in {"parent_id": i + 1, "symbol": inst.id, "side": side, "qty": qty, "filled": filled,
                     "status": status, "vwap": 100.0 if filled else np.nan}.items():  # fmt: skip
            parents[i][k] = v
    ids = {1: "tpe_a", 2: "tpe_b", 3: "tpe_c", 4: "tpe_d", 5: "tpx_e", 6: "tpe_f"}  # no parent 6 (yet)
    got = venue_orders(parents, ids, [btc, eth])
    assert [(o.client_order_id, o.symbol, o.side, o.status) for o in got] == [
        ("tpe_a", "BTCUSDT", 1, "NEW"), ("tpe_b", "BTCUSDT", 1, "FILLED"),
        ("tpe_c", "ETHUSDT", -1, "PARTIALLY_FILLED"), ("tpe_d", "ETHUSDT", -1, "EXPIRED"),
        ("tpx_e", "BTCUSDT", -1, "CANCELED"),
    ]  # fmt: skip
    assert got[1].filled_qty == 0.003 and got[1].avg_price == 100.0 and np.isnan(got[0].avg_price)
    assert [o.client_order_id for o in venue_orders(parents, ids, [eth])] == ["tpe_c", "tpe_d"]
    acct = np.zeros(2, ACCOUNT_DTYPE)
    acct["position"] = [0.001 + 0.002 - 0.003, -(0.1 + 0.2)]
    acct["entry_px"] = [np.nan, 2600.0]
    assert venue_positions(acct, [btc, eth]) == [VenuePosition("ETHUSDT", -0.3, 2600.0)]
