"""Smoke test of both ClickHouse paths: the 18.16 server over the native protocol, and embedded chDB.

The server path checks the columnar numpy insert our writers use; the chDB path checks the modern schema
features (DateTime64, LowCardinality, daily partitions) and that a Session's data survives reopening.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.services import ClickHouseServer

ROWS = 10_000


def _frame(rows: int = ROWS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    ts = np.datetime64("2024-03-01T00:00:00", "s") + np.arange(rows).astype("timedelta64[m]")
    price = rng.uniform(60_000, 70_000, rows).round(2)
    qty = rng.integers(1, 1_000, rows).astype(np.uint32)
    return ts, price, qty


def test_server_numpy_columnar_insert(clickhouse_server: ClickHouseServer) -> None:
    assert clickhouse_server.server_version[0] >= 18
    client = clickhouse_server.client(settings={"use_numpy": True})
    table = f"smoke_{uuid.uuid4().hex[:10]}"
    ts, price, qty = _frame()
    client.execute(
        f"CREATE TABLE {table} (ts DateTime, price Float64, qty UInt32) "
        "ENGINE = MergeTree PARTITION BY toYYYYMMDD(ts) ORDER BY ts"
    )
    try:
        inserted = client.execute(f"INSERT INTO {table} (ts, price, qty) VALUES", [ts, price, qty], columnar=True)
        assert inserted == ROWS
        ((count, total_qty, total_price, days),) = client.execute(
            f"SELECT count(), sum(qty), sum(price), uniqExact(toDate(ts)) FROM {table}"
        )
        assert count == ROWS
        assert int(total_qty) == int(qty.sum(dtype=np.uint64))
        assert float(total_price) == pytest.approx(float(price.sum()), rel=1e-12)  # summation order differs
        assert days == len(np.unique(ts.astype("datetime64[D]")))
    finally:
        client.execute(f"DROP TABLE IF EXISTS {table}")
        client.disconnect()


CHDB_DDL = """
CREATE TABLE smoke.trades (
    ts DateTime64(3, 'UTC'), symbol LowCardinality(String), price Float64, qty UInt32
) ENGINE = MergeTree PARTITION BY toDate(ts) ORDER BY (symbol, ts)
"""


def _chdb_totals(sess: Any) -> tuple[object, ...]:
    out = sess.query("SELECT count(), sum(qty), sum(price), uniqExact(toDate(ts)) FROM smoke.trades", "CSV")
    count, qty, price, days = str(out).strip().split(",")
    return int(count), int(qty), float(price), int(days)


def test_chdb_modern_schema_and_persistence(chdb_session: Any, tmp_path: Path) -> None:
    """The fixture's session lives at ``tmp_path / "chdb"``; reopening that path must show the same data."""
    from chdb import session as chs

    ts, price, qty = _frame()
    symbols = np.where(np.arange(ROWS) % 2 == 0, "BTCUSDT", "ETHUSDT")
    chdb_session.query("CREATE DATABASE smoke")
    chdb_session.query(CHDB_DDL)
    values = ",".join(
        f"('{t}.250','{s}',{p},{q})" for t, s, p, q in zip(ts.astype(str), symbols, price, qty, strict=True)
    )
    chdb_session.query(f"INSERT INTO smoke.trades VALUES {values}")
    days = len(np.unique(ts.astype("datetime64[D]")))
    expected = (ROWS, int(qty.sum()), pytest.approx(float(price.sum()), rel=1e-12), days)
    assert _chdb_totals(chdb_session) == expected
    ms = str(chdb_session.query("SELECT toUnixTimestamp64Milli(min(ts)) FROM smoke.trades", "CSV")).strip()
    assert int(ms) == int(ts[0].astype("datetime64[ms]").astype(np.int64)) + 250
    assert (
        str(chdb_session.query("SELECT toTypeName(symbol) FROM smoke.trades LIMIT 1", "CSV")).strip()
        == '"LowCardinality(String)"'
    )
    parts = str(
        chdb_session.query("SELECT uniqExact(partition) FROM system.parts WHERE database='smoke' AND active", "CSV")
    ).strip()
    assert int(parts) == days

    chdb_session.close()
    reopened = chs.Session(str(tmp_path / "chdb"))  # type: ignore[no-untyped-call]
    try:
        assert _chdb_totals(reopened) == expected
    finally:
        reopened.close()  # type: ignore[no-untyped-call]
