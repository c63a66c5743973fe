"""TableWriter batching (size, age, close; nothing lost when an insert fails) and the migration runner
(statement splitting, discovery, recording, immutability), against an in-memory fake store. The same code
against real chDB: tests/integration/test_chdb_store.py."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tradeplane.workloads.store import Column, Columns, MigrationError, Store, TableWriter, WriteError
from tradeplane.workloads.store.migrations import MIGRATIONS_TABLE, SQL_DIR, discover, migrate, split_statements


class FakeStore:
    """Records inserts; ``fail_next`` makes the next N inserts raise; executes by remembering statements."""

    def __init__(self) -> None:
        self.inserts: list[tuple[str, dict[str, list[Any]]]] = []
        self.statements: list[str] = []
        self.fail_next = 0
        self.fail_on: str | None = None

    def migrate(self) -> list[str]:
        return migrate(self, SQL_DIR)

    def execute(self, sql: str) -> None:
        if self.fail_on is not None and self.fail_on in sql:
            from tradeplane.workloads.store import StoreError

            raise StoreError("syntax error")
        self.statements.append(sql)

    def insert(self, table: str, columns: Mapping[str, Column]) -> int:
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("store unavailable")
        cols = {k: list(np.asarray(v).tolist()) if isinstance(v, np.ndarray) else list(v) for k, v in columns.items()}
        self.inserts.append((table, cols))
        return len(next(iter(cols.values())))

    def query(self, sql: str) -> Columns:
        rows = [c for t, c in self.inserts if t == MIGRATIONS_TABLE]
        return {
            "version": np.array([v for c in rows for v in c["version"]], dtype=object),
            "sha256": np.array([v for c in rows for v in c["sha256"]], dtype=object),
        }

    def close(self) -> None:
        pass

    def rows(self, table: str, column: str) -> list[Any]:
        return [v for t, c in self.inserts if t == table for v in c[column]]


def test_fake_store_is_a_store_and_migrates_the_runtime_tables() -> None:
    store: Store = FakeStore()  # mypy checks the structural match
    assert store.migrate() == [m.version for m in discover(SQL_DIR)]  # 001 runtime tables, then market data, ...
    assert store.migrate() == []


# -- TableWriter -----------------------------------------------------------------------------------


def test_flush_on_size() -> None:
    store = FakeStore()
    w = TableWriter(store, "fills", max_rows=5, max_age_ns=10**12)
    assert w.append({"qty": [1.0, 2.0], "symbol": ["A", "B"]}) == 0
    assert w.append({"qty": np.array([3.0, 4.0]), "symbol": np.array(["C", "D"])}) == 0
    assert w.buffered == 4 and store.inserts == []
    assert w.append({"qty": [5.0, 6.0], "symbol": ["E", "F"]}) == 6  # reaching max_rows flushes all buffered
    assert store.rows("fills", "qty") == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert store.rows("fills", "symbol") == list("ABCDEF")
    assert (w.buffered, w.rows_written, w.flushes) == (0, 6, 1)


def test_flush_on_age_measured_from_the_oldest_buffered_row() -> None:
    store = FakeStore()
    w = TableWriter(store, "signals", max_rows=1000, max_age_ns=100)
    assert w.maybe_flush(10) == 0  # nothing buffered
    w.append_row({"x": 1}, now_ns=1_000)
    w.append_row({"x": 2}, now_ns=1_090)
    assert w.maybe_flush(1_099) == 0
    assert w.maybe_flush(1_100) == 2
    assert store.rows("signals", "x") == [1, 2]
    # without now_ns on append, the age counts from the first maybe_flush that sees the rows
    w.append_row({"x": 3})
    assert w.maybe_flush(5_000) == 0
    assert w.maybe_flush(5_099) == 0
    assert w.maybe_flush(5_100) == 1


def test_close_flushes_and_refuses_more() -> None:
    store = FakeStore()
    w = TableWriter(store, "t", max_rows=100)
    w.append_row({"a": 1})
    assert w.close() == 1 and w.close() == 0
    with pytest.raises(ValueError, match="closed"):
        w.append_row({"a": 2})
    assert store.rows("t", "a") == [1]


def test_a_failed_insert_keeps_every_row_in_order_for_the_retry() -> None:
    store = FakeStore()
    store.fail_next = 1
    w = TableWriter(store, "fills", max_rows=3, max_age_ns=10**12)
    w.append({"qty": [1.0, 2.0]})
    with pytest.raises(WriteError, match=r"flush of 3 rows into 'fills' failed; rows kept for retry") as info:
        w.append_row({"qty": 3.0})  # the row was accepted; the flush it triggered failed
    assert isinstance(info.value.__cause__, ConnectionError)
    assert w.buffered == 3 and store.inserts == []
    assert w.append_row({"qty": 4.0}) == 4  # a row arriving later goes after the kept ones; the retry works
    assert w.rows_written == 4 and store.rows("fills", "qty") == [1.0, 2.0, 3.0, 4.0]


def test_a_close_that_fails_can_be_retried() -> None:
    store = FakeStore()
    store.fail_next = 2
    w = TableWriter(store, "t", max_rows=100)
    w.append_row({"a": "x"})
    for _ in range(2):
        with pytest.raises(WriteError, match="'t'"):
            w.close()
    assert w.close() == 1 and store.rows("t", "a") == ["x"]


def test_constants_structured_arrays_and_array_columns() -> None:
    store = FakeStore()
    w = TableWriter(store, "signals", max_rows=100, constants={"run_id": "r1"})
    rec = np.array([(1, 0.5), (2, 0.25)], dtype=[("exchange_ts", "i8"), ("p_up", "f8")])
    w2 = TableWriter(store, "marks", max_rows=100)
    w2.append(rec)
    w2.flush()
    assert store.rows("marks", "exchange_ts") == [1, 2] and store.rows("marks", "p_up") == [0.5, 0.25]
    w.append_row({"names": ("a", "b"), "n": 1})
    w.append({"names": [(), ("c",)], "n": [2, 3]})
    w.append_row({"names": ["d"], "n": 4})
    w.flush()
    assert store.rows("signals", "names") == [("a", "b"), (), ("c",), ["d"]]
    assert store.rows("signals", "n") == [1, 2, 3, 4]
    assert store.rows("signals", "run_id") == ["r1"] * 4


@pytest.mark.parametrize(
    ("first", "second", "message"),
    [
        pytest.param({"a": [1]}, {"b": [1]}, "earlier appends", id="other-columns"),
        pytest.param({"a": [1], "b": [1, 2]}, None, "different lengths", id="unequal-lengths"),
        pytest.param({"run_id": ["x"]}, None, "also constants", id="constant-clash"),
        pytest.param(np.zeros(2), None, "structured array", id="plain-array"),
        pytest.param({"a": np.zeros((2, 2))}, None, "1-D", id="two-d-column"),
    ],
)
def test_append_errors_name_the_table(first: Any, second: Any, message: str) -> None:
    w = TableWriter(FakeStore(), "fills", constants={"run_id": "r"})
    with pytest.raises(ValueError, match=message):
        w.append(first)
        if second is not None:
            w.append(second)


@pytest.mark.parametrize(("max_rows", "max_age_ns", "message"), [(0, 1, "max_rows"), (1, -1, "max_age_ns")])
def test_writer_arguments(max_rows: int, max_age_ns: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TableWriter(FakeStore(), "t", max_rows=max_rows, max_age_ns=max_age_ns)


# -- migrations ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "statements"),
    [
        pytest.param("A; B;", ["A", "B"], id="two"),
        pytest.param("A", ["A"], id="no-trailing-semicolon"),
        pytest.param(";;  ;", [], id="empty"),
        pytest.param("-- a; comment\nA; -- x;\nB", ["A", "B"], id="line-comments-with-semicolons"),
        pytest.param("A /* ; */ B; C", ["A   B", "C"], id="block-comment"),
        pytest.param("SELECT 'a;b', \"c;d\", `e;f`; X", ["SELECT 'a;b', \"c;d\", `e;f`", "X"], id="quoted"),
        pytest.param("SELECT 'it''s; ok'; X", ["SELECT 'it''s; ok'", "X"], id="doubled-quote"),
        pytest.param("SELECT 'a\\';b'; X", ["SELECT 'a\\';b'", "X"], id="backslash-escape"),
        pytest.param("SELECT '--not a comment;'", ["SELECT '--not a comment;'"], id="dashes-in-string"),
    ],
)
def test_split_statements(sql: str, statements: list[str]) -> None:
    assert split_statements(sql) == statements


@pytest.mark.parametrize("sql", ["SELECT 'open", "A /* open"])
def test_split_statements_refuses_unterminated(sql: str) -> None:
    with pytest.raises(MigrationError, match="unterminated"):
        split_statements(sql)


def test_the_runtime_migrations_create_every_table() -> None:
    migs = discover()
    assert [m.version for m in migs][:1] == ["001"] and migs[0].name == "runtime_tables"
    created = [s.split("(")[0].split()[-1] for s in migs[0].statements]
    assert created == [
        "signals", "intents", "orders", "fills", "positions", "equity", "risk_events", "rejections", "audit"
    ]  # fmt: skip


def _dir(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    ("files", "message"),
    [
        pytest.param({"1_x.sql": "A"}, "NNN_description.sql", id="short-number"),
        pytest.param({"001-x.sql": "A"}, "NNN_description.sql", id="dash"),
        pytest.param({"001_a.sql": "A", "0001_b.sql": "B"}, "same number 1", id="duplicate-number"),
    ],
)
def test_discover_refuses_bad_files(tmp_path: Path, files: dict[str, str], message: str) -> None:
    with pytest.raises(MigrationError, match=message):
        discover(_dir(tmp_path, files))


def test_migrate_applies_in_numeric_order_once_and_records_versions(tmp_path: Path) -> None:
    sql_dir = _dir(tmp_path, {"010_c.sql": "C1; C2", "002_b.sql": "B", "001_a.sql": "A"})
    store = FakeStore()
    assert migrate(store, sql_dir) == ["001", "002", "010"]
    assert store.statements[1:] == ["A", "B", "C1", "C2"]  # [0] creates the migrations table
    assert store.rows(MIGRATIONS_TABLE, "version") == ["001", "002", "010"]
    assert store.rows(MIGRATIONS_TABLE, "name") == ["a", "b", "c"]
    assert migrate(store, sql_dir) == []
    (sql_dir / "011_d.sql").write_text("D")
    assert migrate(store, sql_dir) == ["011"]


def test_a_changed_applied_migration_is_an_error_naming_the_file(tmp_path: Path) -> None:
    sql_dir = _dir(tmp_path, {"001_a.sql": "A"})
    store = FakeStore()
    migrate(store, sql_dir)
    (sql_dir / "001_a.sql").write_text("A2")
    with pytest.raises(MigrationError, match=r"001_a.sql changed after it was applied"):
        migrate(store, sql_dir)


def test_a_failing_statement_names_the_file_and_is_not_recorded(tmp_path: Path) -> None:
    sql_dir = _dir(tmp_path, {"001_a.sql": "A", "002_b.sql": "B1; BROKEN"})
    store = FakeStore()
    store.fail_on = "BROKEN"
    with pytest.raises(MigrationError, match=r"002_b.sql: statement 2 failed \(BROKEN…\): syntax error"):
        migrate(store, sql_dir)
    assert store.rows(MIGRATIONS_TABLE, "version") == ["001"]
    store.fail_on = None
    assert migrate(store, sql_dir) == ["002"]
