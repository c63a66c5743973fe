"""Ingest configuration: venue defaults (endpoints, stream limit, quality topic), and bad settings refused up front
with the field named."""

from __future__ import annotations

from typing import Any

import pytest

from tradeplane.engine.book import QualityConfig
from tradeplane.workloads.ingest import ConfigError, IngestConfig


def test_defaults_per_venue() -> None:
    spot = IngestConfig(venue="binance-spot", symbols=("BTCUSDT",))
    usdm = IngestConfig(venue="binance-usdm", symbols=("BTCUSDT", "ETHUSDT"), streams=("depth@0ms", "trade"))
    assert spot.ws_url == "wss://stream.binance.com:9443" and spot.rest_url == "https://api.binance.com"
    assert spot.rest_prefix == "/api/v3" and not spot.futures and spot.max_streams_per_connection == 1024
    assert usdm.ws_url == "wss://fstream.binance.com" and usdm.rest_prefix == "/fapi/v1" and usdm.futures
    assert usdm.stream_names() == ["btcusdt@depth@0ms", "btcusdt@trade", "ethusdt@depth@0ms", "ethusdt@trade"]
    assert usdm.name == "ingest-binance-usdm" and usdm.quality_topic == "audit.ingest-binance-usdm"
    assert usdm.backoff_base_s == 0.5 and usdm.backoff_cap_s == 8.0
    assert usdm.max_connection_age_s < 24 * 3600


def test_urls_lose_their_trailing_slash() -> None:
    cfg = IngestConfig(venue="binance-usdm", symbols=("BTCUSDT",), ws_url="ws://127.0.0.1:1/", rest_url="http://h/")
    assert cfg.ws_url == "ws://127.0.0.1:1" and cfg.rest_url == "http://h"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"venue": "binance-options"}, "venue"),
        ({"symbols": ()}, "symbols"),
        ({"symbols": ("btcusdt",)}, "symbols"),
        ({"symbols": ("BTCUSDT", "BTCUSDT")}, "symbols"),
        ({"streams": ()}, "streams"),
        ({"streams": ("depth 100ms",)}, "streams"),
        ({"streams": ("kline_1m",)}, "streams"),
        ({"ws_url": "http://x"}, "ws_url"),
        ({"rest_url": "ftp://x"}, "rest_url"),
        ({"quality_topic": "quality.x"}, "quality_topic"),
        ({"max_streams_per_connection": -1}, "max_streams_per_connection"),
        ({"batch_max_messages": 0}, "batch_max_messages"),
        ({"batch_max_ms": 0}, "batch_max_ms"),
        ({"backoff_base_s": 0}, "backoff_base_s"),
        ({"backoff_cap_s": 0.1}, "backoff_cap_s"),
        ({"idle_timeout_s": -1}, "idle_timeout_s"),
        ({"ping_interval_s": 0}, "ping_interval_s"),
        ({"funding_poll_s": -1}, "funding_poll_s"),
        ({"rotation_jitter_s": 90_000.0}, "rotation_jitter_s"),
        ({"max_connection_age_s": True}, "max_connection_age_s"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_settings_name_the_field(changes: dict[str, Any], field: str) -> None:
    kwargs: dict[str, Any] = {"venue": "binance-usdm", "symbols": ("BTCUSDT",)} | changes
    with pytest.raises(ConfigError) as info:
        IngestConfig(**kwargs)
    assert info.value.field == field
    assert field in str(info.value)


def test_from_mapping() -> None:
    cfg = IngestConfig.from_mapping(
        {
            "venue": "binance-spot",
            "symbols": ["BTCUSDT", "ETHUSDT"],
            "streams": ["depth@100ms", "trade"],
            "ping_interval_s": None,
            "quality": {"max_clock_offset_ns": 2_000_000_000},
        }
    )
    assert cfg.symbols == ("BTCUSDT", "ETHUSDT") and cfg.ping_interval_s is None
    assert cfg.quality == QualityConfig(max_clock_offset_ns=2_000_000_000)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"venue": "binance-spot", "symbols": ["BTCUSDT"], "symbol": "x"}, "symbol"),
        ({"venue": "binance-spot", "symbols": "BTCUSDT"}, "symbols"),
        ({"venue": "binance-spot", "symbols": ["BTCUSDT"], "quality": {"max_gap_ratio": -1}}, "quality"),
    ],
)
def test_from_mapping_refuses_bad_input(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        IngestConfig.from_mapping(data)
    assert info.value.field == field
