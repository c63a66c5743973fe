"""Research pipeline: training time on the 51-day set, ONNX inference latency and throughput, contributions.

Measures, on the real Binance USD-M 1-minute klines (BTCUSDT + ETHUSDT, 51 days) and BTC funding:

- the whole `tradeplane train` job (dataset, 20-trial purged walk-forward search, calibration, final model,
  export with parity check, contributions, report, manifest), wall seconds;
- ONNX Runtime single-row latency of the exported classifier + calibrator graph on one thread (p50 / p99
  over 20,000 calls on real feature rows), the same for the raw LightGBM booster, and batch throughput;
- the online contribution table: one row + top-5, p50 / p99.

Run pinned: ``OMP_NUM_THREADS=1 taskset -c 1 .venv/bin/python benchmarks/bench_train.py``. Prints the numbers
and writes benchmarks/results/train.json. The reference row in ARCHITECTURE.md: ONNX Runtime single row
p50 15 µs / p99 40 µs.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import lightgbm as lgb
import numpy as np

from tradeplane.engine.models.contributions import top_k
from tradeplane.engine.models.datasets import LabelSpec, kline_dataset
from tradeplane.engine.replay import read_klines_csv
from tradeplane.workloads.training.job import TrainConfig, run_training
from tradeplane.workloads.training.registry import load_model

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TRADEPLANE_SHARED_DIR", REPO.parent / "shared"))
DATA = SHARED / "data/binance"
FILES = (
    DATA / "klines/binance_usdm_btcusdt_1m_2025-05-04_2025-06-24.csv.gz",
    DATA / "klines/binance_usdm_ethusdt_1m_2025-05-04_2025-06-24.csv.gz",
    DATA / "funding/binance_usdm_btcusdt_funding_2019-09-10_2026-04-07.csv.gz",
)
CALLS = 20_000


def percentiles_us(fn: Callable[[np.ndarray], object], rows: np.ndarray) -> tuple[float, float]:
    """p50 / p99 of one call per row (after 500 warm-up calls), microseconds."""
    for i in range(500):
        fn(rows[i % len(rows)])
    out = np.empty(CALLS)
    for i in range(CALLS):
        row = rows[i % len(rows)]
        t0 = time.perf_counter_ns()
        fn(row)
        out[i] = time.perf_counter_ns() - t0
    return float(np.percentile(out, 50) / 1e3), float(np.percentile(out, 99) / 1e3)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "model"
        t0 = time.perf_counter()
        result = run_training(TrainConfig(data=FILES, out=out, trials=20, seed=0))
        train_s = time.perf_counter() - t0
        model = load_model(out)
        booster = lgb.Booster(model_file=str(out / "model.lgb.txt"))
        klines = {0: read_klines_csv(FILES[0], 0)}
        rows = kline_dataset(klines, {}, model.feature_names, LabelSpec(), stride=1).features[-50_000:]
        rows = np.ascontiguousarray(rows)
        onnx_p50, onnx_p99 = percentiles_us(model.scorer.predict, rows)
        native_p50, native_p99 = percentiles_us(lambda r: booster.predict(r.reshape(1, -1), num_threads=1), rows)
        table = model.contributions
        assert table is not None
        contrib_p50, contrib_p99 = percentiles_us(lambda r: top_k(table.contributions(r), 5), rows)
        t1 = time.perf_counter()
        for _ in range(3):
            model.scorer.predict(rows)
        batch_rows_s = 3 * len(rows) / (time.perf_counter() - t1)
        trees = booster.num_trees()
    hold = result.metrics["hold_out"]
    summary = {
        "machine": f"{platform.machine()} {platform.processor() or ''} python {platform.python_version()}".strip(),
        "input": "BTCUSDT + ETHUSDT USD-M 1m klines, 51 days (146k bars), BTC funding; stride 5",
        "samples": result.metrics["samples"],
        "train_wall_s_20_trials": round(train_s, 1),
        "trials_run": result.metrics["trials_run"],
        "best_params": result.metrics["best_params"],
        "trees": trees,
        "features": len(model.feature_names),
        "hold_out_pr_auc": round(hold["pr_auc"], 4),
        "hold_out_base_rate": round(hold["base_rate"], 4),
        "hold_out_roc_auc": round(hold["roc_auc"], 4),
        "hold_out_max_calibration_error_pp": round(hold["max_calibration_error_pp"], 2),
        "onnx_max_abs_diff": result.metrics["onnx_max_abs_diff"],
        "onnx_single_row_us_p50": round(onnx_p50, 1),
        "onnx_single_row_us_p99": round(onnx_p99, 1),
        "lightgbm_native_single_row_us_p50": round(native_p50, 1),
        "lightgbm_native_single_row_us_p99": round(native_p99, 1),
        "onnx_batch_rows_per_s": round(batch_rows_s),
        "online_contributions_top5_us_p50": round(contrib_p50, 1),
        "online_contributions_top5_us_p99": round(contrib_p99, 1),
        "contributions_top1_agreement_vs_treeshap": result.metrics["contributions_top1_agreement"],
    }
    for key, value in summary.items():
        print(f"{key:>44}: {value}")
    path = REPO / "benchmarks" / "results" / "train.json"
    path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
