"""``execute``'s side of paper mode: the strategy the simulator calls is a stand-in that forwards each call
to ``decide`` and carries out its answer.

Per call (:meth:`RemoteDesk.on_batch`): the parent records that changed since the previous call, the
account, the touch and the market batch go out as one venue step; the answer's commands are applied in
order through the same :class:`~tradeplane.engine.sim.runner.Context` the in-process desk would use, so the
simulator sees the same orders at the same local time. A started parent must get the id ``decide``
predicted; anything else means the two sides disagree about the run, and the step fails loudly.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from ...engine.sim.result import PARENT_DTYPE
from ...engine.sim.runner import Context, MarketBatch
from .protocol import TOUCH_DTYPE, CancelParent, OrderCommands, ProtocolError, VenueStep, encode_venue_step

Records = npt.NDArray[np.void]
Exchange = Callable[[int, bytes], OrderCommands]
"""(seq, encoded venue step) → the answer for that seq (blocks until it arrives)."""


class RemoteDesk:
    """A backtest Strategy whose decisions are made in another process."""

    def __init__(self, exchange: Exchange, *, session: int, n_symbols: int, levels: int) -> None:
        self.exchange, self.session, self.levels = exchange, session, levels
        self.seq = 0
        self.commands = 0
        self._sent = np.zeros(0, PARENT_DTYPE)
        self._touch = np.zeros(n_symbols, TOUCH_DTYPE)

    def _changed_parents(self, parents: Records) -> Records:
        """Rows new or different since the last step (compared as raw records: padding noise at worst sends
        an unchanged row again)."""
        n_old = self._sent.shape[0]
        void = np.dtype((np.void, PARENT_DTYPE.itemsize))
        same = np.ascontiguousarray(parents[:n_old]).view(void) == np.ascontiguousarray(self._sent).view(void)
        idx = np.concatenate([np.flatnonzero(~same), np.arange(n_old, parents.shape[0])])
        self._sent = parents
        out: Records = parents[idx]
        return out

    def step(self, ctx: Context, batch: MarketBatch) -> VenueStep:
        """The venue step of this call (also advances :attr:`seq`)."""
        self.seq += 1
        for s in range(self._touch.shape[0]):
            self._touch[s] = ctx.top(s)
        return VenueStep(self.session, self.seq, batch.now, batch.events, batch.tops, batch.fills, batch.reports,
                         self._changed_parents(ctx.desk.parents), ctx.portfolio.acct, self._touch,
                         levels=self.levels)  # fmt: skip

    def on_batch(self, ctx: Context, batch: MarketBatch) -> None:
        step = self.step(ctx, batch)
        answer = self.exchange(step.seq, encode_venue_step(step))
        if answer.seq != step.seq or answer.session != self.session:
            raise ProtocolError("seq", f"answer {answer.session}/{answer.seq} to step {self.session}/{step.seq}")
        for c in answer.commands:
            if isinstance(c, CancelParent):
                ctx.cancel_parent(c.pid)
                continue
            pid = ctx.execute(c.symbol, c.side, c.qty, c.style, twap=c.twap, routing=c.routing, theta=c.theta)
            if pid != c.pid:
                raise ProtocolError("pid", f"decide predicted parent {c.pid}, the executors gave {pid}")
            self.commands += 1
