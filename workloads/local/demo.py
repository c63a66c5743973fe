"""``tradeplane demo``: the whole platform on a laptop in a few minutes, with nothing but this repository.

1. A synthetic USD-M BTCUSDT market (engine/synth.py) is generated and cut into one-second trade bars,
   written as a kline file — the research pipeline's input format.
2. The research pipeline (``tradeplane train``: purged CV, search, calibration, ONNX export) trains a
   baseline (``ofi-lgbm-v1``) and a candidate (``ofi-lgbm-v2``, another search seed and label horizon).
3. The example desk (examples/: the RiskBudget and both Strategies) is written to ``<home>/demo/manifests``
   with ModelVersions pointing at the trained files: v1 stable, v2 in shadow (scored on every decision,
   never traded).
4. ``tradeplane run`` executes the desk over a fresh synthetic market (another seed, so the models are
   judged out of sample) or over real captures (``--data``), storing everything in chDB and writing the
   run report.

Why synthetic data by default: the demo must work on a fresh machine with no download; the same commands
work on real klines and captures (docs/quickstart.md).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ...engine.events import EventArray
from ...engine.features.clocks import ClockSpec
from ...engine.features.online import FeatureEngine, FeatureSpec
from ...engine.models.datasets import LabelSpec
from ...engine.runtime.instruments import instrument_table
from ..training.job import TrainConfig, run_training
from .runner import RunConfig, RunSummary, run_local
from .source import synthetic_market

Progress = Callable[[str], None]
_NS_PER_MS = 1_000_000
FAMILY = "ofi-lgbm"
STABLE, CANDIDATE = "v1", "v2"


@dataclass(frozen=True)
class DemoConfig:
    examples: Path = Path("examples")
    home: Path = Path(".tradeplane")
    data: tuple[Path, ...] = ()  #: captures for the run (default: a synthetic market)
    train_hours: float = 3.0  #: synthetic history the models learn from
    run_seconds: float = 900.0  #: synthetic market the desk trades
    trials: int = 6  #: hyper-parameter trials per model
    seed: int = 7


def one_second_bars(events: EventArray) -> np.ndarray:
    """Trade-priced one-second bars of a stream (BAR_DTYPE), as the runtime's default clock cuts them."""
    clock = ClockSpec.time("time1000ms", 1_000 * _NS_PER_MS, price="trade")
    batch = FeatureEngine(FeatureSpec(clocks=(clock,))).update(events)
    return batch.bars[clock.name]


def write_klines(bars: np.ndarray, path: Path) -> Path:
    """Bars as a kline file in the short Binance/freqtrade layout (open time in epoch ms)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ok = np.isfinite(bars["close"])
    b = bars[ok]
    lines = ["open_time,open,high,low,close,volume"]
    lines += [f"{t // _NS_PER_MS},{o!r},{h!r},{lo!r},{c!r},{v!r}" for t, o, h, lo, c, v in
              zip(b["start_ts"].tolist(), b["open"].tolist(), b["high"].tolist(), b["low"].tolist(),
                  b["close"].tolist(), b["volume"].tolist(), strict=True)]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return path


def _label(horizon_bars: int) -> LabelSpec:
    """Fixed-horizon labels without a dead zone: y = 1 when the price is higher after the horizon, so the
    calibrated p_up is P(up) and 1 − p_up is P(down), as the decision reads it. (A triple-barrier model's
    probability is P(upper barrier first), whose complement includes the timeouts.)"""
    return LabelSpec(kind="fixed-horizon", horizon_bars=horizon_bars, dead_zone_mult=0.0)


def train_models(cfg: DemoConfig, progress: Progress) -> dict[str, dict[str, Any]]:
    """Train the baseline and the candidate on a synthetic history; returns their ModelVersion documents."""
    inst = instrument_table([("binance-usdm", "BTCUSDT")])
    progress(f"synthetic history: {cfg.train_hours:g} h of USD-M BTCUSDT")
    history = synthetic_market(inst, seconds=cfg.train_hours * 3600, seed=cfg.seed)
    klines = write_klines(one_second_bars(history.events), cfg.home / "demo" / "data" / "synth_btcusdt_1s.csv")
    docs: dict[str, dict[str, Any]] = {}
    for version, seed, horizon in ((STABLE, cfg.seed, 60), (CANDIDATE, cfg.seed + 1, 45)):
        out = cfg.home / "models" / FAMILY / version
        progress(f"training {FAMILY}-{version} (research pipeline, {cfg.trials} trials) → {out}")
        result = run_training(TrainConfig(
            data=(klines,), out=out, features="bars-v1", label=_label(horizon),
            trials=cfg.trials, seed=seed, model=FAMILY, version=version,
            artifact_uri=f"local://models/{FAMILY}/{version}/model.onnx",
        ), progress=lambda m: progress(f"  {m}"))  # fmt: skip
        docs[version] = dict(result.manifest)
    return docs


#: The synthetic market moves about 1 bp a minute (Binance's BTCUSDT: 5–10) and its book is thinner, so the
#: example thresholds would skip every decision (BELOW_KAPPA, GATE_DEPTH). The demo's copy lowers them;
#: with ``--data`` (real captures) the examples run as written.
SYNTHETIC_KAPPA = 0.2
SYNTHETIC_MIN_DEPTH_USDT = 5_000.0


def relax_for_synthetic(spec: dict[str, Any]) -> None:
    """Lower κ and the depth gate of a Strategy spec (a YAML mapping) for the calmer synthetic market."""
    spec.setdefault("decision", {})["kappa"] = SYNTHETIC_KAPPA
    spec.setdefault("gates", {})["minTop1DepthUsdt"] = SYNTHETIC_MIN_DEPTH_USDT


def demo_manifests(cfg: DemoConfig, models: dict[str, dict[str, Any]]) -> Path:
    """The example desk with the trained ModelVersions (v1 stable, v2 shadow, both in-process); on the
    synthetic market with κ and the depth gate relaxed (:func:`relax_for_synthetic`)."""
    out = cfg.home / "demo" / "manifests"
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.yaml"):
        old.unlink()
    for path in sorted(cfg.examples.glob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        if any(d.get("kind") == "ModelVersion" for d in docs):
            continue  # replaced by the trained versions below
        if cfg.data or not any(d.get("kind") == "Strategy" for d in docs):
            (out / path.name).write_text(path.read_text())
            continue
        for d in docs:
            if d.get("kind") == "Strategy":
                relax_for_synthetic(d["spec"])
        (out / path.name).write_text(yaml.safe_dump_all(docs, sort_keys=False))
    for version, role in ((STABLE, "immediate"), (CANDIDATE, "shadow")):
        doc = models[version]
        doc["spec"]["rollout"] = {"strategy": role}
        doc["spec"]["serving"] = {"mode": "in-process"}
        (out / f"1{0 if version == STABLE else 1}-modelversion-{version}.yaml").write_text(
            yaml.safe_dump(doc, sort_keys=False)
        )
    return out


def run_demo(cfg: DemoConfig, *, progress: Progress = lambda _: None,
             stop: threading.Event | None = None) -> RunSummary:  # fmt: skip
    models = train_models(cfg, progress)
    manifests = demo_manifests(cfg, models)
    progress(f"desk manifests: {manifests}")
    run = RunConfig(manifests=(manifests,), source="files" if cfg.data else "synth", files=cfg.data,
                    seconds=cfg.run_seconds, seed=cfg.seed + 100, home=cfg.home, run_id="demo")  # fmt: skip
    return run_local(run, progress=progress, stop=stop)
