"""Message classes by name: how a line's stream name or ``e`` maps to its class id, and back.

Class ids are :mod:`.messages`' tags (1 = depthUpdate … 8 = REST snapshot; 0 = not routed). The byte
router (:func:`.scan.route`) matches the token tables built here; the msgspec slow path
(:mod:`.fallback`) uses the same tokens through :func:`class_of_token`, so both route alike.
"""

from __future__ import annotations

from typing import Final

import numpy as np

from . import messages as msg
from .scan import token_table

#: Stream-name type tokens, in class order (class id = position + 1). ``kline_`` matches as a prefix.
STREAM_TOKENS: Final = (b"depth", b"bookTicker", b"trade", b"aggTrade", b"kline_", b"markPrice", b"forceOrder")
#: ``e`` of each class, in class order; the names are also the keys of :attr:`DecodeStats.by_type`.
EVENT_TYPES: Final = ("depthUpdate", "bookTicker", "trade", "aggTrade", "kline", "markPriceUpdate", "forceOrder")
#: ``by_type`` key of REST depth snapshots (they carry no ``e``).
SNAPSHOT_TYPE: Final = "snapshot"

TYPE_NAMES: Final = ("", *EVENT_TYPES, SNAPSHOT_TYPE)  # by class id
assert len(TYPE_NAMES) == len(msg.PAYLOAD_TYPES) and TYPE_NAMES[msg.DEPTH_SNAPSHOT] == SNAPSHOT_TYPE
CLASS_BY_EVENT: Final = {name: c for c, name in enumerate(EVENT_TYPES, start=1)}
STREAM_TOK, STREAM_OFF = token_table(STREAM_TOKENS)
STREAM_PREFIX_OK = np.array([t.endswith(b"_") for t in STREAM_TOKENS], dtype=np.bool_)
EVENT_TOK, EVENT_OFF = token_table(tuple(t.encode() for t in EVENT_TYPES))


def stream_token(stream: str) -> str:
    """The type token of a combined-stream name, as the byte router reads it: ``btcusdt@depth@0ms`` →
    ``depth``, ``!forceOrder@arr`` → ``forceOrder``, ``btcusdt@kline_1m`` → ``kline_1m``."""
    if stream.startswith("!"):
        return stream[1:].split("@", 1)[0]
    parts = stream.split("@")
    return parts[1] if len(parts) > 1 else stream


def class_of_token(token: str) -> int:
    raw = token.encode()
    for c, tok in enumerate(STREAM_TOKENS, start=1):
        if raw == tok or (tok.endswith(b"_") and raw.startswith(tok)):
            return c
    return 0
