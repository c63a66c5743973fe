"""Everything the desk produced in one micro-batch, for the edges to publish and store.

Why an outbox instead of callbacks into I/O: the desk runtime stays pure (the backtester runs it with no
bus and no store), and the local runner drains the outbox after each batch onto the in-process bus, from
where the sink, the audit writer and the progress display read. Each record is a plain dict with the
column names of the store's tables (sql/runtime), so nothing is renamed on the way out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..decision.types import Intent, Signal

Row = dict[str, Any]


@dataclass
class Outbox:
    """Records of one batch (or of a whole run when nobody drains it)."""

    signals: list[Signal] = field(default_factory=list)
    intents: list[Intent] = field(default_factory=list)
    orders: list[Row] = field(default_factory=list)  #: order events: sent, final
    fills: list[Row] = field(default_factory=list)
    positions: list[Row] = field(default_factory=list)
    rejections: list[Row] = field(default_factory=list)  #: stage decision | risk
    risk_events: list[Row] = field(default_factory=list)
    equity: list[Row] = field(default_factory=list)

    def drain(self) -> Outbox:
        """The records so far, leaving this outbox empty."""
        out = Outbox(self.signals, self.intents, self.orders, self.fills, self.positions, self.rejections,
                     self.risk_events, self.equity)  # fmt: skip
        self.signals, self.intents, self.orders, self.fills = [], [], [], []
        self.positions, self.rejections, self.risk_events, self.equity = [], [], [], []
        return out

    def extend(self, other: Outbox) -> None:
        """Append ``other``'s records (a run keeps the whole history this way)."""
        self.signals += other.signals
        self.intents += other.intents
        self.orders += other.orders
        self.fills += other.fills
        self.positions += other.positions
        self.rejections += other.rejections
        self.risk_events += other.risk_events
        self.equity += other.equity

    def __len__(self) -> int:
        return sum(len(x) for x in (self.signals, self.intents, self.orders, self.fills, self.positions,
                                    self.rejections, self.risk_events, self.equity))  # fmt: skip
