"""Rollouts inside ``tradeplane run``: the same controller as the operator, driven by the desk's own clock.

Why the desk's clock (the exchange/local time of the run, not the wall clock): a replay of ten minutes runs
in seconds, and the rollout must still see its pauses and analysis intervals pass in market time; the
controller only needs ``now``. So :class:`RolloutDriver.tick` is called from the runner's ``on_drain`` with
``desk.now`` and does, in order:

1. a command file (``<home>/rollouts/<version>.command.json``, from ``tradeplane rollout promote|abort|retry
   --home``) is consumed (read, then deleted) and passed to ``advance``;
2. the drawdown guard: the candidate-attributed drawdown (below) against the RiskBudget's ``maxDrawdownPct``;
3. when ``next_due`` says so, one analysis against the run's own chDB store (the signal writer is flushed
   first), labelled with the mids the desk saw (:class:`~.mids.TopRecorder`);
4. the transition's route is applied to the family's ModelRouter when it changed, the state file
   (``<home>/rollouts/<version>.json``, :func:`status_patch`) is written, events go to ``progress``; after an
   analysis, its row is appended to the comparison report (``<version>-report.json``/``.md``, :mod:`engine.
   rollout.report`).

Routes in-process: a canary's weight is ``route.canary_weights()``, of the unit of its step
(``route.canary_kinds()``: ``weightPct`` → a share of decisions, ``cohortPct`` → a share of symbols); a
promoted canary gets weight 1.0 (every decision routes to it, so it *is* the stable for the rest of the
run); a rolled-back one weight 0. A shadow has
no weight in the router, so its promotion is recorded (state file, summary) and takes effect when the
manifests make it the stable version.

**Attributed drawdown.** PnL (realized − fees + unrealized at the ledger's price) of the positions of the
family's strategies in the symbols the candidate can currently score (``ModelRouter.reaches``: the symbols
of its cohort for a cohort step, every symbol no cohort canary holds for a weight step, whose decisions it
shares with the stable), from the rollout's start, relative to the budget's initial equity; its
peak-to-trough in percent is compared with that budget's ``maxDrawdownPct`` (the worst budget wins). A symbol
that changed hands mid-trade, or whose decisions are shared, is charged to the candidate in full: an
approximation that errs toward rolling back.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from ...api.v1alpha1.modelversion import ModelVersionPhase, ModelVersionSpec, RolloutStrategy
from ...engine.decision.router import ModelRouter
from ...engine.risk.engine import RiskEngine
from ...engine.rollout import (
    AnalysisVerdict,
    Command,
    GuardSignal,
    ManualCommand,
    OfflineCalibration,
    RolloutReport,
    RolloutState,
    Route,
    Transition,
    advance,
    next_due,
    row_for,
    status_patch,
)
from ..store.base import Store
from .analysis_run import offline_calibration, run_analysis
from .mids import TopRecorder

Progress = Callable[[str], None]
ROLLOUTS_DIR: Final = "rollouts"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def state_path(home: Path, version: str) -> Path:
    """``<home>/rollouts/<version>.json``: the latest :func:`status_patch` of the version's rollout."""
    return home / ROLLOUTS_DIR / f"{version}.json"


def report_paths(home: Path, version: str) -> tuple[Path, Path]:
    """``<home>/rollouts/<version>-report.json`` and ``.md``: the comparison report, one row per analysis
    (the same document and Markdown as the operator's ``<version>-rollout-report`` ConfigMap)."""
    return home / ROLLOUTS_DIR / f"{version}-report.json", home / ROLLOUTS_DIR / f"{version}-report.md"


def command_path(home: Path, version: str) -> Path:
    """``<home>/rollouts/<version>.command.json``: a pending manual command, consumed by the local loop."""
    return home / ROLLOUTS_DIR / f"{version}.command.json"


def _write_atomic(path: Path, doc: Mapping[str, Any]) -> None:
    """Write via a temporary file and rename, so a reader never sees half a document."""
    _write_text_atomic(path, json.dumps(doc, indent=2, sort_keys=True) + "\n")


def _write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def write_command(home: Path, version: str, action: str, by: str) -> Path:
    """Queue ``promote|abort|retry`` for the local loop: ``{"action", "by", "at"}``."""
    Command(action)  # refuses anything else
    at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    path = command_path(home, version)
    _write_atomic(path, {"action": action, "by": by, "at": at})
    return path


def read_state(home: Path, version: str) -> dict[str, Any] | None:
    """The stored status dict of the version's local rollout, or None when none was written."""
    path = state_path(home, version)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    return doc if isinstance(doc, dict) else None


def take_command(home: Path, version: str) -> ManualCommand | None:
    """Read and delete the pending command file (an unreadable one is deleted too and reported as such)."""
    path = command_path(home, version)
    try:
        raw = path.read_text()
    except FileNotFoundError:
        return None
    path.unlink(missing_ok=True)
    doc = json.loads(raw)
    return ManualCommand(Command(doc["action"]), str(doc.get("by") or "unknown"))


def ns_to_datetime(ns: int) -> datetime:
    return _EPOCH + timedelta(microseconds=ns // 1_000)


class AttributedDrawdown:
    """The candidate's drawdown from the positions it is responsible for (see the module docstring)."""

    def __init__(self, budgets: Mapping[str, RiskEngine], strategies: Sequence[str]) -> None:
        self.budgets = dict(budgets)
        self.strategies = frozenset(strategies)
        self._base: dict[str, float] = {}
        self._peak: dict[str, float] = {}

    def _pnl(self, risk: RiskEngine, mine: Callable[[str], bool]) -> float:
        led = risk.ledger
        total = 0.0
        for (strategy, venue, symbol), pos in led.positions.items():
            if strategy not in self.strategies or not mine(symbol):
                continue
            total += pos.realized_usdt - pos.fees_usdt
            if pos.qty != 0.0:
                px = led.price(venue, symbol)
                if math.isfinite(px):
                    total += pos.qty * (px - pos.avg_price)
        return total

    def signal(self, mine: Callable[[str], bool]) -> GuardSignal | None:
        worst: GuardSignal | None = None
        for name, risk in self.budgets.items():
            pnl = self._pnl(risk, mine)
            base = self._base.setdefault(name, pnl)
            equity = risk.ledger.initial_equity + pnl - base
            peak = max(self._peak.get(name, equity), equity)
            self._peak[name] = peak
            dd = max(0.0, (peak - equity) / peak * 100.0) if peak > 0 else 100.0
            g = GuardSignal(dd, float(risk.config.limits.max_drawdown_pct), name)
            if worst is None or g.drawdown_pct / g.limit_pct > worst.drawdown_pct / worst.limit_pct:
                worst = g
        return worst


class RolloutDriver:
    """One ModelVersion's rollout inside a local run (see the module docstring)."""

    def __init__(
        self,
        version: str,
        spec: ModelVersionSpec,
        *,
        stable: str,
        router: ModelRouter,
        role: str,
        store: Store,
        home: Path,
        run_id: str,
        strategies: Sequence[str],
        horizon_ns: int,
        tops: TopRecorder,
        guard: AttributedDrawdown,
        flush: Callable[[], object] = lambda: None,
        progress: Progress = lambda _: None,
        offline: OfflineCalibration | None = None,
    ) -> None:
        self.version, self.spec, self.stable = version, spec, stable
        self.router, self.role, self.store, self.home = router, role, store, home
        self.run_id, self.strategies, self.horizon_ns = run_id, list(strategies), horizon_ns
        self.tops, self.guard, self.flush, self.progress = tops, guard, flush, progress
        self.offline = offline
        self.state: RolloutState | None = None
        self.analyses = 0
        self.weights: list[tuple[int, float]] = []  #: (desk time, the candidate's router weight) after each change
        self.kinds: list[str] = []  #: the unit of each of those weights (``weight`` or ``cohort``)
        self._wake: datetime | None = None
        self.report = RolloutReport(version, stable, spec.rollout.strategy.value)  #: every analysis, bounded

    # --- the loop -----------------------------------------------------------------------------------------------
    def tick(self, now_ns: int) -> Transition | None:
        """One step of the local loop at desk time ``now_ns``; returns the transition when advance() ran."""
        now = ns_to_datetime(now_ns)
        if self.state is None:
            t = advance(self.spec.rollout, None, now, candidate=self.version, stable=self.stable)
            return self._apply(t, now_ns)
        command = take_command(self.home, self.version)
        guard = self._guard() if self.state.phase is ModelVersionPhase.CANARY else None
        breached = guard is not None and guard.breached
        due = next_due(self.state, self.spec.rollout)
        analyse = due is not None and now >= due
        if command is None and not breached and not analyse and (self._wake is None or now < self._wake):
            return None
        verdict = None
        if analyse and command is None and not breached:
            self.flush()
            verdict = run_analysis(self.store, self.spec, self.state, now, strategies=self.strategies,
                                   run_id=self.run_id, offline=self.offline, horizon_ns=self.horizon_ns,
                                   mids=self.tops.series())  # fmt: skip
            self.analyses += 1
        t = advance(self.spec.rollout, self.state, now, verdict=verdict, guard=guard, command=command)
        if verdict is not None:
            self._report(self.state, t.state, verdict, now)
        return self._apply(t, now_ns)

    def _guard(self) -> GuardSignal | None:
        return self.guard.signal(lambda symbol: self.version in self.router.reaches(symbol))

    def _apply(self, t: Transition, now_ns: int) -> Transition:
        changed = t.state != self.state
        self.state = t.state
        self._wake = t.wake_at
        if t.route_changed:
            self._route(t.route, now_ns)
        for e in t.events:
            self.progress(f"ModelVersion/{self.version}: {e.reason}: {e.message}")
        if changed or t.events:
            _write_atomic(state_path(self.home, self.version), status_patch(t.state))
        return t

    def _route(self, route: Route, now_ns: int) -> None:
        if self.role != "canary":
            if route.role == "stable":
                self.progress(f"ModelVersion/{self.version}: promoted; a shadow has no weight in this run's "
                              "router, make it the stable version in the manifests")  # fmt: skip
            return
        weight = {"canary": route.fraction, "stable": 1.0}.get(route.role, 0.0)
        self.router.set_weights({self.version: weight}, route.canary_kinds())  # promotion/rollback: unit kept
        self.weights.append((now_ns, weight))
        self.kinds.append(self.router.kinds()[self.version])

    # --- the report -------------------------------------------------------------------------------------------
    def _report(self, before: RolloutState, after: RolloutState, verdict: AnalysisVerdict, now: datetime) -> None:
        """Append this analysis to the comparison report and rewrite its two files (the operator's ConfigMap
        keys, see :func:`report_paths`)."""
        self.report = RolloutReport(self.version, before.stable, self.spec.rollout.strategy.value,
                                    self.report.rows).with_row(row_for(before, after, verdict, now))  # fmt: skip
        json_path, md_path = report_paths(self.home, self.version)
        _write_atomic(json_path, self.report.to_json())
        _write_text_atomic(md_path, self.report.markdown())

    def summary(self) -> dict[str, Any]:
        """The run summary's entry: final phase, step, weight, history, the last verdict and the router's
        weight changes (with their units in ``routerKinds``)."""
        if self.state is None:
            return {"phase": None, "analyses": 0}
        patch = status_patch(self.state)
        return {
            "phase": patch["phase"],
            "step": patch["currentStep"],
            "weightPct": patch["weightPct"],
            "failures": patch["failures"],
            "stable": self.state.stable,
            "lastVerdict": patch["rollout"]["lastVerdict"],
            "lastReason": patch["rollout"]["lastReason"],
            "history": patch["history"],
            "analyses": self.analyses,
            "routerWeights": [[ts, w] for ts, w in self.weights],
            "routerKinds": list(self.kinds),
            "statePath": str(state_path(self.home, self.version)),
            **self._report_summary(),
        }

    def _report_summary(self) -> dict[str, Any]:
        """Where the comparison report is (None before the first analysis) and how many rows it holds."""
        json_path, md_path = report_paths(self.home, self.version)
        written = bool(self.report.rows)
        return {"report": str(md_path) if written else None, "reportJson": str(json_path) if written else None,
                "reportRows": len(self.report.rows)}  # fmt: skip


def rollout_drivers(
    models: Mapping[str, ModelVersionSpec],
    families: Mapping[str, Any],
    strategies: Mapping[str, Any],
    budgets: Mapping[str, RiskEngine],
    *,
    store: Store,
    home: Path,
    run_id: str,
    tops: TopRecorder,
    flush: Callable[[], object] = lambda: None,
    progress: Progress = lambda _: None,
) -> list[RolloutDriver]:
    """A driver for every loaded ModelVersion whose rollout strategy is canary or shadow.

    ``families``: family → :class:`~..local.models.FamilyModels`; ``strategies``: name → StrategySpec (the
    analysis reads the signals of the family's strategies; the label horizon is the version's training
    horizon, else the longest ``decision.horizonSeconds`` of those strategies)."""
    drivers = []
    for family, fm in sorted(families.items()):
        stable = next((v for v, r in fm.roles.items() if r == "stable"), None)
        names = sorted(n for n, s in strategies.items() if s.model.family == family)
        charged = {s.risk_budget_ref.name for n, s in strategies.items() if n in names}
        for version, role in sorted(fm.roles.items()):
            spec = models[version]
            if spec.rollout.strategy not in (RolloutStrategy.CANARY, RolloutStrategy.SHADOW) or stable is None:
                continue
            horizon_s = (spec.training.horizon_seconds if spec.training is not None
                         else max((strategies[n].decision.horizon_seconds for n in names), default=60))  # fmt: skip
            drivers.append(RolloutDriver(
                version, spec, stable=stable, router=fm.router, role=role, store=store, home=home, run_id=run_id,
                strategies=names, horizon_ns=int(horizon_s) * 1_000_000_000, tops=tops,
                guard=AttributedDrawdown({b: budgets[b] for b in sorted(charged) if b in budgets}, names),
                flush=flush, progress=progress, offline=offline_calibration(spec, home),
            ))  # fmt: skip
    return drivers
