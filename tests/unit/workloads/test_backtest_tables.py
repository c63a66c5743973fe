"""The backtest tables: numpy columns equal the result's arrays, the Parquet files read back equal (pyarrow), SQL
aggregates over them in embedded chDB equal numpy, and sql/backtest/001_backtest_tables.sql creates tables that
load those files with ``INSERT INTO t SELECT * FROM file(...)``, column for column."""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import chdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from chdb.session import Session

from tests.unit.workloads.test_backtest_report import backtest_result, hand_result
from tradeplane.engine.sim import orders as O  # noqa: N812
from tradeplane.engine.sim.executors import PARENT_STATUS_NAMES, STYLE_NAMES
from tradeplane.engine.sim.result import BacktestResult
from tradeplane.workloads.backtest.tables import (
    ORDER_STATUS_NAMES,
    PORTFOLIO_SYMBOL,
    PORTFOLIO_SYMBOL_ID,
    REASON_NAMES,
    TABLES,
    table_arrays,
    write_tables,
)

DDL = Path(__file__).resolve().parents[3] / "sql" / "backtest" / "001_backtest_tables.sql"
RUN = "run-2024-06-01/a"

# table -> (source array attribute, the field that becomes ts, the name of the source's own ts column)
SOURCES = {
    "fills": ("fills", "exch_ts"),
    "orders": ("reports", "update_ts"),
    "parents": ("parents", "send_ts"),
    "equity": ("curve", "ts"),
    "marks": ("marks", "ts"),
}


def _rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def _query(sql: str, session: Session | None = None) -> list[list[str]]:
    result = session.query(sql, "CSV") if session is not None else chdb.query(sql, "CSV")
    return _rows(result.bytes().decode())


def _statements() -> list[str]:
    return [s.strip() for s in DDL.read_text(encoding="utf-8").split(";") if s.strip()]


@pytest.fixture(scope="module")
def result() -> BacktestResult:
    return backtest_result()


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    s = Session(path=str(tmp_path / "chdb"))
    try:
        yield s
    finally:
        s.close()


def test_columns_are_the_result_arrays_with_names_and_times(result: BacktestResult) -> None:
    tables = table_arrays(result, RUN)
    assert tuple(tables) == TABLES
    for table, (attr, ts_field) in SOURCES.items():
        cols, rows = tables[table], getattr(result, attr)
        n = rows.shape[0]
        assert list(cols)[:4] == ["run_id", "symbol", "symbol_id", "ts"], table
        assert all(c.ndim == 1 and c.shape[0] == n for c in cols.values()), table
        assert cols["run_id"].tolist() == [RUN] * n and cols["symbol"].tolist() == ["BTCUSDT"] * n
        assert cols["ts"].dtype == np.dtype("datetime64[ns]")
        np.testing.assert_array_equal(cols["ts"].astype(np.int64), rows[ts_field])
        for name in rows.dtype.names:
            column = "local_ts" if name == "ts" else "symbol_id" if name == "symbol" else name
            np.testing.assert_array_equal(cols[column], rows[name], err_msg=f"{table}.{name}")
            if name != "symbol":
                assert cols[column].dtype == rows.dtype[name], (table, name)
    fills, orders, parents = tables["fills"], tables["orders"], tables["parents"]
    assert fills["side_name"].tolist() == ["BUY" if s == O.BUY else "SELL" for s in result.fills["side"]]
    assert fills["seq"].tolist() == list(range(result.fills.shape[0]))
    assert orders["status_name"].tolist() == [ORDER_STATUS_NAMES[s] for s in result.reports["status"]]
    assert orders["reason_name"].tolist() == [REASON_NAMES[r] for r in result.reports["reason"]]
    assert set(orders["type_name"].tolist()) == {"MARKET", "LIMIT"} and set(orders["tif_name"].tolist()) == {"GTC"}
    np.testing.assert_array_equal(orders["report_ts"], result.report_ts)
    assert parents["style_name"].tolist() == [STYLE_NAMES[s] for s in result.parents["style"]]
    assert {STYLE_NAMES[0], STYLE_NAMES[1]} == set(parents["style_name"].tolist())
    assert parents["status_name"].tolist() == [PARENT_STATUS_NAMES[s] for s in result.parents["status"]]
    assert {"filled", "canceled"} <= set(parents["status_name"].tolist())


def test_two_symbols_name_each_row_and_the_summed_curve(tmp_path: Path) -> None:
    r = hand_result(n_fills=7)
    tables = table_arrays(r, RUN)
    assert tables["fills"]["symbol"].tolist() == [r.symbols[s] for s in r.fills["symbol"]]
    assert tables["marks"]["symbol"].tolist() == ["BTCUSDT", "ETHUSDT"] * 10
    assert set(tables["equity"]["symbol"].tolist()) == {PORTFOLIO_SYMBOL}
    assert set(tables["equity"]["symbol_id"].tolist()) == {PORTFOLIO_SYMBOL_ID}
    assert tables["orders"]["status_name"].tolist() == ["OPEN", "FILLED", "PENDING", "STATUS_99"]  # unknown code
    assert tables["orders"]["reason_name"].tolist()[-1] == "NO_LIQUIDITY"
    assert tables["parents"]["style_name"].tolist() == [STYLE_NAMES[s] for s in (0, 1, 2)]
    paths = write_tables(r, tmp_path, RUN)
    equity = pq.read_table(paths["equity"])
    assert equity.schema.field("symbol_id").type == pa.uint32()
    assert set(equity.column("symbol_id").to_pylist()) == {PORTFOLIO_SYMBOL_ID}


def test_parquet_files_read_back_equal(tmp_path: Path, result: BacktestResult) -> None:
    paths = write_tables(result, tmp_path / "tables", RUN)
    assert set(paths) == set(TABLES)
    tables = table_arrays(result, RUN)
    for table, path in paths.items():
        assert path == tmp_path / "tables" / f"{table}.parquet"
        meta = pq.ParquetFile(path).metadata
        assert meta.num_rows == len(tables[table]["run_id"])
        assert {meta.row_group(0).column(i).compression for i in range(meta.num_columns)} == {"ZSTD"}
        back = pq.read_table(path)
        assert back.column_names == list(tables[table]), table
        ts_type = back.schema.field("ts").type
        assert ts_type == pa.timestamp("ns", tz="UTC"), table
        for name, expected in tables[table].items():
            field = back.schema.field(name)
            assert not field.nullable, (table, name)
            if expected.dtype == object:
                assert field.type == pa.string(), (table, name)
                assert back.column(name).to_pylist() == expected.tolist(), (table, name)
            elif name == "ts":
                np.testing.assert_array_equal(back.column(name).cast(pa.int64()).to_numpy(), expected.astype(np.int64))
            else:
                got = back.column(name).to_numpy()
                assert got.dtype == expected.dtype, (table, name)
                np.testing.assert_array_equal(got, expected, err_msg=f"{table}.{name}")  # NaN == NaN here


def test_sql_aggregates_over_the_files_equal_numpy(tmp_path: Path, result: BacktestResult) -> None:
    paths = write_tables(result, tmp_path, RUN)
    f = result.fills
    (row,) = _query(
        f"SELECT count(), sum(fee), sum(px * qty), min(exch_ts), max(exch_ts), "
        f"toUnixTimestamp64Nano(min(ts)), toUnixTimestamp64Nano(max(ts)), uniqExact(run_id), any(symbol), "
        f"toTypeName(ts) FROM file('{paths['fills']}', Parquet)"
    )
    assert int(row[0]) == f.shape[0] > 0
    assert float(row[1]) == pytest.approx(float(f["fee"].sum()), rel=1e-12)
    assert float(row[2]) == pytest.approx(float((f["px"] * f["qty"]).sum()), rel=1e-12)
    assert [int(x) for x in row[3:7]] == [int(f["exch_ts"].min()), int(f["exch_ts"].max())] * 2
    assert row[7:] == ["1", "BTCUSDT", "DateTime64(9, 'UTC')"]
    by_side = _query(f"SELECT side_name, side, count(), sum(qty), sum(maker) FROM file('{paths['fills']}', Parquet) "
                     "GROUP BY side_name, side ORDER BY side_name")  # fmt: skip
    for name, side, n, qty, maker in by_side:
        m = f["side"] == int(side)
        assert name == ("BUY" if int(side) == O.BUY else "SELL")
        assert int(n) == int(m.sum()) and float(qty) == pytest.approx(float(f["qty"][m].sum()), rel=1e-12)
        assert int(maker) == int(f["maker"][m].sum())
    assert {r[0] for r in by_side} == {"BUY", "SELL"}
    c = result.curve
    ((n, last_equity, max_fees, lo, hi),) = _query(
        f"SELECT count(), argMax(equity, ts), max(fees), min(local_ts), max(local_ts) FROM file('{paths['equity']}', Parquet)"
    )
    assert int(n) == c.shape[0] and float(last_equity) == pytest.approx(float(c["equity"][-1]), rel=1e-12)
    assert float(max_fees) == pytest.approx(float(c["fees"].max()), rel=1e-12)
    assert (int(lo), int(hi)) == (int(c["ts"].min()), int(c["ts"].max()))
    p = result.parents
    ((n, cost, nan_vwap),) = _query(
        f"SELECT count(), avgIf(cost_bps, isFinite(cost_bps)), countIf(isNaN(vwap)) FROM file('{paths['parents']}', Parquet)"
    )
    finite = p["cost_bps"][np.isfinite(p["cost_bps"])]
    assert int(n) == p.shape[0] and float(cost) == pytest.approx(float(finite.mean()), rel=1e-12)
    assert int(nan_vwap) == int(np.isnan(p["vwap"]).sum())


def _create(session: Session) -> None:
    for statement in _statements():
        session.query(statement)


def _describe(sql_source: str, session: Session) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in _query(f"DESCRIBE {sql_source}", session)]


def test_the_ddl_creates_tables_that_load_the_files(tmp_path: Path, session: Session, result: BacktestResult) -> None:
    assert len(_statements()) == len(TABLES)
    _create(session)
    _create(session)  # IF NOT EXISTS: applying it twice is harmless
    runs = {"run-a": result, "run-b": hand_result(n_fills=9)}
    for run_id, r in runs.items():
        paths = write_tables(r, tmp_path / run_id, run_id)
        for table, path in paths.items():
            source = f"file('{path}', Parquet)"
            columns = _describe(f"backtest_{table}", session)
            file_columns = _describe(source, session)
            assert [c for c, _ in columns] == [c for c, _ in file_columns], table
            for (name, declared), (_, inferred) in zip(columns, file_columns, strict=True):
                assert declared.removeprefix("LowCardinality(").removesuffix(")") == inferred or declared == inferred, (
                    table,
                    name,
                    declared,
                    inferred,
                )
            session.query(f"INSERT INTO backtest_{table} SELECT * FROM {source}")
    for table, (attr, _) in SOURCES.items():
        counts = dict(_query(f"SELECT run_id, count() FROM backtest_{table} GROUP BY run_id ORDER BY run_id", session))
        expected = {run_id: getattr(r, attr).shape[0] for run_id, r in runs.items()}
        assert {k: int(v) for k, v in counts.items()} == {k: v for k, v in expected.items() if v}, table
    f = result.fills
    ((n, fee, buy_qty, lo),) = _query(
        "SELECT count(), sum(fee), sumIf(qty, side_name = 'BUY'), toUnixTimestamp64Nano(min(ts)) "
        "FROM backtest_fills WHERE run_id = 'run-a' AND symbol = 'BTCUSDT'",
        session,
    )
    assert int(n) == f.shape[0] and float(fee) == pytest.approx(float(f["fee"].sum()), rel=1e-12)
    assert float(buy_qty) == pytest.approx(float(f["qty"][f["side"] == O.BUY].sum()), rel=1e-12)
    assert int(lo) == int(f["exch_ts"].min())
    ordered = _query("SELECT seq, order_id FROM backtest_orders WHERE run_id = 'run-a' ORDER BY seq", session)
    assert [int(o) for _, o in ordered] == result.reports["order_id"].tolist()
    partitions = _query(
        "SELECT DISTINCT partition FROM system.parts WHERE table = 'backtest_fills' AND active", session
    )
    assert partitions == [["2024-06-01"]]


def test_a_run_without_fills_writes_empty_typed_tables(tmp_path: Path, session: Session) -> None:
    r = backtest_result(n_seconds=10, trade=False)
    paths = write_tables(r, tmp_path, RUN)
    full = write_tables(hand_result(n_fills=3), tmp_path / "full", RUN)
    for table in ("fills", "orders", "parents"):
        empty = pq.read_table(paths[table])
        assert empty.num_rows == 0 and empty.schema == pq.read_table(full[table]).schema, table
    assert pq.read_table(paths["equity"]).num_rows == r.curve.shape[0] > 0
    _create(session)
    for table, path in paths.items():
        session.query(f"INSERT INTO backtest_{table} SELECT * FROM file('{path}', Parquet)")
    assert _query("SELECT count() FROM backtest_fills", session) == [["0"]]
    assert _query("SELECT count() FROM backtest_marks", session) == [[str(r.marks.shape[0])]]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param({"symbols": ()}, "symbol id 0", id="no-symbol-names"),
        pytest.param({"parents": np.zeros(2, np.float64)}, "result.parents", id="wrong-dtype"),
        pytest.param({"report_ts": np.zeros(1, np.int64)}, "report_ts", id="report-ts-length"),
    ],
)
def test_malformed_results_raise_before_writing(
    tmp_path: Path, result: BacktestResult, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        write_tables(dataclasses.replace(result, **change), tmp_path / "out", RUN)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="run_id"):
        write_tables(result, tmp_path / "out", "")
