"""Live execute's state, without I/O: decide sessions, one ExecutionDesk each, child orders, the account and
what goes back to decide.

Why a class with no network in it: every rule of the live contract (/tmp/live/CONTRACT.md, docs/dataplane.md
"Live mode: execute") is decided here — which command is applied, redelivered, ignored or a protocol error;
which venue event becomes a report row or a fill; what the next ``venue.<account>`` message carries — and the
asyncio runner (:mod:`.execute`) only carries out the queued submits and cancels and feeds back what the
venue answered. So the rules are testable with plain calls.

Exchange truth wins: a child's report rows carry the venue's cumulative filled quantity, and a report that
would move an order backwards (an acknowledgement that arrives after the stream already said FILLED) is
dropped, so the desk's remainder after a cancel is exactly what the venue did not fill.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ...engine.events import EVENT_DTYPE, book_top_dtype
from ...engine.sim.executors import STYLE_NAMES, ExecutionDesk, ExecutorConfig, Touch
from ...engine.sim.orders import CANCELED, EXPIRED, FILL_DTYPE, FILLED, ORDER_DTYPE, REJECTED
from ...engine.sim.portfolio import Portfolio
from ...engine.sim.result import PARENT_DTYPE
from ...engine.trading.reconcile import VenueOrder
from ..paper.protocol import ANNOUNCE_SESSION, TOUCH_DTYPE, CancelParent, OrderCommands, ProtocolError, VenueStep
from ..venues.base import ExecutionReport
from .execute_orders import client_order_id, fill_row, order_row, report_reason, report_row, status_code

Records = npt.NDArray[np.void]
_STYLES = {name: code for code, name in STYLE_NAMES.items()}
_FINAL = (FILLED, CANCELED, REJECTED, EXPIRED)


@dataclass(slots=True)
class Child:
    """One child order at the venue (of any session this process ran)."""

    session: int
    row: np.void  #: the submitted ORDER_DTYPE row (a copy)
    symbol: str  #: the venue's symbol name
    mid_at_send: float
    status: int = 0  #: last status reported (PENDING until the venue answered)
    filled: float = 0.0
    cancel_sent: bool = False
    unknown_since: int = 0  #: ns; a submit whose outcome the adapter could not tell (resolved by order_status)

    @property
    def final(self) -> bool:
        return self.status in _FINAL


@dataclass(slots=True)
class SessionDesk:
    """The ExecutionDesk of one decide session and the sequence numbers in both directions."""

    session: int
    desk: ExecutionDesk
    last_seq: int = 0  #: last command message applied
    report_seq: int = 0  #: last venue report sent
    greeted: bool = False  #: the first report (the account as it stands) went out
    sent: Records = field(default_factory=lambda: np.zeros(0, PARENT_DTYPE))


@dataclass(slots=True)
class Outbound:
    """What the runner must carry out at the venue: (client id, child) to submit, client ids to cancel."""

    submit: list[tuple[str, Child]] = field(default_factory=list)
    cancel: list[str] = field(default_factory=list)


def _rows(parts: list[Records], dtype: np.dtype[np.void]) -> Records:
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


class LiveExecution:
    """See the module docstring. ``symbols``: venue symbol name per desk symbol id; ``ticks``/``lots``/``specs``
    as the paper venue's (``venue_config``)."""

    def __init__(self, account: str, symbols: Sequence[str], ticks: Mapping[int, float], lots: Mapping[int, float],
                 portfolio: Portfolio, *, executor: ExecutorConfig | None = None, seed: int = 0) -> None:  # fmt: skip
        self.account, self.symbols = account, list(symbols)
        self.ticks, self.lots = dict(ticks), dict(lots)
        self.portfolio = portfolio
        self.executor = executor or ExecutorConfig()
        self.seed = seed
        self.current: SessionDesk | None = None
        self.children: dict[str, Child] = {}  #: client id → child, every session's
        self.out = Outbound()
        self._desk_fills: list[Records] = []  #: for the current desk's next on_step
        self._desk_reports: list[Records] = []
        self._msg_fills: list[Records] = []  #: for the next venue report message
        self._msg_reports: list[Records] = []
        self.counts = {"applied": 0, "redelivered": 0, "ignored": 0, "sessions": 0, "parents": 0, "fills": 0,
                       "foreign_reports": 0}  # fmt: skip
        self.last_ignored_session = 0

    # --- commands --------------------------------------------------------------------------------------------
    def apply(self, msg: OrderCommands, now: int, touch: Touch) -> str:
        """Apply one ``orders.<account>`` message: ``applied``, ``redelivered`` or ``ignored``; a ProtocolError
        for a sequence gap or a parent id the desk did not give (the caller stops: exit 5)."""
        cur = self.current
        if cur is None or msg.session != cur.session:
            if msg.seq != 1:
                self.counts["ignored"] += 1
                self.last_ignored_session = msg.session
                return "ignored"
            self._new_session(msg.session)
            cur = self.current
            assert cur is not None
        elif msg.seq <= cur.last_seq:
            self.counts["redelivered"] += 1
            return "redelivered"
        elif msg.seq != cur.last_seq + 1:
            raise ProtocolError("seq", f"session {msg.session}: command message {msg.seq} after {cur.last_seq} "
                                       f"({msg.seq - cur.last_seq - 1} lost)")  # fmt: skip
        for c in msg.commands:
            if isinstance(c, CancelParent):
                try:
                    self._queue(cur, cur.desk.cancel(now, c.pid).cancel)
                except KeyError:
                    raise ProtocolError("pid", f"cancel of parent {c.pid}, which session {cur.session} never "
                                               "started") from None  # fmt: skip
                continue
            pid = cur.desk.start(now, c.symbol, c.side, c.qty, touch(c.symbol), style=_STYLES[c.style],
                                 twap=c.twap, routing=c.routing, theta=c.theta)  # fmt: skip
            if pid != c.pid:
                raise ProtocolError("pid", f"decide predicted parent {c.pid}, the executors gave {pid}")
            self.counts["parents"] += 1
        cur.last_seq = msg.seq
        self.counts["applied"] += 1
        return "applied"

    def _new_session(self, session: int) -> None:
        """A fresh desk (parents numbered from 1 again); the old session's working children are cancelled."""
        for coid, c in self.children.items():
            if not c.final and not c.cancel_sent:
                c.cancel_sent = True
                self.out.cancel.append(coid)
        desk = ExecutionDesk(self.ticks, self.lots, self.executor, rng=np.random.default_rng(self.seed))
        self.current = SessionDesk(session, desk)
        self._desk_fills.clear()
        self._desk_reports.clear()
        self._msg_fills.clear()
        self._msg_reports.clear()
        self.counts["sessions"] += 1

    def cancel_all_parents(self, now: int) -> None:
        """Shutdown: stop every working parent of the current desk (its live children are cancelled)."""
        cur = self.current
        if cur is None:
            return
        for p in cur.desk.parents:
            if int(p["status"]) == 0:
                self._queue(cur, cur.desk.cancel(now, int(p["parent_id"])).cancel)

    def _queue(self, cur: SessionDesk, cancel_ids: npt.NDArray[np.int64]) -> None:
        for oid in cancel_ids.tolist():
            coid = client_order_id(self.account, cur.session, int(oid))
            c = self.children.get(coid)
            if c is not None and not c.final:
                c.cancel_sent = True
                self.out.cancel.append(coid)

    # --- the desk step -----------------------------------------------------------------------------------------
    def step(self, now: int, touch: Touch) -> None:
        """Feed the desk what the venue reported since its last step; queue the orders and cancels due now."""
        cur = self.current
        if cur is None:
            return
        fills, reports = _rows(self._desk_fills, FILL_DTYPE), _rows(self._desk_reports, ORDER_DTYPE)
        self._desk_fills.clear()
        self._desk_reports.clear()
        actions = cur.desk.on_step(now, fills, reports, touch)
        if actions.submit.shape[0]:
            parents = cur.desk.parents
            rows = actions.submit.copy()  # each child keeps its own row (a view into this copy)
            rows["local_ts"] = now
            for row in rows:
                oid = int(row["order_id"])
                pid = cur.desk.child_parent(oid)
                mid = float(parents[pid - 1]["mid_at_send"]) if pid is not None else math.nan
                coid = client_order_id(self.account, cur.session, oid)
                c = Child(cur.session, row, self.symbols[int(row["symbol"])], mid)
                self.children[coid] = c
                self.out.submit.append((coid, c))
        self._queue(cur, actions.cancel)

    def take_outbound(self) -> Outbound:
        out, self.out = self.out, Outbound()
        return out

    # --- what the venue said -----------------------------------------------------------------------------------
    def _emit(self, c: Child, rows: Records, *, fill: bool) -> None:
        cur = self.current
        if cur is None or c.session != cur.session:
            return  # an old session's order: the account has it, the new desk never knew it
        (self._desk_fills if fill else self._desk_reports).append(rows)
        (self._msg_fills if fill else self._msg_reports).append(rows)

    def _changed(self, c: Child, status: int, filled: float) -> bool:
        """Whether (status, filled) moves the order forward (never backwards, never past final)."""
        if c.final or filled < c.filled - 1e-12:
            return False
        return status != c.status or filled > c.filled + 1e-12

    def on_report(self, r: ExecutionReport, now: int) -> bool:
        """A venue event (user-data stream or poll). False when it is not one of this account's children."""
        c = self.children.get(r.client_order_id)
        if c is None:
            self.counts["foreign_reports"] += 1
            return False
        if r.qty > 0:
            sym = int(c.row["symbol"])
            acct = self.portfolio.acct[sym]
            bps = float(acct["maker_bps"] if r.is_maker else acct["taker_bps"])
            f = fill_row(c.row, r, local_ts=now, mid_at_send=c.mid_at_send, fee_bps=bps)
            self.portfolio.apply_fills(f)
            self.counts["fills"] += 1
            self._emit(c, f, fill=True)
        status = status_code(r.status)
        if self._changed(c, status, r.cum_qty):
            c.status, c.filled, c.unknown_since = status, max(c.filled, r.cum_qty), 0
            self._emit(c, report_row(c.row, r, cancel_sent=c.cancel_sent), fill=False)
        return True

    def on_order(self, coid: str, o: VenueOrder, ts: int) -> None:
        """The order as a submit, cancel or status query returned it (fills themselves come as reports)."""
        c = self.children.get(coid)
        if c is None:
            return
        status = status_code(o.status)
        if status == 0 or not self._changed(c, status, o.filled_qty):
            return
        c.status, c.filled, c.unknown_since = status, max(c.filled, o.filled_qty), 0
        reason = report_reason(c.row, status, o.filled_qty, c.cancel_sent)
        self._emit(c, order_row(c.row, status, o.filled_qty, o.avg_price, ts, reason=reason), fill=False)

    def on_rejected(self, coid: str, ts: int, *, reason: int = 0) -> None:
        """The venue refused the order (or never got it): nothing was placed."""
        c = self.children.get(coid)
        if c is None or c.final:
            return
        c.status, c.unknown_since = REJECTED, 0
        self._emit(c, order_row(c.row, REJECTED, c.filled, math.nan, ts, reason=reason), fill=False)

    def on_unknown(self, coid: str, now: int) -> None:
        c = self.children.get(coid)
        if c is not None and not c.final and not c.unknown_since:
            c.unknown_since = now

    def unknown(self) -> list[tuple[str, Child]]:
        return [(k, c) for k, c in self.children.items() if c.unknown_since and not c.final]

    def working(self) -> list[tuple[str, Child]]:
        """Children not final (as far as the venue told us)."""
        return [(k, c) for k, c in self.children.items() if not c.final]

    def prune(self) -> None:
        """Forget final children of old sessions (their late reports are foreign from then on)."""
        cur = self.current
        for k in [k for k, c in self.children.items() if c.final and (cur is None or c.session != cur.session)]:
            del self.children[k]

    # --- venue.<account> -----------------------------------------------------------------------------------------
    def pending_report(self) -> bool:
        cur = self.current
        return bool(self._msg_fills or self._msg_reports or (cur is not None and not cur.greeted))

    def _changed_parents(self, cur: SessionDesk) -> Records:
        parents = cur.desk.parents
        n_old = cur.sent.shape[0]
        void = np.dtype((np.void, PARENT_DTYPE.itemsize))
        same = np.ascontiguousarray(parents[:n_old]).view(void) == np.ascontiguousarray(cur.sent).view(void)
        idx = np.concatenate([np.flatnonzero(~same), np.arange(n_old, parents.shape[0])])
        out: Records = parents[idx]
        cur.sent = parents
        return out

    def seed_positions(self, held: Mapping[str, tuple[float, float]]) -> list[str]:
        """Start the account from what the venue holds: ``held`` maps a venue symbol to (signed position, average
        entry price). Why: a live account is rarely flat at start (an earlier run, a manual trade), and the
        desk's risk checks and exits must see that exposure, not an empty book. Each symbol seeds the first
        desk row trading it; returns the symbols the desk does not trade (left alone, for the log)."""
        acct = self.portfolio.acct
        rows = {name: i for i, name in reversed(list(enumerate(self.symbols)))}
        for name, (qty, entry) in held.items():
            i = rows.get(name)
            if i is not None:
                acct["position"][i] = qty
                acct["entry_px"][i] = entry if qty != 0.0 else math.nan
        return sorted(set(held) - set(rows))

    def announcement(self, now: int, touch: Records, levels: int = 10) -> VenueStep:
        """The message a (re)started execute sends once it takes commands: session 0, seq 0, its account.

        Why: commands sent while no execute was reading are never carried out late (the orders consumer starts
        at the end), so a decide session older than this process must learn that the parents it thinks are
        working were cancelled at start (the orphan sweep); decide's rule is in its ``VenueReports``."""
        t: Records = np.ascontiguousarray(touch, dtype=TOUCH_DTYPE)
        return VenueStep(ANNOUNCE_SESSION, 0, now, np.zeros(0, EVENT_DTYPE), np.zeros(0, book_top_dtype(levels)),
                         np.zeros(0, FILL_DTYPE), np.zeros(0, ORDER_DTYPE), np.zeros(0, PARENT_DTYPE),
                         self.portfolio.acct.copy(), t, levels=levels)  # fmt: skip

    def report(self, now: int, touch: Records, levels: int = 10) -> VenueStep | None:
        """The next venue report of the current session, or None when nothing changed since the last one (the
        session's first report always goes out: it tells decide the session was taken, with the account)."""
        cur = self.current
        if cur is None:
            return None
        parents = self._changed_parents(cur)
        if cur.greeted and not (parents.shape[0] or self._msg_fills or self._msg_reports):
            return None
        cur.greeted = True
        fills, reports = _rows(self._msg_fills, FILL_DTYPE), _rows(self._msg_reports, ORDER_DTYPE)
        self._msg_fills.clear()
        self._msg_reports.clear()
        cur.report_seq += 1
        t: Records = np.ascontiguousarray(touch, dtype=TOUCH_DTYPE)
        events, tops = np.zeros(0, EVENT_DTYPE), np.zeros(0, book_top_dtype(levels))
        return VenueStep(cur.session, cur.report_seq, now, events, tops, fills, reports, parents,
                         self.portfolio.acct.copy(), t, levels=levels)  # fmt: skip
