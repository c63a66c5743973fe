"""`tradeplane backtest`: replay a recorded capture through the execution simulator with a baseline strategy.

A thin shell over ``tradeplane.workloads.backtest.job``: options → ``BacktestJobConfig``, progress to stderr,
a one-screen summary at the end; the report, the Parquet tables and ``result.json`` go to ``--out``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from . import exit_codes

_STRATEGY_HELP = "quote (passive quoting at the touch), twap (one parent order), parents (periodic parent orders)."
_PARAM_HELP = "Strategy parameter key=value, repeatable (docs/backtest.md lists them per strategy)."


def _params(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{item!r} is not key=value", param_hint="--param")
        out[key.strip()] = value.strip()
    return out


def backtest(
    data: Annotated[Path, typer.Option("--data", "-d", help="A recorded capture (.jsonl or .jsonl.gz).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory (created).")],
    strategy: Annotated[str, typer.Option(help=_STRATEGY_HELP)] = "quote",
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help=_PARAM_HELP)] = None,
    seed: Annotated[int, typer.Option(help="Seed of the latency draws, the TWAP jitter and the strategy.")] = 0,
    venue: Annotated[str | None, typer.Option(help="binance-usdm or binance-spot (default: file name).")] = None,
    symbol: Annotated[str | None, typer.Option(help="Symbol (default: from the file name).")] = None,
    tick: Annotated[float | None, typer.Option(help="Price tick (default: known instruments table).")] = None,
    lot: Annotated[float | None, typer.Option(help="Quantity step (default: known instruments table).")] = None,
    fee_tier: Annotated[str, typer.Option(help="Fee tier of the venue's schedule.")] = "vip0",
    balance: Annotated[float, typer.Option(help="Initial balance in quote currency.")] = 10_000.0,
    batch_ms: Annotated[float, typer.Option(help="Strategy wake-up period (local time, ms).")] = 100.0,
    curve_ms: Annotated[float, typer.Option(help="Equity-curve sampling period (ms).")] = 1_000.0,
    entry_latency_ms: Annotated[float, typer.Option(help="Order entry latency (median if sampled), ms.")] = 8.0,
    response_latency_ms: Annotated[float, typer.Option(help="Fill/report latency (median if sampled), ms.")] = 6.0,
    latency_sigma: Annotated[float, typer.Option(help="> 0: lognormal latencies with this σ (seeded).")] = 0.0,
    min_feed_latency_ms: Annotated[float, typer.Option(help="Clock alignment: minimum feed latency, ms.")] = 1.0,
    queue: Annotated[str, typer.Option(help="Queue model: risk-averse or power:N.")] = "risk-averse",
    funding: Annotated[Path | None, typer.Option(help="Funding history CSV settled on open positions.")] = None,
    theta: Annotated[float, typer.Option(help="Maker fill ratio below which maker-then-taker degrades.")] = 0.25,
    tables: Annotated[bool, typer.Option(help="Write Parquet tables for ClickHouse.")] = True,
    report: Annotated[bool, typer.Option(help="Write report.html with PNG plots.")] = True,
) -> None:
    """Backtest a baseline strategy on a recorded capture: queue-aware fills, latency, fees; report and tables."""
    from ..workloads.backtest.job import BacktestError, BacktestJobConfig, run_backtest_job

    started = time.monotonic()

    def progress(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    cfg = BacktestJobConfig(
        data=data, out=out, strategy=strategy, params=_params(param or []), seed=seed, venue=venue, symbol=symbol,
        tick=tick, lot=lot, fee_tier=fee_tier, balance=balance, batch_ms=batch_ms, curve_ms=curve_ms,
        entry_latency_ms=entry_latency_ms, response_latency_ms=response_latency_ms, latency_sigma=latency_sigma,
        min_feed_latency_ms=min_feed_latency_ms, queue=queue, funding=funding, theta=theta, tables=tables,
        report=report,
    )  # fmt: skip
    try:
        summary = run_backtest_job(cfg, progress)
    except BacktestError as exc:  # an option or its value
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exit_codes.USAGE) from None
    except (ValueError, OSError) as exc:  # the data (DataFileError names the file and line)
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exit_codes.INVALID) from None
    m = summary["metrics"]

    def fmt(v: object, spec: str) -> str:
        return "n/a" if v is None else format(v, spec)

    typer.echo(f"backtest {strategy} on {data.name}: {summary['meta']['events']:,} events in "
               f"{summary['meta']['wall_s']:.2f} s (+ {summary['meta']['read_s']:.2f} s reading)")  # fmt: skip
    typer.echo(f"  PnL {fmt(m['total_pnl'], '.2f')} (gross {fmt(m['gross_pnl'], '.2f')}, fees {fmt(m['fees'], '.2f')}, "
               f"funding {fmt(m['funding'], '.2f')})  Sharpe {fmt(m['sharpe'], '.2f')}  "
               f"max DD {fmt(m['max_drawdown'], '.2f')}")  # fmt: skip
    typer.echo(f"  fills {summary['fills']} (maker share {fmt(m['maker_share'], '.0%')})"
               f"  parents {summary['parents']}  mean cost {fmt(summary['mean_cost_bps'], '.2f')} bps"
               f"  win rate {fmt(m['win_rate'], '.0%')}")  # fmt: skip
    typer.echo(f"  digest {summary['digest'][:16]}  → {out}")
