"""The local run's edge: publish each batch's records on the in-process bus, and sink every topic into chDB
and the audit log.

Messages between workloads travel on the bus under the topic families of the data contracts, encoded
exactly as they cross Kafka in the cluster (:mod:`..bus.outbox`): signals and intents as Protobuf, audit
records as JSON, order, fill and desk rows as row messages. The subscriber decodes them back into table
rows with the same function as the cluster's sink, so the local run exercises the whole codec.

Writes are batched per table (:class:`~tradeplane.workloads.store.writer.TableWriter`): by size and by age
in wall time (a replay runs far faster than the market it replays; what bounds how stale the store may be
for someone watching it is the wall clock), and everything is flushed on close — including after Ctrl-C.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...engine.runtime.outbox import Outbox
from ..audit import AuditWriter
from ..bus.base import Record
from ..bus.inprocess import InProcessBus
from ..bus.outbox import STORED_FAMILIES, outbox_messages, table_rows
from ..store.chdb_store import ChdbStore
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
        for family in STORED_FAMILIES:
            self.bus.subscribe(f"{family}.*", self._on_record)
        self._now = time.monotonic_ns()
        self.published = 0

    # --- publishing (the desk's side) --------------------------------------------------------------------------
    def publish(self, batch: Outbox) -> None:
        self._now = time.monotonic_ns()
        for topic, key, value in outbox_messages(batch, account=ACCOUNT, lineage=self.lineage):
            self.bus.publish(topic, key, value)
        self.published += len(batch)
        for w in self.writers.values():
            w.maybe_flush(self._now)

    # --- the subscriber (the sink's side) ----------------------------------------------------------------------
    def _on_record(self, record: Record) -> None:
        decoded = table_rows(record.topic, record.value)
        for table, rows in decoded.tables.items():
            writer = self.writers[table]
            for row in rows:
                writer.append_row(row, now_ns=self._now)
        for audit in decoded.audit:
            self.audit.write(audit)

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
