"""Table rows as bus messages: order and fill reports (``fills.<account>``) and the desk's own records
(``desk.<account>``: positions, equity, risk events, rejections).

Why JSON here when hot topics are binary: these rows are few (one per order, fill or position change, one
equity row a second), each is a flat mapping of scalars, and their consumers (the sink, an operator with
``kcat``) read them as records. Why the standard library's encoder and not orjson: the rows carry NaN
(an order row's price, a position's average entry before a fill) and must reach the store as NaN, which
strict JSON cannot spell; ``json`` writes and reads the ``NaN``/``Infinity`` tokens, so a row round-trips
exactly (every float goes through ``repr``, which is exact for IEEE doubles).

A message is ``{"v": 1, "kind": <kind>, "rows": [...]}``: one kind, any number of rows, so a publisher
sends one message per kind and symbol per batch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

ROWS_SCHEMA_VERSION: Final = 1
#: kind → the table its rows go to
KINDS: Final[dict[str, str]] = {
    "order": "orders",
    "fill": "fills",
    "position": "positions",
    "equity": "equity",
    "risk_event": "risk_events",
    "rejection": "rejections",
}


class RowsError(ValueError):
    """A rows message that cannot be decoded; the message names the field."""


@dataclass(frozen=True, slots=True)
class RowsMessage:
    kind: str
    rows: list[dict[str, Any]]

    @property
    def table(self) -> str:
        return KINDS[self.kind]


def encode_rows(kind: str, rows: Sequence[Mapping[str, Any]]) -> bytes:
    """One message of ``rows`` of ``kind`` (a key of :data:`KINDS`)."""
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    body = {"v": ROWS_SCHEMA_VERSION, "kind": kind, "rows": [dict(r) for r in rows]}
    return json.dumps(body, separators=(",", ":"), allow_nan=True).encode()


def decode_rows(data: bytes | bytearray | memoryview) -> RowsMessage:
    """The kind and rows of a message from :func:`encode_rows`; :class:`RowsError` naming what is wrong."""
    try:
        body = json.loads(bytes(data))
    except (UnicodeDecodeError, ValueError) as exc:
        raise RowsError(f"rows message: not JSON ({exc})") from None
    if not isinstance(body, dict):
        raise RowsError(f"rows message: expected an object, got {type(body).__name__}")
    if body.get("v") != ROWS_SCHEMA_VERSION:
        raise RowsError(f"rows message: field 'v' is {body.get('v')!r}, this reader knows {ROWS_SCHEMA_VERSION}")
    kind = body.get("kind")
    if kind not in KINDS:
        raise RowsError(f"rows message: field 'kind' is {kind!r}, not one of {', '.join(KINDS)}")
    rows = body.get("rows")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise RowsError("rows message: field 'rows' must be a list of objects")
    return RowsMessage(kind, rows)
