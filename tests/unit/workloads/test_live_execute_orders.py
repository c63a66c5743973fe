"""Live execute's pure conversions (workloads/live/execute_orders.py) against hand-computed values: client
ids, a child row → OrderSpec on the venue's grid, execution reports → the simulator's report and fill rows."""

from __future__ import annotations

import math
import re
from decimal import Decimal

import numpy as np
import pytest

from tradeplane.engine.sim.matching import new_order
from tradeplane.engine.sim.orders import (
    BUY,
    CANCELED,
    EXPIRED,
    LIMIT,
    MARKET,
    PARTIALLY_FILLED,
    POST_ONLY,
    REASON_POST_ONLY_WOULD_CROSS,
    REASON_USER_CANCEL,
    REDUCE_ONLY,
    SELL,
)
from tradeplane.workloads.live.execute_orders import (
    account_prefix,
    client_order_id,
    fill_row,
    order_spec,
    parse_client_order_id,
    report_row,
    venue_qty,
)
from tradeplane.workloads.venues import ExecutionReport, OrderType, OrderValidationError, SymbolFilters, TimeInForce

USDM_BTC = SymbolFilters.from_engine("binance-usdm", "BTCUSDT")  # tick 0.1, step 0.001, min notional 100
BINANCE_ID = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")


def _report(**kw: object) -> ExecutionReport:
    base: dict[str, object] = dict(venue="binance-usdm", symbol="BTCUSDT", client_order_id="x", venue_order_id="1",
                                   side=BUY, order_type="LIMIT", exec_type="TRADE", status="PARTIALLY_FILLED",
                                   qty=0.001, price=60000.1, cum_qty=0.001, order_qty=0.003, avg_price=60000.1, fee=0.024,
                                   fee_asset="USDT", fee_quote=0.024, is_maker=True, trade_id="5001",
                                   exchange_ts=1_700_000_000_123_000_000)  # fmt: skip
    base.update(kw)
    return ExecutionReport(**base)  # type: ignore[arg-type]


# --- client ids --------------------------------------------------------------------------------------------------
def test_client_id_layout_is_deterministic_and_within_binance_rules() -> None:
    largest = client_order_id("live-acct", (1 << 63) - 1, 0xFFFF_FFFF)
    assert len(largest) == 36 and BINANCE_ID.match(largest)
    coid = client_order_id("live-acct", 0x1F, 10)
    assert coid == f"{account_prefix('live-acct')}1f-a" and coid.startswith("tpl-")
    assert client_order_id("live-acct", 0x1F, 10) == coid  # the same order always has the same id
    assert parse_client_order_id("live-acct", coid) == (0x1F, 10)
    assert parse_client_order_id("other-acct", coid) is None  # another account's prefix
    assert account_prefix("live-acct") != account_prefix("other-acct")
    assert parse_client_order_id("live-acct", "tpe_3f2a9c0d1b7e4a5f6c8d") is None  # a TradeBook leg id
    with pytest.raises(ValueError):
        client_order_id("live-acct", 1, 0)


# --- child row → OrderSpec -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("qty", "expected"), [(0.30000000000000004, "0.3"), (0.0029999999999999996, "0.003"),
                                               (0.0037, "0.003"), (1.0, "1")])  # fmt: skip
def test_quantities_are_whole_steps_despite_float_noise(qty: float, expected: str) -> None:
    assert venue_qty(qty, Decimal("0.001")) == Decimal(expected)


def test_market_child_becomes_a_market_order_with_the_quantity_on_the_step() -> None:
    row = new_order(7, SELL, 0.0029999999999999996, type=MARKET, symbol=0)[0]
    spec = order_spec(row, "tpl-abc-1-7", "BTCUSDT", 0.1, USDM_BTC)
    assert (spec.order_type, spec.side, spec.qty, spec.price, spec.reduce_only) == (
        OrderType.MARKET, SELL, Decimal("0.003"), None, False)  # fmt: skip
    assert spec.client_order_id == "tpl-abc-1-7" and spec.symbol == "BTCUSDT"


def test_post_only_child_becomes_a_gtx_limit_at_its_tick_price() -> None:
    row = new_order(8, BUY, 0.002, price_tick=600001, tif=POST_ONLY, symbol=0)[0]  # 600001 × 0.1 = 60000.1
    spec = order_spec(row, "tpl-abc-1-8", "BTCUSDT", 0.1, USDM_BTC)
    assert (spec.order_type, spec.time_in_force, spec.price, spec.qty) == (
        OrderType.LIMIT, TimeInForce.GTX, Decimal("60000.1"), Decimal("0.002"))  # fmt: skip


def test_reduce_only_flag_and_gtc_limit_carry_over() -> None:
    row = new_order(9, SELL, 0.01, type=LIMIT, price_tick=123456, flags=REDUCE_ONLY, symbol=0)[0]
    spec = order_spec(row, "tpl-abc-1-9", "BTCUSDT", 0.1, USDM_BTC)
    assert (spec.reduce_only, spec.time_in_force, spec.price) == (True, TimeInForce.GTC, Decimal("12345.6"))


def test_a_child_below_one_step_is_refused_before_sending() -> None:
    row = new_order(10, BUY, 0.0009, type=MARKET, symbol=0)[0]
    with pytest.raises(OrderValidationError, match="qty"):
        order_spec(row, "tpl-abc-1-a", "BTCUSDT", 0.1, USDM_BTC)


# --- venue → report and fill rows ----------------------------------------------------------------------------------
def test_execution_report_becomes_the_simulators_report_row() -> None:
    child = new_order(8, BUY, 0.003, price_tick=600001, tif=POST_ONLY, symbol=2)[0]
    child["local_ts"] = 1_700_000_000_000_000_000
    row = report_row(child, _report())[0]
    assert (int(row["order_id"]), int(row["symbol"]), int(row["side"]), int(row["status"])) == (8, 2, BUY,
                                                                                               PARTIALLY_FILLED)  # fmt: skip
    assert (float(row["qty"]), float(row["filled"]), float(row["avg_px"])) == (0.003, 0.001, 60000.1)
    assert int(row["update_ts"]) == int(row["exch_ts"]) == 1_700_000_000_123_000_000
    assert int(row["local_ts"]) == 1_700_000_000_000_000_000 and int(row["price_tick"]) == 600001
    cancelled = report_row(child, _report(qty=0.0, status="CANCELED", exec_type="CANCELED"), cancel_sent=True)[0]
    assert (int(cancelled["status"]), int(cancelled["reason"]), float(cancelled["filled"])) == (
        CANCELED, REASON_USER_CANCEL, 0.001)  # fmt: skip
    expired = report_row(child, _report(qty=0.0, cum_qty=0.0, status="EXPIRED", avg_price=math.nan))[0]
    assert (int(expired["status"]), int(expired["reason"])) == (EXPIRED, REASON_POST_ONLY_WOULD_CROSS)


def test_fill_row_takes_the_venues_quote_fee_or_estimates_a_non_quote_one() -> None:
    child = new_order(3, SELL, 0.002, type=MARKET, symbol=1)[0]
    f = fill_row(child, _report(side=SELL, qty=0.002, price=60000.0, fee_quote=0.048, is_maker=False),
                 local_ts=42, mid_at_send=59999.95, fee_bps=5.0)[0]  # fmt: skip
    assert (int(f["order_id"]), int(f["symbol"]), int(f["side"]), int(f["maker"])) == (3, 1, SELL, 0)
    assert (float(f["px"]), float(f["qty"]), float(f["fee"])) == (60000.0, 0.002, 0.048)
    assert (int(f["exch_ts"]), int(f["local_ts"]), float(f["mid_at_send"])) == (1_700_000_000_123_000_000, 42, 59999.95)
    bnb = fill_row(child, _report(qty=0.002, price=60000.0, fee_quote=math.nan), local_ts=0, mid_at_send=np.nan,
                   fee_bps=5.0)[0]  # fmt: skip
    assert float(bnb["fee"]) == pytest.approx(60000.0 * 0.002 * 5.0 / 1e4)  # 0.06 USDT
