"""The desk runtime: every strategy of a set of manifests, their risk budgets, and the executors, driven
micro-batch by micro-batch by the simulator's runner (a backtest) or by the local runner (paper trading).

Why one object implements the backtester's Strategy protocol: the local run and the backtest then execute
literally the same code on the same batches, which is what makes backtest–live parity a property of the
design rather than of discipline (``tests/integration/test_local_parity.py`` checks it on a real capture).

Per batch, in this order (each step sees what the previous one produced):

1. market view: book tops, book features, closed bars and their features (one feature engine for the desk);
2. executions: fills and final states of the parents the strategies sent, as deltas of the executors'
   parent records, into the trade books and the risk budgets; at the first batch and then every
   ``reconcile_every_s``, reconciliation of each account's books with the venue's orders and positions
   (:meth:`DeskRuntime._reconcile`);
3. risk: marks, breaker inputs and the continuous checks; a halt cancels working orders at once and, with
   the flatten policy, closes positions;
4. per strategy on its decision tick: position management of open trades, then one decision per symbol
   (features → model router → gates → rules → sizing → utility → cooldown → intent), the pre-trade risk
   check, and the entry through the strategy's execution policy;
5. equity sampling; then the outbox is handed to ``on_drain`` (the edges publish it).

No I/O happens here; the clock for decision latency is injected (0 in tests and backtests, so a replay is
bit-for-bit identical; ``time.perf_counter_ns`` in the local runner).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import numpy as np
import numpy.typing as npt

from ..decision.pipeline import decide
from ..decision.types import LONG, Intent, MarketState
from ..events import EventArray
from ..risk.engine import OrderRequest, RiskEngine
from ..risk.reasons import RECONCILE_MISMATCH
from ..sim.executors import (
    PARENT_CANCELED,
    PARENT_FILLED,
    PARENT_PARTIAL,
    PARENT_STATUS_NAMES,
    PARENT_WORKING,
    STYLE_NAMES,
    TwapSpec,
)
from ..sim.portfolio import equity as symbol_equity
from ..sim.routing import RoutingTable
from ..sim.runner import MarketBatch
from ..trading.ids import ADD_LEGS, EXIT, FLATTEN, OPENING_LEGS, PARTIAL, client_order_id, parse_client_order_id
from ..trading.lifecycle import Trade, TradeState
from ..trading.management import ADD_ON, CLOSE, MOVE_STOP, PARTIAL_CLOSE, ManagementAction, apply_action, manage
from ..trading.reconcile import OrphanPolicy, ReconcileReport, apply_report, reconcile
from .instruments import Instrument
from .market import MarketView, clock_for
from .outbox import Outbox
from .strategy import StrategyRuntime
from .venue_state import settled, venue_orders, venue_positions

_NS_PER_S = 1_000_000_000
_NS_PER_MS = 1_000_000
#: executor parent status → the venue's order status the store and the trade book speak
_VENUE_STATUS = {PARENT_FILLED: "FILLED", PARENT_PARTIAL: "EXPIRED", PARENT_CANCELED: "CANCELED"}
_STATUS_OF = {v: k for k, v in _VENUE_STATUS.items()}
#: Seconds of local time between reconciliations (the first is at the first batch). The Strategy spec names
#: neither an interval nor an orphan policy, so both are desk settings (``DeskRuntime(reconcile_every_s=…,
#: orphan_policy=…)``).
RECONCILE_EVERY_S = 30.0
#: Reconcile reports a desk keeps for inspection (the newest).
RECONCILE_HISTORY = 1_000


class ParentBook(Protocol):
    """The executors' parent records as the desk reads them."""

    @property
    def parents(self) -> npt.NDArray[np.void]: ...

    def parent_state(self, parent_id: int) -> tuple[int, float, float, float, float]: ...


class AccountView(Protocol):
    @property
    def acct(self) -> npt.NDArray[np.void]: ...


class VenueContext(Protocol):
    """What the desk needs of the venue side each batch: the backtester's :class:`~..sim.runner.Context`
    in-process, or paper mode's mirror of a remote simulator in the cluster's ``decide`` workload
    (:mod:`tradeplane.workloads.paper.mirror`). Kept this narrow on purpose: everything listed here crosses
    a process boundary there."""

    @property
    def desk(self) -> ParentBook: ...

    @property
    def portfolio(self) -> AccountView: ...

    def touch(self, symbol: int) -> tuple[float, float]: ...

    def execute(self, symbol: int, side: int, qty: float, style: str = ..., twap: TwapSpec | None = None, *,
                routing: RoutingTable | None = None, theta: float | None = None) -> int: ...  # fmt: skip

    def cancel_parent(self, parent_id: int) -> None: ...

    def order_refusal(self) -> str | None:
        """Why no parent may be started now (a reason code), or ``None``: a venue side that cannot carry an
        order out yet — live ``decide`` before execute has answered its session — refuses it here instead of
        taking a parent nobody would work."""
        ...


def _no_clock() -> int:
    return 0


@dataclass
class _Parent:
    """A parent order the desk sent for a strategy, and what of it has been booked already."""

    strategy: StrategyRuntime
    instrument: Instrument
    intent_id: str
    leg: str
    coid: str
    side: int
    qty: float
    reduce_only: bool
    style: str
    send_ts: int
    filled: float = 0.0
    maker: float = 0.0  #: Σ maker qty booked
    fills: int = 0
    cost: float = 0.0  #: Σ qty·px booked
    fees: float = 0.0


class DeskRuntime:
    """See the module docstring. ``budgets`` maps RiskBudget names to their engines."""

    def __init__(
        self,
        strategies: Sequence[StrategyRuntime],
        budgets: Mapping[str, RiskEngine],
        instruments: Sequence[Instrument],
        *,
        clock: Callable[[], int] = _no_clock,
        equity_every_ms: int = 1_000,
        on_drain: Callable[[Outbox], None] | None = None,
        orphan_policy: OrphanPolicy = OrphanPolicy.RECLAIM_IF_SAFE,
        reconcile_every_s: float = RECONCILE_EVERY_S,
        venue_order_ids: dict[int, str] | None = None,
    ) -> None:
        missing = sorted({s.budget for s in strategies} - set(budgets))
        if missing:
            raise ValueError(f"strategies reference RiskBudgets that do not exist: {missing}")
        self.strategies = list(strategies)
        self.budgets = dict(budgets)
        self.instruments = list(instruments)
        clocks = {}
        for s in self.strategies:
            f = s.spec.features
            c = clock_for(str(f.clock), f.bar_ms, f.volume_bucket_usdt)
            clocks[c.name] = c
        self.view = MarketView(len(self.instruments), clocks)
        self.clock = clock
        self.outbox = Outbox()
        self.on_drain = on_drain
        self._parents: dict[int, _Parent] = {}
        self._equity_ns = equity_every_ms * _NS_PER_MS
        self._next_equity = 0
        self._marks: list[tuple[int, str, float]] = []
        self._peak = 0.0
        self.decisions = 0
        self.batches = 0
        self.now = 0  #: local time of the last batch
        if not reconcile_every_s > 0:
            raise ValueError(f"reconcile_every_s must be > 0, got {reconcile_every_s}")
        self.orphan_policy = OrphanPolicy(orphan_policy)
        self._reconcile_ns = round(reconcile_every_s * _NS_PER_S)
        self._next_reconcile = 0
        #: parent id → the client order id it was sent under: what the venue knows of our orders. Share it with
        #: a desk restarted over the same venue (crash recovery), as a real venue keeps its orders' ids.
        self.venue_order_ids: dict[int, str] = {} if venue_order_ids is None else venue_order_ids
        self._reconcile_flattens: set[int] = set()  # parents of flattens the reconciler sent, while working
        self.reconciles = 0
        self.reconcile_reports: deque[tuple[int, str, ReconcileReport]] = deque(maxlen=RECONCILE_HISTORY)

    # --- the backtester's Strategy protocol -----------------------------------------------------------------
    def on_market(self, events: EventArray, tops: npt.NDArray[np.void]) -> None:
        """Market data of the next batch, ahead of its wake-up (``MarketObserver``): the view computes its
        features now, and the batch at the wake-up then carries only what was not observed."""
        self.view.observe(events, tops)

    def on_batch(self, ctx: VenueContext, batch: MarketBatch) -> None:
        now = batch.now
        self.now = now
        self.batches += 1
        self.view.update(batch.events, batch.tops)
        self._book_executions(ctx, now)
        if now >= self._next_reconcile:
            self._reconcile(ctx, now)
        self._watch_risk(ctx, now)
        for s in self.strategies:
            if now < s.next_tick:
                continue
            s.next_tick = now - now % s.tick_ns + s.tick_ns
            self._manage(ctx, s, now)
            self._decide(ctx, s, now)
        if now >= self._next_equity:
            self._sample_equity(ctx, now)
            self._next_equity = now - now % self._equity_ns + self._equity_ns
        if self.on_drain is not None:
            self.on_drain(self.outbox.drain())

    # --- executions -----------------------------------------------------------------------------------------
    def _book_executions(self, ctx: VenueContext, now: int) -> None:
        """Fills and finals of our parents, booked as deltas of the executors' parent records."""
        done: list[int] = []
        for pid, p in self._parents.items():
            status, filled, vwap, fees, maker = ctx.desk.parent_state(pid)
            if filled > p.filled + 1e-12:
                cost = filled * vwap
                qty, px, fee = filled - p.filled, (cost - p.cost) / (filled - p.filled), fees - p.fees
                liquidity = "maker" if maker > p.maker + 1e-12 else "taker"
                p.filled, p.cost, p.fees, p.maker = filled, cost, fees, maker
                p.fills += 1
                self._on_fill(p, pid, qty, px, fee, liquidity, now)
            if status != PARENT_WORKING:
                done.append(pid)
                self._on_final(p, status, now)
        for pid in done:
            p = self._parents.pop(pid)
            p.strategy.parents.pop(pid, None)

    def _on_fill(self, p: _Parent, pid: int, qty: float, px: float, fee: float, liquidity: str, now: int) -> None:
        s, inst = p.strategy, p.instrument
        trade = s.trades.on_fill(p.coid, qty, px, fee, now)
        risk = self.budgets[s.budget]
        risk.on_fill(s.name, inst.venue, inst.symbol, p.side, qty, px, fee, now, leverage=s.config.sizing.leverage)
        self.outbox.fills.append({
            "strategy": s.name, "symbol": inst.symbol, "ts": now, "venue": inst.venue, "side": p.side,
            "qty": qty, "price": px, "fee": fee, "liquidity": liquidity, "client_order_id": p.coid,
            "trade_id": f"{pid}-{p.fills}", "exchange_ts": now, "ingest_ts": now,
        })  # fmt: skip
        if trade is not None:
            self._record_position(s, trade, now)
            if trade.state is TradeState.CLOSED:
                risk.on_trade_closed(s.name, trade.realized_pnl_usdt, now)

    def _on_final(self, p: _Parent, status: int, now: int) -> None:
        s, inst = p.strategy, p.instrument
        venue_status = _VENUE_STATUS[status]
        trade = s.trades.on_order_final(p.coid, venue_status, now)
        self.budgets[s.budget].order_done(s.name, inst.venue, inst.symbol, p.coid, now)
        self.outbox.orders.append(self._order_row(p, now, venue_status))
        if trade is not None:
            self._record_position(s, trade, now)

    def _order_row(self, p: _Parent, now: int, status: str) -> dict[str, object]:
        return {"strategy": p.strategy.name, "symbol": p.instrument.symbol, "ts": now, "client_order_id": p.coid,
                "intent_id": p.intent_id, "venue": p.instrument.venue, "side": p.side, "qty": p.qty,
                "price": math.nan, "type": p.style.upper(), "status": status, "filled_qty": p.filled,
                "send_ts": p.send_ts, "ack_ts": p.send_ts if status != "NEW" else 0,
                "reason": "" if status in ("NEW", "FILLED") else PARENT_STATUS_NAMES[_STATUS_OF[status]]}  # fmt: skip

    def _record_position(self, s: StrategyRuntime, trade: Trade, now: int) -> None:
        t = self.view.tops[next(i.id for i in s.instruments if i.symbol == trade.symbol)]
        mark = 0.5 * (t.bid + t.ask)
        qty = trade.side * trade.filled_qty
        unrealized = qty * (mark - trade.avg_entry) if qty and math.isfinite(trade.avg_entry) else 0.0
        self.outbox.positions.append({
            "strategy": s.name, "symbol": trade.symbol, "ts": now, "venue": trade.venue,
            "intent_id": trade.intent_id, "qty": qty, "avg_entry": trade.avg_entry,
            "realized": trade.realized_pnl_usdt, "unrealized": unrealized,
            "state": str(trade.state),
        })  # fmt: skip

    # --- orders ----------------------------------------------------------------------------------------------
    def _send(self, ctx: VenueContext, s: StrategyRuntime, inst: Instrument, intent_id: str, leg: str, side: int,
              qty: float, now: int, *, reduce_only: bool, style: str,
              record: Callable[[], object] | None = None) -> bool:  # fmt: skip
        """The venue side's and the pre-trade risk check, then hand the parent to the executors; False (and a
        rejection) if refused.

        ``record`` runs between the check and the send: the trade book notes the action (a partial, an
        add-on, a close) only once the order will really go out, so a refused one is retried next tick.
        """
        bid, ask = ctx.touch(inst.id)
        mid = 0.5 * (bid + ask)
        if not (math.isfinite(mid) and mid > 0 and qty >= inst.step_size):
            return False
        refusal = ctx.order_refusal()
        if refusal is not None:  # refused like a risk rejection: nothing recorded, so retried next tick
            self.outbox.rejections.append({"strategy": s.name, "symbol": inst.symbol, "ts": now, "stage": "venue",
                                           "reason": refusal, "detail": f"{leg} of {qty:g} not sent",
                                           "signal_id": "", "intent_id": intent_id})  # fmt: skip
            return False
        req = OrderRequest(strategy=s.name, venue=inst.venue, symbol=inst.symbol, side=side, qty=qty, price=mid,
                           reduce_only=reduce_only, is_entry=leg == "entry", leverage=s.config.sizing.leverage,
                           ts=now)  # fmt: skip
        risk = self.budgets[s.budget]
        rejection = risk.check_order(req)
        if rejection is not None:
            self.outbox.rejections.append({"strategy": s.name, "symbol": inst.symbol, "ts": now, "stage": "risk",
                                           "reason": rejection.reason, "detail": rejection.detail,
                                           "signal_id": "", "intent_id": intent_id})  # fmt: skip
            return False
        if record is not None:
            record()
        pid = ctx.execute(inst.id, side, qty, style, twap=s.twap(qty * mid) if style == "twap" else None,
                          routing=s.routing, theta=s.spec.execution.maker_fill_ratio_floor)  # fmt: skip
        coid = client_order_id(intent_id, leg)
        risk.record_order(req, key=coid)
        p = _Parent(s, inst, intent_id, leg, coid, side, qty, reduce_only, style, now)
        self._parents[pid] = p
        s.parents[pid] = coid
        self.venue_order_ids[pid] = coid
        self.outbox.orders.append(self._order_row(p, now, "NEW"))
        return True

    # --- reconciliation ---------------------------------------------------------------------------------------
    def _accounts(self) -> dict[str, list[StrategyRuntime]]:
        """Strategies by venue: a venue is one account, reconciled over the books of every strategy on it."""
        out: dict[str, list[StrategyRuntime]] = {}
        for s in self.strategies:
            for venue in dict.fromkeys(i.venue for i in s.instruments):
                out.setdefault(venue, []).append(s)
        return out

    def _reconcile(self, ctx: VenueContext, now: int) -> None:
        """Compare each account's venue state (:mod:`.venue_state`: our orders, open and final since the last
        round, and the positions) with the books of its strategies under :attr:`orphan_policy`, and act on a
        report that is not clean. An account whose reconcile flatten is still working waits for the next round
        (its position is moving). Runs right after the executions are booked, so in a normal run the books and
        the venue agree and nothing happens."""
        self._next_reconcile = now + self._reconcile_ns
        self._reconcile_flattens &= self._parents.keys()
        moving = {self._parents[pid].instrument.venue for pid in self._reconcile_flattens}
        parents = ctx.desk.parents
        seen: list[int] = []
        for venue, strategies in self._accounts().items():
            if venue in moving:
                continue
            insts = list({i.id: i for s in strategies for i in s.instruments}.values())
            orders = venue_orders(parents, self.venue_order_ids, insts)
            positions = venue_positions(ctx.portfolio.acct, insts)
            report = reconcile([s.trades for s in strategies], orders, positions, self.orphan_policy)
            self.reconciles += 1
            self.reconcile_reports.append((now, venue, report))
            if not report.clean:
                self._act_on_report(ctx, venue, strategies, report, now)
            self._take_over(ctx, strategies, insts, parents, set(report.cancel))
            here = {i.id for i in insts}
            seen += [p for p in self.venue_order_ids if p <= len(parents) and int(parents[p - 1]["symbol"]) in here]
        for pid in settled(parents, seen):  # reported final once, and nothing more can fill: no need to list again
            if pid not in self._parents:
                del self.venue_order_ids[pid]

    def _act_on_report(self, ctx: VenueContext, venue: str, strategies: list[StrategyRuntime], report: ReconcileReport,
                       now: int) -> None:  # fmt: skip
        """Carry out a report: the books take the venue's facts (:func:`apply_report`) and the risk ledgers with
        them (missed fills as fills, positions the venue says are gone closed at the mark); the named orders are
        cancelled, and so is every working parent of a trade that is now closed (the desk stops booking them:
        a closed trade cannot take fills, the next round sees any); flattens go out through the order path; one
        ``RECONCILE_MISMATCH`` risk event per budget records what was found and done."""
        owner = {t.intent_id: s for s in strategies for t in s.trades.trades()}
        was_open = {t.intent_id for s in strategies for t in s.trades.open_trades()}
        touched = apply_report([s.trades for s in strategies], report, now)
        flat = {sym for sym, _ in report.flatten}
        for a in report.adopted:
            if a.fill_qty > 0:
                s = owner[a.intent_id]
                t = s.trades.trade(a.intent_id)
                assert t is not None
                side = t.side if a.leg in OPENING_LEGS else -t.side
                self.budgets[s.budget].on_fill(s.name, t.venue, t.symbol, side, a.fill_qty, a.price, 0.0, now,
                                               leverage=s.config.sizing.leverage)  # fmt: skip
        for t in touched:
            s = owner[t.intent_id]
            inst = next(i for i in s.instruments if i.symbol == t.symbol)
            if t.intent_id in report.closed:  # closed as the venue says: PnL unseen, nothing for the streak
                if t.symbol not in flat and t.filled_qty > 0:
                    held = self.budgets[s.budget].ledger.position(s.name, t.venue, t.symbol)
                    self._ledger_to(ctx, s, inst, held - t.signed_qty, now)
            elif t.state is TradeState.CLOSED and t.intent_id in was_open:
                self.budgets[s.budget].on_trade_closed(s.name, t.realized_pnl_usdt, now)
            self._record_position(s, t, now)
        cancel = set(report.cancel)
        for pid, coid in list(self.venue_order_ids.items()):
            p = self._parents.get(pid)
            trade = p.strategy.trades.trade(p.intent_id) if p is not None else None
            if coid in cancel or (trade is not None and not trade.is_open):
                ctx.cancel_parent(pid)  # a no-op for a parent already final
                if p is not None and (trade is None or not trade.is_open):
                    self._detach(pid, now)
        for sym, qty in report.flatten:
            self._flatten_account(ctx, strategies, sym, qty, now)
        fills = [f"{a.client_order_id} {a.fill_qty:g}@{a.price:g}" for a in report.adopted if a.fill_qty > 0]
        detail = (f"{venue} {self.orphan_policy.value}: adopted fills {fills}; cancel {list(report.cancel)}; "
                  f"flatten {list(report.flatten)}; closed {list(report.closed)}; "
                  + "; ".join(report.mismatches))[:4000]  # fmt: skip
        for budget in dict.fromkeys(s.budget for s in strategies):
            phase = self.budgets[budget].phase
            self.outbox.risk_events.append({"budget": budget, "ts": now, "from_phase": phase, "to_phase": phase,
                                            "reason": RECONCILE_MISMATCH, "detail": detail})  # fmt: skip

    def _detach(self, pid: int, now: int) -> None:
        """Stop booking a cancelled parent (as if final now); its late fills show at the venue."""
        p = self._parents.pop(pid)
        s, inst = p.strategy, p.instrument
        s.parents.pop(pid, None)
        self.budgets[s.budget].order_done(s.name, inst.venue, inst.symbol, p.coid, now)
        self.outbox.orders.append(self._order_row(p, now, "CANCELED"))

    def _flatten_account(self, ctx: VenueContext, strategies: list[StrategyRuntime], symbol: str, qty: float,
                         now: int) -> None:  # fmt: skip
        """Trade ``qty`` of ``symbol`` to take the account flat (a conservative reset): one reduce-only immediate
        order under an intent id of the reconciler's own (no book knows it), sent for the first strategy on the
        symbol. The risk ledgers first take the venue's position as that strategy's and the others' as flat, so
        the order is an exit and its fills leave every ledger flat."""
        charged = [s for s in strategies if any(i.symbol == symbol for i in s.instruments)]
        if not charged:
            return
        s = charged[0]
        inst = next(i for i in s.instruments if i.symbol == symbol)
        for x in charged:
            self._ledger_to(ctx, x, inst, -qty if x is s else 0.0, now)
        intent_id = f"rc{inst.id}t{now:x}"
        side = 1 if qty > 0 else -1
        if self._send(ctx, s, inst, intent_id, FLATTEN, side, abs(qty), now, reduce_only=True, style="immediate"):
            coid = client_order_id(intent_id, FLATTEN)
            self._reconcile_flattens.update(pid for pid, p in self._parents.items() if p.coid == coid)

    def _ledger_to(self, ctx: VenueContext, s: StrategyRuntime, inst: Instrument, target: float, now: int) -> None:
        """Move ``s``'s risk-ledger position in ``inst`` to ``target`` with a fee-less fill at the mark (a venue
        fact the desk did not see fill by fill)."""
        risk = self.budgets[s.budget]
        held = risk.ledger.position(s.name, inst.venue, inst.symbol)
        delta = target - held
        if abs(delta) <= 1e-9 * max(abs(target), abs(held), inst.step_size):
            return
        bid, ask = ctx.touch(inst.id)
        mark = 0.5 * (bid + ask)
        if not (math.isfinite(mark) and mark > 0):
            mark = risk.ledger.price(inst.venue, inst.symbol)
        if math.isfinite(mark) and mark > 0:
            risk.on_fill(s.name, inst.venue, inst.symbol, 1 if delta > 0 else -1, abs(delta), mark, 0.0, now,
                         leverage=s.config.sizing.leverage)  # fmt: skip

    def _take_over(self, ctx: VenueContext, strategies: list[StrategyRuntime], insts: list[Instrument],
                   parents: np.ndarray, cancelled: set[str]) -> None:  # fmt: skip
        """Working parents of ours the desk does not track (sent before a restart) are booked from now on like
        its own, when their trade is open and its book holds every fill they have (after the report)."""
        by_id = {i.id: i for i in insts}
        for pid, coid in list(self.venue_order_ids.items()):
            parsed = parse_client_order_id(coid)
            if pid in self._parents or coid in cancelled or parsed is None or pid > parents.shape[0]:
                continue
            row = parents[pid - 1]
            inst = by_id.get(int(row["symbol"]))
            status, filled, vwap, fees, maker = ctx.desk.parent_state(pid)
            if inst is None or status != PARENT_WORKING:
                continue
            intent_id, leg = parsed
            found = [(s, t) for s in strategies if (t := s.trades.trade(intent_id)) is not None]
            if not found or not found[0][1].is_open:
                continue
            s, t = found[0]
            if abs(t.leg_filled.get(leg, 0.0) - filled) > max(s.trades.dust(t), 1e-9 * max(filled, 1.0)):
                continue
            self._parents[pid] = _Parent(s, inst, intent_id, leg, coid, int(row["side"]), float(row["qty"]),
                                         leg not in OPENING_LEGS, STYLE_NAMES[int(row["style"])], int(row["send_ts"]),
                                         filled=filled, maker=maker, cost=filled * vwap if filled > 0 else 0.0,
                                         fees=fees)  # fmt: skip
            s.parents[pid] = coid

    # --- risk -------------------------------------------------------------------------------------------------
    def _watch_risk(self, ctx: VenueContext, now: int) -> None:
        for inst in self.instruments:
            t = self.view.tops[inst.id]
            if t.synced and math.isfinite(t.bid) and math.isfinite(t.ask):
                mid = 0.5 * (t.bid + t.ask)
                for risk in self.budgets.values():
                    risk.on_mark(inst.venue, inst.symbol, mid, now)
        for name, risk in self.budgets.items():
            risk.observe(now, ingest_lag_ms=self.view.ingest_lag_ms, gap_ratio_pct=self.view.gap_ratio_pct())
            actions = risk.evaluate(now)
            for tr in actions.transitions:
                self.outbox.risk_events.append({"budget": name, "ts": tr.ts, "from_phase": tr.from_phase,
                                                "to_phase": tr.to_phase, "reason": tr.reason,
                                                "detail": tr.detail})  # fmt: skip
            charged = [s for s in self.strategies if s.budget == name]
            if actions.cancel_all:
                for s in charged:
                    for pid, p in list(self._parents.items()):
                        if p.strategy is s and not p.reduce_only:
                            ctx.cancel_parent(pid)
            for venue, symbol, qty in actions.flatten:
                self._flatten(ctx, charged, venue, symbol, qty, now)

    def _flatten(self, ctx: VenueContext, charged: list[StrategyRuntime], venue: str, symbol: str, qty: float,
                 now: int) -> None:  # fmt: skip
        for s in charged:
            for trade in s.trades.open_trades():
                if trade.venue != venue or trade.symbol != symbol or trade.state is not TradeState.ACTIVE:
                    continue
                inst = next(i for i in s.instruments if i.symbol == symbol)
                self._send(ctx, s, inst, trade.intent_id, "flatten", -trade.side, trade.filled_qty, now,
                           reduce_only=True, style="immediate",
                           record=partial(s.trades.request_close, trade.intent_id, "flatten", now))  # fmt: skip

    # --- decisions ---------------------------------------------------------------------------------------------
    def _state(self, s: StrategyRuntime, inst: Instrument, now: int) -> MarketState:
        t = self.view.tops[inst.id]
        feats = self.view.bars[s.clock][inst.id]
        atr = feats.get("atr", math.nan)
        cfg = s.config
        bar_s = s.spec.features.bar_ms / 1000.0
        # the bar ATR scaled to the holding horizon (√time): a stop sized on one-second bars would sit inside
        # the noise of a minute-long trade
        atr_h = atr * math.sqrt(max(cfg.horizon_s / bar_s, 1.0)) if math.isfinite(atr) else math.nan
        fresh = now - t.ingest_ts <= 5 * _NS_PER_S
        # the fitted taker slippage at this strategy's quantile (cached per fit; NaN buckets → half-spread proxy)
        slip_edges, slip_bps = self.view.slippage.curve(inst.id, cfg.slippage_quantile)
        return MarketState(
            symbol=inst.symbol, venue=inst.venue, exchange_ts=t.exchange_ts, ingest_ts=t.ingest_ts,
            bid=t.bid, ask=t.ask, bid_qty=t.bid_qty, ask_qty=t.ask_qty, tick_size=inst.tick_size,
            step_size=inst.step_size, min_qty=inst.min_qty, min_notional=inst.min_notional,
            next_funding_rate=self.view.funding[inst.id] if inst.futures else math.nan,
            data_ok=t.synced and not t.crossed and not t.degraded and fresh, atr=atr_h,
            slippage_edges_usdt=slip_edges, slippage_bps=slip_bps,
        )  # fmt: skip

    def _decide(self, ctx: VenueContext, s: StrategyRuntime, now: int) -> None:
        risk = self.budgets[s.budget]
        for inst in s.instruments:
            t = self.view.tops[inst.id]
            if t.ingest_ts == 0:  # no book yet: nothing to decide on
                continue
            feats = self.view.features(s.clock, inst.id)
            model_ok = s.router is not None and bool(feats) and math.isfinite(feats.get("rv", math.nan))
            cfg = s.holder.current  # the snapshot: a hot swap during this call applies to the next tick
            signal, intent = decide(cfg, self._state(s, inst, now), feats, s.router, s.cooldowns, now=now,
                                    risk_headroom=risk.headroom(s.name, inst.venue, inst.symbol),
                                    model_ok=model_ok, contributions=s.contributions, clock=self.clock)  # fmt: skip
            self.decisions += 1
            self.outbox.signals.append(signal)
            risk.observe(now, decision_latency_ns=signal.latency_ns)
            if signal.reason:
                self.outbox.rejections.append({"strategy": s.name, "symbol": inst.symbol, "ts": now,
                                               "stage": "decision", "reason": signal.reason,
                                               "detail": signal.reason_detail, "signal_id": signal.id,
                                               "intent_id": ""})  # fmt: skip
            if intent is not None:
                self._enter(ctx, s, inst, intent, now)

    def _enter(self, ctx: VenueContext, s: StrategyRuntime, inst: Instrument, intent: Intent, now: int) -> None:
        if s.trades.trade(intent.intent_id) is not None:
            return  # a replayed intent: its orders exist already (client_order_id is derived from it)
        side = 1 if intent.side == LONG else -1
        if self._send(ctx, s, inst, intent.intent_id, "entry", side, intent.qty, now, reduce_only=False,
                      style=s.style, record=lambda: s.trades.open(intent, now)):  # fmt: skip
            self.outbox.intents.append(intent)

    # --- position management ------------------------------------------------------------------------------------
    def _manage(self, ctx: VenueContext, s: StrategyRuntime, now: int) -> None:
        for trade in list(s.trades.open_trades()):
            if trade.state is not TradeState.ACTIVE:
                continue
            inst = next(i for i in s.instruments if i.symbol == trade.symbol)
            t = self.view.tops[inst.id]
            if not (t.synced and math.isfinite(t.bid) and math.isfinite(t.ask)):
                continue
            mark = 0.5 * (t.bid + t.ask)
            actions = manage(trade, mark, s.management, now, tick_size=inst.tick_size, step_size=inst.step_size)
            if not actions and now - trade.opened_ts >= s.config.horizon_s * _NS_PER_S:
                # the prediction was for the horizon H: a trade that reached neither stop nor target is closed
                actions = [ManagementAction(CLOSE, trade.intent_id, trade.filled_qty, mark, "horizon", EXIT)]
            for action in actions:
                self._act(ctx, s, inst, trade, action, now)
                if trade.state is not TradeState.ACTIVE:
                    break

    def _act(self, ctx: VenueContext, s: StrategyRuntime, inst: Instrument, trade: Trade, action: ManagementAction,
             now: int) -> None:  # fmt: skip
        """Carry out one management action; exits are reduce-only market orders (they must not wait)."""
        book = s.trades
        if action.kind == MOVE_STOP:  # the stop lives in the trade book; the desk checks it every tick
            apply_action(book, action, now)
            return
        opening = action.kind == ADD_ON
        qty = trade.filled_qty if action.kind == CLOSE else action.qty
        leg = {CLOSE: EXIT, PARTIAL_CLOSE: PARTIAL}.get(action.kind) or ADD_LEGS[min(trade.add_ons, 1)]
        self._send(ctx, s, inst, trade.intent_id, leg, trade.side if opening else -trade.side, qty, now,
                   reduce_only=not opening, style=s.style if opening else "immediate",
                   record=lambda: apply_action(book, action, now))  # fmt: skip

    # --- equity ------------------------------------------------------------------------------------------------
    def _sample_equity(self, ctx: VenueContext, now: int) -> None:
        """Account equity at the marks (one row per ``equity_every_ms``) and the marks themselves."""
        acct = ctx.portfolio.acct
        total = 0.0
        for inst in self.instruments:
            t = self.view.tops[inst.id]
            valid = math.isfinite(t.bid) and math.isfinite(t.ask)
            mark = 0.5 * (t.bid + t.ask) if valid else 0.0
            total += float(symbol_equity(acct, inst.id, mark))
            if valid:
                self._marks.append((now, inst.key, mark))
        self._peak = max(self._peak, total)
        self.outbox.equity.append({
            "budget": "", "strategy": "", "ts": now, "equity": total, "realized": float(acct["realized"].sum()),
            "unrealized": total - float(acct["balance"].sum()), "fees": float(acct["fees"].sum()),
            "drawdown_pct": 100.0 * (self._peak - total) / self._peak if self._peak > 0 else 0.0,
        })  # fmt: skip

    def marks(self) -> dict[str, np.ndarray]:
        """Mid of every instrument at each equity sample: ts (local ns), symbol (``venue:SYMBOL``), mid."""
        ts, sym, mid = zip(*self._marks, strict=True) if self._marks else ((), (), ())
        return {"ts": np.array(ts, np.int64), "symbol": np.array(sym, dtype=str), "mid": np.array(mid, np.float64)}
