"""The cluster's store: a ClickHouse server over the native protocol (clickhouse-driver), behind the same
:class:`~.base.Store` protocol as the local runner's chDB store, writing the same tables.

**Same tables, same numpy types.** :meth:`ClickHouseServerStore.migrate` applies ``sql/runtime`` rewritten
for the server's version (:mod:`.dialect`: an 18.16 server gets no codecs/TTL, and ``DateTime64(9)`` columns
become ``Int64`` ns marked by a column comment). Inserts take the columns callers give ChdbStore (int64 ns or
``datetime64`` for a ``ts``, lists for arrays, bools for UInt8) and convert them to the server's column
types; queries return what ChdbStore returns (numbers as numpy, strings as object arrays of ``str``, arrays
as object arrays of tuples, DateTime64 columns as ``datetime64[ns]`` also where the server stores Int64).
Inserts are columnar numpy (``use_numpy``): no per-row Python for numeric and string columns.

**Retries.** Connection errors and server errors that may pass (too many parts, timeouts, memory, a
read-only replica, ...) are retried with exponential backoff and jitter (:class:`RetryPolicy`, bounded
attempts), reconnecting after a broken connection; after the last attempt the operation raises
:class:`~.base.StoreUnavailableError` so the caller (a sink) keeps its rows and buffers. Other server errors
raise :class:`~.base.StoreError` at once. The store never gives up for good: the next call tries again.

**Idempotent re-insert.** A block inserted again (the store's own retry, or a caller re-sending a batch)
is not stored twice. Its identity is the caller's ``dedup_token`` (e.g. the Kafka batch's topic, partition
and offsets) or else the block's content, the same on every retry.

- Servers from 20.11 (and chDB): the tables' ``non_replicated_deduplication_window`` (migrations 002-005)
  makes the server drop a block whose hash it has seen among the table's last 1000, materialized-view rows
  included (``deduplicate_blocks_in_dependent_materialized_views=1`` is sent with each insert); from 22.2 a
  caller's token goes with the insert as ``insert_deduplication_token``.
- Older servers (18.16): MergeTree de-duplicates only in Replicated tables (ZooKeeper) there. The store keeps
  an insert ledger, table ``_tp_insert_ledger`` (table, token = the caller's or a blake2b of the block): an
  insert whose token is recorded is skipped, and the token is recorded right after its block is written (a
  retry after that point only writes the ledger row). What remains is an ack lost in flight (the server
  wrote the block, the connection broke before it said so): the retry writes the block again. The market
  tables are ReplacingMergeTree on the event key, so such a duplicate disappears at merge time (read with
  ``FINAL``; :func:`~.market.replay_events` drops it); in the runtime tables and the views' sums it stays.
  ``stats["ambiguous"]`` counts these retries.

``execute`` retries too, so the statements it runs should be idempotent (the migrations are).
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

import numpy as np
import numpy.typing as npt

from .base import Column, Columns, StoreError, StoreUnavailableError, checked_row_count
from .dialect import Dialect, marked_precision, parse_version, rewrite
from .migrations import SQL_DIR
from .migrations import migrate as run_migrations

T = TypeVar("T")

LEDGER_TABLE: Final = "_tp_insert_ledger"
"""Tokens of the blocks inserted on a server without insert de-duplication (see the module docstring)."""

_LEDGER_DDL: Final = f"""CREATE TABLE IF NOT EXISTS {LEDGER_TABLE}
(
    tbl       String,
    token     String,
    rows      UInt64,
    inserted  DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(inserted)
ORDER BY (tbl, token)"""

#: Server error codes worth retrying: the condition may pass without changing the request.
RETRYABLE_CODES: Final = frozenset(
    {
        3,  # UNEXPECTED_END_OF_FILE
        32,  # ATTEMPT_TO_READ_AFTER_EOF
        159,  # TIMEOUT_EXCEEDED
        164,  # READONLY (a replica in read-only mode)
        202,  # TOO_MANY_SIMULTANEOUS_QUERIES
        203,  # NO_FREE_CONNECTION
        209,  # SOCKET_TIMEOUT
        210,  # NETWORK_ERROR
        241,  # MEMORY_LIMIT_EXCEEDED
        242,  # TABLE_IS_READ_ONLY
        252,  # TOO_MANY_PARTS
        285,  # TOO_FEW_LIVE_REPLICAS
        319,  # UNKNOWN_STATUS_OF_INSERT
        425,  # SYSTEM_ERROR
        999,  # KEEPER_EXCEPTION
    }
)

_IDENT: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DDL: Final = re.compile(r"\s*(CREATE|DROP|ALTER|RENAME|TRUNCATE|DETACH|ATTACH)\b", re.IGNORECASE)
_INT_TYPES: Final[Mapping[str, type[np.integer[Any]]]] = {
    "Int8": np.int8,
    "Int16": np.int16,
    "Int32": np.int32,
    "Int64": np.int64,
    "UInt8": np.uint8,
    "UInt16": np.uint16,
    "UInt32": np.uint32,
    "UInt64": np.uint64,
}
_FLOAT_TYPES: Final[Mapping[str, type[np.floating[Any]]]] = {"Float32": np.float32, "Float64": np.float64}
_UNITS: Final[Mapping[int, str]] = {0: "s", 3: "ms", 6: "us", 9: "ns"}

log = logging.getLogger(__name__)


class _ArrayFallbackFilter(logging.Filter):
    """Drops the driver's warning that ``Array(...)`` columns have no numpy codec: the store sends them as
    object arrays on purpose (the driver's generic codec), and the warning would repeat on every insert."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("NumPy support is not implemented for Array(")


logging.getLogger("clickhouse_driver.columns.service").addFilter(_ArrayFallbackFilter())


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` tries in all, waiting ``initial_s`` × ``multiplier``^k (at most ``max_s``) ± ``jitter``
    (a fraction) between them. The default gives up after about 6 s of failures plus the connect timeouts."""

    attempts: int = 6
    initial_s: float = 0.2
    max_s: float = 4.0
    multiplier: float = 2.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"RetryPolicy.attempts must be >= 1, got {self.attempts}")
        if self.initial_s < 0 or self.max_s < 0 or self.multiplier < 1 or not 0 <= self.jitter < 1:
            raise ValueError(f"invalid RetryPolicy {self}")

    def delay(self, retry: int, rng: random.Random) -> float:
        """Seconds to wait before retry number ``retry`` (1-based)."""
        base = min(self.max_s, self.initial_s * self.multiplier ** (retry - 1))
        return base * (1.0 + self.jitter * (2.0 * rng.random() - 1.0))


def _server_exception() -> type[BaseException]:
    from clickhouse_driver import errors

    server_exception: type[BaseException] = errors.ServerException
    return server_exception


def _is_transient(exc: BaseException) -> bool:
    """A broken or refused connection (the driver's network errors, OS socket errors, EOF)."""
    from clickhouse_driver import errors

    return isinstance(
        exc,
        errors.NetworkError
        | errors.SocketTimeoutError
        | errors.UnexpectedPacketFromServerError
        | errors.UnknownPacketFromServerError
        | EOFError
        | OSError,
    )


def block_token(names: Sequence[str], data: Sequence[Any]) -> str:
    """A de-duplication token for a block: blake2b of the column names and values (numeric columns by their
    bytes, others by their values' ``repr``), so the same rows give the same token on every retry."""
    h = hashlib.blake2b(digest_size=16)
    for name, col in zip(names, data, strict=True):
        h.update(name.encode())
        h.update(b"\x00")
        if isinstance(col, np.ndarray) and col.dtype != object:
            h.update(col.dtype.str.encode())
            h.update(np.ascontiguousarray(col).tobytes())
        else:
            items = col.tolist() if isinstance(col, np.ndarray) else list(col)
            try:
                text = "".join(items)  # strings (the common case): no per-item Python call ...
                h.update(np.fromiter(map(len, items), np.int64, len(items)).tobytes())  # ... and where each ends
            except TypeError:
                text = "\x1f".join(map(repr, items))
            h.update(text.encode("utf-8", "surrogatepass"))
        h.update(b"\x01")
    return h.hexdigest()


def _strip(ch_type: str, wrapper: str) -> str | None:
    t = ch_type.strip()
    if t.startswith(wrapper + "(") and t.endswith(")"):
        return t[len(wrapper) + 1 : -1]
    return None


def _datetime64_precision(ch_type: str) -> int | None:
    inner = _strip(ch_type, "DateTime64")
    if inner is None:
        return None
    return int(inner.split(",")[0].strip())


def _ns_ints(values: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    """int64 nanoseconds from int64 ns or ``datetime64`` values."""
    if values.dtype.kind == "M":
        return values.astype("datetime64[ns]").view(np.int64)
    if values.dtype == object:
        values = np.asarray(values.tolist())
    if values.dtype.kind not in "iu":
        raise TypeError(f"expected int64 nanoseconds or datetime64, got {values.dtype}")
    return values.astype(np.int64)


def _integers(values: npt.NDArray[Any], target: type[np.integer[Any]]) -> npt.NDArray[Any]:
    if values.dtype == np.bool_:
        return values.astype(target)
    if values.dtype == object:
        values = np.asarray(values.tolist())
    if values.dtype.kind == "f":
        if not np.all(np.isfinite(values)) or not np.all(values == np.trunc(values)):
            raise TypeError("non-integral float values for an integer column")
    elif values.dtype.kind not in "iub":
        raise TypeError(f"expected integers, got {values.dtype}")
    if values.size:
        info = np.iinfo(target)
        lo, hi = values.min(), values.max()
        if lo < info.min or hi > info.max:
            raise OverflowError(f"values {lo}..{hi} out of range of {np.dtype(target).name}")
    return values.astype(target)


def _column(values: Column, ch_type: str, marked: int | None) -> Any:
    """``values`` as the driver wants them for a column of server type ``ch_type`` (``marked``: the
    precision of a DateTime64 the server stores as Int64). Raises TypeError/ValueError/OverflowError."""
    t = ch_type.strip()
    if t.startswith("Array("):
        inner = t[len("Array(") : -1]
        out = np.empty(len(values), dtype=object)  # numpy mode wants an ndarray per column, even of lists
        out[:] = [np.asarray(_column(v, inner, None)).tolist() if len(v) else [] for v in values]
        return out
    low = _strip(t, "LowCardinality")
    if low is not None:
        return _column(values, low, marked)
    if t.startswith("Nullable("):
        return list(values)  # the driver's nullable columns take None in Python lists
    arr = values if isinstance(values, np.ndarray) else np.asarray(list(values))
    if arr.ndim != 1:
        raise ValueError(f"expected a 1-D column, got shape {arr.shape}")
    if arr.dtype == object and arr.tolist().count(None):  # list.count: a C loop, identity first
        raise TypeError("None in a column that is not Nullable")
    if marked is not None:  # DateTime64(p) stored as Int64 in 10**-p s units
        return _ns_ints(arr) // (10 ** (9 - marked))
    if t in _INT_TYPES:
        return _integers(arr, _INT_TYPES[t])
    if t in _FLOAT_TYPES:
        if arr.dtype == object:
            arr = np.asarray(arr.tolist())
        if arr.dtype.kind not in "fiub":
            raise TypeError(f"expected numbers, got {arr.dtype}")
        return arr.astype(_FLOAT_TYPES[t])
    if t == "String" or t.startswith("FixedString("):
        if arr.dtype.kind in "US":
            return arr.astype(object)
        if arr.dtype != object:
            raise TypeError(f"expected strings, got {arr.dtype}")
        return arr
    precision = _datetime64_precision(t)
    if precision is not None:  # a real DateTime64 (newer servers)
        return _ns_ints(arr).view("datetime64[ns]").astype(f"datetime64[{_UNITS.get(precision, 'ns')}]")
    if t == "DateTime" or t.startswith("DateTime("):
        seconds = arr if arr.dtype.kind == "M" else _ns_ints(arr) // 10**9
        return seconds.astype("datetime64[s]")
    if t == "Date":
        return arr.astype("datetime64[D]")
    if t == "Bool":
        return arr.astype(np.bool_)
    return arr


def _result_column(col: Any, ch_type: str, marked: int | None) -> npt.NDArray[Any]:
    """One driver result column as ChdbStore returns it."""
    if not isinstance(col, np.ndarray) and hasattr(col, "to_numpy"):  # pandas (LowCardinality on newer servers)
        col = np.asarray(col.to_numpy(), dtype=object)
    if not isinstance(col, np.ndarray):  # generic (non-numpy) column: arrays, tuples, ...
        items = list(col)
        out = np.empty(len(items), dtype=object)
        out[:] = [tuple(v) if isinstance(v, list | tuple | np.ndarray) else v for v in items]
        return out
    if col.dtype.kind in "US":
        return col.astype(object)
    if marked is not None and col.dtype.kind == "i":
        return col.astype(np.int64).view(f"datetime64[{_UNITS.get(marked, 'ns')}]")
    if col.dtype.kind == "M" and _datetime64_precision(ch_type) is not None:
        return col.astype("datetime64[ns]")
    return col


def _empty_column(ch_type: str, marked: int | None) -> npt.NDArray[Any]:
    t = _strip(ch_type, "LowCardinality") or ch_type
    if marked is not None or _datetime64_precision(t) is not None:
        return np.empty(0, "datetime64[ns]")
    if t in _INT_TYPES:
        return np.empty(0, _INT_TYPES[t])
    if t in _FLOAT_TYPES:
        return np.empty(0, _FLOAT_TYPES[t])
    if t == "DateTime" or t.startswith("DateTime("):
        return np.empty(0, "datetime64[s]")
    if t == "Date":
        return np.empty(0, "datetime64[D]")
    return np.empty(0, dtype=object)


class ClickHouseServerStore:
    """A :class:`~.base.Store` on a ClickHouse server; see the module docstring.

    Nothing connects in the constructor (a sink can start while the server is down): the first operation
    connects, reads ``SELECT version()`` and creates ``database`` if missing. ``settings`` are ClickHouse
    settings sent with every query. ``dedup``: de-duplicate re-inserted blocks (module docstring).
    ``registry``: a prometheus_client ``CollectorRegistry`` for the store's counters. Thread-safe (one
    connection, one operation at a time).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 9000,
        database: str = "default",
        user: str = "default",
        password: str = "",
        *,
        settings: Mapping[str, Any] | None = None,
        sql_dir: Path = SQL_DIR,
        retry: RetryPolicy | None = None,
        connect_timeout: float = 3.0,
        send_receive_timeout: float = 60.0,
        dedup: bool = True,
        registry: Any = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not _IDENT.fullmatch(database):
            raise ValueError(f"invalid database name {database!r}")
        self.host, self.port, self.database = host, int(port), database
        self._user, self._password = user, password
        self.settings = dict(settings or {})
        self.sql_dir = Path(sql_dir)
        self.retry = retry or RetryPolicy()
        self.connect_timeout = connect_timeout
        self.send_receive_timeout = send_receive_timeout
        self.dedup = dedup
        self._sleep = sleep
        self._rng = random.Random()
        self._lock = threading.RLock()
        self._client: Any = None
        self._closed = False
        self._dialect: Dialect | None = None
        self._schemas: dict[str, list[tuple[str, str, bool, int | None]]] = {}
        self._marked: dict[str, int] | None = None  # column name -> precision of a DateTime64 kept as Int64
        self._ledger_ready = False
        self.stats = {"inserts": 0, "rows": 0, "retries": 0, "unavailable": 0, "dedup_skips": 0, "ambiguous": 0}
        self.last_error: str | None = None
        self._metrics = _Metrics(registry) if registry is not None else None

    # -- lifecycle -----------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Disconnect (idempotent); later operations raise :class:`StoreError`."""
        with self._lock:
            self._closed = True
            self._disconnect()

    def __enter__(self) -> ClickHouseServerStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _disconnect(self) -> None:
        if self._client is not None:
            try:
                self._client.disconnect()
            except Exception:  # a broken connection may fail to close; it is dropped anyway
                log.debug("disconnect failed", exc_info=True)
            self._client = None

    def _new_client(self, database: str) -> Any:
        from clickhouse_driver import Client

        return Client(
            host=self.host,
            port=self.port,
            database=database,
            user=self._user,
            password=self._password,
            connect_timeout=self.connect_timeout,
            send_receive_timeout=self.send_receive_timeout,
            settings={"use_numpy": True, **self.settings},
        )

    def _connected(self) -> Any:
        """The client, after the first connection's setup (version, database)."""
        if self._closed:
            raise StoreError(f"the ClickHouse store {self.host}:{self.port}/{self.database} is closed")
        if self._client is None:
            if self._dialect is None:
                boot = self._new_client("default")
                try:
                    version = str(boot.execute("SELECT version()")[0][0])
                    if self.database != "default":
                        boot.execute(f"CREATE DATABASE IF NOT EXISTS {self.database}")
                finally:
                    boot.disconnect()
                self._dialect = Dialect(parse_version(version))
            self._client = self._new_client(self.database)
        return self._client

    @property
    def dialect(self) -> Dialect:
        """The server's dialect (connects on first use)."""
        if self._dialect is None:
            self._call("SELECT version()", lambda c: None)
        assert self._dialect is not None
        return self._dialect

    @property
    def server_version(self) -> tuple[int, ...]:
        return self.dialect.version

    @property
    def uses_ledger(self) -> bool:
        """True when re-inserts are de-duplicated by the store's ledger (servers before 20.11)."""
        return self.dedup and not self.dialect.dedup_window

    def ping(self) -> bool:
        """One ``SELECT 1`` without retries: is the server reachable now?"""
        try:
            with self._lock:
                self._connected().execute("SELECT 1")
            return True
        except Exception as exc:  # any failure means "not reachable now"
            self.last_error = f"{type(exc).__name__}: {exc}"
            with self._lock:
                self._disconnect()
            return False

    def health(self) -> dict[str, Any]:
        """Reachability and counters, for /readyz and logs (pings the server)."""
        ok = self.ping()
        return {
            "backend": "clickhouse-server",
            "status": "ok" if ok else "unavailable",
            "endpoint": f"{self.host}:{self.port}/{self.database}",
            "server_version": ".".join(map(str, self._dialect.version)) if self._dialect else None,
            "dedup": self._dedup_mode(),
            "last_error": self.last_error,
            **self.stats,
        }

    def _dedup_mode(self) -> str | None:
        if not self.dedup:
            return "off"
        if self._dialect is None:
            return None
        return "ledger" if self.uses_ledger else "server"

    # -- retries -------------------------------------------------------------------------------------

    def _call(self, what: str, op: Callable[[Any], T]) -> T:
        """Run ``op(client)`` with retries (see the module docstring)."""
        server_exception = _server_exception()
        started = time.monotonic()
        last: BaseException | None = None
        with self._lock:
            for attempt in range(1, self.retry.attempts + 1):
                try:
                    return op(self._connected())
                except StoreError:
                    raise
                except Exception as exc:
                    retryable = _is_transient(exc) or (
                        isinstance(exc, server_exception) and getattr(exc, "code", None) in RETRYABLE_CODES
                    )
                    self._disconnect()  # the connection's state is unknown after a failure
                    if not retryable:
                        raise StoreError(f"{what}: {_first_line(exc)}") from exc
                    last = exc
                self.last_error = f"{type(last).__name__}: {_first_line(last)}"
                if attempt < self.retry.attempts:
                    self.stats["retries"] += 1
                    if self._metrics:
                        self._metrics.retries.inc()
                    self._sleep(self.retry.delay(attempt, self._rng))
            self.stats["unavailable"] += 1
            if self._metrics:
                self._metrics.unavailable.inc()
            raise StoreUnavailableError(
                f"ClickHouse at {self.host}:{self.port} unavailable: {what} failed {self.retry.attempts} times "
                f"in {time.monotonic() - started:.1f} s; last error: {self.last_error}"
            ) from last

    # -- statements ----------------------------------------------------------------------------------

    def _rewrite(self, sql: str) -> str | None:
        dialect = self.dialect
        if dialect.native:
            return sql
        return rewrite(sql, dialect, self._marked_columns())

    def _marked_columns(self) -> dict[str, int]:
        """Column names the server marks as DateTime64 kept as Int64 (in any table of the database)."""
        if self._marked is None:
            rows = self._call(
                "read column comments",
                lambda c: c.execute(
                    "SELECT name, comment FROM system.columns "
                    "WHERE database = currentDatabase() AND comment LIKE '%tp:DateTime64%'"
                ),
            )
            marked: dict[str, int] = {}
            for name, comment in rows:
                p = marked_precision(str(comment))
                if p is not None:
                    marked[str(name)] = p
            self._marked = marked
        return self._marked

    def migrate(self) -> list[str]:
        """Apply the migrations of ``sql_dir`` not applied yet, rewritten for this server; returns their
        versions (``[]`` when up to date). The recorded sha256 is the file's, whatever the server."""
        dialect = self.dialect
        applied = run_migrations(self, self.sql_dir, dialect=None if dialect.native else dialect)
        self._forget_schemas()
        return applied

    def execute(self, sql: str) -> None:
        """Run one statement without a result (rewritten for the server; skipped if nothing of it applies)."""
        text = self._rewrite(sql)
        if text is None:
            return
        self._call(_head(sql), lambda c: c.execute(text))
        if _DDL.match(sql):
            self._forget_schemas()

    def query(self, sql: str) -> Columns:
        """Run a query; its columns as numpy arrays (``{}`` for a statement without a result)."""
        text = self._rewrite(sql)
        if text is None:
            return {}
        rows, types = self._call(_head(sql), lambda c: c.execute(text, columnar=True, with_column_types=True))
        if _DDL.match(sql):
            self._forget_schemas()
        marked = self._marked_columns()
        out: Columns = {}
        for k, (name, ch_type) in enumerate(types):
            mark = marked.get(name) if ch_type.strip() == "Int64" else None
            out[name] = _result_column(rows[k], ch_type, mark) if rows else _empty_column(ch_type, mark)
        return out

    def _forget_schemas(self) -> None:
        self._schemas.clear()
        self._marked = None

    # -- inserts -------------------------------------------------------------------------------------

    def table_schema(self, table: str) -> list[tuple[str, str, bool, int | None]]:
        """(column, server type, has a default, DateTime64 precision if kept as Int64) in table order;
        :class:`StoreError` when the table does not exist."""
        if not _IDENT.fullmatch(table):
            raise StoreError(f"invalid table name {table!r}")
        schema = self._schemas.get(table)
        if schema is None:
            rows = self._call(f"describe {table}", lambda c: c.execute(f"DESCRIBE TABLE {table}", columnar=False))
            schema = [
                (str(r[0]), str(r[1]), bool(r[2]), marked_precision(str(r[4])) if len(r) > 4 else None) for r in rows
            ]
            self._schemas[table] = schema
        return schema

    def insert(self, table: str, columns: Mapping[str, Column], *, dedup_token: str | None = None) -> int:
        """Insert equal-length columns into ``table`` (one columnar block); returns the row count, also when the
        block was recognised as already inserted (``dedup_token`` or its content; module docstring).

        Raises :class:`StoreError` naming the table (and the column) for an unknown column, a missing column
        without a DEFAULT, unequal lengths or a value that does not convert; :class:`StoreUnavailableError`
        when the server stays unreachable through the retries. Zero rows insert nothing.
        """
        try:
            schema = self.table_schema(table)
        except StoreError as exc:
            if "UNKNOWN_TABLE" in str(exc) or "doesn't exist" in str(exc) or "Code: 60" in str(exc):
                raise StoreError(f"table {table!r} does not exist in {self.database} (run migrate() first?)") from exc
            raise
        types = {name: (ch_type, has_default, mark) for name, ch_type, has_default, mark in schema}
        n = checked_row_count(table, columns, {c: has_default for c, (_, has_default, _) in types.items()})
        if n == 0:
            return 0
        names = [name for name, *_ in schema if name in columns]  # table order
        data: list[Any] = []
        for name in names:
            ch_type, _, mark = types[name]
            try:
                data.append(_column(columns[name], ch_type, mark))
            except (ValueError, TypeError, OverflowError) as exc:
                raise StoreError(f"{table}.{name} ({ch_type}): {exc}") from exc
        sql = f"INSERT INTO {table} ({', '.join(names)}) VALUES"
        what = f"insert of {n} rows into {table!r}"
        if self.dedup and self.uses_ledger:
            token = dedup_token or block_token(names, data)
            self._insert_with_ledger(what, table, sql, data, n, token)
        else:  # the server hashes each block itself; a caller's token goes with the insert where it can
            settings: dict[str, Any] = {}
            if dedup_token is not None and self.dedup and self.dialect.insert_dedup_token:
                settings["insert_deduplication_token"] = dedup_token
            if self.dedup and self.dialect.dedup_window:
                settings["deduplicate_blocks_in_dependent_materialized_views"] = 1
            self._call(what, lambda c: c.execute(sql, data, columnar=True, settings=settings or None))
        self.stats["inserts"] += 1
        self.stats["rows"] += n
        if self._metrics:
            self._metrics.rows.labels(table).inc(n)
        return n

    def _insert_with_ledger(self, what: str, table: str, sql: str, data: list[Any], n: int, token: str) -> None:
        if not self._ledger_ready:
            self._call("create the insert ledger", lambda c: c.execute(_LEDGER_DDL))
            self._ledger_ready = True
        state = {"sending": False, "written": False}

        def op(client: Any) -> None:
            if not state["written"]:
                seen = client.execute(
                    f"SELECT count() FROM {LEDGER_TABLE} WHERE tbl = %(t)s AND token = %(k)s",
                    {"t": table, "k": token},
                    settings={"use_numpy": False},
                )
                if seen[0][0]:
                    self.stats["dedup_skips"] += 1
                    return
                if state["sending"]:
                    self.stats["ambiguous"] += 1  # the last attempt broke while sending: the block may be there
                state["sending"] = True
                client.execute(sql, data, columnar=True)
                state["written"] = True
            client.execute(
                f"INSERT INTO {LEDGER_TABLE} (tbl, token, rows) VALUES",
                [[table], [token], [n]],
                columnar=True,
                settings={"use_numpy": False},
            )

        self._call(what, op)


class _Metrics:
    """The store's prometheus counters, in the caller's registry."""

    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter

        self.rows = Counter("tp_store_rows_inserted", "Rows inserted into ClickHouse", ["table"], registry=registry)
        self.retries = Counter("tp_store_retries", "ClickHouse operations retried", registry=registry)
        self.unavailable = Counter(
            "tp_store_unavailable", "ClickHouse operations given up after the retries", registry=registry
        )


def _first_line(exc: BaseException | None) -> str:
    text = str(exc).strip()
    return text.split("\n")[0] if "Stack trace" not in text else text.split("Stack trace")[0].strip()


def _head(sql: str) -> str:
    text = " ".join(sql.split())
    return text if len(text) <= 100 else text[:100] + "…"
