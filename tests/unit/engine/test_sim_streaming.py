"""A backtest fed as its events arrive (``BacktestRun.extend`` / ``advance``) equals the one-shot
``run_backtest`` over the same events, byte for byte, when local time is held back by more than the feed
latency — the property paper trading in the cluster (the ``execute`` workload) relies on.

Reference: ``run_backtest`` over the concatenated events of the real USD-M capture, with a quoting strategy
(own limit orders: queue position, cancels) and a strategy working parents through the executors
(maker-then-taker children, deadlines, wake-ups between batches).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from tradeplane.engine.events import SymbolTable
from tradeplane.engine.replay import read_capture
from tradeplane.engine.sim.baselines import PeriodicParentsStrategy, QuotingStrategy
from tradeplane.engine.sim.contracts import ContractSpec
from tradeplane.engine.sim.latency import ConstantLatency, align_local_clock
from tradeplane.engine.sim.runner import BacktestConfig, BacktestRun, Context, MarketBatch, run_backtest

MS = 1_000_000
CONTRACT = ContractSpec(kind="linear", tick_size=0.1, lot_size=0.001, maker_bps=-0.5, taker_bps=4.0)


@pytest.fixture(scope="module")
def events(shared_dir: Path) -> npt.NDArray[np.void]:
    ev = read_capture(shared_dir / "data/binance/ws/usdm_btcusdt_20240808.jsonl.gz", SymbolTable()).events
    aligned: npt.NDArray[np.void] = align_local_clock(ev, 1 * MS)[:120_000]
    return aligned


class Recorder:
    """Wraps a strategy and keeps what each batch held, so two runs can be compared batch by batch."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.batches: list[tuple[int, int, int, int, int]] = []

    def on_batch(self, ctx: Context, batch: MarketBatch) -> None:
        self.batches.append((batch.now, batch.events.shape[0], batch.tops.shape[0], batch.fills.shape[0],
                             batch.reports.shape[0]))  # fmt: skip
        self.inner.on_batch(ctx, batch)


def _config() -> BacktestConfig:
    return BacktestConfig(contracts={0: CONTRACT}, batch_ms=100.0, entry_latency=ConstantLatency(8 * MS),
                          response_latency=ConstantLatency(6 * MS), seed=3)  # fmt: skip


def _strategies() -> list[Any]:
    return [QuotingStrategy(qty=0.002, requote_ms=500.0, max_position=0.01),
            PeriodicParentsStrategy(notionals=(200.0, 900.0), every_ms=3_000.0)]  # fmt: skip


def _streamed(events: npt.NDArray[np.void], inner: Any, hold_back_ns: int, seed: int) -> tuple[Recorder, Any, int]:
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(1, events.shape[0]), 300, replace=False))
    parts = np.split(events, cuts)
    rec = Recorder(inner)
    run = BacktestRun(parts[0], rec, _config())
    for part in parts[1:]:
        run.extend(part)
        run.advance(int(part["ingest_ts"][-1]) - hold_back_ns)
    return rec, run.finish(), run.sim.late_events


@pytest.mark.parametrize("which", [0, 1])
def test_streamed_run_equals_the_one_shot_run(events: npt.NDArray[np.void], which: int) -> None:
    ref_rec = Recorder(_strategies()[which])
    ref = run_backtest(events, ref_rec, _config())
    latency = int((events["ingest_ts"] - events["exchange_ts"]).max())
    rec, got, late = _streamed(events, _strategies()[which], latency + 1, seed=which)
    assert late == 0
    assert ref.fills.shape[0] > 0  # the strategies trade: the comparison covers fills and reports
    assert rec.batches == ref_rec.batches
    assert got.digest() == ref.digest()


def test_feeding_without_hold_back_counts_late_events(events: npt.NDArray[np.void]) -> None:
    # advancing to the last event received lets the exchange run ahead of events still in flight
    _, _, late = _streamed(events, QuotingStrategy(qty=0.002), 0, seed=5)
    assert late > 0


def test_extend_rejects_events_out_of_receive_order(events: npt.NDArray[np.void]) -> None:
    run = BacktestRun(events[1000:2000], Recorder(QuotingStrategy()), _config())
    with pytest.raises(ValueError, match="receive order"):
        run.extend(events[:10])
    early = events[2000:2010].copy()
    early["ingest_ts"] = early["exchange_ts"] - 1
    early["ingest_ts"] = np.maximum(early["ingest_ts"], int(events["ingest_ts"][1999]))
    early["exchange_ts"] = early["ingest_ts"] + 5
    with pytest.raises(ValueError, match="before they happened"):
        run.extend(early)
