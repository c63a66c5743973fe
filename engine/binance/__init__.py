"""Binance spot / USD-M / COIN-M market data → the engine's canonical event arrays.

``decode_capture_lines`` decodes recorded lines (``<ingest ns> <json>``), ``decode_payloads`` raw frames
from a live websocket; both return a :class:`DecodeResult` (events, closed klines, stats). The venue names
used for symbol interning are the ``VENUE_*`` constants.
"""

from typing import Final

from .decode import (
    EVENT_TYPES,
    MAX_ERRORS,
    SNAPSHOT_TYPE,
    DecodeResult,
    DecodeStats,
    decode_capture_lines,
    decode_payloads,
)

VENUE_SPOT: Final = "binance-spot"
VENUE_USDM: Final = "binance-usdm"
VENUE_COINM: Final = "binance-coinm"
VENUES: Final = (VENUE_SPOT, VENUE_USDM, VENUE_COINM)

__all__ = [
    "EVENT_TYPES",
    "MAX_ERRORS",
    "SNAPSHOT_TYPE",
    "VENUES",
    "VENUE_COINM",
    "VENUE_SPOT",
    "VENUE_USDM",
    "DecodeResult",
    "DecodeStats",
    "decode_capture_lines",
    "decode_payloads",
]
