"""``tradeplane run``: every strategy of the manifests in one process, over a synthetic or recorded market.

Wiring (the cluster splits the same pieces across processes and Kafka):

    source ─► simulator (paper venue, latency, queue) ─► DeskRuntime.on_batch (engine: decide, risk, execute)
                                                              │ outbox per batch
                                                              ▼
                                    InProcessBus ─► sink (chDB tables) · audit JSONL · progress display

Why the simulator drives the clock: locally the paper venue *is* the exchange, so market data and order
acknowledgements must come from one timeline; the backtester runs the identical DeskRuntime on the
identical batches (``tradeplane backtest --manifests``), which is what the parity test compares.

Ctrl-C (SIGINT) sets a flag that the next batch sees: the run stops there, every writer flushes, the audit
file is closed, and the report covers what ran. Editing the manifests while it runs is hot configuration:
decision parameters and RiskBudget limits (including ``halt: true``) apply from the next tick.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...api.v1alpha1.strategy import StrategySpec, market_data_venue
from ...engine.risk.config import RiskConfig
from ...engine.risk.engine import RiskEngine
from ...engine.runtime.desk import DeskRuntime
from ...engine.runtime.instruments import Instrument, instrument_table
from ...engine.runtime.market import RUNTIME_FEATURES
from ...engine.runtime.outbox import Outbox
from ...engine.runtime.strategy import StrategyRuntime
from ...engine.sim.executors import ExecutorConfig
from ...engine.sim.runner import BacktestConfig, run_backtest
from ..rollout.local import rollout_drivers
from ..rollout.mids import TopRecorder
from .manifests import Desk, ManifestError, load_desk
from .models import FamilyModels, ServeClients, load_families
from .sink import LocalSink
from .source import MarketData, capture_market, synthetic_market

Progress = Callable[[str], None]
_NS_PER_S = 1_000_000_000


class RunStoppedError(Exception):
    """Raised inside the batch loop when the user asked the run to stop; caught by :func:`run_local`."""


@dataclass(frozen=True)
class RunConfig:
    """Everything ``tradeplane run`` takes (docs/cli.md)."""

    manifests: tuple[Path, ...]
    source: str = "synth"  #: "synth", or capture files (``files``)
    files: tuple[Path, ...] = ()
    seconds: float = 600.0  #: synthetic market length (exchange time)
    seed: int = 0
    home: Path = Path(".tradeplane")
    run_id: str | None = None
    initial_balance: float = 10_000.0
    report: bool = True
    reload_every_s: float = 1.0  #: how often the manifests are re-read for hot configuration (wall time)
    rollouts: bool = True  #: drive canary/shadow ModelVersions with the rollout controller (docs/rollouts.md)


@dataclass
class RunSummary:
    run_id: str
    out: Path
    stopped: bool
    wall_s: float
    events: int
    decisions: int
    entries: int
    fills: int
    rejections: dict[str, int] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    rollouts: dict[str, Any] = field(default_factory=dict)  #: version → final phase, step, history (rollouts)

    def as_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}


Built = tuple[DeskRuntime, list[Instrument], dict[str, FamilyModels]]


def build_desk(desk: Desk, home: Path, *, initial_balance: float, clock: Callable[[], int] = lambda: 0,
               serve: ServeClients | None = None) -> Built:  # fmt: skip
    """The engine objects of a desk: instruments, model routers, risk engines and strategy runtimes.
    ``serve``: score ``rayserve`` ModelVersions through Ray Serve (the cluster's decide; see .models)."""
    instruments, legs = desk_instruments(desk)
    families = load_families(desk.models, {s.model.family for s in desk.strategies.values()}, home, serve=serve)
    known = RUNTIME_FEATURES
    for family, fm in families.items():
        for version, m in ((v, desk.models[v]) for v in fm.artifacts):
            names = m.feature_signature.names if m.feature_signature else []
            unknown = [n for n in names if n not in known]
            if unknown:
                raise ManifestError(f"ModelVersion/{version}: spec.featureSignature.names: the runtime does not "
                                    f"compute {unknown} (family {family})")  # fmt: skip
    budgets = {name: RiskEngine(name, RiskConfig.from_spec(spec), initial_equity=initial_balance)
               for name, spec in desk.budgets.items()}  # fmt: skip
    strategies = []
    for (name, spec), (_, insts) in zip(desk.strategies.items(), legs, strict=True):
        fm = families[spec.model.family]
        strategies.append(StrategyRuntime.build(name, spec, insts, fm.router, fm.feature_names, fm.contributions))
    return DeskRuntime(strategies, budgets, instruments, clock=clock), instruments, families


def backtest_config(desk: DeskRuntime, instruments: list[Instrument], *, initial_balance: float,
                    seed: int) -> BacktestConfig:  # fmt: skip
    """The simulator configuration of a desk (see :func:`venue_config`)."""
    return venue_config([(s.spec, s.instruments) for s in desk.strategies], instruments,
                        initial_balance=initial_balance, seed=seed)  # fmt: skip


def venue_config(strategies: Sequence[tuple[StrategySpec, Sequence[Instrument]]], instruments: list[Instrument], *,
                 initial_balance: float, seed: int) -> BacktestConfig:  # fmt: skip
    """The simulator configuration of a desk's strategies: contracts per instrument, the fastest decision
    tick as the batch period. Every parent the desk sends carries its strategy's routing table and maker
    fill ratio floor (docs/strategy.md, Execution), so the executor's own defaults only describe the account.
    From the specs alone, so that paper mode's ``execute`` (which loads no models) configures the same
    simulator as ``decide``."""
    leverage = {i.id: 1.0 for i in instruments}
    for spec, insts in strategies:
        for i in insts:
            leverage[i.id] = max(leverage[i.id], float(spec.sizing.leverage))
    return BacktestConfig(
        contracts={i.id: i.contract(leverage=max(leverage[i.id], 1.0)) for i in instruments},
        initial_balance=initial_balance,
        batch_ms=float(min(spec.decision.tick_ms for spec, _ in strategies)),
        executor=ExecutorConfig(),
        seed=seed,
        top_levels=10,  # the book features read ten levels
    )


def desk_instruments(desk: Desk) -> tuple[list[Instrument], list[tuple[StrategySpec, list[Instrument]]]]:
    """The instrument table of a desk's manifests, and each strategy's spec with its instruments."""
    pairs = [(str(s.venue), sym) for s in desk.strategies.values() for sym in s.symbols]
    instruments = instrument_table(pairs)
    by_key = {(i.venue, i.symbol): i for i in instruments}
    legs = [(spec, [by_key[(str(spec.venue), sym)] for sym in spec.symbols]) for spec in desk.strategies.values()]
    return instruments, legs


def market_data(cfg: RunConfig, instruments: list[Instrument]) -> MarketData:
    if cfg.source == "synth":
        return synthetic_market(instruments, seconds=cfg.seconds, seed=cfg.seed)
    return capture_market(list(cfg.files), instruments)


class _HotReload:
    """Re-reads the manifests when a file changed; applies decision and risk changes to the running desk."""

    def __init__(self, cfg: RunConfig, desk: DeskRuntime, files: list[Path], progress: Progress) -> None:
        self.cfg, self.desk, self.files, self.progress = cfg, desk, files, progress
        self.mtimes = self._mtimes()
        self.next_check = time.monotonic() + cfg.reload_every_s
        self.revisions: list[dict[str, Any]] = []

    def _mtimes(self) -> list[float]:
        return [f.stat().st_mtime if f.exists() else 0.0 for f in self.files]

    def check(self, now: int) -> None:
        if time.monotonic() < self.next_check:
            return
        self.next_check = time.monotonic() + self.cfg.reload_every_s
        mtimes = self._mtimes()
        if mtimes == self.mtimes:
            return
        self.mtimes = mtimes
        try:
            new = load_desk(list(self.cfg.manifests))
        except ManifestError as exc:  # keep running on the last good configuration
            self.progress(f"manifests changed but are invalid; keeping the running configuration:\n{exc}")
            return
        for s in self.desk.strategies:
            spec = new.strategies.get(s.name)
            if spec is None or spec == s.spec:
                continue
            try:
                rev = s.reconfigure(spec).config_rev
            except ValueError as exc:
                self.progress(f"Strategy/{s.name}: {exc}")
                continue
            self.revisions.append({"ts": now, "strategy": s.name, "config_rev": rev})
            self.progress(f"Strategy/{s.name}: configuration revision {rev} applies from the next tick")
        for name, risk in self.desk.budgets.items():
            budget = new.budgets.get(name)
            if budget is not None:
                risk.update_config(RiskConfig.from_spec(budget), now)
                self.progress(f"RiskBudget/{name}: reloaded (halt={budget.halt})")


def run_local(cfg: RunConfig, *, progress: Progress = lambda _: None, stop: threading.Event | None = None,
              clock: Callable[[], int] = time.perf_counter_ns) -> RunSummary:  # fmt: skip
    """Run the desk of ``cfg.manifests`` to the end of the source (or until ``stop`` is set)."""
    started = time.perf_counter()
    manifests = load_desk(list(cfg.manifests))
    desk, instruments, families = build_desk(manifests, cfg.home, initial_balance=cfg.initial_balance, clock=clock)
    progress(f"desk: {len(desk.strategies)} strategies on {len(instruments)} instruments, "
             f"{len(desk.budgets)} risk budget(s), models {sorted(v for f in families.values() for v in f.roles)}",
             )  # fmt: skip
    data = market_data(cfg, instruments)
    progress(f"market: {data.events.shape[0]:,} events ({data.lineage['source']})")
    run_id = cfg.run_id or time.strftime("run-%Y%m%d-%H%M%S")
    out = cfg.home / "runs" / run_id
    out.mkdir(parents=True, exist_ok=True)
    lineage = {"run_id": run_id, **data.lineage, "manifests": [str(f) for f in manifests.files],
               "models": {v: sha for f in families.values() for v, sha in f.artifacts.items()}}  # fmt: skip
    sink = LocalSink(cfg.home / "store", out / "audit.jsonl", run_id=run_id, lineage=lineage)
    reload = _HotReload(cfg, desk, manifests.files, progress)
    stop = stop or threading.Event()
    totals = Outbox()
    counters = {"entries": 0, "fills": 0, "signals": 0}
    last_print = [time.monotonic()]
    t0 = int(data.events["ingest_ts"][0]) if data.events.shape[0] else 0
    # rollouts: the controller on the desk's clock, the run's own store, and the mids the desk saw
    by_id = sorted(instruments, key=lambda i: i.id)
    tops = TopRecorder((market_data_venue(i.venue), i.symbol) for i in by_id)
    drivers = rollout_drivers(manifests.models, families, manifests.strategies, desk.budgets, store=sink.store,
                              home=cfg.home, run_id=run_id, tops=tops, flush=sink.writers["signals"].flush,
                              progress=progress) if cfg.rollouts else []  # fmt: skip

    def on_drain(batch: Outbox) -> None:
        sink.publish(batch)
        counters["signals"] += len(batch.signals)
        counters["entries"] += len(batch.intents)
        counters["fills"] += len(batch.fills)
        totals.extend(batch)
        ts = desk.now
        reload.check(ts)
        if drivers:
            tops.observe((t.exchange_ts, t.bid, t.ask) for t in desk.view.tops)
            for d in drivers:
                d.tick(ts)
        if time.monotonic() - last_print[0] >= 1.0:
            last_print[0] = time.monotonic()
            sim_s = (ts - t0) / _NS_PER_S
            progress(f"t+{sim_s:8.1f}s  events {desk.view.events:>10,}  decisions {desk.decisions:>8,}  "
                     f"entries {counters['entries']:>5}  fills {counters['fills']:>5}  "
                     f"phase {','.join(r.phase for r in desk.budgets.values())}")  # fmt: skip
        if stop.is_set():
            raise RunStoppedError

    desk.on_drain = on_drain
    bcfg = backtest_config(desk, instruments, initial_balance=cfg.initial_balance, seed=cfg.seed)
    stopped = False
    result = None
    try:
        result = run_backtest(data.events, desk, bcfg, symbols=[i.key for i in instruments], meta=lineage)
    except RunStoppedError:
        stopped = True
        progress("stopping: flushing what ran")
    finally:
        sink.close()
    wall = time.perf_counter() - started
    reasons: dict[str, int] = {}
    for r in totals.rejections:
        reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
    summary = RunSummary(run_id=run_id, out=out, stopped=stopped, wall_s=wall, events=desk.view.events,
                         decisions=desk.decisions, entries=counters["entries"], fills=counters["fills"],
                         rejections=dict(sorted(reasons.items())))  # fmt: skip
    if result is not None:
        summary.metrics = {k: (v if not isinstance(v, float) or math.isfinite(v) else None)
                           for k, v in result.metrics.__dict__.items()}  # fmt: skip
    summary.metrics["events_per_s"] = desk.view.events / wall if wall > 0 else 0.0
    summary.files = {"audit": str(out / "audit.jsonl"), "store": str(cfg.home / "store")}
    summary.rollouts = {d.version: d.summary() for d in drivers}
    for version, r in summary.rollouts.items():
        progress(f"rollout ModelVersion/{version}: {r['phase']} at step {r.get('step')} ({r.get('lastReason', '')})")
    if cfg.report:
        from .run_report import build_run_report

        roles = {v: r for f in families.values() for v, r in f.roles.items()}
        report_summary = summary.as_dict() | {"source": data.lineage.get("source"), "manifests": lineage["manifests"],
                                              "store_path": summary.files["store"],
                                              "audit_path": summary.files["audit"]}  # fmt: skip
        summary.files |= build_run_report(out, totals, desk, report_summary, roles)
    (out / "run.json").write_text(json.dumps(summary.as_dict(), indent=2, sort_keys=True, default=str) + "\n")
    return summary
