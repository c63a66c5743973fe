"""`tradeplane run` and `tradeplane demo`: the desk of some manifests in one process, and the guided version.

Thin shells over ``tradeplane.workloads.local``: options → config, progress to stderr, Ctrl-C → a clean stop
(the run finishes its batch, flushes the store and the audit file, and still writes the report).
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

from . import exit_codes

_SOURCE_HELP = "synth (a synthetic market), or recorded capture files (.jsonl.gz), repeatable."


def _progress_printer() -> Any:
    started = time.monotonic()

    def progress(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    return progress


def _stop_on_sigint() -> threading.Event:
    """First Ctrl-C: stop cleanly at the next batch. Second: the default (abort)."""
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        print("\nstopping after this batch (Ctrl-C again to abort)…", file=sys.stderr, flush=True)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    return stop


def _print_summary(summary: Any) -> None:
    m = summary.metrics
    typer.echo(f"run {summary.run_id}{' (stopped early)' if summary.stopped else ''}: {summary.events:,} events, "
               f"{summary.decisions:,} decisions, {summary.entries} entries, {summary.fills} fills in "
               f"{summary.wall_s:.1f}s ({m.get('events_per_s', 0):,.0f} events/s)")  # fmt: skip
    if "total_pnl" in m:
        typer.echo(f"PnL {m.get('total_pnl', 0):+.2f}, max drawdown {m.get('max_drawdown_pct', 0):.2f} %")
    if summary.rejections:
        top = sorted(summary.rejections.items(), key=lambda kv: -kv[1])[:6]
        typer.echo("skips and rejections: " + ", ".join(f"{k} {v}" for k, v in top))
    for k, v in summary.files.items():
        typer.echo(f"{k}: {v}")


def run(
    manifests: Annotated[list[Path], typer.Argument(help="Manifest files or directories (like kubectl -f).")],
    source: Annotated[list[str] | None, typer.Option("--source", "-s", help=_SOURCE_HELP)] = None,
    seconds: Annotated[float, typer.Option(help="Length of the synthetic market (exchange seconds).")] = 600.0,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic market and of the simulator.")] = 0,
    home: Annotated[Path, typer.Option(help="Local state: chDB store, runs, models.")] = Path(".tradeplane"),
    run_id: Annotated[str | None, typer.Option(help="Name of the run directory (default: the start time).")] = None,
    balance: Annotated[float, typer.Option(help="Initial balance of the paper account (USDT).")] = 10_000.0,
    report: Annotated[bool, typer.Option(help="Write the run report (HTML with PNG plots).")] = True,
) -> None:
    """Run the manifests' strategies in one process against the paper venue; store and report everything."""
    from ..workloads.local.manifests import ManifestError
    from ..workloads.local.runner import RunConfig, run_local

    sources = source or ["synth"]
    synth = sources == ["synth"]
    if not synth and "synth" in sources:
        raise typer.BadParameter("synth cannot be combined with files", param_hint="--source")
    cfg = RunConfig(manifests=tuple(manifests), source="synth" if synth else "files",
                    files=() if synth else tuple(Path(s) for s in sources), seconds=seconds, seed=seed, home=home,
                    run_id=run_id, initial_balance=balance, report=report)  # fmt: skip
    try:
        summary = run_local(cfg, progress=_progress_printer(), stop=_stop_on_sigint())
    except (ManifestError, ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exit_codes.INVALID) from None
    _print_summary(summary)


def demo(
    data: Annotated[list[Path] | None, typer.Option("--data", "-d", help="Real captures for the run.")] = None,
    examples: Annotated[Path, typer.Option(help="The example desk to run.")] = Path("examples"),
    home: Annotated[Path, typer.Option(help="Local state: chDB store, runs, models.")] = Path(".tradeplane"),
    train_hours: Annotated[float, typer.Option(help="Synthetic history the models learn from (hours).")] = 3.0,
    seconds: Annotated[float, typer.Option(help="Synthetic market the desk trades (seconds).")] = 900.0,
    trials: Annotated[int, typer.Option(help="Hyper-parameter trials per model.")] = 6,
    seed: Annotated[int, typer.Option(help="Seed of everything.")] = 7,
) -> None:
    """Train a baseline and a candidate, then run the example desk locally with the candidate in shadow."""
    from ..workloads.local.demo import DemoConfig, run_demo
    from ..workloads.local.manifests import ManifestError

    cfg = DemoConfig(examples=examples, home=home, data=tuple(data or ()), train_hours=train_hours,
                     run_seconds=seconds, trials=trials, seed=seed)  # fmt: skip
    try:
        summary = run_demo(cfg, progress=_progress_printer(), stop=_stop_on_sigint())
    except (ManifestError, ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exit_codes.INVALID) from None
    _print_summary(summary)
    typer.echo(f"\nopen {summary.files.get('report', summary.out)} for the run report")
