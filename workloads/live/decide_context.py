"""``decide``'s venue side in live mode: what the desk reads of the venue, and execute's reports into it.

:class:`LiveContext` is the desk's :class:`~tradeplane.engine.runtime.desk.VenueContext`: the parent records
are paper mode's :class:`~tradeplane.workloads.paper.mirror.ParentMirror` (a parent the desk starts gets the
id execute's ExecutionDesk of this session will give it, and the record the executors create), updated from
execute's venue reports; the account is the last report's rows (a flat account until the first); the touch
is decide's own book. What the desk sends is recorded as commands and goes out at once, without waiting.

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
from ..paper.protocol import ProtocolError, VenueStep

Records = npt.NDArray[np.void]
Touch = Callable[[int], tuple[float, float]]


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

    def touch(self, symbol: int) -> tuple[float, float]:
        return self.touch_of(symbol)

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
    """Session filter and sequence check of ``venue.<account>`` for one decide session."""

    def __init__(self, session: int, ctx: LiveContext) -> None:
        self.session, self.ctx = session, ctx
        self.last = 0  #: seq of the last report applied
        self.duplicates = 0
        self.other_sessions = 0

    def accept(self, step: VenueStep) -> bool:
        """Apply ``step`` if it is this session's next report; False for one ignored; ProtocolError on a gap."""
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
        return True
