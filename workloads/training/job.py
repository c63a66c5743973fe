"""The training job behind `tradeplane train` (and, on a cluster, the ModelVersion's Ray job).

Order of work, and why:

1. **Hold-out first.** The last ``holdout_frac`` of samples (by time) is cut off before anything else and
   touched once, at the end; earlier samples whose label reaches into it are purged. Its metrics are the
   honest ones written into the ModelVersion.
2. **Search on purged walk-forward OOF.** Every trial scores the development samples out of fold; its
   objective J uses the OOF probabilities after a Platt fit on those same OOF scores (two parameters, so
   J sees calibrated probabilities without the search overfitting the calibrator).
3. **Calibrate on OOF only.** The chosen calibrator (isotonic by default) is fitted on the best trial's OOF
   predictions, never on rows a model was trained on.
4. **Final model on all development samples**, exported with its calibrator as one float64 ONNX graph, and
   checked against the native model on the hold-out (must agree to 1e-6 or the run fails).
5. **Artifact, report and ModelVersion** written; the manifest is validated with the API types.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

import tradeplane
from tradeplane.api.v1alpha1._base import NAME_PATTERN
from tradeplane.api.validation import format_loc, validate_object

from ...engine import metrics as m
from ...engine.calibration import (
    IsotonicCalibrator,
    PlattCalibrator,
    fit_isotonic,
    fit_platt,
    fit_probability_interval,
)
from ...engine.costs import fee_schedule
from ...engine.models.contributions import fit_contribution_table, offline_contributions, top_k, top_k_named
from ...engine.models.datasets import Dataset, LabelSpec, kline_dataset, resolve_feature_names
from ...engine.models.gbm import GbmParams, fit_gbm, fit_logistic, predict_gbm, predict_logistic
from ...engine.models.objective import ObjectiveWeights, SignalCosts, signal_metrics
from ...engine.models.onnx_graph import classifier_to_onnx
from ...engine.models.onnx_scorer import OnnxScorer
from ...engine.models.oof import OutOfFold, out_of_fold
from ...engine.models.search import SearchResult, SearchSpace, random_search
from ...engine.splits import Split, walk_forward
from .data import TrainingData, load_training_data
from .registry import (
    INTERVAL_FILE,
    MODEL_FILE,
    modelversion_manifest,
    sha256_file,
    write_index,
    write_json,
    write_modelversion,
    write_offline_calibration,
)
from .report import FoldRow, ReportData, write_report

FloatArray = npt.NDArray[np.float64]
Calibrator = IsotonicCalibrator | PlattCalibrator

#: ONNX output must equal the native model + calibrator to this (the issue's acceptance bound).
ONNX_TOLERANCE: Final = 1e-6
#: Rows used to fit the online contribution table, and hold-out rows used to check it against TreeSHAP
#: (TreeSHAP costs O(rows · trees · leaves · depth): ~1-3k rows/s on one core for the searched models).
MAX_SHAP_ROWS: Final = 8_000
MAX_SHAP_CHECK_ROWS: Final = 2_000


class TrainingError(RuntimeError):
    """A run that cannot produce a trustworthy model (too little data, export mismatch, invalid manifest)."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run depends on; written to lineage.json so the run can be repeated exactly."""

    data: tuple[Path, ...]
    out: Path
    features: str = "bars-v1"
    label: LabelSpec = field(default_factory=LabelSpec)
    stride: int = 5
    folds: int = 5
    holdout_frac: float = 0.2
    trials: int = 20
    time_budget_s: float | None = None
    seed: int = 0
    calibration: Literal["isotonic", "platt"] = "isotonic"
    weights: ObjectiveWeights = field(default_factory=ObjectiveWeights)
    costs: SignalCosts = field(default_factory=SignalCosts)
    space: SearchSpace = field(default_factory=SearchSpace)
    model: str = "kline-lgbm"
    version: str = "v1"
    artifact_uri: str | None = None

    def __post_init__(self) -> None:
        if not 0 < self.holdout_frac < 0.9:
            raise ValueError(f"holdout_frac must be in (0, 0.9), got {self.holdout_frac}")
        if self.folds < 2:
            raise ValueError(f"folds must be ≥ 2, got {self.folds}")
        if self.calibration not in ("isotonic", "platt"):
            raise ValueError(f"calibration must be isotonic or platt, got {self.calibration!r}")
        fee_schedule(self.costs.venue, self.costs.tier)  # an unknown venue fails now, not after loading data
        name = f"{self.model}-{self.version}"
        if not re.fullmatch(NAME_PATTERN, name) or len(self.model) > 40:
            raise ValueError(
                f"model {self.model!r} / version {self.version!r} must form a Kubernetes name "
                f"(lowercase letters, digits, '-'; model ≤ 40 characters), got {name!r}"
            )

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["data"] = [str(p) for p in self.data]
        d["out"] = str(self.out)
        return d


@dataclass(frozen=True)
class TrainResult:
    out: Path
    files: Mapping[str, Path]
    metrics: Mapping[str, Any]
    manifest: Mapping[str, Any]


Progress = Callable[[str], None]


def holdout_split(t0: npt.NDArray[np.int64], t1: npt.NDArray[np.int64], frac: float) -> tuple[Split, int]:
    """(development = train, hold-out = test) by time; dev samples whose label reaches the hold-out are purged.

    Returns the split and the number of purged samples.
    """
    n = t0.shape[0]
    first = int(np.floor(n * (1 - frac)))
    if first < 2 or first >= n:
        raise TrainingError(f"{n} samples cannot be split with holdout_frac={frac}")
    candidates = np.arange(first, dtype=np.int64)
    dev = candidates[t1[candidates] < t0[first]]
    return Split(dev, np.arange(first, n, dtype=np.int64)), first - int(dev.shape[0])


def _fit_calibrator(kind: str, p: FloatArray, y: npt.NDArray[np.int8]) -> Calibrator:
    return fit_isotonic(p, y) if kind == "isotonic" else fit_platt(p, y)


def _calibrator_dict(cal: Calibrator) -> dict[str, Any]:
    if isinstance(cal, IsotonicCalibrator):
        return {"kind": "isotonic", "x": cal.x.tolist(), "y": cal.y.tolist()}
    return {"kind": "platt", "a": cal.a, "b": cal.b}


def _metrics(ds: Dataset, p: FloatArray, cfg: TrainConfig) -> dict[str, float]:
    return signal_metrics(
        ds.y,
        p,
        forward_ret_bps=ds.forward_ret_bps,
        up_move_bps=ds.up_move_bps,
        down_move_bps=ds.down_move_bps,
        funding_rate=ds.funding_rate,
        costs=cfg.costs,
        weights=cfg.weights,
    )


def _fold_rows(dev: Dataset, model: OutOfFold, baseline: OutOfFold, cfg: TrainConfig) -> list[FoldRow]:
    rows = []
    for i, split in enumerate(model.splits):
        y = dev.y[split.test]

        def summary(p: FloatArray, y: npt.NDArray[np.int8] = y) -> dict[str, float]:
            both = 0 < int(y.sum()) < y.shape[0]
            return {
                "pr_auc": m.pr_auc(y, p) if both else float("nan"),
                "roc_auc": m.roc_auc(y, p) if both else float("nan"),
                "brier": m.brier(y, p),
                "base_rate": float(y.mean()),
            }

        rows.append(
            FoldRow(
                fold=i + 1,
                train_start_ns=int(dev.t0[split.train].min()),
                train_end_ns=int(dev.t0[split.train].max()),
                test_start_ns=int(dev.t0[split.test].min()),
                test_end_ns=int(dev.t0[split.test].max()),
                n_train=int(split.train.shape[0]),
                n_test=int(split.test.shape[0]),
                metrics=summary(model.p[split.test]),
                baseline_metrics=summary(baseline.p[split.test]),
            )
        )
    return rows


def code_version() -> dict[str, str]:
    """Package version and, when run from a git checkout, the commit and whether the tree was dirty."""
    out = {"tradeplane": tradeplane.__version__, "python": sys.version.split()[0]}
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        out["git_commit"] = commit
        out["git_dirty"] = "yes" if dirty else "no"
    except (OSError, subprocess.SubprocessError):
        out["git_commit"] = "unknown"
    return out


def _manifest_metrics(hold_out: Mapping[str, float], weights: ObjectiveWeights) -> dict[str, float]:
    """Hold-out metrics for ModelVersion.spec.metrics; Avg(U) only when enough signals were taken to mean it."""
    out = dict(hold_out)
    if out.get("taken", 0.0) < weights.min_taken:
        out["avg_utility"] = float("nan")  # dropped from the manifest (NaN is not written)
    return out


def _bar_seconds(data: TrainingData) -> float:
    """The kline interval (s) of the first symbol, for the funding cost over the label horizon."""
    first = data.klines[min(data.klines)]["open_ts"]
    return float(np.median(np.diff(first))) / 1e9


def build_dataset(data: TrainingData, cfg: TrainConfig) -> Dataset:
    names = resolve_feature_names(cfg.features)
    ds = kline_dataset(data.klines, data.funding, names, cfg.label, stride=cfg.stride)
    if len(ds) < 50 * (cfg.folds + 1):
        raise TrainingError(f"only {len(ds)} samples after warm-up and horizon; need ≥ {50 * (cfg.folds + 1)}")
    if ds.y.min() == ds.y.max():
        raise TrainingError("every sample has the same label; widen the data or change the label")
    return ds


def run_training(cfg: TrainConfig, progress: Progress = lambda msg: None) -> TrainResult:
    """Run the whole pipeline and write the artifact directory ``cfg.out``."""
    started = time.monotonic()
    data = load_training_data(list(cfg.data))
    ds = build_dataset(data, cfg)
    cfg = replace(cfg, costs=replace(cfg.costs, horizon_s=cfg.label.horizon_bars * _bar_seconds(data)))
    progress(
        f"dataset: {len(ds)} samples × {len(ds.feature_names)} features, symbols {', '.join(data.symbols)}, "
        f"base rate {ds.y.mean():.3f}"
    )
    outer, purged = holdout_split(ds.t0, ds.t1, cfg.holdout_frac)
    dev, hold = ds.subset(outer.train), ds.subset(outer.test)
    splits = walk_forward(dev.t0, dev.t1, cfg.folds, expanding=True)
    progress(
        f"development {len(dev)} samples ({purged} purged before the hold-out), hold-out {len(hold)}; "
        f"{cfg.folds} purged walk-forward folds"
    )

    oof_by_trial: dict[int, OutOfFold] = {}

    def evaluate(params: GbmParams) -> dict[str, float]:
        oof = out_of_fold(dev.features, dev.y, splits, lambda a, b, c: predict_gbm(fit_gbm(a, b, params), c))
        oof_by_trial[len(oof_by_trial)] = oof
        tested = oof.tested
        p = fit_platt(oof.p[tested], dev.y[tested])(oof.p[tested])
        return _metrics(dev.subset(tested), p, cfg)

    def on_trial(trial: Any, planned: int) -> None:
        progress(
            f"trial {trial.index + 1}/{planned}: J={trial.objective:.4f} PR-AUC={trial.metrics['pr_auc']:.4f} "
            f"({trial.seconds:.1f}s)"
        )

    search: SearchResult = random_search(
        evaluate,
        n_trials=cfg.trials,
        seed=cfg.seed,
        base=GbmParams(seed=cfg.seed),
        space=cfg.space,
        time_budget_s=cfg.time_budget_s,
        on_trial=on_trial,
    )
    best = search.best
    best_oof = oof_by_trial[best.index]
    tested = best_oof.tested
    dev_tested = dev.subset(tested)
    progress(
        f"best trial {best.index + 1}: J={best.objective:.4f}"
        + (" (time budget reached)" if search.stopped_by_time else "")
    )

    calibrator = _fit_calibrator(cfg.calibration, best_oof.p[tested], dev.y[tested])
    p_oof = calibrator(best_oof.p[tested])
    baseline = out_of_fold(dev.features, dev.y, splits, lambda a, b, c: predict_logistic(fit_logistic(a, b), c))
    p_oof_base = baseline.p[tested]

    booster = fit_gbm(dev.features, dev.y, best.params, feature_names=ds.feature_names)
    p_hold_raw = predict_gbm(booster, hold.features)
    p_hold = calibrator(p_hold_raw)
    progress("final model fitted on the development samples; exporting")

    names = list(ds.feature_names)
    onnx_model = classifier_to_onnx(
        booster.dump_model(), names, calibrator, metadata={"model": cfg.model, "version": cfg.version}
    )
    model_bytes = onnx_model.SerializeToString()
    scorer = OnnxScorer(model_bytes, names)
    parity = float(np.max(np.abs(scorer.predict(hold.features) - p_hold)))
    if not parity <= ONNX_TOLERANCE:
        raise TrainingError(f"ONNX output differs from the native model by {parity:.3g} > {ONNX_TOLERANCE}")

    rng = np.random.default_rng(cfg.seed)
    shap_rows = np.sort(rng.choice(len(dev), size=min(len(dev), MAX_SHAP_ROWS), replace=False))
    phi, bias = offline_contributions(booster, dev.features[shap_rows])
    table = fit_contribution_table(dev.features[shap_rows], phi, float(np.mean(bias)), names)
    check_rows = np.sort(rng.choice(len(hold), size=min(len(hold), MAX_SHAP_CHECK_ROWS), replace=False))
    hold_phi, _ = offline_contributions(booster, hold.features[check_rows])
    online_top, _ = top_k(table.contributions(hold.features[check_rows]), 1)
    offline_top, _ = top_k(hold_phi, 1)
    top1_agreement = float(np.mean(online_top[:, 0] == offline_top[:, 0]))
    examples_idx = np.argsort(-p_hold, kind="stable")[:5]
    examples = top_k_named(offline_contributions(booster, hold.features[examples_idx])[0], names, 5)

    metrics_all: dict[str, Any] = {
        "hold_out": _metrics(hold, p_hold, cfg),
        "out_of_fold": _metrics(dev_tested, p_oof, cfg),
        "out_of_fold_raw": _metrics(dev_tested, best_oof.p[tested], cfg),
        "baseline_out_of_fold": _metrics(dev_tested, p_oof_base, cfg),
        "baseline_hold_out": _metrics(hold, predict_logistic(fit_logistic(dev.features, dev.y), hold.features), cfg),
        "onnx_max_abs_diff": parity,
        "contributions_top1_agreement": top1_agreement,
        "best_trial": best.index + 1,
        "best_params": best.params.as_dict(),
        "trials_run": len(search.trials),
        "trials_planned": search.planned,
        "stopped_by_time": search.stopped_by_time,
        "samples": {
            "total": len(ds),
            "development": len(dev),
            "purged": purged,
            "hold_out": len(hold),
            "out_of_fold": int(tested.sum()),
        },
    }
    fold_rows = _fold_rows(dev, best_oof, baseline, cfg)
    metrics_all["folds"] = [asdict(r) for r in fold_rows]
    metrics_all["search"] = [t.as_dict() for t in search.trials]

    out = cfg.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "artifact.json").unlink(missing_ok=True)  # a half-rewritten directory must not look verified
    (out / MODEL_FILE).write_bytes(model_bytes)
    booster.save_model(str(out / "model.lgb.txt"))
    write_json(out / "calibrator.json", _calibrator_dict(calibrator))
    write_json(out / "contributions.json", table.to_dict())
    write_json(out / INTERVAL_FILE, fit_probability_interval(p_oof).to_dict())
    calibration_file = write_offline_calibration(out, dev_tested.y.astype(np.float64), p_oof)
    write_json(out / "metrics.json", metrics_all)
    lineage = {
        "files": data.files,
        "symbols": data.symbols,
        "samples_span": [
            str(np.datetime64(int(ds.t0.min()), "ns")) + "Z",
            str(np.datetime64(int(ds.t1.max()), "ns")) + "Z",
        ],
        "hold_out_span": [
            str(np.datetime64(int(hold.t0.min()), "ns")) + "Z",
            str(np.datetime64(int(hold.t1.max()), "ns")) + "Z",
        ],
        "code": code_version(),
        "command": shlex.join(sys.argv),
        "config": cfg.as_dict(),
    }
    write_json(out / "lineage.json", lineage)

    title = f"{cfg.model} {cfg.version}: {', '.join(data.symbols)} — {cfg.label.kind} H={cfg.label.horizon_bars} bars"
    report_files = write_report(
        out,
        ReportData(
            title=title,
            y_oof=dev_tested.y.astype(np.float64),
            p_oof_raw=best_oof.p[tested],
            p_oof=p_oof,
            p_oof_baseline=p_oof_base,
            y_holdout=hold.y.astype(np.float64),
            p_holdout=p_hold,
            feature_names=names,
            importance_gain=np.asarray(booster.feature_importance(importance_type="gain"), dtype=np.float64),
            folds=fold_rows,
            summary={
                "hold-out (exported model)": metrics_all["hold_out"],
                "out-of-fold (calibrator fitted here)": metrics_all["out_of_fold"],
                "baseline, hold-out": metrics_all["baseline_hold_out"],
                "baseline, out-of-fold": metrics_all["baseline_out_of_fold"],
            },
            search=metrics_all["search"],
            lineage=lineage,
            contributions_example=examples,
        ),
    )

    sha = sha256_file(out / MODEL_FILE)
    uri = cfg.artifact_uri or (out.resolve() / MODEL_FILE).as_uri()
    manifest = modelversion_manifest(
        name=f"{cfg.model}-{cfg.version}",
        model=cfg.model,
        artifact_uri=uri,
        sha256=sha,
        feature_names=names,
        metrics=_manifest_metrics(metrics_all["hold_out"], cfg.weights),
    )
    problems = validate_object(manifest)
    if problems:
        raise TrainingError(
            "the written ModelVersion does not validate: "
            + "; ".join(f"{format_loc(loc)}: {msg}" for loc, msg in problems)
        )
    write_modelversion(out / "modelversion.yaml", manifest)
    written = [
        MODEL_FILE,
        "model.lgb.txt",
        "calibrator.json",
        "contributions.json",
        INTERVAL_FILE,
        calibration_file,
        "metrics.json",
        "lineage.json",
        "modelversion.yaml",
        *(p.name for p in report_files.values()),
    ]
    write_index(out, written, model=cfg.model, version=cfg.version, feature_names=names)
    progress(
        f"wrote {out} in {time.monotonic() - started:.0f}s: hold-out PR-AUC {metrics_all['hold_out']['pr_auc']:.4f} "
        f"(base rate {metrics_all['hold_out']['base_rate']:.4f}), ONNX parity {parity:.2g}"
    )
    files = {
        "model": out / MODEL_FILE,
        "manifest": out / "modelversion.yaml",
        "metrics": out / "metrics.json",
        **report_files,
    }
    return TrainResult(out, files, metrics_all, manifest)
