"""exchangeInfo: tick / step sizes parsed from spot and futures documents shaped as Binance sends them, errors
that name the symbol or the filter, and the daily cache (due, age, a changed tick is reported, a bad document
keeps the last good one)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.fixtures.binance_replay import ReplayServer
from tradeplane.engine.runtime.instruments import EXCHANGE_FILTERS
from tradeplane.workloads.ingest import ExchangeInfoCache, ExchangeInfoError, parse_exchange_info

# Abridged from real answers (GET /fapi/v1/exchangeInfo, GET /api/v3/exchangeInfo, 2024-08): the filters the
# ingest reads, plus neighbours it must ignore.
USDM: dict[str, Any] = {
    "timezone": "UTC",
    "serverTime": 1723161255030,
    "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400}],
    "symbols": [
        {
            "symbol": "BTCUSDT",
            "pair": "BTCUSDT",
            "contractType": "PERPETUAL",
            "status": "TRADING",
            "baseAsset": "BTC",
            "quoteAsset": "USDT",
            "pricePrecision": 2,
            "quantityPrecision": 3,
            "filters": [
                {"filterType": "PRICE_FILTER", "maxPrice": "4529764", "minPrice": "556.80", "tickSize": "0.10"},
                {"filterType": "LOT_SIZE", "stepSize": "0.001", "maxQty": "1000", "minQty": "0.001"},
                {"filterType": "MARKET_LOT_SIZE", "stepSize": "0.001", "maxQty": "120", "minQty": "0.001"},
                {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                {"filterType": "MIN_NOTIONAL", "notional": "100"},
                {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500"},
            ],
        },
        {
            "symbol": "ETHUSDT",
            "status": "TRADING",
            "baseAsset": "ETH",
            "quoteAsset": "USDT",
            "filters": [
                {"filterType": "PRICE_FILTER", "maxPrice": "306177", "minPrice": "39.86", "tickSize": "0.01"},
                {"filterType": "LOT_SIZE", "stepSize": "0.001", "maxQty": "10000", "minQty": "0.001"},
                {"filterType": "MIN_NOTIONAL", "notional": "20"},
            ],
        },
    ],
}
SPOT_BTC: dict[str, Any] = {
    "symbol": "BTCUSDT",
    "status": "TRADING",
    "baseAsset": "BTC",
    "quoteAsset": "USDT",
    "filters": [
        {
            "filterType": "PRICE_FILTER",
            "minPrice": "0.01000000",
            "maxPrice": "1000000.00000000",
            "tickSize": "0.01000000",
        },
        {"filterType": "LOT_SIZE", "minQty": "0.00001000", "maxQty": "9000.00000000", "stepSize": "0.00001000"},
        {"filterType": "ICEBERG_PARTS", "limit": 10},
        {
            "filterType": "NOTIONAL",
            "minNotional": "5.00000000",
            "applyMinToMarket": True,
            "maxNotional": "9000000.00000000",
        },
    ],
}


def test_futures_document() -> None:
    filters = parse_exchange_info(USDM, ["BTCUSDT"])
    assert list(filters) == ["BTCUSDT"]
    btc = filters["BTCUSDT"]
    assert (btc.tick_size, btc.step_size, btc.min_qty, btc.min_notional) == (
        Decimal("0.10"),
        Decimal("0.001"),
        Decimal("0.001"),
        Decimal("100"),
    )
    assert set(parse_exchange_info(USDM)) == {"BTCUSDT", "ETHUSDT"}  # no selection: every symbol


def test_spot_document() -> None:
    btc = parse_exchange_info({"symbols": [SPOT_BTC]}, ["BTCUSDT"])["BTCUSDT"]
    assert btc.tick_size == Decimal("0.01") and btc.step_size == Decimal("0.00001")
    assert btc.min_notional == Decimal("5")


def test_the_replay_fixtures_document_parses(shared_dir: Path) -> None:
    for name, venue, tick in (
        ("usdm_btcusdt_20240808", "binance-usdm", 0.1),
        ("spot_btcusdt_20240808", "binance-spot", 0.01),
    ):
        server = ReplayServer([shared_dir / f"data/binance/ws/{name}.jsonl.gz"], max_lines=50)
        doc = orjson.loads(server.exchange_info_document())
        filters = parse_exchange_info(doc, ["BTCUSDT"])["BTCUSDT"]
        assert float(filters.tick_size) == tick
        assert (float(filters.step_size), float(filters.min_notional)) == EXCHANGE_FILTERS[(venue, "BTCUSDT")][1::2]


@pytest.mark.parametrize(
    ("doc", "symbols", "match"),
    [
        ([], None, "'symbols' list"),
        ({"symbols": {}}, None, "'symbols' list"),
        ({"symbols": ["BTCUSDT"]}, None, "not an object"),
        (USDM, ["BTCUSDT", "SOLUSDT"], "no entry for SOLUSDT"),
        (
            {"symbols": [{"symbol": "XUSDT", "filters": [{"filterType": "LOT_SIZE", "stepSize": "1", "minQty": "1"}]}]},
            None,
            "XUSDT.*PRICE_FILTER.tickSize",
        ),
        (
            {"symbols": [{"symbol": "XUSDT", "filters": [
                {"filterType": "PRICE_FILTER", "tickSize": "0"}, {"filterType": "LOT_SIZE", "stepSize": "1", "minQty": "1"}]}]},
            None,
            "XUSDT.*tick_size",
        ),
    ],
)  # fmt: skip
def test_bad_documents_name_the_problem(doc: Any, symbols: list[str] | None, match: str) -> None:
    with pytest.raises(ExchangeInfoError, match=match):
        parse_exchange_info(doc, symbols)


def test_cache_refresh_cycle() -> None:
    cache = ExchangeInfoCache(refresh_s=86400.0)
    assert cache.due(0.0) and cache.age(0.0) is None
    assert cache.update(USDM, ["BTCUSDT"], now=10.0) is False  # first load: nothing changed
    assert cache.tick_sizes() == {"BTCUSDT": 0.1} and cache.step_sizes() == {"BTCUSDT": 0.001}
    assert not cache.due(10.0 + 86399.0) and cache.due(10.0 + 86400.0)
    assert cache.age(110.0) == 100.0
    assert cache.update(USDM, ["BTCUSDT"], now=20.0) is False  # same ticks
    finer = {"symbols": [dict(USDM["symbols"][0], filters=[
        {"filterType": "PRICE_FILTER", "tickSize": "0.01"}, {"filterType": "LOT_SIZE", "stepSize": "0.001", "minQty": "0.001"}])]}  # fmt: skip
    assert cache.update(finer, ["BTCUSDT"], now=30.0) is True
    assert cache.tick_sizes() == {"BTCUSDT": 0.01}
    with pytest.raises(ExchangeInfoError):
        cache.update({"symbols": []}, ["BTCUSDT"], now=40.0)
    assert cache.tick_sizes() == {"BTCUSDT": 0.01} and cache.loaded_at == 30.0  # the last good one stays
