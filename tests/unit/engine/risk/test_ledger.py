"""The risk ledger: worked examples of average price, realization and flips; marks and their fallbacks; and
properties checked against a recomputation from the raw fills that never looks at average prices."""

from __future__ import annotations

import math
from typing import NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeplane.engine.risk.ledger import DAY_NS, Ledger, is_futures, shrinks

from .support import PAPER, SPOT, T0, USDM, S, engine

VENUES = {USDM: True, PAPER: True, SPOT: False}


@pytest.mark.parametrize(("venue", "futures"), VENUES.items(), ids=VENUES.keys())
def test_venue_kinds(venue: str, futures: bool) -> None:
    assert is_futures(venue) is futures


SHRINKS = {
    "long-partial-sell": (2.0, -1.0, True),
    "long-full-sell": (2.0, -2.0, True),
    "long-flip": (2.0, -3.0, False),
    "long-buy": (2.0, 1.0, False),
    "short-buy": (-2.0, 1.5, True),
    "flat": (0.0, -1.0, False),
}


@pytest.mark.parametrize(("qty", "delta", "expected"), SHRINKS.values(), ids=SHRINKS.keys())
def test_shrinks(qty: float, delta: float, expected: bool) -> None:
    assert shrinks(qty, delta) is expected


def test_average_price_realization_and_flip() -> None:
    led = Ledger(10_000.0)
    led.apply_fill("a", USDM, "BTCUSDT", 1, 2.0, 100.0, 0.1, 5)
    led.apply_fill("a", USDM, "BTCUSDT", 1, 2.0, 110.0, 0.1, 5)
    pos = led.positions[("a", USDM, "BTCUSDT")]
    assert (pos.qty, pos.avg_price, pos.leverage) == (4.0, 105.0, 5)
    led.apply_fill("a", USDM, "BTCUSDT", -1, 1.0, 120.0, 0.1, 5)  # realizes 1 × (120 − 105)
    assert (pos.qty, pos.avg_price, pos.realized_usdt) == (3.0, 105.0, 15.0)
    led.apply_fill("a", USDM, "BTCUSDT", -1, 5.0, 100.0, 0.1, 5)  # closes 3 at −5 each, opens 2 short at 100
    assert (pos.qty, pos.avg_price, pos.realized_usdt) == (-2.0, 100.0, 0.0)
    led.apply_fill("a", USDM, "BTCUSDT", 1, 2.0, 90.0, 0.1, 5)  # closes the short at +10 each
    assert (pos.qty, pos.avg_price, pos.realized_usdt) == (0.0, 0.0, 20.0)
    assert led.fees_usdt == pytest.approx(0.5)
    assert led.equity() == pytest.approx(10_000.0 + 20.0 - 0.5)


def test_mark_falls_back_to_the_last_fill_then_to_a_working_order_price() -> None:
    led = Ledger(1000.0)
    assert math.isnan(led.price(USDM, "BTCUSDT"))
    led.add_working("", "a", USDM, "BTCUSDT", 1, 1.0, 95.0, 5, is_entry=True, ts=0)
    assert led.price(USDM, "BTCUSDT") == 95.0
    led.apply_fill("a", USDM, "BTCUSDT", 1, 1.0, 99.0, 0.0, 5)
    assert led.price(USDM, "BTCUSDT") == 99.0
    led.set_mark(USDM, "BTCUSDT", 101.0)
    led.apply_fill("a", USDM, "BTCUSDT", 1, 1.0, 98.0, 0.0, 5)
    assert led.price(USDM, "BTCUSDT") == 101.0  # a mark, once seen, wins over later fills
    assert math.isnan(led.price(SPOT, "BTCUSDT"))  # marks are per venue: spot has none


def test_spot_quote_counts_long_spot_positions_and_working_buys_only() -> None:
    led = Ledger(1000.0)
    led.apply_fill("a", SPOT, "ETHUSDT", 1, 3.0, 100.0, 0.0, 1)
    led.apply_fill("b", SPOT, "SOLUSDT", -1, 1.0, 50.0, 0.0, 1)  # selling inventory held elsewhere
    led.add_working("", "c", SPOT, "XRPUSDT", 1, 10.0, 2.0, 1, is_entry=True, ts=0)
    led.add_working("", "d", SPOT, "XRPUSDT", -1, 10.0, 2.0, 1, is_entry=True, ts=0)
    led.add_working("", "e", USDM, "XRPUSDT", 1, 10.0, 2.0, 5, is_entry=True, ts=0)
    assert led.spot_quote() == 300.0 + 20.0
    assert led.futures_margin() == 0.0
    assert led.gross_notional() == 350.0


def test_leverage_is_one_on_spot_whatever_the_fill_says() -> None:
    led = Ledger(1000.0)
    led.apply_fill("a", SPOT, "ETHUSDT", 1, 3.0, 100.0, 0.0, 20)
    assert led.positions[("a", SPOT, "ETHUSDT")].leverage == 1


def test_day_baseline_is_the_equity_just_before_the_first_event_of_a_new_utc_day() -> None:
    eng = engine()
    day = T0 // DAY_NS
    assert eng.ledger.day == -1
    eng.on_fill("a", USDM, "BTCUSDT", 1, 10.0, 100.0, 1.0, T0)
    assert (eng.ledger.day, eng.ledger.day_start_equity) == (day, 1_000_000.0)  # the fee is today's
    eng.on_mark(USDM, "BTCUSDT", 90.0, T0 + S)
    eng.on_mark(USDM, "BTCUSDT", 80.0, (day + 1) * DAY_NS)
    assert eng.ledger.day_start_equity == pytest.approx(1_000_000.0 - 1.0 - 100.0)
    assert eng.usage()["daily_pnl_usdt"] == pytest.approx(-100.0)
    eng.on_mark(USDM, "BTCUSDT", 70.0, (day + 1) * DAY_NS - 5)  # late data from yesterday never rolls back
    assert eng.ledger.day == day + 1


def test_drawdown_is_measured_from_the_highest_equity_seen() -> None:
    eng = engine(equity=1000.0)
    eng.on_fill("a", USDM, "BTCUSDT", 1, 10.0, 100.0, 0.0, T0)
    eng.on_mark(USDM, "BTCUSDT", 110.0, T0 + 1)  # equity 1100: the peak
    eng.on_mark(USDM, "BTCUSDT", 104.5, T0 + 2)  # 1045: 5 % below it
    assert eng.usage()["drawdown_pct"] == pytest.approx(5.0)
    assert eng.ledger.peak_equity == pytest.approx(1100.0)


def test_initial_equity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="initial_equity"):
        Ledger(0.0)


# --- properties against an independent recomputation --------------------------------------------------------
MARKETS = [(USDM, "BTCUSDT"), (USDM, "ETHUSDT"), (PAPER, "BTCUSDT"), (SPOT, "BTCUSDT"), (SPOT, "ETHUSDT")]


class Fill(NamedTuple):
    strategy: str
    market: tuple[str, str]
    side: int
    qty4: int  # qty in 1/4 units: every sum is exact
    price: int
    leverage: int


class Mark(NamedTuple):
    market: tuple[str, str]
    price: int


markets = st.sampled_from(MARKETS)
events = st.lists(
    st.one_of(
        st.builds(
            Fill,
            st.sampled_from(["s1", "s2", "s3"]),
            markets,
            st.sampled_from([1, -1]),
            st.integers(1, 20),
            st.integers(50, 150),
            st.integers(1, 20),
        ),
        st.builds(Mark, markets, st.integers(50, 150)),
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(events)
def test_usage_equals_an_independent_recomputation_from_the_fills(evs: list[Fill | Mark]) -> None:
    """gross = Σ |position × mark|; margin = Σ futures |position × mark| / leverage; spot quote = Σ spot
    max(position, 0) × mark; equity = initial + Σ cash flows + Σ position × mark − fees (no average prices)."""
    eng = engine(equity=1e6)
    qty: dict[tuple[str, str, str], float] = {}
    lev: dict[tuple[str, str, str], int] = {}
    mark: dict[tuple[str, str], float] = {}
    last_fill: dict[tuple[str, str], float] = {}
    cash = fees = 0.0
    for i, ev in enumerate(evs):
        ts = T0 + i
        venue, symbol = ev.market
        if isinstance(ev, Fill):
            q = ev.qty4 / 4
            eng.on_fill(ev.strategy, venue, symbol, ev.side, q, float(ev.price), 0.01 * q, ts, leverage=ev.leverage)
            key = (ev.strategy, venue, symbol)
            qty[key] = qty.get(key, 0.0) + ev.side * q
            lev[key] = ev.leverage if venue != SPOT else 1
            last_fill[ev.market] = float(ev.price)
            cash -= ev.side * q * ev.price
            fees += 0.01 * q
        else:
            eng.on_mark(venue, symbol, float(ev.price), ts)
            mark[ev.market] = float(ev.price)

    def m(venue: str, symbol: str) -> float:
        return mark.get((venue, symbol), last_fill.get((venue, symbol), math.nan))

    gross = sum(abs(q * m(v, s)) for (_, v, s), q in qty.items() if q != 0.0)
    margin = sum(abs(q * m(v, s)) / lev[(st_, v, s)] for (st_, v, s), q in qty.items() if q != 0.0 and v != SPOT)
    spot = sum(max(q, 0.0) * m(v, s) for (_, v, s), q in qty.items() if v == SPOT)
    equity = 1e6 + cash + sum(q * m(v, s) for (_, v, s), q in qty.items() if q != 0.0) - fees
    usage = eng.usage()
    assert usage["gross_notional_usdt"] == pytest.approx(gross, rel=1e-12, abs=1e-9)
    assert usage["futures_margin_usdt"] == pytest.approx(margin, rel=1e-12, abs=1e-9)
    assert usage["spot_quote_usdt"] == pytest.approx(spot, rel=1e-12, abs=1e-9)
    assert eng.ledger.equity() == pytest.approx(equity, rel=1e-12, abs=1e-6)
    assert {k: p.qty for k, p in eng.ledger.positions.items()} == pytest.approx(qty)
