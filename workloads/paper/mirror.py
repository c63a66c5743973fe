"""``decide``'s side of paper mode: a venue context that mirrors the remote simulator's executors.

The desk runtime reads four things of the venue each batch — the parent records, the account, the touch,
and what it may send (:class:`~tradeplane.engine.runtime.desk.VenueContext`). Here they come from the
venue step ``execute`` sent (:mod:`.protocol`), and what the desk sends is recorded as commands for the
answer. A parent the desk starts gets the id the remote desk will give it (ids are sequential per run), and
its record is the one the remote desk creates (the same :func:`~tradeplane.engine.sim.executors.init_parent`),
so the desk reads in this batch exactly what it would read in-process; the next step overwrites it with the
remote record.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from ...engine.sim.executors import (
    PARENT_CANCELED,
    PARENT_WORKING,
    STYLE_NAMES,
    TwapSpec,
    init_parent,
    parent_units,
)
from ...engine.sim.portfolio import ACCOUNT_DTYPE
from ...engine.sim.result import PARENT_DTYPE
from ...engine.sim.routing import RoutingTable
from ...engine.sim.runner import MarketBatch
from .protocol import CancelParent, Command, ProtocolError, StartParent, VenueStep

_STYLE_IDS = {name: code for code, name in STYLE_NAMES.items()}
Records = npt.NDArray[np.void]


class ParentMirror:
    """The parent records as the remote executors last reported them, plus those started since."""

    def __init__(self, lots: Mapping[int, float], ticks: Mapping[int, float]) -> None:
        self.lots, self.ticks = dict(lots), dict(ticks)
        self._rows = np.zeros(64, PARENT_DTYPE)
        self._n = 0
        self.commands: list[Command] = []

    @property
    def parents(self) -> Records:
        return self._rows[: self._n].copy()

    def parent_state(self, parent_id: int) -> tuple[int, float, float, float, float]:
        p = self._rows[parent_id - 1]
        return int(p["status"]), float(p["filled"]), float(p["vwap"]), float(p["fees"]), float(p["maker_qty"])

    def _grow(self, n: int) -> None:
        if n > self._rows.shape[0]:
            rows = np.zeros(max(n, 2 * self._rows.shape[0]), PARENT_DTYPE)
            rows[: self._n] = self._rows[: self._n]
            self._rows = rows

    def start(self, now: int, symbol: int, side: int, qty: float, touch: tuple[float, float], *, style: str,
              twap: TwapSpec | None, routing: RoutingTable | None, theta: float | None) -> int:  # fmt: skip
        code = _STYLE_IDS.get(style)
        if code is None:
            raise ValueError(f"unknown executor style {style!r}; one of {', '.join(_STYLE_IDS)}")
        units = parent_units(self.lots, self.ticks, symbol, side, qty, code, twap, theta)
        self._grow(self._n + 1)
        pid = self._n + 1
        init_parent(self._rows[self._n], pid, now, symbol, side, code, units * self.lots[symbol], touch)
        self._n = pid
        self.commands.append(StartParent(pid, symbol, side, qty, style, twap, routing, theta))
        return pid

    def cancel(self, parent_id: int) -> None:
        if not 1 <= parent_id <= self._n:
            raise KeyError(f"no parent {parent_id}")
        p = self._rows[parent_id - 1]
        if p["status"] == PARENT_WORKING:  # as the executors do: final at once, children cancelled remotely
            p["status"] = PARENT_CANCELED
        self.commands.append(CancelParent(parent_id))

    def apply(self, rows: Records) -> None:
        """Take the remote records (changed or new since the previous step)."""
        if rows.shape[0] == 0:
            return
        ids = rows["parent_id"].astype(np.int64)
        top = int(ids.max())
        if int(ids.min()) < 1 or top > self._n:
            raise ProtocolError("parents", f"parent ids {int(ids.min())}..{top} outside the {self._n} this desk sent")
        self._rows[ids - 1] = rows


class _Account:
    def __init__(self, n: int) -> None:
        self.acct: Records = np.zeros(n, ACCOUNT_DTYPE)


class CommandRecorder:
    """What the desk sends, recorded as commands with predicted parent ids (the part of a VenueContext both
    paper and live decide share); subclasses give :attr:`desk`, :attr:`now` and :meth:`touch`."""

    desk: ParentMirror
    now: int

    def touch(self, symbol: int) -> tuple[float, float]:
        raise NotImplementedError

    def execute(self, symbol: int, side: int, qty: float, style: str = "maker_then_taker",
                twap: TwapSpec | None = None, *, routing: RoutingTable | None = None,
                theta: float | None = None) -> int:  # fmt: skip
        return self.desk.start(self.now, symbol, side, qty, self.touch(symbol), style=style, twap=twap,
                               routing=routing, theta=theta)  # fmt: skip

    def cancel_parent(self, parent_id: int) -> None:
        self.desk.cancel(parent_id)

    def order_refusal(self) -> str | None:
        """None: paper mode's lock-step only calls the desk with execute's answer in hand."""
        return None

    def take_commands(self) -> list[Command]:
        out, self.desk.commands = self.desk.commands, []
        return out


class MirrorContext(CommandRecorder):
    """The :class:`~tradeplane.engine.runtime.desk.VenueContext` of ``decide`` in paper mode."""

    def __init__(self, lots: Mapping[int, float], ticks: Mapping[int, float]) -> None:
        self.desk = ParentMirror(lots, ticks)
        self.portfolio = _Account(len(lots))
        self._touch = np.full((len(lots), 4), np.nan)
        self.now = 0

    def load(self, step: VenueStep) -> MarketBatch:
        """Take a venue step's state; the market batch the desk runs on."""
        if step.account.shape[0] != self._touch.shape[0] or step.touch.shape[0] != self._touch.shape[0]:
            raise ProtocolError("account", f"{step.account.shape[0]} account / {step.touch.shape[0]} touch rows "
                                           f"for a desk of {self._touch.shape[0]} instruments")  # fmt: skip
        self.desk.apply(step.parents)
        self.portfolio.acct = step.account.copy()
        for i, name in enumerate(("bid", "bid_qty", "ask", "ask_qty")):
            self._touch[:, i] = step.touch[name]
        self.now = step.now
        return MarketBatch(step.now, step.events, step.tops, step.fills, step.reports)

    def touch(self, symbol: int) -> tuple[float, float]:
        return float(self._touch[symbol, 0]), float(self._touch[symbol, 2])
