"""``decide``'s venue side in live mode: what the desk reads of the venue, and execute's reports into it.

:class:`LiveContext` is the desk's :class:`~tradeplane.engine.runtime.desk.VenueContext`: the parent records
are paper mode's :class:`~tradeplane.workloads.paper.mirror.ParentMirror` (a parent the desk starts gets the
id execute's ExecutionDesk of this session will give it, and the record the executors create), updated from
execute's venue reports; the account is the last report's rows (a flat account until the first); the touch
is decide's own book. What the desk sends is recorded as commands and goes out at once, without waiting —
once execute has greeted the session: before that the context refuses every parent
(:data:`EXECUTE_NOT_GREETED`, a rejection the desk retries next tick), since a command nobody reads is
cancelled by the next execute's start while the desk believes it working.

:class:`VenueReports` applies ``venue.<account>`` messages (docs/dataplane.md, live contract): only this
session's; a redelivery (seq at or below the last) is dropped; a gap means fills were lost, which no later
message can repair, so it is a :class:`ProtocolError` (the process exits and restarts a session).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import numpy.typing as npt

from ...engine.sim.orders import FILL_DTYPE, ORDER_DTYPE
from ...engine.sim.runner import _joined
from ..paper.mirror import CommandRecorder, ParentMirror
from ..paper.protocol import ANNOUNCE_SESSION, ProtocolError, VenueStep

Records = npt.NDArray[np.void]
Touch = Callable[[int], tuple[float, float]]
#: the desk's rejection reason (stage ``venue``) for a parent wanted before execute greeted the session
EXECUTE_NOT_GREETED = "execute_not_greeted"


def _no_touch(symbol: int) -> tuple[float, float]:
    return float("nan"), float("nan")


class _Account:
    def __init__(self, acct: Records) -> None:
        self.acct: Records = acct


class LiveContext(CommandRecorder):
    """See the module docstring. ``account`` is the flat account the venue starts from (ACCOUNT_DTYPE)."""

    def __init__(self, lots: Mapping[int, float], ticks: Mapping[int, float], account: Records) -> None:
        if account.shape[0] != len(lots):
            raise ValueError(f"{account.shape[0]} account rows for {len(lots)} instruments")
        self.desk = ParentMirror(lots, ticks)
        self.portfolio = _Account(account.copy())
        self.touch_of: Touch = _no_touch  #: set by the market clock to its book's touch
        self.now = 0
        self._fills: list[Records] = []
        self._reports: list[Records] = []
        #: why parents are refused: until execute greets the session (its first report, see VenueReports), a
        #: command could reach no execute — one starting later cancels what it did not see — so none is sent
        self.refusal: str | None = EXECUTE_NOT_GREETED

    def touch(self, symbol: int) -> tuple[float, float]:
        return self.touch_of(symbol)

    def order_refusal(self) -> str | None:
        return self.refusal

    def apply(self, step: VenueStep) -> None:
        """One venue report: parent rows, the account, and the fills and order reports for the next desk call."""
        n = self.portfolio.acct.shape[0]
        if step.account.shape[0] not in (0, n):
            raise ProtocolError("account", f"{step.account.shape[0]} account rows for a desk of {n} instruments")
        self.desk.apply(step.parents)
        if step.account.shape[0]:
            self.portfolio.acct = step.account.copy()
        if step.fills.shape[0]:
            self._fills.append(step.fills.copy())
        if step.reports.shape[0]:
            self._reports.append(step.reports.copy())

    def take_executions(self) -> tuple[Records, Records]:
        """Fills and order reports received since the previous call (FILL_DTYPE, ORDER_DTYPE)."""
        fills = _joined(self._fills) if self._fills else np.zeros(0, FILL_DTYPE)
        reports = _joined(self._reports) if self._reports else np.zeros(0, ORDER_DTYPE)
        self._fills, self._reports = [], []
        return fills, reports


class VenueReports:
    """Session filter and sequence check of ``venue.<account>`` for one decide session.

    Execute's start announcement (session :data:`ANNOUNCE_SESSION`) is not a report: one sent before this
    session began is history (that execute reads this session's hello); a later one means an execute started
    after the hello went out and may have missed it — :attr:`announced_at` keeps its time for the caller, which
    says the hello again, or ends the session if commands already went out (:func:`after_announcement`)."""

    def __init__(self, session: int, ctx: LiveContext, started_ns: int = 0) -> None:
        if session == ANNOUNCE_SESSION:
            raise ValueError(f"session {ANNOUNCE_SESSION} is execute's announcement, not a decide session")
        self.session, self.ctx, self.started_ns = session, ctx, started_ns
        self.last = 0  #: seq of the last report applied
        self.duplicates = 0
        self.other_sessions = 0
        self.announced_at = 0  #: wall ns of the newest announcement of an execute started after this session

    def accept(self, step: VenueStep) -> bool:
        """Apply ``step`` if it is this session's next report; False for one ignored; ProtocolError on a gap."""
        if step.session == ANNOUNCE_SESSION:
            if step.now >= self.started_ns:
                self.announced_at = max(self.announced_at, step.now)
            return False
        if step.session != self.session:
            self.other_sessions += 1
            return False
        if step.seq <= self.last:
            self.duplicates += 1
            return False
        if step.seq != self.last + 1:
            raise ProtocolError("seq", f"venue report {step.seq} of session {self.session} after {self.last}: "
                                       "reports were lost (fills the desk would never book)")  # fmt: skip
        self.ctx.apply(step)
        self.last = step.seq
        self.ctx.refusal = None  # greeted: an execute works this session's commands
        return True


def after_announcement(session: int, commands_sent: int, announced_at: int) -> str:
    """What a decide session does when an execute started after it: ``"hello"`` — say the hello again (nothing
    but the hello went out, so nothing was lost) — or a :class:`ProtocolError`: commands went out that this
    execute never saw, and the parents the desk believes working were cancelled by its orphan sweep; no later
    message can repair that, so the session ends (exit 5) and the next one starts from the venue's account."""
    if commands_sent == 0:
        return "hello"
    raise ProtocolError("execute", f"an execute started at {announced_at} ns after session {session} had sent "
                                   f"{commands_sent} commands: its working parents were cancelled at that start; "
                                   "the session ends and a new one begins")  # fmt: skip
