"""Per-message columns of one message class (:class:`Cols`) and the per-call state (:class:`Batch`).

Both decoding paths meet here: the flat fast path (:mod:`.flat`) yields columns directly, msgspec-decoded
Structs become the same columns through :func:`struct_cols`; the planners (:mod:`.plans`) read them.
Level lists and optional numbers that msgspec kept raw are parsed here, one numba call per column.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import msgspec
import numpy as np
import numpy.typing as npt

from ..events import SymbolTable
from . import messages as msg
from .routing import TYPE_NAMES
from .scan import NUM_EMPTY, NUM_OK, NUM_SLOW, parse_level_lists, parse_values

I64 = npt.NDArray[np.int64]


@dataclass(slots=True)
class Cols:
    """Per-message columns of one message class, whichever path decoded it (fast path, msgspec, or both
    merged): batch line index, symbol as a code into ``names``, and the fields by Binance name (numpy
    arrays; a list of ``msgspec.Raw`` for the funding rate). Level lists are parsed: ``levels`` holds
    all prices and quantities, and fields ``<list>_first`` / ``<list>_count`` index it per message."""

    lines: I64
    codes: I64
    names: list[str]
    f: dict[str, Any]
    levels: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None = None

    def take(self, keep: npt.NDArray[np.bool_]) -> Cols:
        fields = {
            k: (v[keep] if isinstance(v, np.ndarray) else [x for x, ok in zip(v, keep, strict=True) if ok])
            for k, v in self.f.items()
        }
        return Cols(self.lines[keep], self.codes[keep], self.names, fields, self.levels)

    @staticmethod
    def concat(parts: list[Cols]) -> Cols:
        if len(parts) == 1:
            return parts[0]
        index: dict[str, int] = {}
        codes = []
        for part in parts:
            remap = np.array([index.setdefault(name, len(index)) for name in part.names], dtype=np.int64)
            codes.append(remap[part.codes] if len(part.codes) else part.codes)
        shift = np.cumsum([0] + [len(p.levels[0]) if p.levels else 0 for p in parts[:-1]])
        fields: dict[str, Any] = {}
        for key, first in parts[0].f.items():
            if key.endswith("_first"):
                fields[key] = np.concatenate([p.f[key] + k for p, k in zip(parts, shift, strict=True)])
            elif isinstance(first, np.ndarray):
                fields[key] = np.concatenate([p.f[key] for p in parts])
            else:
                fields[key] = [x for p in parts for x in p.f[key]]
        levels = None
        if parts[0].levels is not None:
            px = np.concatenate([p.levels[0] for p in parts if p.levels is not None])
            qty = np.concatenate([p.levels[1] for p in parts if p.levels is not None])
            levels = (px, qty)
        return Cols(np.concatenate([p.lines for p in parts]), np.concatenate(codes), list(index), fields, levels)


class Batch:
    """Per-call state: ingest times, the problems found so far, symbol interning in line order."""

    def __init__(self, symbols: SymbolTable, venue: str, ingest: I64, first_line: int) -> None:
        self.symbols = symbols
        self.venue = venue
        self.ingest = ingest
        self.first_line = first_line
        self.unknown: dict[str, int] = {}
        self.malformed_by: dict[str, int] = {}
        self.problems: list[tuple[int, str]] = []  # (batch line index, reason)
        self._first_seen: dict[str, int] = {}  # symbol name → first batch line index
        self._ids: dict[str, int] = {}

    def bad(self, line: int, cause: str, reason: str) -> None:
        self.malformed_by[cause] = self.malformed_by.get(cause, 0) + 1
        self.problems.append((line, reason))

    def unknown_type(self, line: int, key: str) -> None:
        self.unknown[key] = self.unknown.get(key, 0) + 1
        self.problems.append((line, f"unknown message type {key!r}"))

    def see_symbols(self, cols: Cols) -> None:
        """Record where each symbol first appears, so ids are interned in input order: a replay in
        batches of any size, or a live feed, then assigns the same ids to the same names."""
        if not len(cols.lines):
            return
        never = np.iinfo(np.int64).max
        first = np.full(len(cols.names), never, dtype=np.int64)
        np.minimum.at(first, cols.codes, cols.lines)
        for name, line in zip(cols.names, first.tolist(), strict=True):
            if line != never and self._first_seen.get(name, line + 1) > line:
                self._first_seen[name] = line

    def intern_seen(self) -> None:
        for name in sorted(self._first_seen, key=self._first_seen.__getitem__):
            self._ids[name] = self.symbols.intern(self.venue, name)

    @property
    def seen(self) -> list[str]:
        return list(self._first_seen)

    def symbol_ids(self, cols: Cols) -> npt.NDArray[np.uint32]:
        # names of dropped messages may linger in cols.names; no code refers to them
        table = np.array([self._ids.get(name, 0) for name in cols.names], dtype=np.uint32)
        return table[cols.codes] if len(table) else np.zeros(len(cols.codes), dtype=np.uint32)


def _ints(values: list[int]) -> I64:
    return np.fromiter(values, dtype=np.int64, count=len(values))


def _floats(values: list[float]) -> npt.NDArray[np.float64]:
    return np.fromiter(values, dtype=np.float64, count=len(values))


def _bools(values: list[bool]) -> npt.NDArray[np.bool_]:
    return np.fromiter(values, dtype=np.bool_, count=len(values))


def _codes(names: list[str]) -> tuple[I64, list[str]]:
    """Symbol names → (code per message, distinct names in first-appearance order)."""
    if not names:
        return np.empty(0, dtype=np.int64), []
    if names.count(names[0]) == len(names):
        return np.zeros(len(names), dtype=np.int64), [names[0]]
    index: dict[str, int] = {}
    codes = np.fromiter((index.setdefault(n, len(index)) for n in names), dtype=np.int64, count=len(names))
    return codes, list(index)


def struct_cols(batch: Batch, c: int, objs: list[Any], lines: I64, snapshot_symbol: str) -> Cols:
    """Columns of msgspec-decoded Structs of class ``c`` (the same keys as the fast path's columns).
    Level lists are parsed here; a message with a bad one is counted malformed and left out."""
    if c == msg.FORCE_ORDER:
        orders = [o.o for o in objs]
        codes, names = _codes([o.s for o in orders])
        f: dict[str, Any] = {
            "buy": _bools([o.S == "BUY" for o in orders]),
            "ap": _floats([o.ap for o in orders]),
            "z": _floats([o.z for o in orders]),
            "T": _ints([o.T for o in orders]),
            "E": _ints([o.E for o in objs]),
        }
        return Cols(lines, codes, names, f)
    if c == msg.DEPTH_SNAPSHOT:
        codes, names = _codes([snapshot_symbol] * len(objs))
        f = {
            "lastUpdateId": _ints([o.last_update_id for o in objs]),
            "bids": [o.bids for o in objs],
            "asks": [o.asks for o in objs],
            "T": _ints([o.T for o in objs]),
            "E": _ints([o.E for o in objs]),
        }
        return _parse_level_fields(batch, c, Cols(lines, codes, names, f), "bids", "asks")
    codes, names = _codes([o.s for o in objs])
    if c == msg.KLINE:
        bars = [o.k for o in objs]
        f = {"x": _bools([b.x for b in bars]), "t": _ints([b.t for b in bars]), "kT": _ints([b.T for b in bars])}
        f |= {key: _floats([getattr(b, key) for b in bars]) for key in ("o", "h", "l", "c", "v", "q", "V")}
        f["n"] = _ints([b.n for b in bars])
        return Cols(lines, codes, names, f)
    f = {}
    for key, kind in _STRUCT_FIELDS[c].items():
        values = [getattr(o, key) for o in objs]
        f[key] = values if kind == "raw" else _floats(values) if kind == "float" else _ints(values)
        if kind == "bool":
            f[key] = _bools(values)
    cols = Cols(lines, codes, names, f)
    return _parse_level_fields(batch, c, cols, "b", "a") if c == msg.DEPTH_UPDATE else cols


def _parse_level_fields(batch: Batch, c: int, cols: Cols, bids: str, asks: str) -> Cols:
    """Raw level lists → ``levels`` + ``<list>_first`` / ``<list>_count`` (the fast path's layout), in
    one numba call; messages with a list that is not [[price, qty], ...] of finite decimals are counted
    malformed and dropped."""
    n = len(cols.lines)
    lists: list[msgspec.Raw] = [cols.f[bids][0]] * (2 * n) if n else []
    lists[0::2] = cols.f.pop(bids)
    lists[1::2] = cols.f.pop(asks)
    joined = b"\x00".join(lists)
    px, qty, counts, ok, slow, first_level = parse_level_lists(np.frombuffer(joined, dtype=np.uint8), 2 * n)
    for lv, col, start, end in slow.tolist():
        value = float(joined[start:end])
        (px if col == 0 else qty)[lv] = value
        if not np.isfinite(value):
            ok[np.searchsorted(first_level, lv, side="right") - 1] = False
    cols.f[f"{bids}_first"], cols.f[f"{bids}_count"] = first_level[0::2], counts[0::2]
    cols.f[f"{asks}_first"], cols.f[f"{asks}_count"] = first_level[1::2], counts[1::2]
    cols.levels = (px, qty)
    good = ok[0::2] & ok[1::2]
    if good.all():
        return cols
    for k in np.flatnonzero(~good).tolist():
        side = 2 * k + int(ok[2 * k])
        raw = bytes(lists[side])
        name = asks if side % 2 else bids
        batch.bad(int(cols.lines[k]), "number", f"{TYPE_NAMES[c]}: bad level list in {name!r}: {raw[:40]!r}")
    return cols.take(good)


#: Flat columns per class for :func:`struct_cols`: field → "int" | "float" | "bool" | "raw".
_STRUCT_FIELDS: Final[dict[int, dict[str, str]]] = {
    msg.DEPTH_UPDATE: {"u": "int", "U": "int", "pu": "int", "T": "int", "E": "int", "b": "raw", "a": "raw"},
    msg.BOOK_TICKER: {"u": "int", "b": "float", "B": "float", "a": "float", "A": "float", "T": "int", "E": "int"},
    msg.TRADE: {"t": "int", "p": "float", "q": "float", "m": "bool", "T": "int", "E": "int"},
    msg.AGG_TRADE: {
        "a": "int",
        "f": "int",
        "l": "int",
        "p": "float",
        "q": "float",
        "m": "bool",
        "T": "int",
        "E": "int",
    },
    msg.MARK_PRICE_UPDATE: {"p": "float", "r": "raw", "T": "int", "E": "int"},
}


def raw_numbers(raws: list[msgspec.Raw]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Parse a column of optional raw JSON numbers (``""`` or absent → NaN); returns values and a
    per-value ok mask. One kernel call per column; SLOW values go through ``float``."""
    joined = b"\x00".join(raws)
    vals, status, start, end = parse_values(np.frombuffer(joined, dtype=np.uint8), len(raws))
    for k in np.flatnonzero(status == NUM_SLOW).tolist():
        vals[k] = float(joined[start[k] : end[k]])
        status[k] = NUM_OK
    empty = status == NUM_EMPTY
    vals[empty] = np.nan
    return vals, ((status == NUM_OK) & np.isfinite(vals)) | empty
