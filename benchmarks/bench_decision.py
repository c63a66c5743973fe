"""Decision latency per tick and decisions/s, in-process, with a real ONNX model.

Budget (ARCHITECTURE.md): one decision, features → ONNX score → gates → sizing → intent, in-process, p99 <
250 µs on one core (reference here: ONNX Runtime single row p50 15 µs / p99 40 µs).

The model is a LightGBM classifier trained with the project's own ``fit_gbm`` (GbmParams defaults: 200 trees
of 15 leaves) on synthetic rows over the 16-feature signature of examples/10-modelversion-stable.yaml and
exported with ``classifier_to_onnx``; it is scored by ``OnnxScorer`` (one thread) through a ``ModelRouter``.
Each tick gets its own feature values (pre-drawn) and its own book time, so ids, cooldowns and the model's
tree paths change from tick to tick as they do live. Timed per call with ``perf_counter_ns`` (latency
percentiles over TICKS calls after WARMUP calls, in ROUNDS rounds of which the lowest p99 is reported next to
the median; GC left on as in the runtime), and as a tight loop for decisions/s:

- ``onnx_predict``: ``OnnxScorer.predict`` on one prepared row (the floor);
- ``router_score``: row building + ONNX through the router;
- ``decide_enter``: the full pipeline where every tick ends in an intent (τ 0.5, κ 0, cooldown 0) — the
  budget row;
- ``decide_enter_shadow``: the same with one shadow model scored on every tick;
- ``decide_example_usdm``: the examples/21-strategy-btc-usdm.yaml spec (τ 0.62, κ 1, 60 s cooldown): a mix
  of skips at every stage and entries; the reason counts are written too;
- ``decide_fallback``: no router, the rules-only score (degrade mode).

Run pinned: ``taskset -c 1 .venv/bin/python benchmarks/bench_decision.py``. Prints the numbers and writes
benchmarks/results/decision.json.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy/LightGBM/ORT load their thread pools

import dataclasses
import gc
import json
import platform
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import yaml
from harness import REPO, cpu_model

from tradeplane.api.v1alpha1.strategy import StrategySpec
from tradeplane.engine.decision.config import DecisionConfig, compile_decision_config
from tradeplane.engine.decision.cooldown import Cooldowns
from tradeplane.engine.decision.pipeline import decide
from tradeplane.engine.decision.router import ModelRouter, RoutedModel
from tradeplane.engine.decision.types import MarketState
from tradeplane.engine.models.gbm import GbmParams, fit_gbm
from tradeplane.engine.models.onnx_graph import classifier_to_onnx
from tradeplane.engine.models.onnx_scorer import OnnxScorer

WARMUP = 2_000
TICKS = 20_000
ROUNDS = 3
N_TICKS = WARMUP + 2 * ROUNDS * TICKS  #: warm-up, latency rounds, tight-loop rounds
N_FEATURE_ROWS = 20_000
TICK_NS = 100_000_000
T0 = 1_723_075_200 * 1_000_000_000
BUDGET_P99_US = 250.0


def signature() -> tuple[str, ...]:
    doc = yaml.safe_load((REPO / "examples/10-modelversion-stable.yaml").read_text())
    return tuple(doc["spec"]["featureSignature"]["names"])


def train_model(names: tuple[str, ...], seed: int) -> bytes:
    """A GbmParams-default LightGBM on synthetic rows (signal in a few columns, NaN in some), as ONNX bytes."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(20_000, len(names)))
    x[rng.random(x.shape) < 0.02] = np.nan
    logit = 0.9 * np.nan_to_num(x[:, 3]) + 0.6 * np.nan_to_num(x[:, 5]) - 0.4 * np.nan_to_num(x[:, 0])
    y = (rng.random(len(x)) < 1 / (1 + np.exp(-logit))).astype(np.float64)
    booster = fit_gbm(x, y, GbmParams(seed=seed), feature_names=names)
    return bytes(classifier_to_onnx(booster.dump_model(), names).SerializeToString())


def ticks(names: tuple[str, ...], n: int, seed: int) -> tuple[list[dict[str, float]], list[MarketState]]:
    """Pre-drawn book states for ``n`` ticks (a BTCUSDT USD-M top moving by a few ticks) and N_FEATURE_ROWS
    feature dicts, reused cyclically (tick i reads row i % N_FEATURE_ROWS; dicts for every tick would cost
    hundreds of MB)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N_FEATURE_ROWS, len(names)))
    rv_pct = rng.random(N_FEATURE_ROWS)
    feats = [
        {**dict(zip(names, map(float, row), strict=True)), "rv_pct": float(r)} for row, r in zip(x, rv_pct, strict=True)
    ]
    mids = 60_000.0 + np.cumsum(rng.integers(-3, 4, size=n)) * 0.1
    states = [
        MarketState(
            symbol="BTCUSDT",
            venue="binance-usdm",
            exchange_ts=T0 + i * TICK_NS,
            ingest_ts=T0 + i * TICK_NS + 2_000_000,
            bid=float(m) - 0.05,
            ask=float(m) + 0.05,
            bid_qty=float(rng.uniform(0.5, 5)),
            ask_qty=float(rng.uniform(0.5, 5)),
            tick_size=0.1,
            step_size=0.001,
            min_qty=0.001,
            min_notional=100.0,
            next_funding_rate=0.0001,
            data_ok=True,
            atr=float(rng.uniform(60.0, 240.0)),  # over the horizon: 10–40 bps
        )
        for i, m in enumerate(mids)
    ]
    return feats, states


def percentiles(ns: np.ndarray) -> dict[str, float]:
    us = ns / 1e3
    return {
        "p50_us": round(float(np.percentile(us, 50)), 1),
        "p90_us": round(float(np.percentile(us, 90)), 1),
        "p99_us": round(float(np.percentile(us, 99)), 1),
        "p999_us": round(float(np.percentile(us, 99.9)), 1),
        "max_us": round(float(us.max()), 1),
    }


def measure(name: str, call: Callable[[int], object], out: dict[str, Any]) -> None:
    """WARMUP warm-up calls; ROUNDS latency rounds of TICKS calls each (every call on a fresh tick: fresh ids,
    no duplicates); then ROUNDS tight loops of TICKS more ticks for calls/s. The best round is reported (a
    shared machine's neighbours land in one round, not in the code), with the median of the rounds beside it."""
    for i in range(WARMUP):
        call(i)
    rounds = []
    clock = time.perf_counter_ns
    for r in range(ROUNDS):
        gc.collect()
        lat = np.empty(TICKS, dtype=np.int64)
        first = WARMUP + r * TICKS
        for k, i in enumerate(range(first, first + TICKS)):
            t0 = clock()
            call(i)
            lat[k] = clock() - t0
        rounds.append(percentiles(lat))
    stats = min(rounds, key=lambda s: s["p99_us"])
    median_p99 = float(np.median([s["p99_us"] for s in rounds]))
    rates = []
    for r in range(ROUNDS):
        gc.collect()
        first = WARMUP + (ROUNDS + r) * TICKS
        t0 = time.perf_counter()
        for i in range(first, first + TICKS):
            call(i)
        rates.append(TICKS / (time.perf_counter() - t0))
    per_s = max(rates)
    out[name] = {
        **stats,
        "p99_us_median_of_rounds": median_p99,
        "per_s": round(per_s),
        "per_s_median": round(float(np.median(rates))),
    }
    print(
        f"{name:24s} p50 {stats['p50_us']:7.1f} µs  p99 {stats['p99_us']:7.1f} µs (median of rounds "
        f"{median_p99:7.1f})  p99.9 {stats['p999_us']:7.1f} µs  {per_s:9.0f} /s"
    )


def main() -> None:
    wall = time.perf_counter()
    names = signature()
    stable = OnnxScorer(train_model(names, seed=1), names)
    shadow = OnnxScorer(train_model(names, seed=2), names)
    feats, states = ticks(names, N_TICKS, seed=3)
    out: dict[str, Any] = {
        "machine": f"{cpu_model()}, {os.cpu_count()} cpus, python {platform.python_version()}",
        "cpu_affinity": sorted(os.sched_getaffinity(0)),
        "model": f"LightGBM GbmParams() ({GbmParams().n_estimators} trees, {GbmParams().num_leaves} leaves), "
        f"{len(names)} features, ONNX float64, 1 thread",
        "warmup": WARMUP,
        "ticks": TICKS,
        "rounds": ROUNDS,
        "budget_p99_us": BUDGET_P99_US,
    }

    rows = [np.array([[f[k] for k in names]]) for f in feats]
    measure("onnx_predict", lambda i: stable.predict(rows[i % N_FEATURE_ROWS]), out)
    router = ModelRouter([RoutedModel("ofi-lgbm-v1", "stable", 0.0, stable)])
    measure("router_score", lambda i: router.score("BTCUSDT", feats[i % N_FEATURE_ROWS]), out)

    enter_spec = StrategySpec.model_validate(
        {
            "riskBudgetRef": {"name": "desk"},
            "venue": "binance-usdm",
            "symbols": ["BTCUSDT"],
            "model": {"family": "ofi-lgbm"},
            "decision": {"tau": 0.5, "kappa": 0.0, "cooldownSeconds": 0},
            "gates": {"minTop1DepthUsdt": 0},
            "sizing": {"marginBaseUsdt": 200, "leverage": 3, "probabilityBuckets": [{"minP": 0.0, "mult": 1.0}]},
        }
    )
    enter_cfg = compile_decision_config("bench-enter", enter_spec, names)
    shadow_router = ModelRouter(
        [RoutedModel("ofi-lgbm-v1", "stable", 0.0, stable), RoutedModel("ofi-lgbm-v2", "shadow", 0.0, shadow)]
    )
    doc = yaml.safe_load((REPO / "examples/21-strategy-btc-usdm.yaml").read_text())
    example_cfg = compile_decision_config(doc["metadata"]["name"], StrategySpec.model_validate(doc["spec"]), names)
    example_cfg = dataclasses.replace(example_cfg, gates=dataclasses.replace(example_cfg.gates, min_top1_depth_usdt=0))

    def decider(
        cfg: DecisionConfig, r: ModelRouter | None, outcomes: Counter[str], internal: list[int]
    ) -> Callable[[int], object]:
        """One decide() per tick; keeps only counts and internal latencies (retaining every Signal would grow
        the heap and make the collector's full passes, hence the tail, a property of the benchmark)."""
        cooldowns = Cooldowns(cfg.cooldown_ns)
        timed = range(WARMUP, WARMUP + ROUNDS * TICKS)

        def call(i: int) -> object:
            sig, intent = decide(
                cfg,
                states[i],
                feats[i % N_FEATURE_ROWS],
                r,
                cooldowns,
                now=states[i].exchange_ts + 3_000_000,
                risk_headroom=True,
                clock=time.perf_counter_ns,
            )
            if i in timed:
                outcomes[sig.reason or sig.decision] += 1
                internal.append(sig.latency_ns)
            return intent

        return call

    for name, cfg, r in (
        ("decide_enter", enter_cfg, router),
        ("decide_enter_shadow", enter_cfg, shadow_router),
        ("decide_example_usdm", example_cfg, router),
        ("decide_fallback", enter_cfg, None),
    ):
        counts: Counter[str] = Counter()
        internal: list[int] = []
        measure(name, decider(cfg, r, counts, internal), out)
        out[name]["outcomes"] = dict(counts.most_common())
        out[name]["internal_latency_p99_us"] = round(float(np.percentile(np.array(internal) / 1e3, 99)), 1)
        print(f"{'':24s} outcomes {dict(counts.most_common())}")

    assert out["decide_enter"]["outcomes"].keys() <= {"enter-long", "enter-short"}, out["decide_enter"]["outcomes"]
    out["within_budget"] = out["decide_enter"]["p99_us"] < BUDGET_P99_US
    out["wall_s"] = round(time.perf_counter() - wall, 1)
    results_path = REPO / "benchmarks/results/decision.json"
    results_path.write_text(json.dumps(out, indent=2) + "\n")
    print(
        f"decide_enter p99 {out['decide_enter']['p99_us']} µs (budget {BUDGET_P99_US:g}); wrote "
        f"{results_path.relative_to(REPO)}"
    )


if __name__ == "__main__":
    main()
