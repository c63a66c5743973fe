"""Rows are checked against the table before they are buffered: a value that would make the batched insert
fail for good names the table, column and row, so only that message is dead-lettered."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from tradeplane.workloads.sink.validate import Schema, rows_problem, store_schema, value_ok


@pytest.mark.parametrize(
    ("value", "ch_type", "ok"),
    [
        (1, "Int8", True), (128, "Int8", False), (-129, "Int8", False), (2**63 - 1, "Int64", True),
        (2**63, "Int64", False), (2**64 - 1, "UInt64", True), (-1, "UInt32", False), (3.0, "Int32", True),
        (3.5, "Int32", False), (math.nan, "Int64", False), (True, "UInt8", True), ("1", "Int64", False),
        (np.int64(5), "Int16", True), (1.5, "Float64", True), (math.nan, "Float64", True), (7, "Float32", True),
        ("x", "Float64", False), (None, "Float64", False), ("ü", "String", True), ("a", "LowCardinality(String)", True),
        (1, "String", False), (None, "Nullable(String)", True), ("a", "Nullable(String)", True),
        (1, "Nullable(String)", False), (["a", "b"], "Array(String)", True), ((0.1, math.nan), "Array(Float64)", True),
        ([1, "x"], "Array(Float64)", False), ("ab", "Array(String)", False), ([], "Array(LowCardinality(String))", True),
        (1_722_470_400 * 10**9, "DateTime64(9, 'UTC')", True), ("2024-08-01", "DateTime64(9, 'UTC')", False),
        (1, "Bool", True), ("x", "Decimal(9, 2)", True),
    ],
)  # fmt: skip
def test_value_ok(value: Any, ch_type: str, ok: bool) -> None:
    assert value_ok(value, ch_type) is ok


SCHEMA: Schema = {
    "run_id": ("LowCardinality(String)", True),
    "strategy": ("LowCardinality(String)", False),
    "ts": ("DateTime64(9, 'UTC')", False),
    "qty": ("Float64", False),
    "side": ("Int8", False),
    "note": ("String", True),
}
ROW = {"strategy": "s", "ts": 1, "qty": 0.5, "side": 1}


@pytest.mark.parametrize(
    ("rows", "schema", "message"),
    [
        ([ROW, {**ROW, "qty": math.nan}], SCHEMA, None),
        ([{**ROW, "note": "x"}], SCHEMA, None),  # a column with a DEFAULT may be given
        ([ROW, {**ROW, "qty": "a lot"}], SCHEMA, "fills.qty (Float64): row 1 has 'a lot'"),
        ([{**ROW, "side": 300}], SCHEMA, "fills.side (Int8): row 0 has 300"),
        ([{**ROW, "extra": 1}], SCHEMA, "fills: unknown column(s) ['extra']"),
        ([{k: v for k, v in ROW.items() if k != "qty"}], SCHEMA, "fills: missing column(s) ['qty']"),
        ([{**ROW, "run_id": "mine"}], SCHEMA, "fills: column(s) ['run_id'] are set by the sink"),
        ([{**ROW, "run_id": "mine"}], None, "fills: column(s) ['run_id'] are set by the sink"),
        ([ROW, {**ROW, "note": "x"}], None, "fills: row 1 has columns"),
        ([{**ROW, "qty": "a lot"}], None, None),  # without the table's schema only the column set is checked
        ([], SCHEMA, None),
    ],
)
def test_rows_problem(rows: list[dict[str, Any]], schema: Schema | None, message: str | None) -> None:
    got = rows_problem("fills", rows, schema, ("run_id",))
    if message is None:
        assert got is None
    else:
        assert got is not None and got.startswith(message)


def test_store_schema_reads_both_store_shapes() -> None:
    class Server:
        def table_schema(self, table: str) -> list[tuple[str, str, bool, int | None]]:
            return [("ts", "Int64", False, 9), ("run_id", "String", True, None)]

    class Embedded:
        def table_schema(self, table: str) -> dict[str, tuple[str, bool]]:
            return {"ts": ("DateTime64(9, 'UTC')", False), "run_id": ("String", True)}

    assert store_schema(Server(), "t") == {"ts": ("Int64", False), "run_id": ("String", True)}
    assert store_schema(Embedded(), "t") == {"ts": ("DateTime64(9, 'UTC')", False), "run_id": ("String", True)}
