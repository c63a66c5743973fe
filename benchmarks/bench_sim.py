"""Execution simulator and backtest speed on the real USD-M BTCUSDT capture.

Budgets (ARCHITECTURE.md): simulator with a quoting strategy, queue model and latency ≥ 10M events/s over
prepared arrays on one core (hftbacktest 2.4.4 measured here: 11.1M rows/s market making, 13.2M
do-nothing); raw capture file → finished market-making backtest ≥ 400k messages/s end to end (hftbacktest
convert + run ≈ 65k msg/s; NautilusTrader ≈ 81k events/s).

Timed, best of ROUNDS after a warm-up (numba kernels compiled and cached before timing):

- ``replay_no_orders``: ``Simulator.run_to_end`` with no orders (the matcher's floor, setup included);
- ``quoting_runner_{100,1000}ms``: the runner with :class:`QuotingStrategy` (post-only at the local touch
  on both sides, re-quoted when the touch moves or every second) waking every 100 ms / 1 s, risk-averse
  queue, 8 ms entry and 6 ms response latency — the budget row;
- ``quoting_runner_10ms``: the same strategy near its natural cadence (it re-quotes when the touch moves;
  depth messages arrive every ~50 ms), where the fixed cost per wake-up dominates; ``wakeup_us`` is that
  cost, from the 10 ms and 1 s runs;
- ``parents_runner``: periodic maker-then-taker parents through the executor desk (routing table);
- ``end_to_end_{1000,100}ms``: ``read_capture`` (gzip file → events) + clock alignment + the quoting
  backtest, messages/s of the capture file (the second budget row); report and tables writing timed separately.

Run pinned: ``taskset -c 1 .venv/bin/python benchmarks/bench_sim.py``. Prints the numbers and writes
benchmarks/results/sim.json.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from harness import REPO, best_and_median, cpu_model, shared_dir

from tradeplane.engine.events import SymbolTable
from tradeplane.engine.replay import read_capture
from tradeplane.engine.sim.baselines import PeriodicParentsStrategy, QuotingStrategy
from tradeplane.engine.sim.contracts import binance_usdm
from tradeplane.engine.sim.latency import ConstantLatency, align_local_clock
from tradeplane.engine.sim.matching import SimConfig, Simulator
from tradeplane.engine.sim.result import BacktestResult
from tradeplane.engine.sim.runner import BacktestConfig, Strategy, run_backtest

CAPTURE = "usdm_btcusdt_20240808.jsonl.gz"
ROUNDS = 5
MS = 1_000_000


def config(batch_ms: float) -> BacktestConfig:
    return BacktestConfig(contracts={0: binance_usdm(0.1, 0.001)}, batch_ms=batch_ms,
                          entry_latency=ConstantLatency(8 * MS), response_latency=ConstantLatency(6 * MS))  # fmt: skip


def main() -> None:
    path = shared_dir() / "data/binance/ws" / CAPTURE
    raw = read_capture(path, SymbolTable())
    events = align_local_clock(raw.events, 1 * MS)
    n_ev = int(events.shape[0])
    n_msg = int(raw.stats.messages)
    out: dict[str, Any] = {"machine": f"{cpu_model()}, {os.cpu_count()} cpus, python {platform.python_version()}",
                           "cpu_affinity": sorted(os.sched_getaffinity(0)), "capture": CAPTURE, "events": n_ev,
                           "messages": n_msg, "rounds": ROUNDS}  # fmt: skip

    def rate(name: str, run: Callable[[], object], unit: int) -> None:
        best, med = best_and_median(run, ROUNDS)
        out[f"{name}_s"] = round(best, 4)
        out[f"{name}_per_s"] = round(unit / best)
        out[f"{name}_per_s_median"] = round(unit / med)
        print(f"{name:32s} {unit / best / 1e6:8.2f} M/s (median {unit / med / 1e6:.2f} M/s, best {best:.3f} s)")

    rate("replay_no_orders", lambda: Simulator(events, SimConfig(tick_sizes={0: 0.1})).run_to_end(), n_ev)

    last: dict[str, BacktestResult] = {}

    def backtest(strategy: Callable[[], Strategy], batch_ms: float, key: str) -> Callable[[], None]:
        def go() -> None:
            last[key] = run_backtest(events, strategy(), config(batch_ms))

        return go

    rate("quoting_runner_100ms", backtest(QuotingStrategy, 100.0, "q100"), n_ev)
    rate("quoting_runner_1000ms", backtest(QuotingStrategy, 1000.0, "q1000"), n_ev)
    rate("quoting_runner_10ms", backtest(QuotingStrategy, 10.0, "q10"), n_ev)
    span_s = (int(events["ingest_ts"].max()) - int(events["ingest_ts"].min())) / 1e9
    out["wakeup_us"] = round(
        (out["quoting_runner_10ms_s"] - out["quoting_runner_1000ms_s"]) / (span_s / 0.01 - span_s) * 1e6, 2
    )
    print(f"per wake-up (10 ms vs 1 s runs): {out['wakeup_us']} µs")
    rate("parents_runner_100ms", backtest(lambda: PeriodicParentsStrategy(every_ms=5_000.0), 100.0, "p"), n_ev)
    for key in ("q100", "q1000", "q10", "p"):
        r = last[key]
        out[f"{key}_fills"], out[f"{key}_orders"] = (
            int(r.fills.shape[0]),
            int(np.unique(r.reports["order_id"]).shape[0]),
        )
    print(f"quoting 100 ms: {out['q100_fills']} fills of {out['q100_orders']} orders; parents: {out['p_fills']} fills")

    def end_to_end(batch_ms: float) -> Callable[[], None]:
        def go() -> None:
            ev = align_local_clock(read_capture(path, SymbolTable()).events, 1 * MS)
            last["e2e"] = run_backtest(ev, QuotingStrategy(), config(batch_ms))

        return go

    rate("end_to_end_messages_1000ms", end_to_end(1000.0), n_msg)
    rate("end_to_end_messages_100ms", end_to_end(100.0), n_msg)
    rate("read_capture_messages", lambda: read_capture(path, SymbolTable()), n_msg)

    from tradeplane.workloads.backtest.report import write_report
    from tradeplane.workloads.backtest.tables import write_tables

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        write_report(last["e2e"], Path(tmp))
        out["report_s"] = round(time.perf_counter() - t0, 3)
        t0 = time.perf_counter()
        write_tables(last["e2e"], Path(tmp), "bench")
        out["tables_s"] = round(time.perf_counter() - t0, 3)
    print(f"report {out['report_s']} s, tables {out['tables_s']} s")
    out["budget_quoting_events_per_s"], out["budget_end_to_end_messages_per_s"] = 10_000_000, 400_000
    results = REPO / "benchmarks/results/sim.json"
    results.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {results.relative_to(REPO)}")


if __name__ == "__main__":
    main()
