"""Stream plan and rotation schedule: streams are packed onto connections under the per-connection limit with
each symbol's streams together, the combined-stream URL is Binance's, and rotations come before the age limit,
spread by the jitter."""

from __future__ import annotations

import random

import pytest

from tradeplane.workloads.ingest import IngestConfig, combined_stream_url, rotation_deadline, split_streams

STREAMS = ("depth@100ms", "bookTicker", "trade")


def _names(symbols: list[str], suffixes: tuple[str, ...] = STREAMS) -> list[str]:
    return [f"{s}@{x}" for s in symbols for x in suffixes]


def test_everything_fits_on_one_connection() -> None:
    names = _names(["btcusdt", "ethusdt"])
    assert split_streams(names, 200) == [names]


def test_symbols_are_not_split_across_connections() -> None:
    names = _names(["a1", "b1", "c1", "d1", "e1"])  # 15 streams
    plan = split_streams(names, 7)  # two symbols (6 streams) per connection
    assert [len(c) for c in plan] == [6, 6, 3]
    for conn in plan:
        assert len(conn) <= 7
        symbols = {n.split("@")[0] for n in conn}
        for s in symbols:  # all three streams of a symbol on this connection
            assert sum(n.startswith(f"{s}@") for n in conn) == 3
    assert [n for c in plan for n in c] == names  # order kept, nothing lost


def test_a_symbol_larger_than_a_connection_is_split() -> None:
    names = _names(["big"], tuple(f"s{i}" for i in range(5)))
    plan = split_streams(names, 2)
    assert plan == [names[0:2], names[2:4], names[4:5]]


def test_duplicates_are_dropped() -> None:
    assert split_streams(["x@trade", "x@trade", "y@trade"], 10) == [["x@trade", "y@trade"]]


@pytest.mark.parametrize("limit", [1, 3, 4, 200, 1024])
def test_limits_hold_for_many_symbols(limit: int) -> None:
    names = _names([f"sym{i}usdt" for i in range(150)])
    plan = split_streams(names, limit)
    assert all(1 <= len(c) <= limit for c in plan)
    assert [n for c in plan for n in c] == names


def test_invalid_limit() -> None:
    with pytest.raises(ValueError, match="max_per_connection"):
        split_streams(["a@trade"], 0)


def test_config_plan_uses_the_venue_limit() -> None:
    cfg = IngestConfig(venue="binance-usdm", symbols=tuple(f"S{i}USDT" for i in range(70)))
    assert cfg.max_streams_per_connection == 200  # Binance futures: 200 streams per connection
    plan = split_streams(cfg.stream_names(), cfg.max_streams_per_connection)
    assert [len(c) for c in plan] == [198, 12]
    assert plan[0][:3] == ["s0usdt@depth@100ms", "s0usdt@bookTicker", "s0usdt@trade"]


def test_combined_stream_url() -> None:
    url = combined_stream_url("wss://fstream.binance.com/", ["btcusdt@depth@0ms", "btcusdt@trade"])
    assert url == "wss://fstream.binance.com/stream?streams=btcusdt@depth@0ms/btcusdt@trade"
    with pytest.raises(ValueError, match="at least one stream"):
        combined_stream_url("wss://x", [])


def test_rotation_comes_before_the_age_limit_and_is_spread() -> None:
    rng = random.Random(1)
    deadlines = [rotation_deadline(100.0, 82_800.0, 300.0, rng) for _ in range(1000)]
    assert all(100.0 + 82_800.0 - 300.0 <= d <= 100.0 + 82_800.0 for d in deadlines)
    assert max(deadlines) - min(deadlines) > 250.0  # connections opened together do not rotate together
    assert rotation_deadline(5.0, 10.0, 0.0, rng) == 15.0  # no jitter: exactly at the age


def test_default_rotation_is_well_inside_binance_24h() -> None:
    cfg = IngestConfig(venue="binance-spot", symbols=("BTCUSDT",))
    latest = rotation_deadline(0.0, cfg.max_connection_age_s, cfg.rotation_jitter_s, random.Random(0))
    assert latest < 24 * 3600 - 3000


@pytest.mark.parametrize(("age", "jitter"), [(0.0, 0.0), (10.0, 10.0), (10.0, -1.0)])
def test_invalid_rotation_settings(age: float, jitter: float) -> None:
    with pytest.raises(ValueError):
        rotation_deadline(0.0, age, jitter, random.Random(0))
