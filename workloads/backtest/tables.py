"""A backtest's arrays as ClickHouse tables: columnar numpy (:func:`table_arrays`) and Parquet (:func:`write_tables`).

Five tables, one per array of :class:`~tradeplane.engine.sim.result.BacktestResult`:

=======  ===========================================  ======================================
table    rows                                         ``ts`` (the table's main time, UTC)
=======  ===========================================  ======================================
fills    ``result.fills`` (FILL_DTYPE)                ``exch_ts``: when the trade happened
orders   ``result.reports`` (ORDER_DTYPE), report_ts  ``update_ts``: the status change
parents  ``result.parents`` (PARENT_DTYPE)            ``send_ts``: when the strategy sent it
equity   ``result.curve`` (CURVE_DTYPE)               ``local_ts``: the sampling instant
marks    ``result.marks`` (MARK_DTYPE)                ``local_ts``: the sampling instant
=======  ===========================================  ======================================

Why this shape: every table leads with ``run_id``, ``symbol`` (the name), ``symbol_id`` and ``ts`` so that
runs can share one set of ClickHouse tables (``sql/backtest/001_backtest_tables.sql``, whose columns follow
these in order and type, so ``INSERT INTO t SELECT * FROM file('t.parquet', Parquet)`` works) and be joined
and filtered by name and time without the result at hand. Then come the record's fields in dtype order:
integer nanosecond times stay exact ``Int64`` columns named ``*_ts`` (``ts`` is the same instant as
``DateTime64(9, 'UTC')``), and every enum-like code is followed by a ``<field>_name`` string column, so SQL
reads ``side_name = 'BUY'`` rather than ``side = 1`` (order enums spelled as the constants in
:mod:`~tradeplane.engine.sim.orders`, styles and parent statuses as the executors' ``STYLE_NAMES`` and
``PARENT_STATUS_NAMES``). The curve and the marks call their own ``ts`` field ``local_ts`` (it is local
time). Fills and orders get ``seq``, the row's position in the result, because the ClickHouse sort key
(symbol, ts) does not keep the order in which the strategy received rows with equal timestamps.

The equity curve sums all symbols (see ``BacktestResult``): its ``symbol`` is the one symbol of a
single-symbol run, else :data:`PORTFOLIO_SYMBOL` with :data:`PORTFOLIO_SYMBOL_ID`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from tradeplane.engine.sim import orders as O  # noqa: N812 (the constants read as O.BUY, as in the tests)
from tradeplane.engine.sim.executors import PARENT_STATUS_NAMES, STYLE_NAMES
from tradeplane.engine.sim.orders import FILL_DTYPE, ORDER_DTYPE
from tradeplane.engine.sim.portfolio import ACCOUNT_DTYPE, CURVE_DTYPE
from tradeplane.engine.sim.result import MARK_DTYPE, PARENT_DTYPE, BacktestResult

Column = npt.NDArray[Any]
Columns = dict[str, Column]

TABLES: Final = ("fills", "orders", "parents", "equity", "marks")
"""Table keys of :func:`table_arrays` and :func:`write_tables` (files ``<key>.parquet``)."""

PORTFOLIO_SYMBOL: Final = "*"
"""``symbol`` of equity rows that sum several symbols."""
PORTFOLIO_SYMBOL_ID: Final = int(np.iinfo(np.uint32).max)
"""``symbol_id`` of equity rows that sum several symbols (no real id is this large)."""

PARQUET_COMPRESSION: Final = "zstd"

TS_TYPE: Final = pa.timestamp("ns", tz="UTC")
"""Arrow type of every ``ts`` column (ClickHouse ``DateTime64(9, 'UTC')``)."""

SIDE_NAMES: Final[Mapping[int, str]] = {O.BUY: "BUY", O.SELL: "SELL"}
ORDER_TYPE_NAMES: Final[Mapping[int, str]] = {O.MARKET: "MARKET", O.LIMIT: "LIMIT", O.STOP_MARKET: "STOP_MARKET"}
TIF_NAMES: Final[Mapping[int, str]] = {O.GTC: "GTC", O.POST_ONLY: "POST_ONLY", O.IOC: "IOC", O.FOK: "FOK"}
ORDER_STATUS_NAMES: Final[Mapping[int, str]] = {
    O.PENDING: "PENDING",
    O.OPEN: "OPEN",
    O.PARTIALLY_FILLED: "PARTIALLY_FILLED",
    O.FILLED: "FILLED",
    O.CANCELED: "CANCELED",
    O.REJECTED: "REJECTED",
    O.EXPIRED: "EXPIRED",
}
REASON_NAMES: Final[Mapping[int, str]] = {
    O.REASON_NONE: "NONE",
    O.REASON_POST_ONLY_WOULD_CROSS: "POST_ONLY_WOULD_CROSS",
    O.REASON_FOK_NOT_FILLABLE: "FOK_NOT_FILLABLE",
    O.REASON_REDUCE_ONLY: "REDUCE_ONLY",
    O.REASON_NO_LIQUIDITY: "NO_LIQUIDITY",
    O.REASON_OCO_SIBLING: "OCO_SIBLING",
    O.REASON_BOOK_NOT_SYNCED: "BOOK_NOT_SYNCED",
    O.REASON_USER_CANCEL: "USER_CANCEL",
}

_EXPECTED_DTYPES: Final = {
    "fills": FILL_DTYPE,
    "reports": ORDER_DTYPE,
    "parents": PARENT_DTYPE,
    "curve": CURVE_DTYPE,
    "marks": MARK_DTYPE,
    "account": ACCOUNT_DTYPE,
}


def check_result(result: BacktestResult) -> None:
    """Raise ``ValueError`` unless the arrays have the documented dtypes and every symbol id has a name.

    Checked before anything is written, so a mismatch never leaves half a set of files (or tables whose
    columns silently shifted) behind.
    """
    for attr, dtype in _EXPECTED_DTYPES.items():
        arr = getattr(result, attr)
        if not isinstance(arr, np.ndarray) or arr.ndim != 1 or arr.dtype != dtype:
            got = f"{arr.dtype} with shape {arr.shape}" if isinstance(arr, np.ndarray) else type(arr).__name__
            raise ValueError(f"result.{attr} must be a 1-D array of its documented dtype, got {got}")
    if result.report_ts.shape != result.reports.shape:
        raise ValueError(f"result.report_ts has shape {result.report_ts.shape}, reports {result.reports.shape}")
    for attr in ("fills", "reports", "parents", "marks"):
        ids = getattr(result, attr)["symbol"]
        if ids.shape[0] and int(ids.max()) >= len(result.symbols):
            raise ValueError(
                f"result.{attr} has symbol id {int(ids.max())} but result.symbols names {len(result.symbols)}"
            )


def enum_name(code: int, names: Mapping[int, str], unknown: str) -> str:
    """The name of an int code; a code without a name reads ``<unknown><code>`` (never an error: a table or
    report of a run must not fail on a code added after this module)."""
    return names.get(int(code), f"{unknown}{int(code)}")


def enum_names(codes: npt.ArrayLike, names: Mapping[int, str], unknown: str) -> npt.NDArray[np.object_]:
    """:func:`enum_name` of each code, as an object array of ``str``."""
    values = np.asarray(codes)
    out = np.empty(values.shape[0], dtype=object)
    for code in np.unique(values).tolist():
        out[values == code] = enum_name(code, names, unknown)
    return out


def symbol_names(result: BacktestResult, ids: npt.ArrayLike) -> npt.NDArray[np.object_]:
    """``result.symbols[id]`` for each id (an object array of ``str``); ids must be in range (:func:`check_result`)."""
    table = np.empty(len(result.symbols), dtype=object)
    table[:] = list(result.symbols)
    return np.asarray(table[np.asarray(ids, dtype=np.intp)], dtype=object)


# Per table: enum-like fields -> (names, prefix of an unknown code's name).
_ENUMS: Final[Mapping[str, Mapping[str, tuple[Mapping[int, str], str]]]] = {
    "fills": {"side": (SIDE_NAMES, "SIDE_")},
    "orders": {
        "side": (SIDE_NAMES, "SIDE_"),
        "type": (ORDER_TYPE_NAMES, "TYPE_"),
        "tif": (TIF_NAMES, "TIF_"),
        "status": (ORDER_STATUS_NAMES, "STATUS_"),
        "reason": (REASON_NAMES, "REASON_"),
    },
    "parents": {
        "side": (SIDE_NAMES, "SIDE_"),
        "style": (STYLE_NAMES, "style_"),
        "status": (PARENT_STATUS_NAMES, "status_"),
    },
    "equity": {},
    "marks": {},
}

# Per table: the record field that becomes ``ts``.
_MAIN_TS: Final[Mapping[str, str]] = {
    "fills": "exch_ts",
    "orders": "update_ts",
    "parents": "send_ts",
    "equity": "ts",
    "marks": "ts",
}


def _record_columns(rows: npt.NDArray[np.void], enums: Mapping[str, tuple[Mapping[int, str], str]]) -> Columns:
    """The record's fields in dtype order as contiguous arrays (``symbol`` left out, ``ts`` renamed
    ``local_ts``), each enum-like field followed by its ``<field>_name``."""
    out: Columns = {}
    for name in rows.dtype.names or ():
        if name == "symbol":
            continue
        out["local_ts" if name == "ts" else name] = np.ascontiguousarray(rows[name])
        if name in enums:
            out[f"{name}_name"] = enum_names(rows[name], *enums[name])
    return out


def table_arrays(result: BacktestResult, run_id: str) -> dict[str, dict[str, npt.NDArray[Any]]]:
    """The five tables (keys :data:`TABLES`) as ``{column: 1-D array}``, columns in table order.

    Ready for clickhouse-driver's columnar insert (with ``settings={"use_numpy": True}``:
    ``client.execute(f"INSERT INTO {table} ({', '.join(cols)}) VALUES", list(cols.values()), columnar=True)``):
    strings are object arrays of ``str``, ``ts`` is ``datetime64[ns]`` (UTC), other columns keep the record's
    dtypes. Raises ``ValueError`` for an empty ``run_id`` or a malformed result (:func:`check_result`).
    """
    if not run_id:
        raise ValueError("run_id must be a non-empty string")
    check_result(result)
    sources: dict[str, npt.NDArray[np.void]] = {
        "fills": result.fills,
        "orders": result.reports,
        "parents": result.parents,
        "equity": result.curve,
        "marks": result.marks,
    }
    tables: dict[str, Columns] = {}
    for table, rows in sources.items():
        n = rows.shape[0]
        if table == "equity":
            one = len(result.symbols) == 1
            names = np.full(n, result.symbols[0] if one else PORTFOLIO_SYMBOL, dtype=object)
            ids = np.full(n, 0 if one else PORTFOLIO_SYMBOL_ID, dtype=np.uint32)
        else:
            ids = np.ascontiguousarray(rows["symbol"], dtype=np.uint32)
            names = symbol_names(result, ids)
        cols: Columns = {
            "run_id": np.full(n, run_id, dtype=object),
            "symbol": names,
            "symbol_id": ids,
            "ts": np.asarray(rows[_MAIN_TS[table]], dtype=np.int64).astype("datetime64[ns]"),
        }
        if table in ("fills", "orders"):
            cols["seq"] = np.arange(n, dtype=np.int64)
        cols |= _record_columns(rows, _ENUMS[table])
        if table == "orders":
            cols["report_ts"] = np.ascontiguousarray(result.report_ts, dtype=np.int64)
        tables[table] = cols
    return tables


def _arrow_type(values: Column) -> Any:
    if values.dtype == np.dtype(object):
        return pa.string()
    if values.dtype == np.dtype("datetime64[ns]"):
        return TS_TYPE
    return pa.from_numpy_dtype(values.dtype)


def arrow_table(columns: Mapping[str, Column]) -> Any:
    """One table of :func:`table_arrays` as a ``pyarrow.Table``: object → string, datetime64 → :data:`TS_TYPE`.

    Fields are declared non-nullable (no column holds nulls; NaN is a float value), so ClickHouse infers the
    same non-``Nullable`` types from the file that the DDL declares.
    """
    arrays = [pa.array(values, type=_arrow_type(values)) for values in columns.values()]
    schema = pa.schema([pa.field(name, a.type, nullable=False) for name, a in zip(columns, arrays, strict=True)])
    return pa.Table.from_arrays(arrays, schema=schema)


def write_tables(result: BacktestResult, out_dir: Path, run_id: str) -> dict[str, Path]:
    """Write ``<table>.parquet`` (zstd) for each of :data:`TABLES` into ``out_dir`` (created, files overwritten).

    Returns the paths by table key. Every file is written, with zero rows when the run produced none, so a
    loader can treat all runs alike.
    """
    tables = table_arrays(result, run_id)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, columns in tables.items():
        path = out_dir / f"{name}.parquet"
        pq.write_table(arrow_table(columns), path, compression=PARQUET_COMPRESSION)
        paths[name] = path
    return paths
