"""Batching in front of a store: rows accumulate per table and go in as one columnar insert.

Why: an insert costs a fixed overhead (a part written per insert in MergeTree), so per-row inserts would
cost the runtime far more than the rows themselves; batching bounds both the overhead and the staleness.
A :class:`TableWriter` flushes when ``max_rows`` rows are buffered, when the oldest buffered row is
``max_age_ns`` old (time is an argument, :meth:`TableWriter.maybe_flush`, so replays and tests control
it), and on :meth:`~TableWriter.close`.

Nothing accepted is lost: when the insert raises, the rows stay buffered (in order, ahead of anything
appended later) and :class:`WriteError` names the table; the next flush retries them. An ``append`` that
raises has still accepted its rows (the failure was the flush it triggered).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from .base import Column, Store, StoreError


class WriteError(StoreError):
    """A flush failed; the rows are still buffered (see :attr:`TableWriter.buffered`)."""


def as_column(values: Column) -> npt.NDArray[Any]:
    """A 1-D array of the values; sequences of sequences (Array columns) become object arrays of them."""
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise ValueError(f"expected a 1-D column, got shape {values.shape}")
        return values
    items = list(values)
    if items and isinstance(items[0], list | tuple | np.ndarray):
        out = np.empty(len(items), dtype=object)
        out[:] = items
        return out
    arr = np.asarray(items) if items else np.empty(0, dtype=object)
    if arr.ndim != 1:
        raise ValueError(f"expected a 1-D column, got shape {arr.shape}")
    return arr


def _concat(parts: list[npt.NDArray[Any]]) -> npt.NDArray[Any]:
    if len(parts) == 1:
        return parts[0]
    try:
        return np.concatenate(parts)
    except (TypeError, ValueError):  # incompatible dtypes (e.g. str and object): fall back to objects
        out = np.empty(sum(len(p) for p in parts), dtype=object)
        i = 0
        for p in parts:
            out[i : i + len(p)] = list(p)
            i += len(p)
        return out


class TableWriter:
    """Buffer rows for ``table`` of ``store`` and insert them in batches (see the module docstring).

    ``constants`` are columns with one value for every row (e.g. ``{"run_id": "..."}``), added at flush.
    Every append must carry the same columns as the first one.
    """

    def __init__(
        self,
        store: Store,
        table: str,
        *,
        max_rows: int = 10_000,
        max_age_ns: int = 1_000_000_000,
        constants: Mapping[str, object] | None = None,
    ) -> None:
        if max_rows < 1:
            raise ValueError(f"max_rows must be >= 1, got {max_rows}")
        if max_age_ns < 0:
            raise ValueError(f"max_age_ns must be >= 0, got {max_age_ns}")
        self.store = store
        self.table = table
        self.max_rows = max_rows
        self.max_age_ns = max_age_ns
        self.constants = dict(constants or {})
        self._columns: tuple[str, ...] | None = None
        self._chunks: list[dict[str, npt.NDArray[Any]]] = []
        self._rows: list[Mapping[str, object]] = []  # single rows not yet turned into a chunk
        self._buffered = 0
        self._since: int | None = None  # when the oldest buffered row was appended (ns), if known
        self.rows_written = 0
        self.flushes = 0
        self._closed = False

    @property
    def buffered(self) -> int:
        """Rows accepted and not yet inserted."""
        return self._buffered

    def _check_columns(self, names: tuple[str, ...]) -> None:
        if self._columns is None:
            clash = sorted(set(names) & set(self.constants))
            if clash:
                raise ValueError(f"{self.table}: columns {clash} are also constants")
            self._columns = names
        elif set(names) != set(self._columns):
            raise ValueError(
                f"{self.table}: append has columns {sorted(names)}, earlier appends {sorted(self._columns)}"
            )

    def _note_time(self, now_ns: int | None) -> None:
        if self._since is None and now_ns is not None:
            self._since = now_ns

    def append(self, rows: Mapping[str, Column] | npt.NDArray[Any], *, now_ns: int | None = None) -> int:
        """Buffer rows given as ``{column: array or list}`` (equal lengths) or as a structured array; flush
        when ``max_rows`` are buffered. ``now_ns`` starts the age clock of an empty buffer (without it the
        clock starts at the next :meth:`maybe_flush`). Returns the rows flushed (0 when none)."""
        self._check_open()
        if isinstance(rows, np.ndarray):
            if rows.dtype.names is None:
                raise ValueError(f"{self.table}: a plain array has no column names; pass a structured array")
            rows = {name: rows[name] for name in rows.dtype.names}
        chunk = {name: as_column(values) for name, values in rows.items()}
        lengths = {name: len(col) for name, col in chunk.items()}
        n = next(iter(lengths.values()), 0)
        if any(v != n for v in lengths.values()):
            raise ValueError(f"{self.table}: columns have different lengths {lengths}")
        self._check_columns(tuple(chunk))
        if n == 0:
            return 0
        self._seal_rows()
        self._chunks.append(chunk)
        self._buffered += n
        self._note_time(now_ns)
        return self.flush() if self._buffered >= self.max_rows else 0

    def append_row(self, row: Mapping[str, object], *, now_ns: int | None = None) -> int:
        """Buffer one row ``{column: value}``; as :meth:`append`."""
        self._check_open()
        self._check_columns(tuple(row))
        self._rows.append(dict(row))
        self._buffered += 1
        self._note_time(now_ns)
        return self.flush() if self._buffered >= self.max_rows else 0

    def _seal_rows(self) -> None:
        """Turn the buffered single rows into one chunk (kept in order with the chunks)."""
        if not self._rows:
            return
        names = self._columns or ()
        self._chunks.append({name: as_column([r[name] for r in self._rows]) for name in names})
        self._rows = []

    def maybe_flush(self, now_ns: int) -> int:
        """Flush when the oldest buffered row is at least ``max_age_ns`` old at ``now_ns``; returns the rows
        flushed (0 when nothing was due)."""
        if self._buffered == 0:
            return 0
        if self._since is None:
            self._since = now_ns
        if now_ns - self._since >= self.max_age_ns:
            return self.flush()
        return 0

    def flush(self) -> int:
        """Insert everything buffered as one batch; returns the rows inserted. On failure the rows stay
        buffered and :class:`WriteError` names the table."""
        if self._buffered == 0:
            return 0
        self._seal_rows()
        names = self._columns or ()
        columns: dict[str, Column] = {name: _concat([c[name] for c in self._chunks]) for name in names}
        n = self._buffered
        for name, value in self.constants.items():
            columns[name] = [value] * n
        try:
            self.store.insert(self.table, columns)
        except Exception as exc:
            # keep the rows, merged into one chunk so a retry does not concatenate again
            self._chunks = [{name: np.asarray(columns[name]) for name in names}] if names else []
            raise WriteError(f"flush of {n} rows into {self.table!r} failed; rows kept for retry: {exc}") from exc
        self._chunks = []
        self._buffered = 0
        self._since = None
        self.rows_written += n
        self.flushes += 1
        return n

    def close(self) -> int:
        """Flush what is buffered and refuse further appends; returns the rows flushed. If the flush fails
        the writer stays open (retry with :meth:`close` or :meth:`flush`)."""
        if self._closed:
            return 0
        n = self.flush()
        self._closed = True
        return n

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"the writer of {self.table!r} is closed")
