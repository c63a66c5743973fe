"""The SQL dialect rewrite (workloads/store/dialect.py) on the real migration files and on small cases: a
current server (and chDB) gets every statement unchanged; a ClickHouse 18.16 gets no codecs, TTL, unknown
settings, LowCardinality, DateTime64 or *UnixTimestamp64Nano, with each DateTime64 column marked and its
date functions adapted; strings and comments are never touched. The rewritten SQL is executed on a real
18.16 server in tests/integration/test_clickhouse_store.py."""

from __future__ import annotations

import re

import pytest

from tradeplane.workloads.store.dialect import (
    Dialect,
    datetime64_columns,
    marked_precision,
    parse_version,
    rewrite,
    tokenize,
)
from tradeplane.workloads.store.migrations import SQL_DIR, discover, split_statements

OLD = Dialect((18, 16, 1))
STATEMENTS = [(m.version, s) for m in discover(SQL_DIR) for s in m.statements]


def _columns(create: str) -> list[str]:
    """Column names of a CREATE TABLE (first word of each top-level entry of its column list)."""
    body = create[create.index("(") + 1 : create.rindex(")")]
    depth, entries, cur = 0, [], ""
    for ch in body:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            entries.append(cur)
            cur = ""
        else:
            cur += ch
    entries.append(cur)
    return [e.split()[0] for e in entries if e.strip()]


def test_parse_version() -> None:
    assert parse_version("18.16.1") == (18, 16, 1)
    assert parse_version("26.9.2.1") == (26, 9, 2, 1)
    assert parse_version("23.8.1.2992-lts") == (23, 8, 1)
    with pytest.raises(ValueError, match="not a ClickHouse version"):
        parse_version("unknown")


def test_the_migrations_are_found_in_sql_runtime() -> None:
    assert SQL_DIR.name == "runtime"
    versions = [m.version for m in discover(SQL_DIR)]
    assert versions[:5] == ["001", "002", "003", "004", "005"]
    assert len(STATEMENTS) > 30


def test_modern_servers_and_chdb_get_every_statement_unchanged() -> None:
    assert Dialect.modern().native
    assert Dialect((24, 3)).native
    for _, stmt in STATEMENTS:
        assert rewrite(stmt, Dialect.modern()) is stmt


def test_tokens_join_back_to_the_text() -> None:
    sql = "SELECT 'it''s', \"q\" /* c */ -- x\n, `b`, 1.5e3 FROM t;"
    assert "".join(t.text for t in tokenize(sql)) == sql


def test_old_server_gets_no_feature_it_lacks_in_any_migration() -> None:
    for version, stmt in STATEMENTS:
        out = rewrite(stmt, OLD)
        if out is None:
            assert "MODIFY SETTING non_replicated_deduplication_window" in stmt, stmt
            continue
        bare = re.sub(r"'[^']*'", "''", out)  # the markers' text is a comment string
        for gone in ("CODEC", "TTL", "LowCardinality", "DateTime64", "UnixTimestamp64", "non_replicated", "Bool"):
            assert gone not in bare, (version, gone, out)
        assert out.count("(") == out.count(")"), out


def test_old_server_keeps_every_column_and_marks_each_datetime64() -> None:
    tables = 0
    for _, stmt in STATEMENTS:
        if not stmt.startswith("CREATE TABLE"):
            continue
        tables += 1
        out = rewrite(stmt, OLD)
        assert out is not None
        assert _columns(out) == _columns(stmt)
        wanted = datetime64_columns(stmt)
        marked = dict(re.findall(r"(\w+)\s+Int64 COMMENT 'tp:DateTime64\((\d)\)'", out))
        assert {k: int(v) for k, v in marked.items()} == wanted
        if "PARTITION BY toDate(ts)" in stmt:
            assert "PARTITION BY toDate(toDateTime(intDiv(ts, 1000000000)))" in out
    assert tables >= 20


def test_old_server_keeps_engines_keys_and_views() -> None:
    for _, stmt in STATEMENTS:
        out = rewrite(stmt, OLD)
        if out is None:
            continue
        for kept in ("ENGINE = ReplacingMergeTree", "ENGINE = AggregatingMergeTree", "ORDER BY (", "TO bars_1s_state"):
            assert (kept in out) == (kept in stmt), (kept, out)


def test_column_codec_ttl_and_settings() -> None:
    sql = (
        "CREATE TABLE IF NOT EXISTS t (a Int64 CODEC(Delta, ZSTD(3)) TTL d + INTERVAL 1 DAY, "
        "b LowCardinality(String), d Date, ts DateTime64(9, 'UTC') DEFAULT 0 CODEC(ZSTD), "
        "xs Array(LowCardinality(String)), f Bool) ENGINE = MergeTree PARTITION BY toYYYYMM(ts) ORDER BY (b, ts) "
        "TTL d + INTERVAL 7 DAY DELETE SETTINGS index_granularity = 8192, non_replicated_deduplication_window = 100"
    )
    assert rewrite(sql, OLD) == (
        "CREATE TABLE IF NOT EXISTS t (a Int64, "
        "b String, d Date, ts Int64 DEFAULT 0 COMMENT 'tp:DateTime64(9)', "
        "xs Array(String), f UInt8) ENGINE = MergeTree PARTITION BY toYYYYMM(toDateTime(intDiv(ts, 1000000000))) "
        "ORDER BY (b, ts)\nSETTINGS index_granularity = 8192"
    )


def test_a_server_between_the_versions_keeps_what_it_has() -> None:
    sql = "CREATE TABLE t (ts DateTime64(3) CODEC(ZSTD), s LowCardinality(String)) ENGINE = MergeTree ORDER BY ts"
    out = rewrite(sql, Dialect((19, 8)))
    assert out == (
        "CREATE TABLE t (ts Int64 COMMENT 'tp:DateTime64(3)' CODEC(ZSTD), s LowCardinality(String)) "
        "ENGINE = MergeTree ORDER BY ts"
    )
    assert rewrite("ALTER TABLE t MODIFY SETTING non_replicated_deduplication_window = 5", Dialect((20, 3))) is None
    assert (
        rewrite(
            "ALTER TABLE t MODIFY SETTING index_granularity = 5, non_replicated_deduplication_window = 5",
            Dialect((20, 3)),
        )
        == "ALTER TABLE t MODIFY SETTING index_granularity = 5"
    )
    assert rewrite("ALTER TABLE t MODIFY SETTING index_granularity = 5", OLD) is None  # no MODIFY SETTING yet
    assert rewrite("ALTER TABLE t MODIFY TTL d + INTERVAL 1 DAY", OLD) is None


def test_queries_use_the_marked_columns() -> None:
    sql = (
        "SELECT toUnixTimestamp64Nano(ts) AS ns, toDate(ts) AS d, toDate(other) FROM fills "
        "WHERE ts >= fromUnixTimestamp64Nano(toInt64(5)) AND s = 'toDate(ts) CODEC(x)' -- toDate(ts)\n"
    )
    assert rewrite(sql, OLD, {"ts": 9}) == (
        "SELECT (ts) AS ns, toDate(toDateTime(intDiv(ts, 1000000000))) AS d, toDate(other) FROM fills "
        "WHERE ts >= (toInt64(5)) AND s = 'toDate(ts) CODEC(x)' -- toDate(ts)\n"
    )
    assert rewrite("SELECT 1", OLD) == "SELECT 1"


def test_markers() -> None:
    assert marked_precision("tp:DateTime64(9)") == 9
    assert marked_precision("a note") is None
    assert datetime64_columns("CREATE TABLE t (a Int64, `ts` DateTime64(6, 'UTC'), b DateTime64(3)) ENGINE = Log") == {
        "ts": 6,
        "b": 3,
    }
    assert datetime64_columns("CREATE VIEW v AS SELECT toDateTime64(1, 3) AS x") == {}


def test_split_and_rewrite_a_whole_file_round_trip() -> None:
    text = "\n".join(s + ";" for _, s in STATEMENTS if s.startswith("CREATE VIEW"))
    again = [rewrite(s, OLD) for s in split_statements(text)]
    assert all(a is not None and "CREATE VIEW" in a for a in again)
