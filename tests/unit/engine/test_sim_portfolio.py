"""Portfolio accounting: cash-flow identities, worked examples, real funding history, curves and metrics.

The identities are checked against a recomputation that never looks at average prices: marking every fill's
cash flow to market (linear: −side·qty·px plus position·mark; inverse, in coin: side·q·cs/px minus
position·cs/mark), to 1e-9 of the traded notional (the scale of the cancelling terms). Worked examples use
hand arithmetic and Binance's published formulas; funding is replayed from the real BTCUSDT history and
compared with a plain-Python sum over the CSV rows parsed independently.
"""

from __future__ import annotations

import csv
import gzip
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from tradeplane.engine.costs import fee_schedule
from tradeplane.engine.replay import read_funding_csv
from tradeplane.engine.sim import portfolio as pf
from tradeplane.engine.sim.contracts import (
    KIND_INVERSE,
    KIND_LINEAR,
    ContractSpec,
    binance_coinm,
    binance_spot,
    binance_usdm,
)
from tradeplane.engine.sim.orders import FILL_DTYPE

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FUNDING_CSV = ("data", "binance", "funding", "binance_usdm_btcusdt_funding_2019-09-10_2026-04-07.csv.gz")


def fills_of(rows: list[tuple[int, float, float]], symbol: int = 0, fee: float = 0.0) -> np.ndarray:
    """(side, qty, px) rows → a FILL_DTYPE batch."""
    f = np.zeros(len(rows), dtype=FILL_DTYPE)
    f["symbol"] = symbol
    f["side"] = [r[0] for r in rows]
    f["qty"] = [r[1] for r in rows]
    f["px"] = [r[2] for r in rows]
    f["fee"] = fee
    return f


def ns(text: str) -> int:
    return (datetime.fromisoformat(text) - EPOCH) // timedelta(microseconds=1) * 1000


# --- identities -------------------------------------------------------------------------------------------------
fill_rows = st.lists(
    st.tuples(st.sampled_from([1, -1]), st.integers(1, 40), st.integers(5_000, 15_000), st.booleans()),
    min_size=1,
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(fill_rows, st.integers(5_000, 15_000), st.floats(-2.5, 3.0), st.floats(0.0, 8.0), st.booleans())
def test_cash_flow_identity(
    rows: list[tuple[int, int, int, bool]], mark_ticks: int, maker_bps: float, taker_bps: float, inverse: bool
) -> None:
    spec = ContractSpec(kind="inverse" if inverse else "linear", tick_size=0.01, lot_size=0.001 if not inverse else 1.0,
                        contract_size=100.0 if inverse else 1.0, maker_bps=maker_bps, taker_bps=taker_bps)  # fmt: skip
    p = pf.Portfolio([spec], 1_000.0)
    f = fills_of([(s, n * spec.lot_size, t * 0.01) for s, n, t, _ in rows])
    f["maker"] = [m for *_, m in rows]
    f["fee"] = [pf.fill_fee(p.acct, 0, r["qty"], r["px"], bool(r["maker"])) for r in f]
    p.apply_fills(f)
    mark = mark_ticks * 0.01
    sides, qty, px = f["side"].astype(float), f["qty"], f["px"]
    pos = float(p.acct["position"][0])
    if inverse:  # coin flows: a buy of q contracts at p is worth q·cs/p of coin, the position −pos·cs/mark
        flows = float(np.sum(sides * qty * 100.0 / px)) - pos * 100.0 / mark
        scale = float(np.sum(qty * 100.0 / px))
    else:
        flows = float(np.sum(-sides * qty * px)) + pos * mark
        scale = float(np.sum(qty * px))
    fees = float(np.sum(f["fee"]))
    tol = 1e-9 * scale
    assert pos == pytest.approx(float(np.sum(sides * qty)), abs=1e-9 * spec.lot_size * len(rows))
    assert p.equity(0, mark) - 1_000.0 == pytest.approx(flows - fees, abs=tol)
    assert float(p.acct["realized"][0]) + p.unrealized(0, mark) == pytest.approx(flows, abs=tol)
    assert float(p.acct["fees"][0]) == pytest.approx(fees, abs=tol)
    if pos == 0.0:
        assert math.isnan(p.acct["entry_px"][0]) and p.unrealized(0, mark) == 0.0


# --- worked examples --------------------------------------------------------------------------------------------
def test_linear_add_reduce_flip_close() -> None:
    p = pf.Portfolio([binance_usdm(0.1, 0.001)], 10_000.0)
    steps = [  # (side, qty, px) → (position, average entry, realized by this fill)
        ((1, 1.0, 100.0), (1.0, 100.0, 0.0)),
        ((1, 3.0, 110.0), (4.0, 107.5, 0.0)),  # (100 + 330) / 4
        ((-1, 2.0, 120.0), (2.0, 107.5, 25.0)),  # 2 · (120 − 107.5), the average stays
        ((-1, 5.0, 100.0), (-3.0, 100.0, -15.0)),  # closes 2 at −7.5 each, opens 3 short at the fill
        ((1, 3.0, 90.0), (0.0, math.nan, 30.0)),  # 3 · (100 − 90)
    ]
    for (side, qty, px), (pos, entry, realized) in steps:
        got = p.apply_fills(fills_of([(side, qty, px)], fee=0.5))
        assert got[0] == pytest.approx(realized)
        assert p.acct["position"][0] == pytest.approx(pos)
        assert p.acct["entry_px"][0] == pytest.approx(entry, nan_ok=True)
    assert p.acct["realized"][0] == pytest.approx(40.0)
    assert p.acct["balance"][0] == pytest.approx(10_000.0 + 40.0 - 2.5)
    assert p.acct["volume"][0] == pytest.approx(100 + 330 + 240 + 500 + 270)


def test_linear_mark_margin_and_roe() -> None:
    p = pf.Portfolio([binance_usdm(0.1, 0.001, leverage=20)], 1_000.0)
    p.apply_fills(fills_of([(1, 0.5, 60_000.0)]))
    # Binance USDⓈ-M: PnL = (mark − entry)·qty; initial margin = qty·entry/leverage; ROE = PnL / IM.
    assert p.unrealized(0, 61_000.0) == pytest.approx(500.0)
    assert float(pf.used_margin(p.acct, 0, 61_000.0)) == pytest.approx(0.5 * 61_000 / 20)
    assert float(pf.roe(p.acct, 0, 61_000.0)) == pytest.approx(500.0 / (0.5 * 60_000 / 20))
    assert float(pf.maintenance_margin(p.acct, 0, 61_000.0)) == pytest.approx(0.5 * 61_000 * 0.004)
    snap = p.snapshot(61_000.0)[0]
    assert snap["equity"] == pytest.approx(1_500.0) and snap["position"] == 0.5


def test_inverse_worked_examples() -> None:
    # Binance COIN-M: long 10 BTCUSD contracts (100 USD) from 10,000 to 11,000 earns 10·100·(1/10000 − 1/11000) BTC.
    p = pf.Portfolio([binance_coinm(0.1)], 1.0)
    p.apply_fills(fills_of([(1, 10, 10_000.0)]))
    assert p.unrealized(0, 11_000.0) == pytest.approx(10 * 100 * (1 / 10_000 - 1 / 11_000))
    assert float(pf.roe(p.acct, 0, 11_000.0)) == pytest.approx(p.unrealized(0, 11_000.0) / (10 * 100 / 10_000 * 0.1))
    assert float(pf.used_margin(p.acct, 0, 11_000.0)) == pytest.approx(10 * 100 / 11_000 * 0.1)
    # Average of 1,000 contracts at 5,000 and 2,000 at 6,000: total contracts / total coin value = 5,625.
    q = pf.Portfolio([ContractSpec(kind="inverse", tick_size=0.1, lot_size=1, maker_bps=0, taker_bps=0)], 1.0)
    q.apply_fills(fills_of([(1, 1000, 5_000.0), (1, 2000, 6_000.0)]))
    assert q.acct["entry_px"][0] == pytest.approx(5_625.0)
    got = q.apply_fills(fills_of([(-1, 1500, 6_500.0), (-1, 2000, 4_000.0), (1, 500, 5_000.0)]))
    assert got[0] == pytest.approx(1500 * (1 / 5_625 - 1 / 6_500))  # reduce: realized at the average
    assert got[1] == pytest.approx(1500 * (1 / 5_625 - 1 / 4_000))  # flip: 1,500 closed, 500 short at 4,000
    assert got[2] == pytest.approx(-500 * (1 / 4_000 - 1 / 5_000))  # short closed at a loss
    assert q.acct["position"][0] == 0.0 and math.isnan(q.acct["entry_px"][0])


def test_specs_and_fees() -> None:
    usdm, spot = binance_usdm(0.1, 0.001), binance_spot(0.01, 0.00001)
    assert (usdm.maker_bps, usdm.taker_bps) == (fee_schedule("binance-usdm").maker_bps, 5.0)
    assert spot.initial_margin_frac == 1.0 and spot.kind_code != KIND_LINEAR
    assert binance_coinm(0.1).kind_code == KIND_INVERSE and binance_coinm(0.1).contract_size == 100.0
    with pytest.raises(ValueError, match="contract_size"):
        ContractSpec(kind="linear", tick_size=0.1, lot_size=1, contract_size=100, maker_bps=0, taker_bps=0)
    p = pf.Portfolio([usdm, binance_coinm(0.1)], [1_000.0, 1.0])
    assert float(pf.fill_fee(p.acct, 0, 2.0, 50_000.0, False)) == pytest.approx(2 * 50_000 * 5e-4)
    assert float(pf.fill_fee(p.acct, 1, 10, 50_000.0, True)) == pytest.approx(10 * 100 / 50_000 * 2e-4)
    bad = fills_of([(1, 1.0, 100.0), (1, 0.0, 100.0)])
    with pytest.raises(ValueError, match="fill 1 rejected"):
        p.apply_fills(bad)
    assert p.acct["n_fills"][0] == 1  # the valid first row stays booked


@njit(cache=True)
def _matcher_like(acct: np.ndarray, n: int) -> float:
    """A stand-in for the matcher: computes fees and books fills per event inside its own kernel."""
    total = 0.0
    for i in range(n):
        side = 1 if i % 3 else -1
        px = 100.0 + (i % 7)
        total += pf.apply_fill(acct, 0, side, 0.01, px, pf.fill_fee(acct, 0, 0.01, px, i % 2 == 1), i % 2)
    return total


def test_kernels_compose_inside_another_kernel() -> None:
    p = pf.Portfolio([binance_usdm(0.1, 0.001)], 0.0)
    q = pf.Portfolio([binance_usdm(0.1, 0.001)], 0.0)
    total = _matcher_like(p.acct, 1000)
    f = fills_of([(1 if i % 3 else -1, 0.01, 100.0 + (i % 7)) for i in range(1000)])
    f["maker"] = [i % 2 for i in range(1000)]
    f["fee"] = [pf.fill_fee(q.acct, 0, 0.01, r["px"], bool(r["maker"])) for r in f]
    assert total == pytest.approx(q.apply_fills(f).sum())
    assert p.snapshot() == q.snapshot()


# --- funding ----------------------------------------------------------------------------------------------------
def test_funding_on_real_btcusdt_history(shared_dir: Path) -> None:
    path = shared_dir.joinpath(*FUNDING_CSV)
    history = read_funding_csv(path, 0)
    # The window straddles 2023-10-31, before which Binance's history has no mark price.
    t0, t1, fallback, qty = ns("2023-09-01T00:00:00+00:00"), ns("2024-03-01T00:00:00+00:00"), 27_000.0, 0.25
    expected, n_rows, n_nan = 0.0, 0, 0
    with gzip.open(path, "rt", newline="") as fh:
        for row in csv.DictReader(fh):
            t = ns(row["fundingTime"])
            if t0 <= t < t1:
                mark = float(row["markPrice"]) if row["markPrice"] else fallback
                n_nan += not row["markPrice"]
                expected += qty * mark * float(row["fundingRate"])
                n_rows += 1
    assert n_rows == 546 and 0 < n_nan < n_rows  # 182 days × 3, both kinds of rows present

    p = pf.Portfolio([binance_usdm(0.1, 0.001)], 10_000.0)
    p.apply_fills(fills_of([(1, qty, 26_000.0)]))
    balance = float(p.acct["balance"][0])
    mid = ns("2023-12-01T00:00:00+00:00")
    p.settle_funding(history, t0, mid, fallback)  # two windows in time order equal one
    p.settle_funding(history, mid, t1, fallback)
    assert p.acct["funding"][0] == pytest.approx(expected, rel=1e-12)
    assert expected > 0  # 2023-24 bull market: longs paid
    assert p.acct["balance"][0] == pytest.approx(balance - expected, rel=1e-12)
    with pytest.raises(ValueError, match="not after the last"):  # replaying a window must not charge twice
        p.settle_funding(history, t0, t1, fallback)

    rows = list(pf.funding_settlements(history, t0, t1))
    assert len(rows) == n_rows and all(t0 <= r.ts < t1 for r in rows)
    assert [r.ts for r in rows] == sorted(r.ts for r in rows)


def test_funding_signs_and_inverse() -> None:
    p = pf.Portfolio([binance_usdm(0.1, 0.001), binance_usdm(0.1, 0.001), binance_coinm(0.1)], [1_000.0, 1_000.0, 1.0])
    p.apply_fills(fills_of([(1, 2.0, 50_000.0)], symbol=0))
    p.apply_fills(fills_of([(-1, 2.0, 50_000.0)], symbol=1))
    p.apply_fills(fills_of([(1, 30, 50_000.0)], symbol=2))
    assert p.apply_funding(0, 1e-4, 51_000.0, 1) == pytest.approx(2 * 51_000 * 1e-4)  # long pays a positive rate
    assert p.apply_funding(1, 1e-4, 51_000.0, 1) == pytest.approx(-2 * 51_000 * 1e-4)  # short receives
    assert p.apply_funding(0, -2e-4, 51_000.0, 2) == pytest.approx(-2 * 51_000 * 2e-4)  # negative rate: long receives
    assert p.apply_funding(2, 1e-4, 51_000.0, 1) == pytest.approx(30 * 100 / 51_000 * 1e-4)  # coin
    assert p.acct["balance"][0] == pytest.approx(1_000.0 - 2 * 51_000 * 1e-4 + 2 * 51_000 * 2e-4)
    with pytest.raises(ValueError, match="no finite mark"):
        p.apply_funding(0, 1e-4, math.nan, 3)


# --- curve, drawdown, metrics -------------------------------------------------------------------------------------
def test_drawdown_and_sharpe_against_references() -> None:
    equity = [100.0, 110.0, 105.0, 120.0, 90.0, 95.0, 130.0, 125.0]
    c = pf.EquityCurve(len(equity))
    for i, e in enumerate(equity):
        c.append(i, e)
    dd, frac = c.drawdown()
    peak, ref_dd, ref_frac = -math.inf, [], []
    for e in equity:
        peak = max(peak, e)
        ref_dd.append(peak - e)
        ref_frac.append((peak - e) / peak)
    assert dd.tolist() == pytest.approx(ref_dd) and frac.tolist() == pytest.approx(ref_frac)
    m = pf.performance_metrics(c, np.zeros(0, dtype=FILL_DTYPE), pf.new_account([binance_usdm(0.1, 0.001)], 100.0),
                               periods_per_year=365)  # fmt: skip
    r = np.diff(equity) / np.asarray(equity[:-1])
    assert m.sharpe == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(365))
    assert (m.max_drawdown, m.max_drawdown_frac) == pytest.approx((30.0, 30.0 / 120.0))
    assert m.total_pnl == 25.0 and m.n_fills == 0 and math.isnan(m.win_rate) and math.isnan(m.maker_share)


def test_round_trip_metrics_on_crafted_trades() -> None:
    p = pf.Portfolio([binance_usdm(0.1, 0.001)], 1_000.0)
    c = pf.EquityCurve(2, name="bt-curve", grow=True)
    c.record(p.acct, 100.0, 0)
    trips = [
        (1, 1.0, 100.0),
        (-1, 1.0, 110.0),  # +10
        (-1, 2.0, 100.0),
        (1, 2.0, 105.0),  # −10
        (1, 1.0, 100.0),
        (-1, 0.5, 104.0),
        (-1, 0.5, 99.0),  # +2, −0.5
        (1, 1.0, 100.0),
        (-1, 2.0, 103.0),
        (1, 1.0, 103.0),
    ]  # +3 (flip counts as a trade), 0: neither
    f = fills_of(trips, fee=0.1)
    f["maker"] = [1, 0, 1, 1, 0, 0, 0, 0, 1, 0]
    for i in range(len(f)):
        p.apply_fills(f[i : i + 1])
        c.record(p.acct, f["px"][i], i + 1)
    assert len(c) == 11 and c.capacity >= 11  # grew from 2
    m = pf.performance_metrics(c, f, p.acct, periods_per_year=1)
    assert m.n_trades == 6 and m.win_rate == pytest.approx(3 / 6)
    assert m.profit_factor == pytest.approx((10 + 2 + 3) / (10 + 0.5))
    assert m.gross_pnl == pytest.approx(10 - 10 + 2 - 0.5 + 3) and m.fees == pytest.approx(1.0)
    assert m.total_pnl == pytest.approx(m.gross_pnl - 1.0)
    assert m.fee_share == pytest.approx(1.0 / 4.5)
    assert m.n_fills == 10 and m.maker_share == pytest.approx(0.4)
    notional = float(np.sum(f["qty"] * f["px"]))
    assert m.turnover == pytest.approx(notional / c.column("equity").mean())


def test_recorder_full_names_itself_and_capacity() -> None:
    c = pf.EquityCurve(3, name="bt-curve")
    for i in range(3):
        c.append(i, 1.0)
    with pytest.raises(pf.RecorderFullError, match=r"bt-curve is full at capacity 3"):
        c.append(3, 1.0)
    acct = pf.new_account([binance_usdm(0.1, 0.001)], 1.0)
    with pytest.raises(pf.RecorderFullError, match="capacity 3"):
        c.record(acct, 100.0, 4)
    assert pf.record_equity(c.rows, c.length, acct, np.array([100.0]), -1, 5) == pf.ERR_FULL and len(c) == 3
