"""`tradeplane replay`: run a recorded capture through decode → quality → books (→ features) and summarize.

The quickest way to see what a capture holds and whether the engine keeps its books in sync on it.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import exit_codes


def _summarize(path: Path, venue: str | None, features: bool, batch_lines: int, max_offset_ms: float,
               tick_size: float | None, progress: Progress | None) -> dict[str, Any]:  # fmt: skip
    from ..engine.binance.decode import DecodeStats
    from ..engine.book import BookConfig, QualityConfig
    from ..engine.events import SymbolTable
    from ..engine.features import BookFeatureSpec, FeatureSpec
    from ..engine.pipeline import ColumnStats, MarketDataPipeline, PipelineConfig, update_column_stats
    from ..engine.replay import iter_capture

    symbols = SymbolTable()
    ns = int(max_offset_ms * 1e6)
    ticks = {0: tick_size} if tick_size else {}  # captures hold one symbol: the first interned id
    config = PipelineConfig(
        book=BookConfig(levels=10, tick_sizes=ticks),
        quality=QualityConfig(max_clock_offset_ns=ns, max_latency_jitter_ns=ns),
        features=FeatureSpec(book=BookFeatureSpec(tick_sizes=ticks)) if features else None,
    )
    pipeline = MarketDataPipeline(config, symbols)
    stats = DecodeStats()
    book_stats: dict[str, ColumnStats] = {}
    bar_stats: dict[str, dict[str, ColumnStats]] = {}
    tops = synced_tops = feature_rows = 0
    total = path.stat().st_size
    task = progress.add_task(path.name, total=None) if progress is not None else None
    started = time.perf_counter()
    for result in iter_capture(path, symbols, venue, batch_lines):
        stats = stats.merge(result.stats)
        batch = pipeline.process(result.events)
        tops += len(batch.book.tops)
        synced_tops += int(batch.book.tops["synced"].sum()) if len(batch.book.tops) else 0
        if batch.features is not None:
            feature_rows += len(batch.features.book)
            update_column_stats(book_stats, batch.features.book)
            for clock, rows in batch.features.bar_features.items():
                update_column_stats(bar_stats.setdefault(clock, {}), rows)
        if progress is not None and task is not None:
            progress.update(task, advance=result.stats.messages, description=f"{path.name}: {stats.messages:,} msgs")
    elapsed = time.perf_counter() - started

    def table(cols: dict[str, ColumnStats]) -> dict[str, dict[str, float | None]]:
        def num(x: float) -> float | None:  # JSON has no NaN/inf: empty statistics are null
            return x if math.isfinite(x) else None

        return {k: {"count": v.count, "nan": v.nan, "mean": num(v.mean), "std": num(v.std), "min": num(v.low),
                    "max": num(v.high)} for k, v in cols.items()}  # fmt: skip

    return {
        "file": str(path),
        "bytes": total,
        "seconds": round(elapsed, 3),
        "messages": stats.messages,
        "events": stats.events,
        "messages_by_type": dict(sorted(stats.by_type.items())),
        "unknown_by_type": dict(sorted(stats.unknown.items())),
        "malformed": stats.malformed,
        "malformed_examples": stats.errors[:10],
        "book_tops": tops,
        "synced_tops": synced_tops,
        "quality": [_quality_row(r) for r in pipeline.reports()],
        "feature_rows": feature_rows,
        "book_features": table(book_stats),
        "bar_features": {clock: table(cols) for clock, cols in bar_stats.items()},
    }


def _quality_row(r: Any) -> dict[str, Any]:
    offset = None if r.offset_ns is None else r.offset_ns / 1e6
    return {
        "symbol": r.name,
        "state": r.state,
        "unsynced_reason": r.unsynced_reason,
        "diff_messages": r.messages,
        "snapshots": r.snapshots,
        "gaps": r.gaps,
        "resync_requests": r.resync_requests,
        "crossed": r.crossed,
        "degraded_events": r.degraded_events,
        "clock_offset_ms": offset,
        "max_gap_ratio": r.max_gap_ratio,
        "summary": r.summary(),
    }


def _print(summary: dict[str, Any], console: Console) -> None:
    console.print(f"[bold]{summary['file']}[/]: {summary['messages']:,} messages → {summary['events']:,} events "
                  f"in {summary['seconds']:.2f} s")  # fmt: skip
    by_type = ", ".join(f"{k} {v:,}" for k, v in summary["messages_by_type"].items())
    console.print(f"by type: {by_type}")
    if summary["unknown_by_type"] or summary["malformed"]:
        console.print(f"unknown: {summary['unknown_by_type']}  malformed: {summary['malformed']}")
        for line, reason in summary["malformed_examples"]:
            console.print(f"  line {line}: {reason}")
    console.print(f"book tops: {summary['book_tops']:,} ({summary['synced_tops']:,} synced)")
    for q in summary["quality"]:
        console.print(f"quality: {q['summary']}")
    if summary["book_features"]:
        t = Table(title=f"book features ({summary['feature_rows']:,} rows)")
        for col in ("feature", "count", "NaN", "mean", "std", "min", "max"):
            t.add_column(col, justify="right" if col != "feature" else "left")
        for name, s in summary["book_features"].items():
            t.add_row(name, f"{s['count']:,}", f"{s['nan']:,}",
                      *("-" if s[k] is None else f"{s[k]:.6g}" for k in ("mean", "std", "min", "max")))  # fmt: skip
        console.print(t)
    for clock, cols in summary["bar_features"].items():
        n = max((c["count"] + c["nan"] for c in cols.values()), default=0)
        console.print(f"bar features ({clock}): {n:,} bars, {len(cols)} columns")


_VENUE_HELP = "binance-spot, binance-usdm or binance-coinm; default: from the file name."
_OFFSET_HELP = "Clock offset / latency above which records are degraded (ms)."
_TICK_HELP = (
    "Price tick (exchangeInfo PRICE_FILTER), needed by the near-touch void feature. "
    "Default: inferred by the book; void left empty."
)


def replay(
    file: Annotated[Path, typer.Argument(help="A capture: `<ingest ns> <raw JSON>` per line, gzip or plain.")],
    features: Annotated[bool, typer.Option("--features/--no-features", help="Also compute features.")] = False,
    venue: Annotated[str | None, typer.Option(help=_VENUE_HELP)] = None,
    batch_lines: Annotated[int, typer.Option(min=1, help="Lines per micro-batch.")] = 8192,
    max_offset_ms: Annotated[float, typer.Option(help=_OFFSET_HELP)] = 100.0,
    tick_size: Annotated[float | None, typer.Option(help=_TICK_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Replay a recorded capture: events by type, gaps, quality and (with --features) feature statistics."""
    if not file.is_file():
        typer.echo(f"error: {file}: no such file", err=True)
        raise typer.Exit(exit_codes.INVALID)
    console = Console(stderr=as_json, width=None if sys.stdout.isatty() else 150)
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console,
                  transient=True, disable=as_json) as progress:  # fmt: skip
        summary = _summarize(file, venue, features, batch_lines, max_offset_ms, tick_size, progress)
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=float))
    else:
        _print(summary, console)
