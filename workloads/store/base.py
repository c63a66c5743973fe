"""The store interface every adapter implements: embedded chDB (:mod:`.chdb_store`) and a ClickHouse server
through clickhouse-driver (:mod:`.clickhouse_server`).

Columnar on both sides, because the runtime produces rows in batches (:class:`~.writer.TableWriter`) and
the reports read whole columns: ``insert`` takes ``{column: array or list}`` and ``query`` returns
``{column: numpy array}``. Types follow the DDL in ``sql/runtime``: ``DateTime64`` columns accept int64
nanoseconds or ``datetime64[ns]`` and come back as ``datetime64[ns]`` (``.view("int64")`` gives ns);
strings come back as object arrays of ``str``, ``Array(...)`` columns as object arrays of tuples.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

Column = npt.NDArray[Any] | Sequence[Any]
"""One column to insert: a 1-D numpy array or a sequence of Python values (for Array columns, a sequence
of sequences)."""
Columns = dict[str, npt.NDArray[Any]]
"""A query result: column name → 1-D numpy array, in the result's column order."""


class StoreError(RuntimeError):
    """A store operation failed; the message names the table (and the column when one is at fault)."""


class StoreLockedError(StoreError):
    """The store's data path is already open (in another process, or another path in this process)."""


class StoreUnavailableError(StoreError):
    """The store could not be reached (or kept failing with errors that may pass) after bounded retries.

    Retryable by definition: nothing of the failed operation is known to have been applied twice, and the
    caller (a sink) should keep the rows, back off and try again later, rather than drop or dead-letter
    them. A :class:`StoreError` that is not this one is a permanent error (bad SQL, an unknown column).
    """


class Store(Protocol):
    """What the runtime needs from a store."""

    def migrate(self) -> list[str]:
        """Apply the ``sql/runtime`` migrations not applied yet, in order; returns their versions (``[]`` when
        the store is up to date)."""

    def execute(self, sql: str) -> None:
        """Run one statement that returns no rows (DDL, ``INSERT ... SELECT``)."""

    def insert(self, table: str, columns: Mapping[str, Column]) -> int:
        """Insert equal-length columns into ``table``; returns the number of rows. Columns with a DEFAULT in
        the DDL may be left out; any other missing or unknown column is a :class:`StoreError`."""

    def query(self, sql: str) -> Columns:
        """Run a query and return its columns (``{}`` for a statement without a result)."""

    def close(self) -> None:
        """Release the store (idempotent)."""


def checked_row_count(table: str, columns: Mapping[str, Column], has_default: Mapping[str, bool]) -> int:
    """The row count of an insert, after the checks every backend owes its caller: no unknown column, no
    missing column without a DEFAULT (``has_default``: the table's columns in table order), equal lengths.
    A :class:`StoreError` names the table and the columns at fault."""
    unknown = [c for c in columns if c not in has_default]
    if unknown:
        raise StoreError(f"table {table!r} has no column(s) {unknown} (columns: {list(has_default)})")
    missing = [c for c, default in has_default.items() if c not in columns and not default]
    if missing:
        raise StoreError(f"insert into {table!r} lacks column(s) {missing}")
    lengths = {name: len(values) for name, values in columns.items()}
    n = next(iter(lengths.values()), 0)
    if any(v != n for v in lengths.values()):
        raise StoreError(f"insert into {table!r}: columns have different lengths {lengths}")
    return n


def rows_of(columns: Columns) -> list[dict[str, Any]]:
    """A query result as a list of row dicts with Python scalars (for small results: tests, reports)."""
    names = list(columns)
    if not names:
        return []
    lists = [np.asarray(columns[n]).tolist() for n in names]
    return [dict(zip(names, row, strict=True)) for row in zip(*lists, strict=True)]
