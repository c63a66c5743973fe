"""Request signing against Binance's own documented example, the exact string that is sent, clock sync,
and the formatting of quantities and prices (what goes into the signed string).

The reference values are Binance's: REST API docs, "SIGNED Endpoint Examples for POST /api/v3/order"
(binance/binance-spot-api-docs, rest-api.md), computed there with ``echo -n … | openssl dgst -sha256 -hmac``.
"""

from __future__ import annotations

import asyncio
import math
from decimal import Decimal

import pytest

from tradeplane.engine.decision.types import Intent
from tradeplane.engine.trading.ids import is_ours
from tradeplane.workloads.venues import (
    Credentials,
    OcoSpec,
    OrderSpec,
    OrderType,
    OrderValidationError,
    ServerClock,
    SymbolFilters,
    TimeInForce,
    VenueAdapter,
    entry_order,
    hmac_signature,
    oco_list_id,
    protective_orders,
    signed_query,
)
from tradeplane.workloads.venues.binance_errors import RequestInfo
from tradeplane.workloads.venues.binance_rest import BinanceConfig, BinanceSpotVenue, BinanceUsdmVenue
from tradeplane.workloads.venues.filters import plain

DOC_API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
DOC_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
DOC_TOTAL_PARAMS = (
    "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
)
#: Examples 1 and 2 (request body, query string).
DOC_SIGNATURE = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
#: Example 3: query "…&timeInForce=GTC" + body "quantity=1&…" concatenated without "&".
DOC_MIXED_TOTAL_PARAMS = (
    "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTCquantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
)
DOC_MIXED_SIGNATURE = "0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77"


def test_signature_matches_binance_documented_example() -> None:
    assert hmac_signature(DOC_TOTAL_PARAMS, DOC_SECRET) == DOC_SIGNATURE
    assert hmac_signature(DOC_MIXED_TOTAL_PARAMS, DOC_SECRET) == DOC_MIXED_SIGNATURE


def test_signed_query_is_the_documented_request() -> None:
    params = [("symbol", "LTCBTC"), ("side", "BUY"), ("type", "LIMIT"), ("timeInForce", "GTC")]
    params += [("quantity", "1"), ("price", "0.1")]
    q = signed_query(params, Credentials(DOC_API_KEY, DOC_SECRET), timestamp_ms=1499827319559, recv_window_ms=5000)
    assert q == f"{DOC_TOTAL_PARAMS}&signature={DOC_SIGNATURE}"


def test_a_wrong_secret_gives_another_signature() -> None:
    assert hmac_signature(DOC_TOTAL_PARAMS, DOC_SECRET[:-1] + "k") != DOC_SIGNATURE


def test_signed_query_refuses_signer_fields_and_a_too_long_recv_window() -> None:
    creds = Credentials("k", "s")
    with pytest.raises(ValueError, match="timestamp"):
        signed_query([("timestamp", "1")], creds, timestamp_ms=1, recv_window_ms=5000)
    with pytest.raises(ValueError, match="recvWindow"):
        signed_query([], creds, timestamp_ms=1, recv_window_ms=60_001)
    with pytest.raises(ValueError, match="recv_window_ms"):
        BinanceConfig("spot", "k", "s", recv_window_ms=0)


def test_the_secret_never_shows() -> None:
    creds = Credentials(DOC_API_KEY, DOC_SECRET)
    cfg = BinanceConfig("spot", DOC_API_KEY, DOC_SECRET)
    for text in (repr(creds), str(creds), repr(cfg)):
        assert DOC_SECRET not in text
    assert DOC_API_KEY not in repr(creds)  # masked to its ends
    info = RequestInfo.of("POST", "/api/v3/order", [("symbol", "BTCUSDT"), ("signature", DOC_SIGNATURE)])
    assert DOC_SIGNATURE not in str(info) and ("signature", DOC_SIGNATURE) not in info.params


def test_from_env_names_the_missing_variable() -> None:
    with pytest.raises(ValueError, match="BINANCE_API_SECRET"):
        BinanceConfig.from_env("usdm", env={"BINANCE_API_KEY": "k"})
    cfg = BinanceConfig.from_env("usdm", env={"BINANCE_API_KEY": "k", "BINANCE_API_SECRET": "s"}, symbols=("BTCUSDT",))
    assert (cfg.market, cfg.api_key, cfg.venue) == ("usdm", "k", "binance-usdm")


def test_server_clock_offset_is_measured_from_the_round_trip_midpoint() -> None:
    local = [1_000_000.0]

    def local_ms() -> float:
        return local[0]

    async def server_time() -> int:
        local[0] += 40.0  # 80 ms round trip, the server answers at the midpoint
        t = int(local[0] + 2_500)  # the server is 2.5 s ahead
        local[0] += 40.0
        return t

    clock = ServerClock(local_ms)
    offset = asyncio.run(clock.sync(server_time))
    assert offset == pytest.approx(2_500.0)
    assert clock.rtt_ms == pytest.approx(80.0)
    assert clock.now_ms() == int(local[0] + 2_500)


# --- numbers in the signed string ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "text"),
    [(Decimal("1E-5"), "0.00001"), (Decimal("1E+2"), "100"), (Decimal("64000.10"), "64000.1"), (Decimal(0), "0")],
)
def test_plain_never_uses_exponents(value: Decimal, text: str) -> None:
    assert plain(value) == text


def test_spot_filters_round_quantities_down_and_prices_to_the_nearest_tick() -> None:
    f = SymbolFilters.from_engine("binance-spot", "BTCUSDT")  # tick 0.01, step 0.00001, min 0.00001, notional 5
    assert (f.step_size, f.tick_size, f.base_asset, f.quote_asset) == (
        Decimal("0.00001"),
        Decimal("0.01"),
        "BTC",
        "USDT",
    )
    assert plain(f.qty(1e-05)) == "0.00001"  # str(1e-05) is '1e-05': never sent like that
    assert plain(f.qty(0.0012399)) == "0.00123"
    assert plain(f.qty(0.1 + 0.2)) == "0.3"  # the float 0.30000000000000004 rounds down to the step
    assert plain(f.price(64000.125)) == "64000.13"
    assert plain(f.price(64000.124)) == "64000.12"
    with pytest.raises(OrderValidationError, match=r"qty: 4e-06 BTCUSDT rounds to 0"):
        f.qty(0.000004)
    with pytest.raises(OrderValidationError, match="below the minimum notional 5"):
        f.check_notional(Decimal("0.00001"), Decimal(60000))
    with pytest.raises(OrderValidationError, match="qty: nan is not finite"):
        f.qty(math.nan)


def test_exchange_info_filters_parse_spot_and_futures_shapes() -> None:
    spot = SymbolFilters.from_exchange_info(
        {
            "symbol": "ETHUSDT",
            "baseAsset": "ETH",
            "quoteAsset": "USDT",
            "filters": [
                {"filterType": "PRICE_FILTER", "tickSize": "0.01000000"},
                {"filterType": "LOT_SIZE", "stepSize": "0.00010000", "minQty": "0.00010000"},
                {"filterType": "NOTIONAL", "minNotional": "5.00000000"},
            ],
        }
    )
    assert (plain(spot.tick_size), plain(spot.step_size), plain(spot.min_notional)) == ("0.01", "0.0001", "5")
    fut = SymbolFilters.from_exchange_info(
        {
            "symbol": "BTCUSDT",
            "filters": [
                {"filterType": "PRICE_FILTER", "tickSize": "0.10"},
                {"filterType": "LOT_SIZE", "stepSize": "0.001", "minQty": "0.001"},
                {"filterType": "MIN_NOTIONAL", "notional": "100"},
            ],
        }
    )
    assert (fut.min_notional, fut.base_asset) == (Decimal(100), "BTC")
    with pytest.raises(ValueError, match=r"XRPUSDT: filter LOT_SIZE.stepSize missing"):
        SymbolFilters.from_exchange_info(
            {"symbol": "XRPUSDT", "filters": [{"filterType": "PRICE_FILTER", "tickSize": "1"}]}
        )


def test_order_parameters_in_binance_vocabulary() -> None:
    spot = BinanceSpotVenue(BinanceConfig("spot", "k", "s", symbols=("BTCUSDT",)))
    p = dict(
        spot.order_params(OrderSpec("tpe_abc", "BTCUSDT", -1, 0.00105, OrderType.STOP_MARKET, stop_price=57000.004))
    )
    assert p == {
        "symbol": "BTCUSDT",
        "side": "SELL",
        "type": "STOP_LOSS",
        "quantity": "0.00105",
        "stopPrice": "57000",
        "newClientOrderId": "tpe_abc",
        "newOrderRespType": "RESULT",
    }
    maker = dict(
        spot.order_params(
            OrderSpec("tpe_abc", "BTCUSDT", 1, 0.001, OrderType.LIMIT, price=59999.99, time_in_force=TimeInForce.GTX)
        )
    )
    assert (maker["type"], "timeInForce" in maker) == ("LIMIT_MAKER", False)
    fut = BinanceUsdmVenue(BinanceConfig("usdm", "k", "s", symbols=("BTCUSDT",)))
    p = dict(
        fut.order_params(
            OrderSpec("tps_abc", "BTCUSDT", -1, 0.0109, OrderType.STOP_MARKET, stop_price=57000.06, reduce_only=True)
        )
    )
    assert (p["type"], p["quantity"], p["stopPrice"], p["reduceOnly"], p["workingType"]) == (
        "STOP_MARKET", "0.01", "57000.1", "true", "CONTRACT_PRICE",
    )  # fmt: skip
    oco = dict(spot.oco_params(OcoSpec("BTCUSDT", -1, 0.001, 66000, 57000, "tpt_abc", "tps_abc", "tpl_abc")))
    assert (oco["aboveType"], oco["abovePrice"], oco["belowType"], oco["belowStopPrice"]) == (
        "LIMIT_MAKER", "66000", "STOP_LOSS", "57000",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"client_order_id": "bad id!"}, "client_order_id"),
        ({"side": 0}, "side"),
        ({"qty": -1}, "qty"),
        ({"order_type": OrderType.LIMIT}, "price"),
        ({"order_type": OrderType.STOP_MARKET}, "stop_price"),
        ({"price": 5.0}, "price"),
    ],
)
def test_order_spec_names_the_bad_field(kwargs: dict[str, object], field: str) -> None:
    base: dict[str, object] = {"client_order_id": "tpe_abc", "symbol": "BTCUSDT", "side": 1, "qty": 0.001}
    with pytest.raises(OrderValidationError, match=f"^{field}:"):
        OrderSpec(**(base | kwargs))  # type: ignore[arg-type]


def test_oco_spec_needs_the_take_profit_on_the_profit_side() -> None:
    with pytest.raises(OrderValidationError, match="take_profit_price: a SELL OCO needs the take-profit above"):
        OcoSpec("BTCUSDT", -1, 0.001, 55000, 57000, "tpt_a", "tps_a", "tpl_a")


def _intent(venue: str, oco: bool, side: int = 1) -> Intent:
    return Intent(
        intent_id="3f2a9c0d1b7e4a5f6c8d",
        signal_id="sig",
        strategy="s1",
        symbol="BTCUSDT",
        venue=venue,
        side=side,
        qty=0.01,
        notional_usdt=600.0,
        price=60000.0,
        stop_price=57000.0 if side == 1 else 63000.0,
        take_profit_price=66000.0 if side == 1 else 54000.0,
        leverage=1,
        oco=oco,
        exchange_ts=1,
        config_rev="r1",
    )


def test_an_intent_becomes_orders_under_its_derived_ids() -> None:
    entry = entry_order(_intent("binance-usdm", oco=False), order_type=OrderType.LIMIT, price=59990)
    assert (entry.client_order_id, entry.side, entry.qty, entry.price) == ("tpe_3f2a9c0d1b7e4a5f6c8d", 1, 0.01, 59990)
    fut = protective_orders(_intent("binance-usdm", oco=False, side=-1), 0.008)
    assert isinstance(fut, tuple)
    assert [(o.client_order_id, o.side, o.order_type, o.stop_price, o.reduce_only, o.qty) for o in fut] == [
        ("tps_3f2a9c0d1b7e4a5f6c8d", 1, OrderType.STOP_MARKET, 63000.0, True, 0.008),
        ("tpt_3f2a9c0d1b7e4a5f6c8d", 1, OrderType.TAKE_PROFIT_MARKET, 54000.0, True, 0.008),
    ]
    spot = protective_orders(_intent("binance-spot", oco=True), 0.01)
    assert spot == OcoSpec(
        "BTCUSDT", -1, 0.01, 66000.0, 57000.0, "tpt_3f2a9c0d1b7e4a5f6c8d", "tps_3f2a9c0d1b7e4a5f6c8d",
        oco_list_id("3f2a9c0d1b7e4a5f6c8d"),
    )  # fmt: skip
    assert not is_ours(oco_list_id("3f2a9c0d1b7e4a5f6c8d"))  # a list id is never mistaken for an order


def test_binance_adapters_are_venue_adapters() -> None:
    adapters: list[VenueAdapter] = [
        BinanceSpotVenue(BinanceConfig("spot", "k", "s")),
        BinanceUsdmVenue(BinanceConfig("usdm", "k", "s")),
    ]
    assert [a.venue for a in adapters] == ["binance-spot", "binance-usdm"]
