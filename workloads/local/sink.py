"""The local run's edge: publish each batch's records on the in-process bus, and sink every topic into chDB
and the audit log.

Messages between workloads travel on the bus under the topic families of the data contracts
(``signals.<strategy>``, ``intents.<strategy>``, ``fills.<account>`` — fills and order reports —, and
``audit.<strategy>``); signals and intents cross it as their Protobuf encoding, exactly as they would cross
Kafka, so the local run exercises the codec too. The desk's own state (positions, equity, rejections, risk
transitions) is not a message to another workload: it goes straight to its table.

Writes are batched per table (:class:`~tradeplane.workloads.store.writer.TableWriter`): by size and by age
in wall time (a replay runs far faster than the market it replays; what bounds how stale the store may be
for someone watching it is the wall clock), and everything is flushed on close — including after Ctrl-C.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...engine.decision.types import Intent
from ...engine.runtime.outbox import Outbox
from ..audit import AuditWriter
from ..bus.base import Record
from ..bus.inprocess import InProcessBus
from ..codec import audit_record, intent_from_proto, intent_to_proto, signal_from_proto, signal_to_proto
from ..store.chdb_store import ChdbStore
from ..store.rows import audit_row, intent_row, signal_row
from ..store.writer import TableWriter

ACCOUNT = "paper"
_TABLES = ("signals", "intents", "orders", "fills", "positions", "equity", "risk_events", "rejections", "audit")


class LocalSink:
    """The bus, its subscribers and the store of one local run."""

    def __init__(self, store_path: Path, audit_path: Path, *, run_id: str, lineage: Mapping[str, Any],
                 max_rows: int = 50_000, max_age_ns: int = 2_000_000_000) -> None:  # fmt: skip
        self.store_path = store_path
        self.store = ChdbStore(store_path)
        self.store.migrate()
        self.writers = {t: TableWriter(self.store, t, max_rows=max_rows, max_age_ns=max_age_ns,
                                       constants={"run_id": run_id}) for t in _TABLES}  # fmt: skip
        self.audit = AuditWriter(audit_path)
        self.lineage = dict(lineage)
        self.bus = InProcessBus()
        self.bus.subscribe("signals.*", self._on_signal)
        self.bus.subscribe("intents.*", self._on_intent)
        self.bus.subscribe("fills.*", self._on_fill)
        self.bus.subscribe("audit.*", self._on_audit)
        self._now = time.monotonic_ns()
        self.published = 0

    # --- publishing (the desk's side) --------------------------------------------------------------------------
    def publish(self, batch: Outbox) -> None:
        self._now = time.monotonic_ns()
        intents: dict[str, Intent] = {i.signal_id: i for i in batch.intents}
        for s in batch.signals:
            self.bus.publish(f"signals.{s.strategy}", s.symbol, signal_to_proto(s))
            intent = intents.get(s.id)
            if intent is not None:
                self.bus.publish(f"intents.{s.strategy}", s.symbol, intent_to_proto(intent))
            self.bus.publish(f"audit.{s.strategy}", s.symbol, audit_record(s, intent, lineage=self.lineage))
        for row in batch.orders:
            self.bus.publish(f"fills.{ACCOUNT}", row["symbol"], ("order", row))
        for row in batch.fills:
            self.bus.publish(f"fills.{ACCOUNT}", row["symbol"], ("fill", row))
        for table, rows in (("positions", batch.positions), ("equity", batch.equity),
                            ("risk_events", batch.risk_events), ("rejections", batch.rejections)):  # fmt: skip
            for row in rows:
                self.writers[table].append_row(row, now_ns=self._now)
        self.published += len(batch)
        for w in self.writers.values():
            w.maybe_flush(self._now)

    # --- subscribers (the sink's side) -------------------------------------------------------------------------
    def _on_signal(self, record: Record) -> None:
        self.writers["signals"].append_row(signal_row(signal_from_proto(record.value)), now_ns=self._now)

    def _on_intent(self, record: Record) -> None:
        self.writers["intents"].append_row(intent_row(intent_from_proto(record.value)), now_ns=self._now)

    def _on_fill(self, record: Record) -> None:
        kind, row = record.value
        self.writers["orders" if kind == "order" else "fills"].append_row(dict(row), now_ns=self._now)

    def _on_audit(self, record: Record) -> None:
        self.audit.write(record.value)
        self.writers["audit"].append_row(audit_row(record.value), now_ns=self._now)

    def close(self) -> None:
        """Flush every writer and the audit log; the first error is raised after all were tried."""
        first: Exception | None = None
        for w in self.writers.values():
            try:
                w.close()
            except Exception as exc:  # keep flushing the others: nothing accepted may be lost silently
                first = first or exc
        self.audit.close()
        self.bus.close()
        self.store.close()
        if first is not None:
            raise first
