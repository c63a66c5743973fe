"""Backtests on the real USD-M BTCUSDT capture, end to end, checked against independent replays.

- A TWAP of a parent order runs to completion; each parent's mid at send is recomputed from an engine
  ``BookSet`` replay of exactly the events received by then, and its VWAP and slippage from the fills.
- A passive quoting loop runs through the runner; every maker fill coincides with a recorded trade at or
  through the order's price (the fill model's queue reference test lives in tests/unit/engine).
- Same seed + same data → identical digest; another seed (sampled latencies) → a different run.
- `tradeplane backtest` writes the report, the tables and result.json; bad options fail with their name.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from typer.testing import CliRunner

from tradeplane.cli import app
from tradeplane.engine.book import BookConfig, BookSet
from tradeplane.engine.events import KIND_MASK, TRADE, SymbolTable
from tradeplane.engine.replay import read_capture
from tradeplane.engine.sim import orders as O  # noqa: N812
from tradeplane.engine.sim.baselines import PeriodicParentsStrategy, QuotingStrategy, TwapStrategy
from tradeplane.engine.sim.contracts import binance_usdm
from tradeplane.engine.sim.executors import PARENT_FILLED, TwapSpec
from tradeplane.engine.sim.latency import ConstantLatency, SampledLatency, align_local_clock
from tradeplane.engine.sim.result import BacktestResult
from tradeplane.engine.sim.runner import BacktestConfig, run_backtest

MS = 1_000_000


@pytest.fixture(scope="module")
def capture(shared_dir: Path) -> Path:
    return shared_dir / "data/binance/ws/usdm_btcusdt_20240808.jsonl.gz"


@pytest.fixture(scope="module")
def events(capture: Path) -> npt.NDArray[np.void]:
    return align_local_clock(read_capture(capture, SymbolTable()).events, 1 * MS)


def _config(seed: int = 0, sampled: bool = False) -> BacktestConfig:
    if sampled:
        entry, resp = (
            SampledLatency.lognormal(8 * MS, 0.5, seed * 2 + 1),
            SampledLatency.lognormal(6 * MS, 0.5, seed * 2 + 2),
        )
    else:
        entry, resp = ConstantLatency(8 * MS), ConstantLatency(6 * MS)
    return BacktestConfig(
        contracts={0: binance_usdm(0.1, 0.001)}, entry_latency=entry, response_latency=resp, seed=seed
    )


def _mid_seen_at(events: npt.NDArray[np.void], t: int) -> float:
    """Mid of a book built from the events received (ingest_ts ≤ t), in the order they were received."""
    seen = events[np.argsort(events["ingest_ts"], kind="stable")]
    seen = seen[seen["ingest_ts"] <= t]
    books = BookSet(BookConfig(levels=1, tick_sizes={0: 0.1}))
    tops = books.apply(np.ascontiguousarray(seen)).tops
    last = tops[-1]
    return 0.5 * (float(last["bid_px"][0]) + float(last["ask_px"][0]))


@pytest.fixture(scope="module")
def twap_run(events: npt.NDArray[np.void]) -> tuple[BacktestResult, TwapStrategy]:
    strat = TwapStrategy(O.BUY, 0.5, TwapSpec(10, 20_000.0, 0.1, "maker_then_taker", 5_000.0), start_ms=5_000.0)
    return run_backtest(events, strat, _config()), strat


def test_twap_parent_completes_with_independently_checked_slippage(
    twap_run: tuple[BacktestResult, TwapStrategy], events: npt.NDArray[np.void]
) -> None:
    res, _ = twap_run
    (p,) = res.parents
    assert p["status"] == PARENT_FILLED and p["filled"] == pytest.approx(0.5) and p["n_children"] >= 10
    assert p["maker_qty"] + p["taker_qty"] == pytest.approx(0.5)
    mid = _mid_seen_at(events, int(p["send_ts"]))
    assert p["mid_at_send"] == pytest.approx(mid, abs=1e-9)
    f = res.fills
    vwap = float((f["px"] * f["qty"]).sum() / f["qty"].sum())
    assert p["vwap"] == pytest.approx(vwap, rel=1e-12)
    assert p["slippage_bps"] == pytest.approx((vwap - mid) / mid * 1e4, rel=1e-9)
    assert p["fees"] == pytest.approx(float(f["fee"].sum()), rel=1e-12)
    kids = res.reports[np.unique(res.reports["order_id"], return_index=True)[1]]
    starts = np.unique(kids["local_ts"])
    assert starts[0] == p["send_ts"] and starts[-1] - starts[0] >= 9 * 20_000 * MS * 0.9 - 2_000 * MS
    assert res.metrics.n_fills == f.shape[0]
    assert np.all(np.diff(res.curve["ts"]) > 0)


def test_quoting_fills_coincide_with_trades_at_or_through_the_price(events: npt.NDArray[np.void]) -> None:
    res = run_backtest(events, QuotingStrategy(qty=0.01, requote_ms=1_000.0, max_position=0.05), _config())
    f = res.fills
    assert f.shape[0] > 20 and np.all(f["maker"] == 1)
    assert np.all(np.abs(res.curve["position"]) <= 0.05 + 0.01 + 1e-9)
    trades = events[(events["kind"] & KIND_MASK) == TRADE]
    for fill in f:
        at = trades[trades["exchange_ts"] == fill["exch_ts"]]
        assert at.shape[0] > 0, f"maker fill at {fill['exch_ts']} without a recorded trade then"
        if fill["side"] == O.BUY:  # a buy rests on the bid: trades at or below its price
            assert at["px"].min() <= fill["px"] + 1e-9
        else:
            assert at["px"].max() >= fill["px"] - 1e-9
    metrics = res.metrics
    assert math.isfinite(metrics.total_pnl) and metrics.maker_share == 1.0


def test_same_seed_same_run_other_seed_other_run(events: npt.NDArray[np.void]) -> None:
    def go(seed: int) -> BacktestResult:
        return run_backtest(events, PeriodicParentsStrategy(every_ms=5_000.0), _config(seed, sampled=True))

    a, b, c = go(7), go(7), go(8)
    assert a.digest() == b.digest() and a.fills.shape[0] > 10
    assert a.digest() != c.digest()
    assert a.metrics == b.metrics


def test_backtest_cli_writes_report_tables_and_summary(capture: Path, tmp_path: Path) -> None:
    out = tmp_path / "bt"
    r = CliRunner().invoke(app, ["backtest", "--data", str(capture), "--strategy", "parents", "--out", str(out),
                                 "--param", "every_ms=20000"])  # fmt: skip
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "result.json").read_text())
    assert summary["parents"] >= 10 and summary["fills"] > 0
    for name in ("report.html", "equity.png", "drawdown.png", "fills.png", "slippage.png", "fills.parquet"):
        assert (out / name).stat().st_size > 0, name
    assert "digest" in r.output


@pytest.mark.parametrize(("args", "needle"), [
    (["--strategy", "nope"], "--strategy 'nope'"),
    (["--param", "qty=abc"], "--param qty='abc'"),
    (["--param", "colour=red"], "--param colour"),
    (["--queue", "fifo"], "--queue 'fifo'"),
])  # fmt: skip
def test_backtest_cli_names_the_bad_option(capture: Path, tmp_path: Path, args: list[str], needle: str) -> None:
    r = CliRunner().invoke(app, ["backtest", "--data", str(capture), "--out", str(tmp_path), *args])
    assert r.exit_code == 2 and needle in r.output, r.output
