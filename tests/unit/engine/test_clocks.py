"""Bar clocks against independent references: pandas groupby for time bars, plain-Python loops for
quote-volume buckets (with trade splitting and the time cap) and trade-count bars.

Also: empty periods are filled flat, long silences are skipped and flagged, the mid price source follows
the valid tops only, MARK/OPEN_INTEREST/LIQUIDATION land in the right bar, the resumable kernel survives
an output that must grow many times, and any split of the stream gives the same bars.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeplane.engine.events import (
    BUY,
    DEPTH,
    EVENT_DTYPE,
    LIQUIDATION,
    MARK,
    OPEN_INTEREST,
    SELL,
    TRADE,
    book_top_dtype,
)
from tradeplane.engine.features import (
    BAR_BOOK_INVALID,
    BAR_CAPPED,
    BAR_FILLED,
    BAR_GAP,
    BAR_NO_PRICE,
    BarClock,
    ClockSpec,
    build_bars,
    max_row_difference,
)
from tradeplane.engine.features.synthetic import synthetic_stream

S = 1_000_000_000


def trades(seed: int, n: int, n_symbols: int = 1, mean_gap: float = 0.3 * S) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ev = np.zeros(n, EVENT_DTYPE)
    ev["kind"] = TRADE | np.where(rng.random(n) < 0.5, BUY, SELL)
    ev["symbol"] = rng.integers(0, n_symbols, n)
    ev["exchange_ts"] = 1_700_000_000 * S + np.cumsum(rng.exponential(mean_gap, n)).astype(np.int64)
    ev["px"] = 100.0 + np.round(np.cumsum(rng.normal(0, 0.3, n)), 1)
    ev["qty"] = np.round(rng.exponential(2.0, n), 3) + 0.001
    return ev


def frame(ev: np.ndarray) -> pd.DataFrame:
    side = np.where(ev["kind"] & BUY, 1, np.where(ev["kind"] & SELL, -1, 0))
    return pd.DataFrame(
        {"symbol": ev["symbol"], "ts": ev["exchange_ts"], "px": ev["px"], "qty": ev["qty"], "side": side}
    )


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 300), n_symbols=st.integers(1, 3))
def test_time_bars_match_pandas_groupby(seed: int, n: int, n_symbols: int) -> None:
    ev = trades(seed, n, n_symbols)
    bars = build_bars(ClockSpec.time("1s", S, max_fill=10**9), ev)
    df = frame(ev)
    df["period"] = df.ts // S * S
    for sym, g in df.groupby("symbol"):
        agg = g.groupby("period").agg(
            open=("px", "first"), high=("px", "max"), low=("px", "min"), close=("px", "last"), volume=("qty", "sum")
        )
        agg["quote"] = (g.px * g.qty).groupby(g.period).sum()
        agg["buy"] = g.qty.where(g.side > 0, 0.0).groupby(g.period).sum()
        agg["count"] = g.groupby("period").size()
        got = bars[bars["symbol"] == sym]
        # the last period is still open (no later observation closed it)
        traded = got[got["count"] > 0]
        ref = agg.iloc[:-1]
        assert traded["start_ts"].tolist() == ref.index.tolist()
        for col, ref_col in (("open", "open"), ("high", "high"), ("low", "low"), ("close", "close")):
            np.testing.assert_array_equal(traded[col], ref[ref_col])
        np.testing.assert_allclose(traded["volume"], ref.volume, rtol=1e-12)
        np.testing.assert_allclose(traded["quote_volume"], ref.quote, rtol=1e-12)
        np.testing.assert_allclose(traded["buy_volume"], ref.buy, rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(traded["count"], ref["count"])
        # every period between the first and the last closed bar is present exactly once
        if len(got):
            np.testing.assert_array_equal(got["start_ts"], np.arange(got["start_ts"][0], got["end_ts"][-1], S))
            empty = got[got["count"] == 0]
            assert (empty["flags"] & BAR_FILLED).all() and (empty["flags"] & BAR_NO_PRICE).all()
            prev_close = np.concatenate([[np.nan], got["close"][:-1]])
            np.testing.assert_array_equal(empty["open"], prev_close[got["count"] == 0])


def reference_volume_buckets(df: pd.DataFrame, target: float, cap: int) -> list[dict[str, float]]:
    """One symbol, trade by trade: split overflowing trades, close at the target or at start + cap."""
    out: list[dict[str, float]] = []
    cur: dict[str, float] | None = None
    for ts, px, qty, side in zip(df.ts, df.px, df.qty, df.side, strict=True):
        if cur is not None and cap and ts >= cur["start"] + cap:
            cur["end"] = cur["start"] + cap
            cur["capped"] = 1
            out.append(cur)
            cur = None
        left = qty
        eps = target * 1e-12
        while True:
            if cur is None:
                cur = {"start": ts, "quote": 0.0, "vol": 0.0, "buyq": 0.0, "sellq": 0.0, "capped": 0}
            room = target - cur["quote"]
            part = left if px * left < room - eps else min(left, room / px)
            cur["quote"] += px * part
            cur["vol"] += part
            cur["buyq" if side > 0 else "sellq"] += px * part
            if part == left and px * left < room - eps:
                break
            cur["quote"] = target
            cur["end"] = ts
            out.append(cur)
            cur = None
            left -= part
            if left * px <= eps:
                break
    return out


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 200),
    target=st.sampled_from([50.0, 300.0, 2_000.0]),
    cap=st.sampled_from([0, 2 * S]),
)
def test_volume_buckets_match_reference(seed: int, n: int, target: float, cap: int) -> None:
    ev = trades(seed, n)
    bars = build_bars(ClockSpec.volume("v", target, cap_ns=cap), ev)
    ref = reference_volume_buckets(frame(ev), target, cap)
    assert len(bars) == len(ref)
    for b, r in zip(bars, ref, strict=True):
        assert b["start_ts"] == r["start"] and b["end_ts"] == r["end"]
        assert bool(b["flags"] & BAR_CAPPED) == bool(r["capped"])
        assert math.isclose(b["quote_volume"], r["quote"], rel_tol=1e-9)
        assert math.isclose(b["volume"], r["vol"], rel_tol=1e-9)
        assert math.isclose(b["buy_quote"], r["buyq"], rel_tol=1e-9, abs_tol=1e-9)
        assert math.isclose(b["sell_quote"], r["sellq"], rel_tol=1e-9, abs_tol=1e-9)
    full = bars[(bars["flags"] & BAR_CAPPED) == 0]
    assert (full["quote_volume"] == target).all()


def test_one_huge_trade_fills_many_buckets_and_the_output_grows() -> None:
    ev = trades(1, 3)
    ev["qty"] = [1.0, 5_000.0, 1.0]  # 500k quote at px≈100: thousands of 100-quote buckets
    bars = build_bars(ClockSpec.volume("v", 100.0), ev)
    assert len(bars) >= 4_900
    assert (bars["quote_volume"] == 100.0).all()
    assert bars["count"][1:-1].min() == 1


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 200), per_bar=st.integers(1, 12))
def test_count_bars_match_reference(seed: int, n: int, per_bar: int) -> None:
    ev = trades(seed, n, n_symbols=2)
    bars = build_bars(ClockSpec.count("c", per_bar), ev)
    df = frame(ev)
    expected = []
    for sym, g in df.groupby("symbol"):
        for k in range(len(g) // per_bar):
            chunk = g.iloc[k * per_bar : (k + 1) * per_bar]
            expected.append(
                (chunk.ts.iloc[-1], sym, chunk.px.iloc[0], chunk.px.max(), chunk.px.min(), chunk.px.iloc[-1])
            )
    got = sorted(
        zip(bars["end_ts"], bars["symbol"], bars["open"], bars["high"], bars["low"], bars["close"], strict=True)
    )
    assert [tuple(map(float, g)) for g in got] == [tuple(map(float, e)) for e in sorted(expected)]
    assert (bars["count"] == per_bar).all()


def test_silence_longer_than_max_fill_is_skipped_and_flagged() -> None:
    ev = trades(2, 3)
    ev["exchange_ts"] = [0, 3 * S + 1, 100 * S]
    bars = build_bars(ClockSpec.time("1s", S, max_fill=5), ev)
    assert bars["start_ts"].tolist() == [0, S, 2 * S, 3 * S]
    assert bars["flags"].tolist() == [0, BAR_FILLED | BAR_NO_PRICE, BAR_FILLED | BAR_NO_PRICE, 0]
    bars = build_bars(ClockSpec.time("1s", S, max_fill=5), np.concatenate([ev, trades(3, 1)]))
    assert bars["start_ts"][-1] == 100 * S and bars["flags"][-1] & BAR_GAP


def test_mid_source_follows_valid_tops_and_flags_invalid_books() -> None:
    ev = np.zeros(6, EVENT_DTYPE)
    ev["kind"] = DEPTH
    ev["exchange_ts"] = [0, S // 2, S + 1, S + 2, 2 * S + 1, 3 * S]
    tops = np.zeros(5, book_top_dtype(1))
    tops["exchange_ts"] = ev["exchange_ts"][:5]
    tops["synced"] = [1, 1, 1, 0, 1]
    tops["bid_px"][:, 0] = [99.0, 100.0, 101.0, 50.0, 103.0]
    tops["ask_px"][:, 0] = [101.0, 102.0, 103.0, 60.0, 105.0]
    tei = np.arange(5, dtype=np.int64)
    bars = build_bars(ClockSpec.time("1s", S, price="mid"), ev, tops, tei)
    assert bars["open"].tolist() == [100.0, 101.0]
    assert bars["high"].tolist() == [101.0, 102.0]
    assert bars["close"].tolist() == [101.0, 102.0]
    assert bars["n_tops"].tolist() == [2, 1]
    assert bars["flags"][1] & BAR_BOOK_INVALID
    assert math.isnan(bars["mid_close"][1])  # the last top of bar 1 was unsynced


def test_mark_open_interest_and_liquidations_land_in_their_bar() -> None:
    ev = np.zeros(5, EVENT_DTYPE)
    ev["kind"] = [MARK, OPEN_INTEREST, LIQUIDATION | BUY, LIQUIDATION | SELL, TRADE | BUY]
    ev["exchange_ts"] = [1, 2, 3, 4, 2 * S]
    ev["px"] = [100.0, 0.0, 100.0, 100.0, 100.0]
    ev["qty"] = [0.0001, 5_000.0, 2.0, 1.0, 1.0]
    bars = build_bars(ClockSpec.time("1s", S), ev)
    b = bars[0]
    assert (b["funding_rate"], b["mark_px"], b["open_interest"]) == (0.0001, 100.0, 5000.0)
    assert (b["liq_buy_quote"], b["liq_sell_quote"]) == (200.0, 100.0)
    assert bars[1]["liq_buy_quote"] == 0.0 and bars[1]["funding_rate"] == 0.0001  # carried, not summed


@pytest.mark.parametrize(
    "spec",
    [
        ClockSpec.time("1s", S),
        ClockSpec.time("100ms", S // 10, price="mid"),
        ClockSpec.volume("v", 20_000.0, cap_ns=5 * S, price="mid"),
        ClockSpec.volume("v", 5_000.0),
        ClockSpec.count("c", 25, price="mid"),
    ],
    ids=lambda s: f"{s.kind}-{s.price}",
)
def test_any_split_gives_the_same_bars(spec: ClockSpec) -> None:
    s = synthetic_stream(60_000, n_symbols=3, seed=5)
    whole = build_bars(spec, s.events, s.tops, s.top_event_index)
    rng = np.random.default_rng(0)
    cuts = np.unique(np.concatenate([[0], rng.integers(0, len(s.events), 400), [len(s.events)]]))
    clock = BarClock(spec)
    parts = []
    for lo, hi in itertools.pairwise(cuts):
        a, b = np.searchsorted(s.top_event_index, [lo, hi])
        parts.append(clock.update(s.events[lo:hi], s.tops[a:b], s.top_event_index[a:b] - lo))
    assert len(whole) > 100
    assert max_row_difference(whole, np.concatenate(parts)) == 0.0


def test_spec_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="period_ns"):
        ClockSpec.time("x", 0)
    with pytest.raises(ValueError, match="quote_volume"):
        ClockSpec.volume("x", 0.0)
    with pytest.raises(ValueError, match="trades"):
        ClockSpec.count("x", 0)


def test_trades_without_a_positive_finite_price_or_quantity_are_ignored() -> None:
    ev = trades(4, 6)
    ev["exchange_ts"] = [0, 1, 2, 3, 4, 2 * S]
    ev["px"][1:5] = [np.nan, 0.0, np.inf, 100.0]
    ev["qty"][4] = np.inf
    bars = build_bars(ClockSpec.volume("v", 1e9, cap_ns=S), ev)
    assert bars["count"].tolist() == [1]
    assert np.isfinite(bars["quote_volume"]).all()
