"""The ClickHouse-server store against the real 18.16 server, next to the chDB store: the same migrations
apply on both (rewritten for 18.16) and are recorded once; the same runtime rows (rows.py + TableWriter) read
back equal from both; a retried identical insert does not duplicate rows on either (chDB's block
de-duplication, the server store's insert ledger), also when the connection breaks mid-insert; an unreachable
server raises StoreUnavailableError after bounded retries, and a restarted server is written to again by the
same store object."""

from __future__ import annotations

import dataclasses
import math
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from clickhouse_driver import errors as ch_errors
from prometheus_client import CollectorRegistry

from tests.integration.test_chdb_store import ROWS, T0, TS
from tests.services import ClickHouseServer
from tests.services._process import free_port
from tests.unit.workloads.test_codec import INTENT, SIGNAL, SKIPPED, assert_same_record
from tradeplane.workloads.codec import audit_record
from tradeplane.workloads.store import Store, StoreError, StoreUnavailableError, TableWriter, WriteError, rows_of
from tradeplane.workloads.store.chdb_store import ChdbStore
from tradeplane.workloads.store.clickhouse_server import LEDGER_TABLE, ClickHouseServerStore, RetryPolicy
from tradeplane.workloads.store.migrations import MIGRATIONS_TABLE, SQL_DIR, discover
from tradeplane.workloads.store.rows import audit_row, intent_row, signal_from_row, signal_row

VERSIONS = [m.version for m in discover(SQL_DIR)]
FAST = RetryPolicy(attempts=4, initial_s=0.05, max_s=0.1)


def _server_store(server: ClickHouseServer, **kwargs: Any) -> ClickHouseServerStore:
    return ClickHouseServerStore(
        server.host, server.port, database=f"t_{uuid.uuid4().hex[:10]}", retry=FAST, connect_timeout=2, **kwargs
    )


@pytest.fixture(scope="module")
def server_store(clickhouse_server: ClickHouseServer) -> Iterator[ClickHouseServerStore]:
    registry = CollectorRegistry()
    store = _server_store(clickhouse_server, registry=registry)
    store.registry = registry  # type: ignore[attr-defined]
    store.applied = store.migrate()  # type: ignore[attr-defined]
    yield store
    store.execute(f"DROP DATABASE IF EXISTS {store.database}")
    store.close()


@pytest.fixture(scope="module")
def chdb_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChdbStore]:
    store = ChdbStore(tmp_path_factory.mktemp("chdb") / "store")
    store.applied = store.migrate()  # type: ignore[attr-defined]
    yield store
    store.close()


@pytest.fixture(params=["server", "chdb"])
def store(request: pytest.FixtureRequest) -> Store:
    return request.getfixturevalue(f"{request.param}_store")  # type: ignore[no-any-return]


def _count(store: Store, sql: str) -> int:
    return int(store.query(sql)["n"][0])


def test_migrations_apply_on_both_and_are_recorded_once(store: Store) -> None:
    assert store.applied == VERSIONS  # type: ignore[attr-defined]
    assert store.migrate() == []  # a second run applies nothing
    recorded = store.query(f"SELECT version, sha256 FROM {MIGRATIONS_TABLE} ORDER BY version")
    assert recorded["version"].tolist() == VERSIONS
    assert recorded["sha256"].tolist() == [m.sha256 for m in discover(SQL_DIR)]  # the files' own text


def test_both_backends_have_the_same_tables_and_columns(
    server_store: ClickHouseServerStore, chdb_store: ChdbStore
) -> None:
    sql = (
        "SELECT table, name FROM system.columns WHERE database = currentDatabase() AND table NOT LIKE '%\\_mv' "
        "AND table != '" + LEDGER_TABLE + "' ORDER BY table, name"
    )
    server, chdb = server_store.query(sql), chdb_store.query(sql)
    assert list(zip(server["table"], server["name"], strict=True)) == list(
        zip(chdb["table"], chdb["name"], strict=True)
    )
    assert {"trades", "book_diffs", "bars_1m", "vbuckets", "features", "data_quality", "pnl"} <= set(server["table"])
    # the 18.16 server stores DateTime64 as Int64 ns and says so in a comment; chDB has the real type
    ts = server_store.query(
        "SELECT type, comment FROM system.columns WHERE database = currentDatabase() AND name = 'ts' AND table IN "
        "(SELECT name FROM system.tables WHERE database = currentDatabase() AND engine LIKE '%MergeTree')"
    )
    assert set(ts["type"]) == {"Int64"} and set(ts["comment"]) == {"tp:DateTime64(9)"}


def _same_value(x: Any, y: Any) -> bool:
    if isinstance(x, float) and math.isnan(x):
        return isinstance(y, float) and math.isnan(y)
    if isinstance(x, tuple | list):
        return type(x) is type(y) and len(x) == len(y) and all(map(_same_value, x, y))
    return bool(x == y) and type(x) is type(y)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Same dtype and shape, and the same values (NaN equal to NaN, inside arrays too, types included)."""
    return a.dtype == b.dtype and a.shape == b.shape and all(map(_same_value, a.tolist(), b.tolist()))


def _write_runtime_rows(store: Store, run_id: str) -> None:
    for table, columns in ROWS.items():
        writer = TableWriter(store, table, max_rows=2, constants={"run_id": run_id})
        for i in range(3):
            writer.append({k: v[i : i + 1] for k, v in columns.items()})
        assert writer.close() == 1 and writer.flushes == 2 and writer.rows_written == 3  # two batches
    writer = TableWriter(store, "signals", max_rows=10, constants={"run_id": run_id})
    entered = dataclasses.replace(SIGNAL, reason_detail="ü", contributions=(("ofi1", -0.0), ("qi1", 1e-300)))
    for sig in (entered, SKIPPED):
        writer.append_row(signal_row(sig))
    writer.close()
    writer = TableWriter(store, "intents", constants={"run_id": run_id})
    writer.append_row(intent_row(INTENT))
    writer.close()
    writer = TableWriter(store, "audit", constants={"run_id": run_id})
    writer.append_row(audit_row(audit_record(SKIPPED, None, lineage={"source": "synth", "synth_seed": 3})))
    writer.close()


def test_the_same_runtime_rows_read_back_equal_from_both(
    server_store: ClickHouseServerStore, chdb_store: ChdbStore
) -> None:
    run_id = f"same-{uuid.uuid4().hex[:6]}"
    for store in (server_store, chdb_store):
        _write_runtime_rows(store, run_id)
    order = {"audit": "ts, json", "signals": "ts, signal_id", "intents": "ts, intent_id"}
    for table in sorted({*ROWS, "signals", "intents"}):
        sql = f"SELECT * FROM {table} WHERE run_id = '{run_id}' ORDER BY {order.get(table, 'ts')}"
        server, chdb = server_store.query(sql), chdb_store.query(sql)
        assert list(server) == list(chdb), table
        assert len(server["ts"]) > 0
        for name in server:
            assert _same(server[name], chdb[name]), f"{table}.{name}: {server[name]!r} != {chdb[name]!r}"
    fills = server_store.query(f"SELECT ts FROM fills WHERE run_id = '{run_id}' ORDER BY ts")["ts"]
    assert fills.dtype == np.dtype("datetime64[ns]") and fills.view(np.int64).tolist() == TS.tolist()
    rows = rows_of(server_store.query(f"SELECT * FROM signals WHERE run_id = '{run_id}' ORDER BY infer_ts, signal_id"))
    back = sorted((signal_from_row(r) for r in rows), key=lambda s: s.decision)
    assert_same_record(back[1], SKIPPED)  # every Signal field through the 18.16 server, NaN included


def test_portable_time_sql_gives_the_same_answer_on_both(
    server_store: ClickHouseServerStore, chdb_store: ChdbStore
) -> None:
    run_id = f"time-{uuid.uuid4().hex[:6]}"
    for store in (server_store, chdb_store):
        store.insert("fills", {**ROWS["fills"], "run_id": [run_id] * 3})
    sql = (
        "SELECT toUnixTimestamp64Nano(ts) AS ns, toDate(ts) AS day FROM fills "
        f"WHERE run_id = '{run_id}' AND ts >= fromUnixTimestamp64Nano(toInt64({T0 + 1})) ORDER BY ts"
    )
    server, chdb = server_store.query(sql), chdb_store.query(sql)
    assert server["ns"].tolist() == chdb["ns"].tolist() == TS[1:].tolist()
    assert server["day"].astype(str).tolist() == chdb["day"].astype(str).tolist() == ["2024-08-01", "2024-08-02"]


def test_a_retried_identical_insert_does_not_duplicate(store: Store) -> None:
    run_id = f"dup-{uuid.uuid4().hex[:6]}"
    block = {**ROWS["orders"], "run_id": [run_id] * 3}
    assert store.insert("orders", block) == 3
    assert store.insert("orders", block) == 3  # the retry: acknowledged, not stored again
    assert _count(store, f"SELECT count() AS n FROM orders WHERE run_id = '{run_id}'") == 3
    changed = {**block, "status": ["NEW", "NEW", "NEW"]}
    store.insert("orders", changed)  # a different block is not mistaken for the retry
    assert _count(store, f"SELECT count() AS n FROM orders WHERE run_id = '{run_id}'") == 6


def test_a_retried_trade_insert_does_not_double_the_bars(store: Store) -> None:
    symbol = f"DUP{uuid.uuid4().hex[:6].upper()}"
    n = 50
    ts = T0 + np.arange(n, dtype=np.int64) * 100_000_000
    block: dict[str, Any] = {
        "venue": ["binance-usdm"] * n, "symbol": [symbol] * n, "ts": ts, "exchange_ts": ts, "ingest_ts": ts + 7,
        "ingest_pos": np.zeros(n, np.uint32), "kind": np.full(n, 4 | 1 << 10, np.uint32), "trade_id": np.arange(n),
        "first_id": np.arange(n), "last_id": np.arange(n), "price": 100.0 + np.arange(n), "qty": np.ones(n),
        "side": np.ones(n, np.int8), "dpx": np.ones(n), "vbucket": np.arange(n) // 10, "vbucket_quote": np.full(n, 1e3),
    }  # fmt: skip
    store.insert("trades", block)
    store.insert("trades", block)
    where = f"WHERE symbol = '{symbol}'"
    assert _count(store, f"SELECT count() AS n FROM trades {where}") == n
    assert _count(store, f"SELECT sum(trades) AS n FROM bars_1s {where}") == n
    assert _count(store, f"SELECT sum(trades) AS n FROM vbuckets {where}") == n


class _FlakyClient:
    """A driver client whose ``execute`` raises ``errors[k]`` on the k-th call matching ``pattern`` (a
    connection dropping at that point), after running the statement when ``after`` is set."""

    def __init__(self, client: Any, pattern: str, *, after: bool, failures: int = 1) -> None:
        self.client, self.pattern, self.after, self.failures = client, pattern, after, failures

    def execute(self, query: str, *args: Any, **kwargs: Any) -> Any:
        if self.pattern in query and self.failures > 0:
            self.failures -= 1
            if self.after:
                self.client.execute(query, *args, **kwargs)
            raise ch_errors.NetworkError("connection reset by peer (injected)")
        return self.client.execute(query, *args, **kwargs)

    def disconnect(self) -> None:
        self.client.disconnect()


@pytest.mark.parametrize(
    ("pattern", "after", "ambiguous"),
    [
        pytest.param("INSERT INTO risk_events", False, 1, id="drop-while-sending-the-block"),
        pytest.param(f"SELECT count() FROM {LEDGER_TABLE}", False, 0, id="drop-at-the-ledger-check"),
        pytest.param(f"INSERT INTO {LEDGER_TABLE}", True, 0, id="drop-after-the-ledger-row"),
        pytest.param(f"INSERT INTO {LEDGER_TABLE}", False, 0, id="drop-before-the-ledger-row"),
    ],
)
def test_server_retries_after_a_broken_connection_without_duplicating(
    server_store: ClickHouseServerStore, monkeypatch: pytest.MonkeyPatch, pattern: str, after: bool, ambiguous: int
) -> None:
    original: Callable[[str], Any] = server_store._new_client
    flaky = {"armed": True}

    def new_client(database: str) -> Any:
        client = original(database)
        if flaky.pop("armed", False):
            return _FlakyClient(client, pattern, after=after)
        return client

    server_store._disconnect()
    monkeypatch.setattr(server_store, "_new_client", new_client)
    run_id = f"flaky-{uuid.uuid4().hex[:6]}"
    retries, ambiguous_before = server_store.stats["retries"], server_store.stats["ambiguous"]
    assert server_store.insert("risk_events", {**ROWS["risk_events"], "run_id": [run_id] * 3}) == 3
    assert server_store.stats["retries"] == retries + 1
    # a break while sending the block cannot be told from a lost ack: counted (the block was not written here)
    assert server_store.stats["ambiguous"] == ambiguous_before + ambiguous
    assert _count(server_store, f"SELECT count() AS n FROM risk_events WHERE run_id = '{run_id}'") == 3


def test_unreachable_server_raises_store_unavailable_after_bounded_retries() -> None:
    sleeps: list[float] = []
    port = free_port()  # nothing listens there
    store = ClickHouseServerStore("127.0.0.1", port, retry=FAST, connect_timeout=1, sleep=sleeps.append)
    with pytest.raises(StoreUnavailableError, match=rf"127\.0\.0\.1:{port} unavailable: .*failed 4 times") as info:
        store.insert("fills", ROWS["fills"])
    assert isinstance(info.value, StoreError)  # a sink catching StoreError sees it too
    assert len(sleeps) == 3 and all(0.04 <= s <= 0.12 for s in sleeps) and sleeps[1] > sleeps[0] * 1.2
    assert store.health()["status"] == "unavailable" and "Connection refused" in str(store.health()["last_error"])
    # through a TableWriter: the flush fails as a WriteError caused by StoreUnavailableError, the rows stay
    writer = TableWriter(store, "fills", max_rows=3)
    with pytest.raises(WriteError) as werr:
        writer.append(ROWS["fills"])
    assert isinstance(werr.value.__cause__, StoreUnavailableError)
    assert writer.buffered == 3
    store.close()


def test_permanent_errors_are_not_retried(
    clickhouse_server: ClickHouseServer, server_store: ClickHouseServerStore
) -> None:
    sleeps: list[float] = []
    store = ClickHouseServerStore(
        clickhouse_server.host, clickhouse_server.port, database=server_store.database, retry=FAST, sleep=sleeps.append
    )
    with pytest.raises(StoreError, match="SELECT nope FROM fills") as info:
        store.query("SELECT nope FROM fills")
    assert not isinstance(info.value, StoreUnavailableError) and "Code: 47" in str(info.value)
    assert sleeps == []
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.query("SELECT 1")


@pytest.mark.parametrize(
    ("table", "columns", "message"),
    [
        pytest.param("nope", {"a": [1]}, "table 'nope' does not exist", id="unknown-table"),
        pytest.param("bad name", {"a": [1]}, "invalid table name", id="bad-table-name"),
        pytest.param("audit", {**ROWS["audit"], "extra": [1, 2, 3]}, r"table 'audit' has no column\(s\) \['extra'\]",
                     id="unknown-column"),
        pytest.param("audit", {k: v for k, v in ROWS["audit"].items() if k != "json"}, r"lacks column\(s\) \['json'\]",
                     id="missing-column"),
        pytest.param("audit", {**ROWS["audit"], "json": ["a"]}, "different lengths", id="unequal-lengths"),
        pytest.param("fills", {**ROWS["fills"], "qty": ["a", "b", "c"]}, r"fills.qty \(Float64\)", id="wrong-type"),
        pytest.param("fills", {**ROWS["fills"], "side": [1, 300, 1]}, r"fills.side \(Int8\).*300", id="overflow"),
        pytest.param("fills", {**ROWS["fills"], "qty": [0.5, None, 1.0]}, r"fills.qty", id="null-in-non-nullable"),
    ],
)  # fmt: skip
def test_server_insert_errors_name_the_table_and_column(
    server_store: ClickHouseServerStore, table: str, columns: dict[str, Any], message: str
) -> None:
    with pytest.raises(StoreError, match=message) as info:
        server_store.insert(table, columns)
    assert not isinstance(info.value, StoreUnavailableError)


def test_health_and_metrics(server_store: ClickHouseServerStore) -> None:
    health = server_store.health()
    assert health["status"] == "ok" and health["server_version"].startswith("18.16")
    assert health["dedup"] == "ledger" and health["inserts"] > 0
    registry = server_store.registry  # type: ignore[attr-defined]
    assert (registry.get_sample_value("tp_store_rows_inserted_total", {"table": MIGRATIONS_TABLE}) or 0) >= len(
        VERSIONS
    )


def test_a_restarted_server_is_written_to_again_by_the_same_store(tmp_path: Path) -> None:
    """What a sink sees when the server stops: StoreUnavailableError (fast: connection refused), then the same
    store object writes again once the server is back (on the same port and data)."""
    server = ClickHouseServer(tmp_path / "ch")
    with server:
        store = ClickHouseServerStore(server.host, server.port, database="restart", retry=FAST, connect_timeout=1)
        store.migrate()
        store.insert("fills", ROWS["fills"])
        server.stop()
        server.processes.clear()
        with pytest.raises(StoreUnavailableError):
            store.insert("equity", ROWS["equity"])
        assert not store.ping()
        server.start().wait_ready()
        assert store.insert("equity", ROWS["equity"]) == 3
        assert (
            _count(store, "SELECT count() AS n FROM fills") == 3
            and _count(store, "SELECT count() AS n FROM equity") == 3
        )
        store.close()
