"""Reconcile one ModelVersion's rollout: read the stored state, gather the inputs (a manual command, the
drawdown guard, an analysis when one is due), ask engine/rollout's controller what to do, then store the state
in the status, append the analysis to the version's comparison report (ConfigMap ``<name>-rollout-report``),
post its events and re-render the family's routes.

Why the logic is not here: ``engine.rollout.advance`` is the rollout (the same function drives ``tradeplane
run`` and the tests with a fake clock); this module only reads objects and writes the answer. The decision
itself is :func:`plan_rollout`, pure (objects, ``now`` and the inputs in; the patch and events out).

Why engine/rollout and the analysis are imported inside functions: importing the operator must not load
numpy (tests/unit/test_packaging.py), and an operator image without the workloads extra still reconciles
everything else — its analyses are INCONCLUSIVE ("analysis unavailable"), so it never auto-promotes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...api.v1alpha1 import API_VERSION, ModelVersionSpec
from ...api.v1alpha1.modelversion import RolloutStrategy
from .. import naming, reasons
from ..kube import KubeClient, KubeError
from ..render.rollout_report import render_report_configmap, report_config_map_name, stored_report
from ..render.routes import stable_version
from ..status.rollout import api_patch, rollout_conditions

if TYPE_CHECKING:
    from ...engine.rollout import AnalysisVerdict, GuardSignal, ManualCommand, RolloutState, Transition

#: Runs one analysis: (spec, state, now, strategies of the family) → verdict. Built by :func:`store_analysis`.
Analysis = Callable[[ModelVersionSpec, "RolloutState", datetime, Sequence[str]], "AnalysisVerdict"]
#: Rollout strategies the controller drives here; ``immediate`` versions are stable from the start.
DRIVEN = (RolloutStrategy.CANARY, RolloutStrategy.SHADOW)
#: Event reason when the comparison report could not be written (the rollout itself went on).
REPORT_FAILED = "RolloutReportFailed"

_locks: dict[tuple[str, str], threading.Lock] = {}
_locks_guard = threading.Lock()


def model_lock(namespace: str, name: str) -> threading.Lock:
    """One pass at a time per ModelVersion (its own reconcile, the rollout timer, a command): both write
    ``status.history``, and a pass must never write back a history read before the other's record."""
    with _locks_guard:
        return _locks.setdefault((namespace, name), threading.Lock())


@dataclass(frozen=True)
class RolloutPlan:
    """What one pass decided: the status patch (None: nothing to store), events, whether the command
    annotations are to be removed, and the controller's transition (None when the version is not rolled out)."""

    status: dict[str, Any] | None
    events: list[tuple[str, str, str]] = field(default_factory=list)
    clear_command: bool = False
    transition: Transition | None = None


@dataclass
class RolloutResult:
    plan: RolloutPlan
    events: list[tuple[str, str, str]] = field(default_factory=list)
    writes: int = 0
    current: dict[str, Any] | None = None  #: the ModelVersion as read (what events are posted on)


# --- reading the inputs (pure) ------------------------------------------------------------------------------------


def rollout_spec(mv: Mapping[str, Any]) -> ModelVersionSpec | None:
    """The parsed spec when the version is rolled out by the controller: canary or shadow, with an artifact
    (a version still training has nothing to route), not being deleted. None otherwise (or an invalid spec:
    the version's own reconcile reports that)."""
    if mv["metadata"].get("deletionTimestamp"):
        return None
    try:
        spec = ModelVersionSpec.model_validate(mv["spec"])
    except ValueError:
        return None
    if spec.rollout.strategy not in DRIVEN or spec.artifact is None:
        return None
    return spec


def pending_command(mv: Mapping[str, Any]) -> tuple[ManualCommand | None, str | None]:
    """(command, error) from the annotations; error names an annotation value that is no command."""
    from ...engine.rollout import Command, ManualCommand

    notes = mv["metadata"].get("annotations") or {}
    raw = notes.get(naming.ROLLOUT_COMMAND)
    if raw is None:
        return None, None
    by = str(notes.get(naming.ROLLOUT_COMMAND_BY) or "annotation")
    try:
        return ManualCommand(Command(str(raw).strip().lower()), by=by), None
    except ValueError:
        return None, f"{naming.ROLLOUT_COMMAND}: {raw!r} is not one of {[c.value for c in Command]}; removed"


def current_state(mv: Mapping[str, Any]) -> RolloutState | None:
    from ...engine.rollout import state_from_status

    return state_from_status(mv.get("status") or None, candidate=str(mv["metadata"]["name"]))


def analysis_due(mv: Mapping[str, Any], now: datetime) -> bool:
    """Whether an analysis should run in this pass (the stored state's next_due has come)."""
    from ...engine.rollout import next_due

    spec = rollout_spec(mv)
    state = current_state(mv) if spec is not None else None
    if spec is None or state is None:
        return False
    due = next_due(state, spec.rollout)
    return due is not None and due <= now


def wants_pass(mv: Mapping[str, Any], now: datetime) -> bool:
    """Cheap check for the frequent timer: a pass can change something (start, a command, an analysis or a
    pause end is due, or a canary whose drawdown guard must be read)."""
    from ...engine.rollout import wake_at

    spec = rollout_spec(mv)
    if spec is None:
        return False
    if (mv["metadata"].get("annotations") or {}).get(naming.ROLLOUT_COMMAND) is not None:
        return True
    state = current_state(mv)
    if state is None:
        return True
    if state.phase.value == "Canary":
        return True  # the guard is read on every pass
    wake = wake_at(state, spec.rollout)
    return wake is not None and wake <= now


def guard_from_budgets(budgets: Sequence[Mapping[str, Any]]) -> GuardSignal | None:
    """The drawdown guard: the charged RiskBudget closest to its limit (status.usage.drawdownPct against
    spec.limits.maxDrawdownPct); None without a budget that reports usage."""
    from ...engine.rollout import GuardSignal

    worst: GuardSignal | None = None
    for b in budgets:
        usage = (b.get("status") or {}).get("usage") or {}
        limit = float(((b.get("spec") or {}).get("limits") or {}).get("maxDrawdownPct", 10.0))
        try:
            sig = GuardSignal(float(usage.get("drawdownPct", 0.0)), limit, str(b["metadata"]["name"]))
        except (TypeError, ValueError):
            continue
        if worst is None or sig.drawdown_pct / sig.limit_pct > worst.drawdown_pct / worst.limit_pct:
            worst = sig
    return worst


# --- the decision (pure) ------------------------------------------------------------------------------------------


def plan_rollout(
    mv: Mapping[str, Any],
    versions: Sequence[Mapping[str, Any]],
    now: datetime,
    *,
    verdict: AnalysisVerdict | None = None,
    guard: GuardSignal | None = None,
    command: ManualCommand | None = None,
    command_error: str | None = None,
) -> RolloutPlan:
    """One pass of one version's rollout: ``mv`` as read, ``versions`` its family's ModelVersions (who is
    stable), ``verdict`` an analysis run at ``now`` (or None), ``guard`` the drawdown guard, ``command`` the
    annotation's command. Starts the rollout when none is stored (judged against the family's stable)."""
    from ...engine.rollout import advance, status_patch

    spec = rollout_spec(mv)
    events: list[tuple[str, str, str]] = []
    if command_error:
        events.append(("Warning", reasons.ROLLOUT_COMMAND_INVALID, command_error))
    clear = command is not None or command_error is not None
    if spec is None:
        return RolloutPlan(None, events, clear)
    name = str(mv["metadata"]["name"])
    state = current_state(mv)
    if state is None:
        t = advance(spec.rollout, None, now, candidate=name, stable=stable_version(versions, exclude=name))
        if command is not None:
            events += [(e.type, e.reason, e.message) for e in t.events]
            t = advance(spec.rollout, t.state, now, command=command)
    else:
        t = advance(spec.rollout, state, now, verdict=verdict, guard=guard, command=command)
    events += [(e.type, e.reason, e.message) for e in t.events]
    if t.state == state:
        return RolloutPlan(None, events, clear, t)
    old = mv.get("status") or {}
    patch = api_patch(status_patch(t.state))
    generation = mv["metadata"].get("generation")
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    patch["conditions"] = rollout_conditions(old.get("conditions") or [], patch, generation, stamp)
    return RolloutPlan(patch, events, clear, t)


# --- the analysis -------------------------------------------------------------------------------------------------


def inconclusive(reason: str) -> AnalysisVerdict:
    from ...engine.rollout import AnalysisVerdict, Verdict

    return AnalysisVerdict(Verdict.INCONCLUSIVE, reason)


def store_analysis(dsn: str | None, *, database: str = "tradeplane", home: Path | None = None) -> Analysis:
    """The analysis the operator runs: ROLLOUT-DATA's ``run_analysis`` over a ClickHouse server store at
    ``dsn`` (the operator's TRADEPLANE_CLICKHOUSE__DSN), with the candidate's offline calibration curve from
    ``home`` (where the artifacts are mounted). Without a DSN every run is INCONCLUSIVE ("no analysis store"):
    the rollout never promotes itself, manual commands still work. A store or analysis error is INCONCLUSIVE
    too — an outage is no evidence against the candidate."""

    def run(spec: ModelVersionSpec, state: RolloutState, now: datetime, strategies: Sequence[str]) -> AnalysisVerdict:
        if not dsn:
            return inconclusive("no analysis store: the operator has no ClickHouse DSN (TRADEPLANE_CLICKHOUSE__DSN)")
        if not state.stable:
            return inconclusive("no stable version of the family to compare with")
        try:
            from ...settings import ClickHouseSettings
            from ...workloads.rollout.analysis_run import offline_calibration, run_analysis
            from ...workloads.sink.options import store_endpoint
            from ...workloads.store.clickhouse_server import ClickHouseServerStore, RetryPolicy
        except ImportError as exc:
            return inconclusive(f"analysis unavailable in this image (needs the workloads extra): {exc}")
        try:
            endpoint = store_endpoint(ClickHouseSettings.model_validate({"dsn": dsn, "database": database}))
            store = ClickHouseServerStore(**endpoint, retry=RetryPolicy(attempts=2))
        except Exception as exc:  # a bad DSN: reported on every run, never a crash loop
            return inconclusive(f"analysis store: {type(exc).__name__}: {exc}")
        try:
            offline = offline_calibration(spec, home) if home is not None else None
            return run_analysis(store, spec, state, now, strategies=list(strategies) or None, offline=offline)
        except Exception as exc:
            return inconclusive(f"analysis failed: {type(exc).__name__}: {exc}")
        finally:
            store.close()

    return run


# --- the pass -----------------------------------------------------------------------------------------------------


def _family_inputs(
    kube: KubeClient, namespace: str, family: str
) -> tuple[list[dict[str, Any]], list[str], list[dict[str, Any]]]:
    """(the family's versions, the strategies scoring with it, their RiskBudgets)."""
    from ..render.strategy import model_families

    versions = [m for m in kube.list_objects(API_VERSION, "ModelVersion", namespace) if m["spec"]["model"] == family]
    strategies = [s for s in kube.list_objects(API_VERSION, "Strategy", namespace) if family in model_families(s)]
    names = sorted({str(s["spec"]["riskBudgetRef"]["name"]) for s in strategies})
    budgets = [b for b in (kube.get(API_VERSION, "RiskBudget", namespace, n) for n in names) if b is not None]
    return versions, sorted(str(s["metadata"]["name"]) for s in strategies), budgets


def reconcile_rollout(
    kube: KubeClient,
    mv: Mapping[str, Any],
    *,
    analysis: Analysis,
    now: datetime,
    on_routes: Callable[[str, str], list[tuple[str, str, str]]] | None = None,
) -> RolloutResult:
    """One pass: read, decide (:func:`plan_rollout`), write the status, remove a handled command, then let
    ``on_routes(namespace, family)`` re-render the family's routes (RayService user_config and the routes
    ConfigMap) from the new status. The caller holds :func:`model_lock`."""
    md = mv["metadata"]
    namespace, name = str(md["namespace"]), str(md["name"])
    current = kube.get(API_VERSION, "ModelVersion", namespace, name)
    if current is None:
        return RolloutResult(RolloutPlan(None))
    command, command_error = pending_command(current)
    spec = rollout_spec(current)
    if spec is None and command is None and command_error is None:
        return RolloutResult(RolloutPlan(None), current=current)
    family = str(current["spec"]["model"])
    versions, strategies, budgets = _family_inputs(kube, namespace, family)
    state = current_state(current)
    verdict = None
    if spec is not None and state is not None and command is None and analysis_due(current, now):
        verdict = analysis(spec, state, now, strategies)
    guard = guard_from_budgets(budgets) if state is not None and state.phase.value == "Canary" else None
    plan = plan_rollout(current, versions, now, verdict=verdict, guard=guard, command=command,
                        command_error=command_error)  # fmt: skip
    result = RolloutResult(plan, list(plan.events), current=current)
    if plan.status is not None:
        kube.patch_status(API_VERSION, "ModelVersion", namespace, name, plan.status)
        result.writes += 1
    if verdict is not None and spec is not None and state is not None and plan.transition is not None:
        result.events += write_report(kube, current, spec, state, plan.transition.state, verdict, now)
        result.writes += 1
    if plan.clear_command:
        notes = {naming.ROLLOUT_COMMAND: None, naming.ROLLOUT_COMMAND_BY: None}
        kube.patch(API_VERSION, "ModelVersion", namespace, name, {"metadata": {"annotations": notes}})
        result.writes += 1
    if on_routes is not None and plan.transition is not None and (plan.transition.route_changed or state is None):
        result.events += on_routes(namespace, family)
    return result


def write_report(
    kube: KubeClient,
    mv: Mapping[str, Any],
    spec: ModelVersionSpec,
    before: RolloutState,
    after: RolloutState,
    verdict: AnalysisVerdict,
    now: datetime,
) -> list[tuple[str, str, str]]:
    """Append the analysis just applied (``before`` → ``after`` at ``now``) to the version's comparison report,
    the ConfigMap ``<name>-rollout-report`` (read, append, bounded to the last MAX_REPORT_ROWS, apply).

    Why a failed write is only a Warning event: the status is the rollout's record and its resume point; the
    report is for people, so an API hiccup must not fail (and repeat) the pass that already stored the verdict.
    An unreadable stored report starts over."""
    from ...engine.rollout import RolloutReport, row_for

    md = mv["metadata"]
    namespace, name = str(md["namespace"]), str(md["name"])
    cm_name = report_config_map_name(name)
    try:
        doc = stored_report(kube.get("v1", "ConfigMap", namespace, cm_name))
        try:
            rows = RolloutReport.from_json(doc).rows if doc is not None else ()
        except ValueError:
            rows = ()
        report = RolloutReport(name, before.stable, spec.rollout.strategy.value, rows)
        report = report.with_row(row_for(before, after, verdict, now))
        kube.apply(render_report_configmap(mv, report.to_json(), report.markdown()))
    except KubeError as exc:
        return [("Warning", REPORT_FAILED, f"rollout report ConfigMap {cm_name}: {exc}")]
    return []


def utcnow() -> datetime:
    return datetime.now(UTC)
