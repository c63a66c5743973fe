"""Checking a message's rows against the table before they are buffered.

Why: rows from ``fills.*`` and ``desk.*`` are JSON written by another process, and one bad value (a string
in a Float64 column, a missing column) would make the whole batched insert fail for good — taking the good
rows of every other message in that batch with it. Checked per message, the bad one goes to the dead-letter
topic with the column named, and the batch stays clean. The check is per row and per value in Python, which
is fine for these tables (one row per order, fill, position change; not market data, which is checked as a
whole by the md batch decoder).

The table's columns come from the store (``system.columns`` through ``table_schema``) once it is reachable;
until then only the column *set* is checked (every append to a :class:`~..store.writer.TableWriter` must
carry the same columns).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping
from numbers import Integral, Real
from typing import Any, Final

Schema = dict[str, tuple[str, bool]]
"""column → (ClickHouse type, has a DEFAULT), in table order."""

_INT_RANGES: Final = {
    "Int8": (-(2**7), 2**7 - 1),
    "Int16": (-(2**15), 2**15 - 1),
    "Int32": (-(2**31), 2**31 - 1),
    "Int64": (-(2**63), 2**63 - 1),
    "UInt8": (0, 2**8 - 1),
    "UInt16": (0, 2**16 - 1),
    "UInt32": (0, 2**32 - 1),
    "UInt64": (0, 2**64 - 1),
}
_I64: Final = _INT_RANGES["Int64"]


def _inner(t: str, wrapper: str) -> str | None:
    if t.startswith(wrapper + "(") and t.endswith(")"):
        return t[len(wrapper) + 1 : -1].strip()
    return None


def _integer(value: Any, lo: int, hi: int) -> bool:
    if isinstance(value, Integral):
        return lo <= int(value) <= hi
    if isinstance(value, Real):
        f = float(value)
        return math.isfinite(f) and f == math.trunc(f) and lo <= int(f) <= hi
    return False


Checker = Callable[[Any], bool]


def _always(value: Any) -> bool:
    return True


@functools.lru_cache(maxsize=256)
def checker(ch_type: str) -> Checker:
    """A function telling whether a value converts to a column of ClickHouse type ``ch_type`` the way the
    stores convert (parsed once per type: the check runs per value)."""
    t = ch_type.strip()
    low = _inner(t, "LowCardinality")
    if low is not None:
        return checker(low)
    nullable = _inner(t, "Nullable")
    if nullable is not None:
        inner = checker(nullable)
        return lambda v: v is None or inner(v)
    array = _inner(t, "Array")
    if array is not None:
        item = checker(array)
        return lambda v: isinstance(v, list | tuple) and all(item(x) for x in v)
    if t in _INT_RANGES or t.startswith(("DateTime64(", "DateTime")) or t == "Date":
        lo, hi = _INT_RANGES.get(t, _I64)
        return lambda v: (lo <= v <= hi) if type(v) is int else _integer(v, lo, hi)
    if t in ("Float32", "Float64"):
        return lambda v: type(v) is float or isinstance(v, Real)
    if t == "String" or t.startswith("FixedString("):
        return lambda v: isinstance(v, str)
    if t == "Bool":
        return lambda v: isinstance(v, bool | Integral)
    return _always  # a type these tables do not use: let the store decide


def value_ok(value: Any, ch_type: str) -> bool:
    """Whether ``value`` converts to a column of ClickHouse type ``ch_type`` (see :func:`checker`)."""
    return checker(ch_type)(value)


def rows_problem(
    table: str, rows: Iterable[Mapping[str, Any]], schema: Schema | None, constants: Iterable[str] = ()
) -> str | None:
    """Why ``rows`` cannot go into ``table`` (naming the column and row), or ``None`` when they can.

    Every row must have the same columns; none may be a constant the sink adds (``run_id``); with a
    ``schema``, no column may be unknown, every column without a DEFAULT must be there (constants aside),
    and every value must fit its column's type.
    """
    fixed = set(constants)
    keys: frozenset[str] | None = None
    for i, row in enumerate(rows):
        names = frozenset(row)
        if keys is None:
            keys = names
            clash = sorted(names & fixed)
            if clash:
                return f"{table}: column(s) {clash} are set by the sink"
            if schema is not None:
                unknown = sorted(names - schema.keys())
                if unknown:
                    return f"{table}: unknown column(s) {unknown}"
                missing = [c for c, (_, default) in schema.items() if not default and c not in names and c not in fixed]
                if missing:
                    return f"{table}: missing column(s) {missing}"
        elif names != keys:
            return f"{table}: row {i} has columns {sorted(names)}, row 0 has {sorted(keys)}"
        if schema is not None:
            for name, value in row.items():
                ch_type = schema[name][0]
                if not checker(ch_type)(value):
                    shown = repr(value)
                    shown = shown if len(shown) <= 60 else shown[:60] + "…"
                    return f"{table}.{name} ({ch_type}): row {i} has {shown}"
    return None


def store_schema(store: Any, table: str) -> Schema:
    """``table``'s columns from a store's ``table_schema`` (the server store returns tuples, chDB a dict)."""
    got = store.table_schema(table)
    if isinstance(got, Mapping):
        return {str(k): (str(v[0]), bool(v[1])) for k, v in got.items()}
    return {str(r[0]): (str(r[1]), bool(r[2])) for r in got}
