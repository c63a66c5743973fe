"""The Binance venue adapters against a local Binance (tests/fixtures/binance_venue.py) that checks signatures,
recvWindow, weights and client order ids the way Binance documents them.

What each test proves is what the fixture *saw*: how many orders exist per client order id, which error codes
it answered, how many 429/418 it had to send. Async code runs under ``asyncio.run`` (no plugin needed).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, TypeVar

import pytest

from tests.fixtures.binance_venue import FakeBinance, fake_binance
from tradeplane.engine.decision.types import Intent
from tradeplane.engine.trading.ids import ENTRY, STOP, TAKE_PROFIT, client_order_id
from tradeplane.engine.trading.lifecycle import TradeBook, TradeState
from tradeplane.engine.trading.reconcile import OrphanPolicy, VenueOrder, VenuePosition, apply_report, reconcile
from tradeplane.engine.trading.records import to_records, trade_book_from_records
from tradeplane.workloads.venues import (
    BinanceAuthError,
    BinanceConfig,
    BinanceEndpointMovedError,
    BinanceRateLimitError,
    BinanceVenue,
    ExecutionReport,
    OcoSpec,
    OrderRejectedError,
    OrderSpec,
    OrderType,
    Placement,
    ServerClock,
    UnsupportedOrderError,
    binance_venue,
    entry_order,
    protective_orders,
)

T = TypeVar("T")
INTENT = "3f2a9c0d1b7e4a5f6c8d"


def venue(fake: FakeBinance, **kw: Any) -> BinanceVenue:
    opts: dict[str, Any] = {
        "symbols": ("BTCUSDT",),
        "base_url": fake.base_url,
        "ws_url": fake.ws_url,
        "ws_api_url": fake.ws_api_url,
        "timeout_s": 2.0,
        "settle_s": 0.05,
        "poll_interval_s": 0.05,
    } | kw
    clock = opts.pop("clock", None)
    return binance_venue(BinanceConfig(fake.market, fake.api_key, opts.pop("secret", fake.secret), **opts), clock=clock)


def run(body: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(body(), 60))


async def reports_until(
    v: BinanceVenue, done: Callable[[list[ExecutionReport]], bool], timeout_s: float = 5.0
) -> list[ExecutionReport]:
    got: list[ExecutionReport] = []
    deadline = time.monotonic() + timeout_s
    while not done(got) and time.monotonic() < deadline:
        got += await v.next_reports(0.2)
    return got


def market(coid: str, side: int, qty: float, **kw: Any) -> OrderSpec:
    return OrderSpec(coid, "BTCUSDT", side, qty, **kw)


# --- signing, clock ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("stream_api", ["ws-api", "listen-key"])
def test_market_order_with_stream_fill_and_exact_decimal_quantity(stream_api: str) -> None:
    with fake_binance(market="spot") as fake:

        async def body() -> list[ExecutionReport]:
            async with venue(fake, stream_api=stream_api) as v:
                ack = await v.submit(market(client_order_id(INTENT, ENTRY), 1, 1e-05))
                assert (ack.placement, ack.status, ack.order.filled_qty) == (Placement.PLACED, "FILLED", 1e-05)
                assert ack.venue_order_id and ack.exchange_ts > 0 and ack.ack_ts >= ack.send_ts
                return await reports_until(v, lambda r: any(x.is_fill for x in r))

        reports = run(body)
        fills = [r for r in reports if r.is_fill]
        assert len(fills) == 1
        f = fills[0]
        assert (f.client_order_id, f.qty, f.price, f.status, f.exec_type) == (
            "tpe_" + INTENT,
            1e-05,
            60000.0,
            "FILLED",
            "TRADE",
        )
        assert f.trade_id and f.fee_asset == "BNB" and not f.is_maker and f.source == "stream"
        assert math.isnan(f.fee_quote)  # paid in BNB: not convertible without a BNB price
        placed = fake.orders(client_order_id="tpe_" + INTENT)
        assert len(placed) == 1 and placed[0].qty == Decimal("0.00001")  # sent as "0.00001", never "1e-05"
        if stream_api == "ws-api":  # one signed subscription, no listenKey
            assert fake.count("WS", "/ws-api/v3", status=200) == 1 and fake.listen_keys == {}
        else:
            assert fake.count("POST", "/api/v3/userDataStream", status=200) == 1


def test_wrong_secret_is_rejected_with_1022_and_a_clear_error() -> None:
    with fake_binance(market="usdm") as fake:

        async def body() -> BinanceAuthError:
            v = venue(fake, secret="not-the-secret", user_stream=False)
            await v.start()  # public endpoints work without a valid signature
            try:
                with pytest.raises(BinanceAuthError) as e:
                    await v.submit(market("tpe_" + INTENT, 1, 0.01))
                return e.value
            finally:
                await v.close()

        err = run(body)
        assert (err.status, err.code) == (400, -1022)
        assert "Signature for this request is not valid." in str(err)
        assert "POST /fapi/v1/order" in str(err) and "newClientOrderId=tpe_" + INTENT in str(err)
        assert "not-the-secret" not in str(err) and "signature=" not in str(err)
        assert fake.orders() == [] and fake.count("POST", "/fapi/v1/order", code=-1022) == 1


def test_ws_api_subscription_with_a_wrong_secret_fails_start_clearly() -> None:
    with fake_binance(market="spot") as fake:

        async def body() -> ConnectionError:
            with pytest.raises(ConnectionError) as e:
                async with venue(fake, secret="not-the-secret", timeout_s=1.0):
                    pass
            return e.value

        err = run(body)
        assert "-1022" in str(err) and "Signature for this request is not valid." in str(err)
        assert "not-the-secret" not in str(err)
        assert fake.count("WS", "/ws-api/v3", code=-1022) >= 1


def test_client_clock_skew_is_resynced_and_the_request_retried_once() -> None:
    skew = [0.0]
    clock = ServerClock(lambda: time.time() * 1000 + skew[0])
    with fake_binance(market="spot") as fake:

        async def body() -> BinanceVenue:
            async with venue(fake, clock=clock, user_stream=False, recv_window_ms=5000) as v:
                skew[0] = -20_000.0  # the host clock jumps 20 s back: timestamps fall outside recvWindow
                ack = await v.submit(market("tpe_" + INTENT, 1, 0.001))
                assert ack.placement is Placement.PLACED
                return v

        v = run(body)
        assert fake.count("POST", "/api/v3/order", code=-1021) == 1
        assert fake.count("POST", "/api/v3/order", status=200) == 1
        assert v.rest.resyncs == 1 and clock.offset_ms == pytest.approx(20_000, abs=500)
        assert len(fake.orders()) == 1


# --- weights ------------------------------------------------------------------------------------------------------
def test_throttles_before_the_limit_so_no_429_is_ever_sent() -> None:
    limits = [{"rateLimitType": "REQUEST_WEIGHT", "interval": "SECOND", "intervalNum": 1, "limit": 30}]
    with fake_binance(market="usdm", rate_limits=limits) as fake:

        async def body() -> BinanceVenue:
            async with venue(fake, user_stream=False) as v:  # exchangeInfo tells it the limit
                for _ in range(70):
                    await v.rest.server_time_ms()
                return v

        t0 = time.monotonic()
        v = run(body)
        elapsed = time.monotonic() - t0
        assert (
            fake.count("GET", "/fapi/v1/time", status=429) == 0 and fake.count("GET", "/fapi/v1/time", status=418) == 0
        )
        assert fake.count("GET", "/fapi/v1/time", status=200) == 71  # 70 + start's sync, nothing retried
        assert v.rest.limiter.throttled >= 2 and elapsed >= 1.0  # 72 weight (with exchangeInfo), 27 per 1 s window


def test_honours_retry_after_when_a_429_happens() -> None:
    limits = [{"rateLimitType": "REQUEST_WEIGHT", "interval": "SECOND", "intervalNum": 2, "limit": 10}]
    with fake_binance(market="usdm", rate_limits=limits) as fake:

        async def body() -> tuple[BinanceVenue, BinanceRateLimitError, int]:
            # exchangeInfo not loaded: the adapter believes Binance's default 2400/min and runs into the 429
            async with venue(fake, user_stream=False, load_exchange_info=False, rate_limit_retries=0) as v:
                ok = 0
                with pytest.raises(BinanceRateLimitError) as e:
                    for _ in range(20):
                        await v.rest.server_time_ms()
                        ok += 1
                for _ in range(5):  # the limiter now holds every request until Retry-After has passed
                    await v.rest.server_time_ms()
                return v, e.value, ok

        t0 = time.monotonic()
        v, err, ok = run(body)
        assert ok in (9, 10)  # 10 per window, start's clock sync may have used one of them
        assert err.status == 429 and err.code == -1003 and err.retry_after_s is not None and err.retry_after_s >= 1
        assert fake.count("GET", "/fapi/v1/time", status=429) == 1
        assert fake.count("GET", "/fapi/v1/time", status=418) == 0  # never sent during the back-off
        assert v.rest.limiter.hits_429 == 1 and time.monotonic() - t0 >= err.retry_after_s
        assert fake.count("GET", "/fapi/v1/time", status=200) == 1 + ok + 5


def test_429_is_waited_out_and_retried_transparently() -> None:
    limits = [{"rateLimitType": "REQUEST_WEIGHT", "interval": "SECOND", "intervalNum": 1, "limit": 5}]
    with fake_binance(market="usdm", rate_limits=limits) as fake:

        async def body() -> None:
            async with venue(fake, user_stream=False, load_exchange_info=False) as v:
                for _ in range(12):
                    await v.rest.server_time_ms()

        run(body)
        assert fake.count("GET", "/fapi/v1/time", status=200) == 13
        assert fake.count("GET", "/fapi/v1/time", status=418) == 0


# --- idempotency ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("market_name", ["spot", "usdm"])
def test_timeout_after_the_order_was_placed_recovers_it_without_a_second_order(market_name: str) -> None:
    with fake_binance(market=market_name) as fake:
        path = "/api/v3/order" if market_name == "spot" else "/fapi/v1/order"
        fake.inject_timeout("POST", path, delay_s=2.0)
        coid = "tpe_" + INTENT

        async def body() -> tuple[Any, BinanceVenue]:
            async with venue(fake, user_stream=False, timeout_s=0.5) as v:
                return await v.submit(market(coid, 1, 0.01)), v

        ack, v = run(body)
        assert ack.placement is Placement.RECOVERED and ack.status == "FILLED" and ack.client_order_id == coid
        assert len(fake.orders(client_order_id=coid)) == 1 and len(fake.orders()) == 1
        assert v.counts["resent"] == 0


def test_5xx_before_processing_is_resent_under_the_same_id_exactly_once() -> None:
    with fake_binance(market="usdm") as fake:
        fake.inject_error("POST", "/fapi/v1/order", status=503, process=False)
        coid = "tpe_" + INTENT

        async def body() -> tuple[Any, BinanceVenue]:
            async with venue(fake, user_stream=False) as v:
                return await v.submit(market(coid, 1, 0.01)), v

        ack, v = run(body)
        assert ack.placement is Placement.PLACED and v.counts["resent"] == 1
        assert fake.count("POST", "/fapi/v1/order", status=503) == 1
        assert [o.client_order_id for o in fake.orders()] == [coid]


def test_5xx_after_processing_is_found_by_query() -> None:
    with fake_binance(market="spot") as fake:
        fake.inject_error("POST", "/api/v3/order", status=503, process=True)

        async def body() -> Any:
            async with venue(fake, user_stream=False) as v:
                return await v.submit(market("tpe_" + INTENT, 1, 0.001, order_type=OrderType.LIMIT, price=59000))

        ack = run(body)
        assert ack.placement is Placement.RECOVERED and ack.status == "NEW"
        assert len(fake.orders()) == 1


@pytest.mark.parametrize("market_name", ["spot", "usdm"])
def test_duplicate_client_order_id_is_treated_as_placed(market_name: str) -> None:
    with fake_binance(market=market_name) as fake:
        spec = market("tpe_" + INTENT, 1, 0.01, order_type=OrderType.LIMIT, price=59000)

        async def body() -> tuple[Any, Any]:
            async with venue(fake, user_stream=False) as v:
                first = await v.submit(spec)
            async with venue(fake, user_stream=False) as again:  # e.g. a restarted process replaying the intent
                second = await again.submit(spec)
            return first, second

        first, second = run(body)
        dup_code = -2010 if market_name == "spot" else -4116
        assert first.placement is Placement.PLACED and second.placement is Placement.DUPLICATE
        assert second.order == first.order and second.venue_order_id == first.venue_order_id
        path = "/api/v3/order" if market_name == "spot" else "/fapi/v1/order"
        assert fake.count("POST", path, code=dup_code) == 1
        assert len(fake.orders(client_order_id=spec.client_order_id)) == 1


# --- order types -------------------------------------------------------------------------------------------------
def test_spot_oco_pair_one_leg_filling_cancels_the_other() -> None:
    with fake_binance(market="spot") as fake:
        tp, stop = client_order_id(INTENT, TAKE_PROFIT), client_order_id(INTENT, STOP)

        async def body() -> tuple[list[VenueOrder], list[VenueOrder], VenueOrder | None, list[ExecutionReport]]:
            async with venue(fake) as v:
                await v.submit(market(client_order_id(INTENT, ENTRY), 1, 0.01))
                tp_ack, stop_ack = await v.submit_oco(
                    OcoSpec("BTCUSDT", -1, 0.01, 66000, 57000, tp, stop, f"tpl_{INTENT}")
                )
                assert (tp_ack.client_order_id, stop_ack.client_order_id) == (tp, stop)
                before = await v.open_orders("BTCUSDT")
                fake.fill("BTCUSDT", tp)  # the take-profit trades: the stop must go
                await asyncio.sleep(0.1)
                after = await v.open_orders("BTCUSDT")
                stop_state = await v.order_status("BTCUSDT", stop)
                reports = await reports_until(v, lambda r: {x.client_order_id for x in r if x.is_final} >= {tp, stop})
                return before, after, stop_state, reports

        before, after, stop_state, reports = run(body)
        assert sorted((o.client_order_id, o.side, o.qty, o.price) for o in before) == [
            (stop, -1, 0.01, 57000.0),
            (tp, -1, 0.01, 66000.0),
        ]
        assert [o.type for o in fake.orders() if o.list_id > 0] == ["LIMIT_MAKER", "STOP_LOSS"]
        assert after == [] and stop_state is not None and stop_state.status == "EXPIRED"
        final = {r.client_order_id: r for r in reports if r.is_final}
        assert final[tp].status == "FILLED" and final[tp].is_fill and final[tp].is_maker
        assert final[stop].status == "EXPIRED" and not final[stop].is_fill


def test_futures_reduce_only_stop_and_take_profit() -> None:
    with fake_binance(market="usdm") as fake:
        stop, tp = client_order_id(INTENT, STOP), client_order_id(INTENT, TAKE_PROFIT)

        async def body() -> dict[str, Any]:
            out: dict[str, Any] = {}
            async with venue(fake) as v:
                await v.submit(market(client_order_id(INTENT, ENTRY), 1, 0.01))
                await v.submit(
                    market(stop, -1, 0.01, order_type=OrderType.STOP_MARKET, stop_price=57000, reduce_only=True)
                )
                await v.submit(
                    market(tp, -1, 0.01, order_type=OrderType.TAKE_PROFIT_MARKET, stop_price=66000, reduce_only=True)
                )
                out["positions"] = await v.positions()
                out["open"] = await v.open_orders()
                with pytest.raises(OrderRejectedError) as e:  # a reduce-only buy would grow a long
                    await v.submit(market("tpx_" + INTENT, 1, 0.01, reduce_only=True))
                out["reject"] = e.value
                with pytest.raises(UnsupportedOrderError):
                    await v.submit_oco(OcoSpec("BTCUSDT", -1, 0.01, 66000, 57000, tp, stop, "tpl_x"))
                fake.trigger("BTCUSDT", 56990)
                out["reports"] = await reports_until(
                    v, lambda r: any(x.client_order_id == stop and x.is_final for x in r)
                )
                out["after"] = await v.positions()
                out["cancelled"] = await v.cancel("BTCUSDT", tp)
                out["cancel_again"] = await v.cancel("BTCUSDT", tp)  # already final: returned as it is
            return out

        out = run(body)
        assert out["positions"] == [VenuePosition("BTCUSDT", 0.01, 60000.0)]
        assert {(o.client_order_id, o.status) for o in out["open"]} == {(stop, "NEW"), (tp, "NEW")}
        placed = {o.client_order_id: o for o in fake.orders()}
        assert placed[stop].reduce_only and placed[stop].type == "STOP_MARKET" and placed[stop].stop_price == 57000
        assert placed[tp].reduce_only and placed[tp].type == "TAKE_PROFIT_MARKET"
        assert out["reject"].code == -2022 and "ReduceOnly" in str(out["reject"])
        fill = next(r for r in out["reports"] if r.client_order_id == stop and r.is_fill)
        assert (fill.qty, fill.price, fill.reduce_only, fill.fee_asset) == (0.01, 56990.0, True, "USDT")
        assert fill.fee_quote == pytest.approx(0.01 * 56990 * 0.0004)
        assert fill.realized_pnl == pytest.approx(0.01 * (56990 - 60000))
        assert out["after"] == []
        assert out["cancelled"].status == "CANCELED" and out["cancel_again"].status == "CANCELED"


def test_conditional_order_moved_to_the_algo_api_is_a_clear_error() -> None:
    with fake_binance(market="usdm", conditional_moved=True) as fake:

        async def body() -> BinanceEndpointMovedError:
            async with venue(fake, user_stream=False) as v:
                with pytest.raises(BinanceEndpointMovedError) as e:
                    await v.submit(
                        market("tps_" + INTENT, -1, 0.01, order_type=OrderType.STOP_MARKET, stop_price=57000)
                    )
                return e.value

        err = run(body)
        assert err.code == -4120 and "Algo Order API" in str(err)


@pytest.mark.parametrize("actual_id", ["generated", "same"])
def test_futures_conditional_orders_through_the_algo_api(actual_id: str) -> None:
    """Binance moved USD-M conditional orders to /fapi/v1/algoOrder (the old endpoint answers -4120): stops
    are placed there under ``clientAlgoId``, listed, queried, cancelled, and the fill of the order a
    triggered stop places is reported once under the stop's id, whatever client id that order carries."""
    with fake_binance(market="usdm", conditional_moved=True, algo_actual_client_id=actual_id) as fake:
        stop, tp = client_order_id(INTENT, STOP), client_order_id(INTENT, TAKE_PROFIT)

        async def body() -> dict[str, Any]:
            out: dict[str, Any] = {}
            async with venue(fake, conditional_api="algo") as v:
                await v.submit(market(client_order_id(INTENT, ENTRY), 1, 0.01))
                for coid, kind, px in ((stop, OrderType.STOP_MARKET, 57000), (tp, OrderType.TAKE_PROFIT_MARKET, 66000)):
                    ack = await v.submit(market(coid, -1, 0.01, order_type=kind, stop_price=px, reduce_only=True))
                    assert ack.placement is Placement.PLACED and ack.status == "NEW"
                out["open"] = await v.open_orders("BTCUSDT")
                out["status"] = await v.order_status("BTCUSDT", stop)
                fake.trigger("BTCUSDT", 56990)
                out["reports"] = await reports_until(
                    v, lambda r: any(x.client_order_id == stop and x.is_final for x in r)
                )
                await asyncio.sleep(0.3)
                out["reports"] += await v.next_reports(0.2)
                out["positions"] = await v.positions()
                out["stop_after"] = await v.order_status("BTCUSDT", stop)
                out["cancelled"] = await v.cancel("BTCUSDT", tp)
            return out

        out = run(body)
        assert sorted((o.client_order_id, o.status, o.price) for o in out["open"]) == [
            (stop, "NEW", 57000.0),
            (tp, "NEW", 66000.0),
        ]
        assert out["status"].status == "NEW" and out["status"].qty == 0.01
        fills = [r for r in out["reports"] if r.is_fill and r.client_order_id == stop]
        assert len(fills) == 1 and (fills[0].qty, fills[0].price) == (0.01, 56990.0)
        assert fills[0].source == "stream" and fills[0].trade_id and fills[0].fee_quote > 0  # the stream's, with fee
        assert not any(r.client_order_id.startswith("fixtureauto") for r in out["reports"])  # never a second fill
        assert [r.status for r in out["reports"] if r.client_order_id == stop and r.is_final] == ["FILLED"]
        assert out["positions"] == []
        assert out["stop_after"].status == "FILLED" and out["stop_after"].filled_qty == 0.01
        assert out["cancelled"].status == "CANCELED" and out["cancelled"].client_order_id == tp
        assert fake.count("POST", "/fapi/v1/order", code=-4120) == 0  # never sent to the old endpoint
        assert fake.count("POST", "/fapi/v1/algoOrder", status=200) == 2
        algo = [o for o in fake.orders() if o.algo_status]
        assert sorted((o.client_order_id, o.algo_status) for o in algo) == [(stop, "FINISHED"), (tp, "CANCELED")]


def test_cancel_report_names_the_order_not_the_cancel_request() -> None:
    with fake_binance(market="spot") as fake:
        coid = "tpe_" + INTENT

        async def body() -> list[ExecutionReport]:
            async with venue(fake) as v:
                await v.submit(market(coid, 1, 0.001, order_type=OrderType.LIMIT, price=59000))
                cancelled = await v.cancel("BTCUSDT", coid)
                assert cancelled.client_order_id == coid and cancelled.status == "CANCELED"
                return await reports_until(v, lambda r: any(x.is_final for x in r))

        reports = run(body)
        final = [r for r in reports if r.is_final]
        assert [(r.client_order_id, r.status) for r in final] == [(coid, "CANCELED")]


def test_stream_keepalive_and_reconnect_catch_up_what_was_missed() -> None:
    with fake_binance(market="usdm") as fake:
        coid = "tpe_" + INTENT

        async def body() -> tuple[list[ExecutionReport], dict[str, Any]]:
            async with venue(fake, keepalive_s=0.2) as v:
                await v.submit(market(coid, 1, 0.01, order_type=OrderType.LIMIT, price=59000))
                await asyncio.sleep(0.5)
                await asyncio.to_thread(fake.disconnect_streams)
                fake.fill("BTCUSDT", coid)  # while the socket is down: the event is lost
                reports = await reports_until(v, lambda r: any(x.is_fill for x in r), timeout_s=8)
                for _ in range(100):  # the stream comes back (back-off 0.25-0.5 s) and catches up by polling
                    if v.streaming and v.health()["stream"]["connects"] >= 2:
                        break
                    await asyncio.sleep(0.05)
                reports += await v.next_reports(0.3)
                return reports, v.health()

        reports, health = run(body)
        fills = [r for r in reports if r.is_fill]
        assert len(fills) == 1 and fills[0].qty == 0.01 and fills[0].source == "poll"  # reported once, by the catch-up
        assert health["stream"]["connects"] >= 2 and health["stream"]["keepalives"] >= 1
        assert fake.count("PUT", "/fapi/v1/listenKey", status=200) >= 1


# --- crash recovery ----------------------------------------------------------------------------------------------
def _intent(venue_name: str, qty: float, oco: bool) -> Intent:
    return Intent(
        intent_id=INTENT,
        signal_id="sig",
        strategy="s1",
        symbol="BTCUSDT",
        venue=venue_name,
        side=1,
        qty=qty,
        notional_usdt=qty * 60000,
        price=60000.0,
        stop_price=57000.0,
        take_profit_price=66000.0,
        leverage=1 if oco else 5,
        oco=oco,
        exchange_ts=1,
        config_rev="r1",
    )


def _apply(book: TradeBook, reports: list[ExecutionReport]) -> None:
    for r in reports:
        if r.is_fill:
            fee = r.fee_quote if math.isfinite(r.fee_quote) else 0.0
            book.on_fill(r.client_order_id, r.qty, r.price, fee, r.exchange_ts)
        if r.is_final:
            book.on_order_final(r.client_order_id, r.status, r.exchange_ts)


@pytest.mark.parametrize(("market_name", "conditional_api"), [("usdm", "order"), ("usdm", "algo"), ("spot", "order")])
def test_crash_recovery_reconcile_finds_our_orders_and_is_clean(market_name: str, conditional_api: str) -> None:
    """Orders placed, the process dies, a new adapter and the restored book reconcile cleanly; a replayed
    intent sends nothing; a re-sent protective order is a duplicate, not a second order; fills after the
    restart (polled, no stream) close the trade."""
    with fake_binance(market=market_name, conditional_moved=conditional_api == "algo") as fake:
        intent = _intent(fake.venue, 0.01, oco=market_name == "spot")
        opts = {"conditional_api": conditional_api} if market_name == "usdm" else {}
        entry, stop, tp = (client_order_id(INTENT, leg) for leg in (ENTRY, STOP, TAKE_PROFIT))

        async def before_crash() -> list[dict[str, Any]]:
            book = TradeBook("s1")
            trade, created = book.open(intent, ts=1)
            assert created
            records = to_records(book)  # write-ahead, before the entry is sent
            async with venue(fake, **opts) as v:
                await v.submit(entry_order(intent))
                protect = protective_orders(intent, trade.target_qty)
                if isinstance(protect, OcoSpec):
                    await v.submit_oco(protect)
                else:
                    for spec in protect:
                        await v.submit(spec)
                _apply(book, await reports_until(v, lambda r: any(x.client_order_id == entry and x.is_fill for x in r)))
                assert trade.state is TradeState.ACTIVE and trade.filled_qty == pytest.approx(0.01)
                records = to_records(book)
            return records  # …and the process dies here

        async def after_restart(records: list[dict[str, Any]]) -> dict[str, Any]:
            book = trade_book_from_records(records, strategy="s1")
            out: dict[str, Any] = {}
            async with venue(fake, user_stream=False, **opts) as v:  # a fresh adapter; reports by polling
                orders, positions = await v.open_orders(), await v.positions()
                report = reconcile(book, orders, positions, OrphanPolicy.RECLAIM_IF_SAFE)
                out["orders"], out["positions"], out["report"] = orders, positions, report
                _, created = book.open(intent, ts=2)  # the intent is replayed from the bus
                out["replay_created"] = created
                again = (
                    await v.submit(
                        market(
                            stop, -1, intent.qty, order_type=OrderType.STOP_MARKET, stop_price=57000, reduce_only=True
                        )
                    )
                    if not intent.oco
                    else None
                )
                out["again"] = again
                fake.trigger("BTCUSDT", 56990)
                reports = await reports_until(v, lambda r: any(x.client_order_id == stop and x.is_fill for x in r))
                _apply(book, reports)
                out["trade"] = book.trade(INTENT)
                final = reconcile(book, await v.open_orders(), await v.positions(), OrphanPolicy.RECLAIM_IF_SAFE)
                out["final_report"], out["applied"] = final, apply_report(book, final, ts=3)
            return out

        records = run(before_crash)
        out = run(lambda: after_restart(records))
        report = out["report"]
        assert report.clean, report
        assert sorted(o.client_order_id for o in out["orders"]) == sorted([stop, tp])
        assert [(p.symbol, p.qty) for p in out["positions"]] == [("BTCUSDT", pytest.approx(0.01))]
        assert out["replay_created"] is False  # the book knows the intent: nothing is sent twice
        if out["again"] is not None:
            assert out["again"].placement is Placement.DUPLICATE
        for coid in (entry, stop, tp):
            assert len(fake.orders(client_order_id=coid)) == 1, coid  # no duplicates at the venue
        t = out["trade"]
        assert t.state is TradeState.CLOSED and t.close_reason == "stop"
        assert t.realized_pnl_usdt == pytest.approx(0.01 * (56990 - 60000), abs=0.5)  # less the entry fee
        final = out["final_report"]
        # what is left is the take-profit of the closed trade (futures have no OCO): the reconciler cancels it
        assert final.closed == () and final.flatten == ()
        assert final.cancel == (() if intent.oco else (tp,))
        assert out["applied"] == []  # nothing for the book to change: the trade is already closed
