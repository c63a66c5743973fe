"""A TradeBook as plain records, for persistence and crash recovery.

Why plain rows (dicts, or one numpy structured array) rather than pickles: the store writes them as a
table (one row per trade, the per-leg fills as columns), they survive code changes that keep the field
names, and a person can read them. Each row carries ``version``; a row of another version is refused
rather than guessed at. Recovery is: restore the book from the last records, reconcile with the venue
(:mod:`.reconcile`), then replay the intents since then — ``TradeBook.open`` returns the existing trades and
nothing is sent twice, because every order id is derived from its intent id.

Persist after each ``TradeBook.open`` and before the entry is sent (write-ahead), so that every order at
the venue has its trade in the restored book.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from .ids import LEGS
from .lifecycle import Trade, TradeBook, TradeState

RECORDS_VERSION: Final = 1

_STR_FIELDS: Final = (
    ("intent_id", 36),
    ("strategy", 63),
    ("venue", 32),
    ("symbol", 32),
    ("state", 16),
    ("close_reason", 64),
    ("signal_id", 36),
    ("config_rev", 36),
)
_INT_FIELDS: Final = ("side", "leverage", "add_ons", "trail_level", "opened_ts", "closed_ts", "updated_ts")
_FLOAT_FIELDS: Final = (
    "target_qty",
    "filled_qty",
    "avg_entry",
    "stop_price",
    "take_profit_price",
    "realized_pnl_usdt",
    "fees_usdt",
    "unmatched_qty",
)
_BOOL_FIELDS: Final = ("partial_done", "oco", "entry_done")
_LEG_FIELDS: Final = tuple(f"filled_{leg}" for leg in LEGS)

#: One row per trade; strings are fixed-width (a longer value is an error, never truncated).
RECORD_DTYPE: Final = np.dtype(
    [("version", "i8")]
    + [(name, f"U{width}") for name, width in _STR_FIELDS]
    + [(name, "i8") for name in _INT_FIELDS]
    + [(name, "f8") for name in _FLOAT_FIELDS]
    + [(name, "?") for name in _BOOL_FIELDS]
    + [(name, "f8") for name in _LEG_FIELDS]
)
FIELDS: Final = tuple(RECORD_DTYPE.names or ())


def trade_to_record(trade: Trade) -> dict[str, Any]:
    """One trade as a flat dict of str/int/float/bool (NaN for unknown prices)."""
    rec: dict[str, Any] = {"version": RECORDS_VERSION}
    for name, _ in _STR_FIELDS:
        rec[name] = str(getattr(trade, name))
    for name in _INT_FIELDS:
        rec[name] = int(getattr(trade, name))
    for name in _FLOAT_FIELDS:
        rec[name] = float(getattr(trade, name))
    for name in _BOOL_FIELDS:
        rec[name] = bool(getattr(trade, name))
    for leg, name in zip(LEGS, _LEG_FIELDS, strict=True):
        rec[name] = float(trade.leg_filled.get(leg, 0.0))
    unknown = set(trade.leg_filled) - set(LEGS)
    if unknown:
        raise ValueError(f"trade {trade.intent_id}: fills on unknown legs {sorted(unknown)}")
    return rec


def trade_from_record(rec: Mapping[str, Any]) -> Trade:
    """Inverse of :func:`trade_to_record`; a missing field or another version raises naming it."""
    ident = rec.get("intent_id", "?")
    version = rec.get("version")
    if version != RECORDS_VERSION:
        raise ValueError(f"trade record {ident}: version {version!r}, expected {RECORDS_VERSION}")
    missing = [f for f in FIELDS if f not in rec]
    if missing:
        raise ValueError(f"trade record {ident}: missing fields {missing}")
    legs = {leg: float(rec[name]) for leg, name in zip(LEGS, _LEG_FIELDS, strict=True) if float(rec[name]) != 0.0}
    try:
        state = TradeState(str(rec["state"]))
    except ValueError:
        raise ValueError(f"trade record {ident}: unknown state {rec['state']!r}") from None
    kw: dict[str, Any] = {name: str(rec[name]) for name, _ in _STR_FIELDS if name != "state"}
    kw.update({name: int(rec[name]) for name in _INT_FIELDS})
    kw.update({name: float(rec[name]) for name in _FLOAT_FIELDS})
    kw.update({name: bool(rec[name]) for name in _BOOL_FIELDS})
    if kw["side"] not in (1, -1):
        raise ValueError(f"trade record {ident}: side must be +1 or -1, got {kw['side']}")
    return Trade(state=state, leg_filled=legs, **kw)


def to_records(book: TradeBook) -> list[dict[str, Any]]:
    """Every trade of ``book`` (open and closed), in opening order."""
    return [trade_to_record(t) for t in book.trades()]


def trade_book_from_records(
    records: Iterable[Mapping[str, Any]], *, strategy: str = "", dust_qty: float = 0.0
) -> TradeBook:
    """A new book holding the recorded trades (the book's settings are not part of the records)."""
    book = TradeBook(strategy, dust_qty=dust_qty)
    for rec in records:
        book.restore(trade_from_record(rec))
    return book


def to_array(book: TradeBook) -> npt.NDArray[np.void]:
    """The records as one structured array (``RECORD_DTYPE``), e.g. for a columnar store."""
    recs = to_records(book)
    arr = np.zeros(len(recs), dtype=RECORD_DTYPE)
    for i, rec in enumerate(recs):
        for name, width in _STR_FIELDS:
            if len(rec[name]) > width:
                raise ValueError(f"trade {rec['intent_id']}: {name} longer than {width} characters")
        arr[i] = tuple(rec[name] for name in FIELDS)
    return arr


def trade_book_from_array(arr: npt.NDArray[np.void], *, strategy: str = "", dust_qty: float = 0.0) -> TradeBook:
    if arr.dtype != RECORD_DTYPE:
        raise ValueError(f"expected RECORD_DTYPE, got {arr.dtype}")
    return trade_book_from_records(
        ({name: row[name].item() for name in FIELDS} for row in arr), strategy=strategy, dust_qty=dust_qty
    )


def same_trade(a: Trade, b: Trade) -> bool:
    """Field-by-field equality with NaN equal to NaN (what a round trip must preserve)."""
    for name in FIELDS:
        if name == "version" or name in _LEG_FIELDS:
            continue
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
            continue
        if x != y:
            return False
    return a.leg_filled == b.leg_filled
