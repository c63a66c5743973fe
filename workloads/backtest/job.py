"""The backtest job behind `tradeplane backtest`: read a capture, run a baseline strategy, write the outputs.

I/O lives here (files in, report and tables out); the run itself is the engine's pure
:func:`~tradeplane.engine.sim.runner.run_backtest`. The job validates every option up front, so a typo
fails in milliseconds with the option's name, not after the capture has been decoded.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from tradeplane import __version__
from tradeplane.engine.events import SymbolTable
from tradeplane.engine.replay import read_capture, read_funding_csv, symbol_from_capture_name, venue_from_capture_name
from tradeplane.engine.runtime.instruments import EXCHANGE_FILTERS
from tradeplane.engine.sim.baselines import PeriodicParentsStrategy, QuotingStrategy, TwapStrategy
from tradeplane.engine.sim.contracts import ContractSpec, binance_spot, binance_usdm
from tradeplane.engine.sim.executors import ExecutorConfig, TwapSpec
from tradeplane.engine.sim.latency import ConstantLatency, LatencyModel, SampledLatency, align_local_clock
from tradeplane.engine.sim.orders import BUY, SELL
from tradeplane.engine.sim.queue import QueueModel
from tradeplane.engine.sim.result import BacktestResult
from tradeplane.engine.sim.runner import BacktestConfig, Strategy, run_backtest

_MS = 1_000_000

#: (venue, symbol) → (tick, lot): the exchange filters the desk runtime uses (engine/runtime/instruments.py).
KNOWN_INSTRUMENTS: Mapping[tuple[str, str], tuple[float, float]] = {
    pair: (tick, step) for pair, (tick, step, _, _) in EXCHANGE_FILTERS.items()
}

STRATEGIES = ("quote", "twap", "parents")


class BacktestError(ValueError):
    """A backtest option or input is invalid; the message names it."""


@dataclass(frozen=True)
class BacktestJobConfig:
    """Everything `tradeplane backtest` takes (see docs/cli.md)."""

    data: Path
    out: Path
    strategy: str = "quote"
    params: Mapping[str, str] = field(default_factory=dict)
    seed: int = 0
    venue: str | None = None
    symbol: str | None = None
    tick: float | None = None
    lot: float | None = None
    fee_tier: str = "vip0"
    balance: float = 10_000.0
    batch_ms: float = 100.0
    curve_ms: float = 1_000.0
    entry_latency_ms: float = 8.0
    response_latency_ms: float = 6.0
    latency_sigma: float = 0.0
    min_feed_latency_ms: float = 1.0
    queue: str = "risk-averse"
    funding: Path | None = None
    theta: float = 0.25
    tables: bool = True
    report: bool = True


def _float(params: Mapping[str, str], key: str, default: float) -> float:
    if key not in params:
        return default
    try:
        return float(params[key])
    except ValueError:
        raise BacktestError(f"--param {key}={params[key]!r}: not a number") from None


def _side(params: Mapping[str, str], default: int) -> int:
    text = params.get("side", "buy" if default == BUY else "sell").lower()
    if text not in ("buy", "sell"):
        raise BacktestError(f"--param side={text!r}: buy or sell")
    return BUY if text == "buy" else SELL


_PARAMS: Mapping[str, tuple[str, ...]] = {
    "quote": ("qty", "requote_ms", "max_position"),
    "twap": ("side", "qty", "slices", "interval_ms", "jitter", "child", "wait_ms", "start_ms"),
    "parents": ("notionals", "every_ms", "style"),
}


def build_strategy(name: str, params: Mapping[str, str]) -> Strategy:
    """A baseline strategy from its name and ``key=value`` parameters (unknown keys are errors)."""
    if name not in _PARAMS:
        raise BacktestError(f"--strategy {name!r}: one of {', '.join(STRATEGIES)}")
    unknown = sorted(set(params) - set(_PARAMS[name]))
    if unknown:
        raise BacktestError(f"--param {unknown[0]}: not a parameter of {name} (known: {', '.join(_PARAMS[name])})")
    try:
        if name == "quote":
            return QuotingStrategy(qty=_float(params, "qty", 0.01), requote_ms=_float(params, "requote_ms", 1000.0),
                                   max_position=_float(params, "max_position", 0.05))  # fmt: skip
        if name == "twap":
            wait = params.get("wait_ms")
            spec = TwapSpec(int(_float(params, "slices", 10)), _float(params, "interval_ms", 10_000.0),
                            _float(params, "jitter", 0.1), params.get("child", "immediate"),
                            float(wait) if wait is not None else None)  # fmt: skip
            return TwapStrategy(_side(params, BUY), _float(params, "qty", 0.1), spec,
                                start_ms=_float(params, "start_ms", 1000.0))  # fmt: skip
        notionals = tuple(float(x) for x in params.get("notionals", "100,300,700,1500").split(","))
        return PeriodicParentsStrategy(notionals, _float(params, "every_ms", 10_000.0),
                                       params.get("style", "maker_then_taker"))  # fmt: skip
    except ValueError as exc:
        raise BacktestError(f"--param: {exc}") from None


def _queue(text: str) -> QueueModel:
    if text == "risk-averse":
        return QueueModel.risk_averse()
    if text.startswith("power:"):
        try:
            return QueueModel.power_prob(float(text.split(":", 1)[1]))
        except ValueError as exc:
            raise BacktestError(f"--queue {text!r}: {exc}") from None
    raise BacktestError(f"--queue {text!r}: risk-averse or power:N (e.g. power:2)")


def _latency(ms: float, sigma: float, seed: int, name: str) -> LatencyModel:
    if not ms >= 0:
        raise BacktestError(f"--{name}-latency-ms must be ≥ 0, got {ms}")
    if sigma > 0:
        return SampledLatency.lognormal(ms * _MS, sigma, seed)
    return ConstantLatency(round(ms * _MS))


def contract_for(venue: str, symbol: str, tick: float | None, lot: float | None, tier: str) -> ContractSpec:
    """The contract terms of a capture's instrument: known table, overridden by ``tick``/``lot``."""
    known = KNOWN_INSTRUMENTS.get((venue, symbol))
    if (tick is None or lot is None) and known is None:
        raise BacktestError(f"no tick/lot known for {venue} {symbol}: pass --tick and --lot")
    t = tick if tick is not None else known[0]  # type: ignore[index]
    q = lot if lot is not None else known[1]  # type: ignore[index]
    if venue == "binance-usdm":
        return binance_usdm(t, q, tier)
    if venue == "binance-spot":
        return binance_spot(t, q, tier)
    raise BacktestError(f"venue {venue!r}: binance-usdm or binance-spot")


def backtest_config(cfg: BacktestJobConfig, contract: ContractSpec) -> BacktestConfig:
    """The engine's run configuration from the job options (latency seeds derive from ``seed``)."""
    funding = read_funding_csv(cfg.funding, 0) if cfg.funding is not None else None
    try:
        return BacktestConfig(
            contracts={0: contract},
            initial_balance=cfg.balance,
            batch_ms=cfg.batch_ms,
            curve_ms=cfg.curve_ms,
            entry_latency=_latency(cfg.entry_latency_ms, cfg.latency_sigma, cfg.seed * 2 + 1, "entry"),
            response_latency=_latency(cfg.response_latency_ms, cfg.latency_sigma, cfg.seed * 2 + 2, "response"),
            queue=_queue(cfg.queue),
            executor=ExecutorConfig(theta=cfg.theta),
            seed=cfg.seed,
            funding=funding,
        )
    except ValueError as exc:
        raise BacktestError(str(exc)) from None


def run_backtest_job(cfg: BacktestJobConfig, progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Run one backtest and write ``result.json`` (+ report and tables); returns the summary written."""
    from .report import write_report
    from .tables import write_tables

    if not cfg.data.exists():
        raise BacktestError(f"--data {cfg.data}: no such file")
    strategy = build_strategy(cfg.strategy, cfg.params)
    venue = cfg.venue or venue_from_capture_name(cfg.data)
    symbol = (cfg.symbol or symbol_from_capture_name(cfg.data) or "").upper()
    if not symbol:
        raise BacktestError(f"--symbol: cannot tell the symbol from the file name {cfg.data.name}")
    contract = contract_for(venue, symbol, cfg.tick, cfg.lot, cfg.fee_tier)
    config = backtest_config(cfg, contract)
    t = time.perf_counter()
    progress(f"reading {cfg.data.name}")
    table = SymbolTable()
    decoded = read_capture(cfg.data, table, venue, snapshot_symbol=symbol)
    names = [n.split(":", 1)[-1] for n in table.to_list()]
    if len(names) != 1:
        raise BacktestError(f"--data {cfg.data.name}: holds {len(names)} symbols; backtest one at a time")
    events = align_local_clock(decoded.events, round(cfg.min_feed_latency_ms * _MS))
    read_s = time.perf_counter() - t
    progress(f"{events.shape[0]:,} events; running {cfg.strategy}")
    meta = {"data": str(cfg.data), "venue": venue, "strategy": cfg.strategy, "params": dict(cfg.params),
            "contract": asdict(contract), "read_s": read_s, "tradeplane": __version__,
            "config": {f.name: _jsonable(getattr(cfg, f.name)) for f in fields(cfg)}}  # fmt: skip
    result = run_backtest(events, strategy, config, symbols=(names[0],), meta=meta)
    cfg.out.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    if cfg.report:
        progress("writing the report")
        files |= {k: str(v) for k, v in write_report(result, cfg.out).items()}
    if cfg.tables:
        run_id = f"{cfg.strategy}-{symbol.lower()}-{result.digest()[:12]}"
        files |= {f"table:{k}": str(v) for k, v in write_tables(result, cfg.out, run_id).items()}
    summary = summarize(result) | {"files": files}
    (cfg.out / "result.json").write_text(json.dumps(summary, indent=2, sort_keys=True, default=_jsonable) + "\n")
    return summary


def summarize(result: BacktestResult) -> dict[str, Any]:
    """The JSON-able summary: metrics, counts, timings and the run's digest."""
    p = result.parents
    m = {k: _jsonable(v) for k, v in asdict(result.metrics).items()}
    cost = p["cost_bps"][np.isfinite(p["cost_bps"])]
    return {
        "metrics": m,
        "digest": result.digest(),
        "fills": int(result.fills.shape[0]),
        "orders": int(np.unique(result.reports["order_id"]).shape[0]),
        "parents": int(p.shape[0]),
        "mean_cost_bps": float(cost.mean()) if cost.shape[0] else None,
        "meta": {k: _jsonable(v) for k, v in result.meta.items()},
    }


def _jsonable(v: Any) -> Any:
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, np.generic):
        return _jsonable(v.item())
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return v
