"""The desk's outbox as bus messages, and bus messages back into table rows: the one encoding the local run
(in-process bus) and the cluster (Kafka, decide → sink) share.

Topics (:mod:`.topics`), per batch:

* ``signals.<strategy>``: each Signal as ``signal.proto``; ``intents.<strategy>``: each Intent likewise;
  ``audit.<strategy>``: the audit record of each decision (JSON, :func:`~..codec.audit_record`);
* ``fills.<account>``: order events and fills (:mod:`.rows`, kinds ``order`` / ``fill``);
* ``desk.<account>``: positions, equity, risk events and rejections (:mod:`.rows`).

Row messages hold the rows of one kind and one symbol (the key), so per-symbol order holds on Kafka's
partitions; equity rows (the whole account) are keyed by the account.

Why encode in-process too: the local run then exercises exactly the bytes that cross Kafka, so a codec bug
shows up in ``tradeplane run`` and its tests, not first in a cluster.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from ...engine.decision.types import Intent
from ...engine.runtime.outbox import Outbox, Row
from ..codec import audit_record, intent_from_proto, intent_to_proto, signal_from_proto, signal_to_proto
from ..store.rows import audit_row, intent_row, signal_row
from .rows import decode_rows, encode_rows
from .topics import (
    AUDIT,
    DESK,
    FILLS,
    INTENTS,
    SIGNALS,
    audit_topic,
    desk_topic,
    fills_topic,
    intents_topic,
    parse_topic,
    signals_topic,
)

Message = tuple[str, str, bytes]
"""(topic, key, value)"""

#: outbox field → (row kind, topic family)
_ROW_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("orders", "order", FILLS),
    ("fills", "fill", FILLS),
    ("positions", "position", DESK),
    ("equity", "equity", DESK),
    ("risk_events", "risk_event", DESK),
    ("rejections", "rejection", DESK),
)
#: topic families whose records :func:`table_rows` turns into rows
STORED_FAMILIES = (SIGNALS, INTENTS, AUDIT, FILLS, DESK)


def _by_symbol(rows: list[Row], default: str) -> Iterator[tuple[str, list[Row]]]:
    groups: dict[str, list[Row]] = {}
    for r in rows:
        groups.setdefault(str(r.get("symbol") or default), []).append(r)
    yield from groups.items()


def outbox_topics(strategies: Iterable[str], *, account: str) -> list[str]:
    """Every topic :func:`outbox_messages` can publish to for these strategies and this account. decide creates
    them at start: a first publish to a missing topic waits for its creation and metadata (about a second
    on the test broker), which would land on the first entry's latency."""
    per = [f(s) for s in strategies for f in (signals_topic, intents_topic, audit_topic)]
    return [*per, fills_topic(account), desk_topic(account)]


def outbox_messages(batch: Outbox, *, account: str, lineage: Mapping[str, object]) -> list[Message]:
    """Every message of one drained batch, in the order a consumer should see them (a signal before its
    intent and its audit record; orders before the fills they explain)."""
    out: list[Message] = []
    intents: dict[str, Intent] = {i.signal_id: i for i in batch.intents}
    for s in batch.signals:
        out.append((signals_topic(s.strategy), s.symbol, signal_to_proto(s)))
        intent = intents.get(s.id)
        if intent is not None:
            out.append((intents_topic(s.strategy), s.symbol, intent_to_proto(intent)))
        record = audit_record(s, intent, lineage=lineage)
        out.append((audit_topic(s.strategy), s.symbol, orjson.dumps(record)))
    fills, desk = fills_topic(account), desk_topic(account)
    for name, kind, family in _ROW_FIELDS:
        rows: list[Row] = getattr(batch, name)
        topic = fills if family == FILLS else desk
        for key, group in _by_symbol(rows, account):
            out.append((topic, key, encode_rows(kind, group)))
    return out


@dataclass
class TableRows:
    """What one stored message becomes: rows per table, and the audit records it carried (for the JSONL)."""

    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    audit: list[dict[str, Any]] = field(default_factory=list)


def table_rows(topic: str, value: bytes) -> TableRows:
    """The table rows of one message on a stored family (:data:`STORED_FAMILIES`); ``ValueError`` naming
    the topic for anything else or for a payload that does not decode (the caller dead-letters it)."""
    family, _ = parse_topic(topic)
    out = TableRows()
    if family == SIGNALS:
        out.tables["signals"] = [signal_row(signal_from_proto(value))]
    elif family == INTENTS:
        out.tables["intents"] = [intent_row(intent_from_proto(value))]
    elif family == AUDIT:
        try:
            record = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"{topic}: audit record is not JSON ({exc})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{topic}: audit record must be an object")
        try:
            out.tables["audit"] = [audit_row(record)]
        except KeyError as exc:
            raise ValueError(f"{topic}: audit record lacks field {exc}") from None
        out.audit.append(record)
    elif family in (FILLS, DESK):
        msg = decode_rows(value)
        out.tables[msg.table] = msg.rows
    else:
        raise ValueError(f"{topic}: family {family!r} is not stored as table rows")
    return out
