"""Every RiskBudget limit is breached by a named order and respected by a sibling order that differs only in what
the limit measures; continuous limits move the phase and a sibling just below the line does not.

Limits are the example desk's (``examples/00-riskbudget.yaml``), all prices 100 so notional = 100 × qty and
every number below is exact in binary floating point: the "at the limit" siblings test the boundary (a value
exactly at its limit passes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from tradeplane.engine.risk import reasons
from tradeplane.engine.risk.engine import ACTIVE, HALTED, REDUCING, OrderRequest, RiskEngine

from .support import PAPER, SPOT, T0, USDM, S, config, engine, fill, order

Setup = Callable[[RiskEngine], None]


def _nothing(eng: RiskEngine) -> None:
    pass


def _gross_19000(eng: RiskEngine) -> None:
    # three markets, nets 7000 / 7000 / 5000 (each under 8000), margin 1900 at leverage 10
    fill(eng, 7000, strategy="a", symbol="BTCUSDT")
    fill(eng, 7000, strategy="b", symbol="ETHUSDT", side=-1)
    fill(eng, 5000, strategy="c", symbol="SOLUSDT")


def _btc_long_7000(eng: RiskEngine) -> None:
    fill(eng, 7000, strategy="a", symbol="BTCUSDT")


def _margin_3500(eng: RiskEngine) -> None:
    fill(eng, 7000, strategy="a", symbol="BTCUSDT", leverage=2)


def _spot_7000(eng: RiskEngine) -> None:
    fill(eng, 7000, strategy="a", venue=SPOT, symbol="BTCUSDT", leverage=1)


def _btc_entry_open(eng: RiskEngine) -> None:
    fill(eng, 1000, strategy="a", symbol="BTCUSDT")


def _sixty_orders(eng: RiskEngine) -> None:
    # one order per second from T0 − 59 s to T0: all 60 inside (T0 − 60 s, T0]
    for i in range(60):
        eng.record_order(order(10, strategy="r", symbol="XRPUSDT", is_entry=False, ts=T0 - (59 - i) * S))


@dataclass(frozen=True)
class LimitCase:
    setup: Setup
    breach: OrderRequest
    code: str
    detail: str
    sibling: OrderRequest
    note: str = field(default="")


LIMITS = {
    "order-notional": LimitCase(
        _nothing, order(1600), reasons.RISK_ORDER_NOTIONAL, "order 1600.0 > 1500.0 USDT", order(1500)
    ),
    "gross-notional": LimitCase(
        _gross_19000,
        order(1100, strategy="d", symbol="XRPUSDT"),
        reasons.RISK_GROSS_NOTIONAL,
        "gross 20100.0 > 20000.0 USDT after this order",
        order(1000, strategy="d", symbol="XRPUSDT"),
    ),
    "net-notional-per-symbol": LimitCase(
        # a spot buy of the same symbol adds to the perpetual long: net is per symbol across venues
        _btc_long_7000,
        order(1100, strategy="b", venue=SPOT, symbol="BTCUSDT", leverage=1),
        reasons.RISK_NET_NOTIONAL,
        "net BTCUSDT 8100.0 > 8000.0 USDT after this order",
        order(1000, strategy="b", venue=SPOT, symbol="BTCUSDT", leverage=1),
    ),
    "futures-margin": LimitCase(
        # 3500 + 1100 / 2 = 4050 > 4000; the sibling is the same notional at leverage 5: 3500 + 220
        _margin_3500,
        order(1100, strategy="b", symbol="ETHUSDT", leverage=2),
        reasons.RISK_FUTURES_MARGIN,
        "futures margin 4050.0 > 4000.0 USDT after this order (leverage 2)",
        order(1100, strategy="b", symbol="ETHUSDT", leverage=5),
    ),
    "spot-quote": LimitCase(
        _spot_7000,
        order(1100, strategy="b", venue=SPOT, symbol="ETHUSDT", leverage=1),
        reasons.RISK_SPOT_QUOTE,
        "spot quote 8100.0 > 8000.0 USDT after this order",
        order(1000, strategy="b", venue=SPOT, symbol="ETHUSDT", leverage=1),
    ),
    "concurrent-entries-per-market": LimitCase(
        # strategy a holds BTCUSDT on USD-M: b may enter the same symbol on another market, not this one
        _btc_entry_open,
        order(100, strategy="b", venue=USDM, symbol="BTCUSDT"),
        reasons.RISK_CONCURRENT_ENTRIES,
        "entries binance-usdm:BTCUSDT 2 > 1 after this order",
        order(100, strategy="b", venue=PAPER, symbol="BTCUSDT"),
    ),
    "orders-per-minute": LimitCase(
        # one second later the order sent at T0 − 59 s has left (ts − 60 s, ts]
        _sixty_orders,
        order(100),
        reasons.RISK_ORDER_RATE,
        f"orders 61 > 60 in the 60 s to ts={T0} after this order",
        order(100, ts=T0 + S),
    ),
}


@pytest.mark.parametrize("case", LIMITS.values(), ids=LIMITS.keys())
def test_each_pre_trade_limit_rejects_its_breach_and_passes_its_sibling(case: LimitCase) -> None:
    eng = engine()
    case.setup(eng)
    assert eng.phase == ACTIVE
    rejection = eng.check_order(case.breach)
    assert rejection is not None
    assert (rejection.reason, rejection.detail) == (case.code, case.detail)
    assert eng.check_order(case.sibling) is None


def test_the_matrix_covers_every_pre_trade_limit_code() -> None:
    pre_trade = {
        reasons.RISK_ORDER_NOTIONAL,
        reasons.RISK_GROSS_NOTIONAL,
        reasons.RISK_NET_NOTIONAL,
        reasons.RISK_FUTURES_MARGIN,
        reasons.RISK_SPOT_QUOTE,
        reasons.RISK_CONCURRENT_ENTRIES,
        reasons.RISK_ORDER_RATE,
    }
    assert {c.code for c in LIMITS.values()} == pre_trade


def test_check_order_records_nothing() -> None:
    eng = engine(config(limits={"max_orders_per_minute": 1}))
    for _ in range(3):
        assert eng.check_order(order(100)) is None
    assert eng.usage()["orders_last_minute"] == 0
    assert eng.ledger.working == []


def test_working_orders_count_as_filled_in_pre_trade_checks() -> None:
    """Ten entries sent in one tick must not each see the same free gross."""
    eng = engine()
    for i, sym in enumerate(("AAAUSDT", "BBBUSDT", "CCCUSDT", "DDDUSDT", "EEEUSDT")):
        req = order(1500, strategy=f"s{i}", symbol=sym)
        assert eng.check_order(req) is None
        eng.record_order(req, key=f"k{i}")
    fill(eng, 7000, strategy="x", symbol="FFFUSDT")
    fill(eng, 5000, strategy="y", symbol="GGGUSDT")
    # positions 12000 + working 7500 = 19500: one more 1000 breaches although the *filled* gross is 12000
    rejection = eng.check_order(order(1000, strategy="z", symbol="HHHUSDT"))
    assert rejection is not None and rejection.detail == "gross 20500.0 > 20000.0 USDT after this order"
    assert eng.usage()["gross_notional_usdt"] == 12000.0
    eng.order_done("s0", USDM, "AAAUSDT", "k0", T0)  # cancelled: its 1500 is free again
    assert eng.check_order(order(1000, strategy="z", symbol="HHHUSDT")) is None


def test_working_spot_buys_lock_quote_and_are_released_when_done() -> None:
    eng = engine()
    buy = order(1500, strategy="a", venue=SPOT, symbol="BTCUSDT", leverage=1)
    for i in range(5):
        eng.record_order(order(1500, strategy=f"w{i}", venue=SPOT, symbol=f"S{i}USDT", leverage=1), key=f"k{i}")
    assert eng.usage()["spot_quote_usdt"] == 7500.0
    rejection = eng.check_order(buy)
    assert rejection is not None and rejection.reason == reasons.RISK_SPOT_QUOTE
    eng.order_done("w0", SPOT, "S0USDT", "k0", T0)
    assert eng.usage()["spot_quote_usdt"] == 6000.0
    assert eng.check_order(buy) is None


def test_a_partly_filled_entry_counts_once_and_its_rest_stays_working() -> None:
    eng = engine()
    req = order(1000, strategy="a")
    eng.record_order(req, key="e1")
    assert eng.ledger.entries(USDM, "BTCUSDT") == 1
    fill(eng, 400, strategy="a")
    assert eng.ledger.entries(USDM, "BTCUSDT") == 1
    assert [w.remaining for w in eng.ledger.working] == pytest.approx([6.0])
    fill(eng, 600, strategy="a")
    assert eng.ledger.working == []  # fully filled: gone without order_done
    eng.order_done("a", USDM, "BTCUSDT", "e1", T0)  # the late "done" is a no-op
    assert eng.ledger.entries(USDM, "BTCUSDT") == 1
    assert eng.ledger.position("a", USDM, "BTCUSDT") == pytest.approx(10.0)


def test_order_done_without_keys_drops_the_oldest_order_of_that_strategy_and_market() -> None:
    eng = engine(config(limits={"max_concurrent_entries_per_market": 3}))
    eng.record_order(order(100, strategy="a", price=100.0))
    eng.record_order(order(200, strategy="a", price=100.0))
    eng.record_order(order(300, strategy="b", price=100.0))
    eng.order_done("a", USDM, "BTCUSDT", "unknown-id", T0)
    assert [(w.strategy, w.remaining) for w in eng.ledger.working] == [("a", 2.0), ("b", 3.0)]
    eng.order_done("a", USDM, "BTCUSDT", "", T0)
    eng.order_done("a", USDM, "BTCUSDT", "", T0)  # nothing left for a: no-op, b untouched
    assert [(w.strategy, w.remaining) for w in eng.ledger.working] == [("b", 3.0)]


def test_order_rate_counts_every_recorded_order_including_exits() -> None:
    eng = engine(config(limits={"max_orders_per_minute": 2}))
    fill(eng, 1000, strategy="a")
    eng.record_order(order(500, strategy="a", side=-1, reduce_only=True, is_entry=False))
    eng.record_order(order(100, strategy="b", symbol="ETHUSDT"))
    assert eng.usage()["orders_last_minute"] == 2
    rejection = eng.check_order(order(100, strategy="c", symbol="SOLUSDT"))
    assert rejection is not None and rejection.reason == reasons.RISK_ORDER_RATE
    # exits are never blocked by the rate
    assert eng.check_order(order(500, strategy="a", side=-1, reduce_only=True, is_entry=False)) is None


def test_limits_apply_to_all_strategies_together() -> None:
    """Each strategy alone is far from the gross limit; together they are at it."""
    eng = engine()
    for i in range(4):
        fill(eng, 5000, strategy=f"s{i}", symbol=f"S{i}USDT")
    rejection = eng.check_order(order(100, strategy="s9", symbol="S9USDT"))
    assert rejection is not None and rejection.detail == "gross 20100.0 > 20000.0 USDT after this order"


def test_add_on_is_checked_against_exposure_but_not_concurrent_entries() -> None:
    eng = engine()
    fill(eng, 7000, strategy="a")
    assert eng.check_order(order(1000, strategy="a", is_entry=False)) is None
    rejection = eng.check_order(order(1100, strategy="a", is_entry=False))
    assert rejection is not None and rejection.reason == reasons.RISK_NET_NOTIONAL


def test_a_hot_config_change_applies_to_the_very_next_check() -> None:
    eng = engine()
    assert eng.check_order(order(1000)) is None
    eng.update_config(config(limits={"max_order_notional_usdt": 500.0}), T0)
    rejection = eng.check_order(order(1000))
    assert rejection is not None and rejection.detail == "order 1000.0 > 500.0 USDT"


# --- continuous limits --------------------------------------------------------------------------------------
def _long_100_at_100(eng: RiskEngine) -> None:
    fill(eng, 10_000, strategy="a", leverage=5)


def _mark(px: float) -> Setup:
    def run(eng: RiskEngine) -> None:
        _long_100_at_100(eng)
        eng.on_mark(USDM, "BTCUSDT", px, T0 + S)

    return run


def _losses(n: int, *, win_after: int | None = None) -> Setup:
    def run(eng: RiskEngine) -> None:
        for i in range(n):
            if win_after is not None and i == win_after:
                eng.on_trade_closed("a", 5.0, T0 + i * S)
            eng.on_trade_closed("a", -1.0, T0 + i * S)

    return run


@dataclass(frozen=True)
class ContinuousCase:
    overrides: dict[str, float]
    equity: float
    breach: Setup
    phase: str
    code: str
    sibling: Setup
    sibling_phase: str


CONTINUOUS = {
    # daily loss 400 halts; 100 × (96 − 100) = −400 exactly
    "daily-loss-halts": ContinuousCase({}, 1e6, _mark(96.0), HALTED, reasons.RISK_DAILY_LOSS, _mark(96.5), REDUCING),
    # 80 % of 400 = 320 moves to Reducing; 319 does not
    "daily-loss-reduces": ContinuousCase({}, 1e6, _mark(96.8), REDUCING, reasons.RISK_DAILY_LOSS, _mark(96.81), ACTIVE),
    # drawdown 8 % of 10000 halts (daily loss raised out of the way)
    "drawdown-halts": ContinuousCase(
        {"max_daily_loss_usdt": 5000.0}, 10_000, _mark(92.0), HALTED, reasons.RISK_DRAWDOWN, _mark(92.5), REDUCING
    ),
    # 80 % of 8 % = 6.4 % moves to Reducing
    "drawdown-reduces": ContinuousCase(
        {"max_daily_loss_usdt": 5000.0}, 10_000, _mark(93.5), REDUCING, reasons.RISK_DRAWDOWN, _mark(93.7), ACTIVE
    ),
    # 5 losses in a row; 4, or 5 with a win in between, do not
    "consecutive-losses": ContinuousCase(
        {}, 1e6, _losses(5), REDUCING, reasons.RISK_CONSECUTIVE_LOSSES, _losses(5, win_after=1), ACTIVE
    ),
}


@pytest.mark.parametrize("case", CONTINUOUS.values(), ids=CONTINUOUS.keys())
def test_each_continuous_limit_moves_the_phase_and_its_sibling_does_not(case: ContinuousCase) -> None:
    cfg = config(limits=case.overrides)
    eng = engine(cfg, equity=case.equity)
    case.breach(eng)
    actions = eng.evaluate(T0 + 10 * S)
    assert (actions.phase, actions.reason) == (case.phase, case.code)
    assert actions.transitions[-1].to_phase == case.phase
    entry = eng.check_order(order(100, strategy="z", symbol="ETHUSDT", ts=T0 + 10 * S))
    expected = reasons.RISK_HALTED if case.phase == HALTED else reasons.RISK_REDUCE_ONLY
    assert entry is not None and entry.reason == expected
    assert case.code in entry.detail

    sibling = engine(cfg, equity=case.equity)
    case.sibling(sibling)
    assert sibling.evaluate(T0 + 10 * S).phase == case.sibling_phase
