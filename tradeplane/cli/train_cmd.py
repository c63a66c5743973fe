"""`tradeplane train`: train, calibrate, export and register a classifier from kline and funding files.

The command is a thin shell over ``tradeplane.workloads.training.job``: it turns options into a
``TrainConfig``, prints progress to stderr and a one-screen summary at the end. Heavy imports happen inside
the command so `tradeplane --help` stays fast.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from . import exit_codes

_DATA_HELP = "Kline CSVs (Binance or freqtrade layout) and funding histories, any mix; repeat the option."
_FEATURES_HELP = "A feature set (bars-v1) or a comma-separated list of feature columns (docs/research.md)."
_LABEL_HELP = "triple-barrier (target: the upper barrier is hit first) or fixed-horizon."
_WEIGHTS_HELP = "Objective J weights and decision rule, e.g. alpha=1,beta=0.5,gamma=0.1,delta=0.5,tau=0.5,kappa=0."


def _weights(text: str) -> dict[str, Any]:
    """``alpha=1,beta=0.5,…`` → keyword arguments of ObjectiveWeights (``min_taken`` is a count)."""
    from dataclasses import fields

    from ..engine.models.objective import ObjectiveWeights

    known = [f.name for f in fields(ObjectiveWeights)]
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise typer.BadParameter(f"{part!r} is not key=value", param_hint="--objective")
        if key.strip() not in known:
            raise typer.BadParameter(
                f"unknown key {key.strip()!r}; known: {', '.join(known)}", param_hint="--objective"
            )
        try:
            out[key.strip()] = int(value) if key.strip() == "min_taken" else float(value)
        except ValueError:
            raise typer.BadParameter(f"{key}: {value!r} is not a number", param_hint="--objective") from None
    return out


def train(
    data: Annotated[list[Path], typer.Option("--data", "-d", help=_DATA_HELP)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Artifact directory to write (created).")],
    features: Annotated[str, typer.Option(help=_FEATURES_HELP)] = "bars-v1",
    label: Annotated[str, typer.Option(help=_LABEL_HELP)] = "triple-barrier",
    horizon_bars: Annotated[int, typer.Option(min=1, help="Label horizon H in bars.")] = 30,
    barrier: Annotated[float, typer.Option(help="Barrier width in σ (both sides); dead zone for fixed-horizon.")] = 1.0,
    stride: Annotated[int, typer.Option(min=1, help="One sample every N bars.")] = 5,
    folds: Annotated[int, typer.Option(min=2, help="Purged walk-forward folds on the development part.")] = 5,
    holdout: Annotated[float, typer.Option(help="Final hold-out share of the samples (by time).")] = 0.2,
    trials: Annotated[int, typer.Option(min=1, help="Hyper-parameter trials (seeded random search).")] = 20,
    time_budget: Annotated[float | None, typer.Option(help="Stop starting new trials after this (s).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the search and of LightGBM.")] = 0,
    calibration: Annotated[
        str, typer.Option(help="isotonic or platt (fitted on out-of-fold predictions).")
    ] = "isotonic",
    objective: Annotated[str, typer.Option("--objective", help=_WEIGHTS_HELP)] = "",
    slippage_bps: Annotated[float, typer.Option(help="One-way taker slippage assumed in U (bps).")] = 1.0,
    venue: Annotated[str, typer.Option(help="Fee schedule of U: binance-usdm, binance-spot, …")] = "binance-usdm",
    model: Annotated[str, typer.Option(help="Model family name (ModelVersion spec.model).")] = "kline-lgbm",
    version: Annotated[str, typer.Option(help="Version suffix; the ModelVersion is named <model>-<version>.")] = "v1",
    artifact_uri: Annotated[
        str | None, typer.Option(help="URI written into the manifest (default: file://<absolute out>/model.onnx).")
    ] = None,
) -> None:
    """Train a calibrated LightGBM classifier with purged walk-forward search, export ONNX, write a ModelVersion."""
    from ..engine.models.datasets import LabelSpec
    from ..engine.models.objective import ObjectiveWeights, SignalCosts
    from ..workloads.training.job import TrainConfig, TrainingError, run_training

    started = time.monotonic()

    def progress(message: str) -> None:
        typer.echo(f"[{time.monotonic() - started:6.1f}s] {message}", err=True)

    try:
        kind: Any = label
        cfg = TrainConfig(
            data=tuple(data),
            out=out,
            features=features,
            label=LabelSpec(
                kind=kind, horizon_bars=horizon_bars, upper_mult=barrier, lower_mult=barrier, dead_zone_mult=barrier
            ),
            stride=stride,
            folds=folds,
            holdout_frac=holdout,
            trials=trials,
            time_budget_s=time_budget,
            seed=seed,
            calibration=calibration,  # type: ignore[arg-type]  # checked by TrainConfig
            weights=ObjectiveWeights(**_weights(objective)),
            costs=SignalCosts(venue=venue, slippage_bps=slippage_bps),
            model=model,
            version=version,
            artifact_uri=artifact_uri,
        )
        result = run_training(cfg, progress)
    except (ValueError, TypeError, TrainingError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exit_codes.INVALID) from None
    hold = result.metrics["hold_out"]
    typer.echo(f"model: {result.files['model']}")
    typer.echo(f"manifest: {result.files['manifest']}")
    typer.echo(f"report: {result.files['html']}")
    typer.echo(
        f"hold-out: PR-AUC {hold['pr_auc']:.4f} (base rate {hold['base_rate']:.4f}), ROC-AUC {hold['roc_auc']:.4f}, "
        f"Brier {hold['brier']:.4f}, max calibration error {hold['max_calibration_error_pp']:.1f} pp"
    )
    sys.stdout.flush()
