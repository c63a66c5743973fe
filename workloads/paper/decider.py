"""``decide``'s paper-mode loop body: answer each venue step with the desk's commands.

Transport-free on purpose (the workload main moves the bytes): the lock-step test runs it against an
in-process simulator, and the cluster runs it against Kafka, with the same code in between.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ...engine.runtime.desk import DeskRuntime
from ...engine.sim.runner import BacktestConfig
from .mirror import MirrorContext
from .protocol import OrderCommands, ProtocolError, VenueStep

DeskFactory = Callable[[], DeskRuntime]


@dataclass
class SessionInfo:
    session: int
    steps: int = 0
    commands: int = 0


class PaperDecider:
    """The desk of one paper session (rebuilt when ``execute`` starts a new one) and its mirror context."""

    def __init__(self, build: DeskFactory, config: BacktestConfig) -> None:
        self.build, self.config = build, config
        self.desk: DeskRuntime | None = None
        self.ctx: MirrorContext | None = None
        self.info: SessionInfo | None = None
        self._last: OrderCommands | None = None
        self.sessions = 0

    def _new_session(self, session: int) -> None:
        contracts = self.config.contracts
        self.desk = self.build()
        self.ctx = MirrorContext({s: c.lot_size for s, c in contracts.items()},
                                 {s: c.tick_size for s, c in contracts.items()})  # fmt: skip
        self.info = SessionInfo(session)
        self._last = None
        self.sessions += 1

    def answer(self, step: VenueStep) -> OrderCommands | None:
        """The commands for ``step``; the previous answer again for a redelivered step; ``None`` for a step
        of an older session (ignored). A step that skips one is a :class:`ProtocolError`: the desk's state
        would no longer match the venue's."""
        if self.info is None or step.session != self.info.session:
            if step.seq != 1:
                if self.info is None:
                    raise ProtocolError("seq", f"session {step.session} starts at step {step.seq}, not 1: "
                                               "restart execute to begin a new paper session")  # fmt: skip
                return None  # a straggler of a session this desk no longer runs
            self._new_session(step.session)
        assert self.info is not None and self.desk is not None and self.ctx is not None
        if step.seq <= self.info.steps:
            return self._last if self._last is not None and self._last.seq == step.seq else None
        if step.seq != self.info.steps + 1:
            raise ProtocolError("seq", f"step {step.seq} after {self.info.steps}: a step was lost")
        batch = self.ctx.load(step)
        self.desk.on_batch(self.ctx, batch)
        commands = self.ctx.take_commands()
        self.info.steps = step.seq
        self.info.commands += len(commands)
        self._last = OrderCommands(step.session, step.seq, step.now, commands)
        return self._last
