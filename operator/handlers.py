"""kopf registration: which change of which object calls which reconciler. Nothing else lives here.

Every handler is level-triggered: it reads the current objects and converges (``operator/reconcile``), so a
create, an update, a resume after a restart and the periodic timer all do the same idempotent pass. The
timer repairs drift that no watch reports; deleting a child by hand is reported at once by its watch.
Handlers are sync functions: kopf runs them in its executor threads, and the blocking client is simple.
"""

from __future__ import annotations

import contextvars
import logging
import os
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kopf

from ..api.v1alpha1 import GROUP, VERSION
from ..settings import OperatorSettings, load_settings
from . import naming
from .kube import FIELD_MANAGER, KubeClient
from .reconcile.modelversion import reconcile_family, reconcile_modelversion
from .reconcile.riskbudget import reconcile_riskbudget
from .reconcile.rollout import Analysis, model_lock, reconcile_rollout, store_analysis, utcnow, wants_pass
from .reconcile.strategy import reconcile_strategy, strategies_of_budget, strategies_of_family

log = logging.getLogger("tradeplane.operator")

#: Resync period of the safety-net timers; TRADEPLANE_OPERATOR__RESYNC_SECONDS (read at import: kopf needs
#: the interval when the decorator runs).
RESYNC_S = float(os.environ.get("TRADEPLANE_OPERATOR__RESYNC_SECONDS", "30"))
#: How often a rolled-out ModelVersion is looked at (TRADEPLANE_OPERATOR__ROLLOUT_TICK_SECONDS): a pass that
#: is not due (no analysis, pause end, command or guard to read) returns without a request, so the tick only
#: bounds how late a due step is — the schedule itself is the controller's wake_at, stored in the status.
ROLLOUT_TICK_S = float(os.environ.get("TRADEPLANE_OPERATOR__ROLLOUT_TICK_SECONDS", "2"))
#: Writers of a child's spec that are not drift: ourselves, and the built-in controllers.
_OWN_MANAGERS = frozenset({FIELD_MANAGER, "kube-controller-manager"})


@dataclass
class _Runtime:
    kube: KubeClient
    settings: OperatorSettings
    bootstrap: str
    fanout: ThreadPoolExecutor
    analysis: Analysis


_rt: _Runtime | None = None


def _runtime() -> _Runtime:
    if _rt is None:
        raise kopf.TemporaryError("the operator is still starting", delay=1)
    return _rt


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _post(body: Any, events: list[tuple[str, str, str]]) -> None:
    for kind, reason, message in events:
        kopf.event(body, type=kind, reason=reason, message=message[:1000])


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    global _rt
    process = load_settings()
    settings.persistence.finalizer = naming.FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=f"kopf.{GROUP}")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=f"kopf.{GROUP}")
    settings.posting.level = logging.WARNING  # our own events tell the story; kopf's per-handler chatter does not
    settings.execution.max_workers = 8
    settings.watching.server_timeout = 300
    settings.networking.error_backoffs = [1, 2, 5, 10]
    # Replicas with equal peering priorities all pause ("possibly conflicting operators"): a random priority
    # makes exactly one of them the active operator, and a standby takes over when it stops.
    settings.peering.priority = random.randint(1, 32_767)
    dsn = process.clickhouse.dsn.get_secret_value() if process.clickhouse.dsn is not None else None
    analysis = store_analysis(dsn, database=process.clickhouse.database, home=process.home)
    _rt = _Runtime(KubeClient.from_config(), process.operator, process.kafka.bootstrap_servers,
                   ThreadPoolExecutor(4, thread_name_prefix="tp-fanout"), analysis)  # fmt: skip
    log.info("tradeplane operator configured (workload image %s)", process.operator.image)


@kopf.on.cleanup()
def shutdown(**_: Any) -> None:
    if _rt is not None:
        _rt.fanout.shutdown(wait=False, cancel_futures=True)
        _rt.kube.close()


# --- Strategy ----------------------------------------------------------------------------------------------------


@kopf.on.resume(GROUP, VERSION, "strategies")
@kopf.on.create(GROUP, VERSION, "strategies")
@kopf.on.update(GROUP, VERSION, "strategies")
@kopf.timer(GROUP, VERSION, "strategies", interval=RESYNC_S, initial_delay=RESYNC_S, idle=RESYNC_S / 2)
def strategy(body: kopf.Body, **_: Any) -> None:
    _strategy(dict(body))


def _strategy(obj: dict[str, Any]) -> None:
    rt = _runtime()
    result = reconcile_strategy(rt.kube, obj, settings=rt.settings, kafka_bootstrap=rt.bootstrap, now=_now())
    if result.current is not None:
        _post(result.current, result.events)


@kopf.on.delete(GROUP, VERSION, "strategies")
def strategy_deleted(body: kopf.Body, **_: Any) -> None:
    """Children go with their owner (garbage collection); the budget's strategy list is updated now."""
    rt = _runtime()
    ref = body["spec"]["riskBudgetRef"]["name"]
    budget = rt.kube.get(f"{GROUP}/{VERSION}", "RiskBudget", str(body["metadata"]["namespace"]), ref)
    if budget is not None:
        reconcile_riskbudget(rt.kube, budget, now=_now())


# --- RiskBudget ----------------------------------------------------------------------------------------------------


@kopf.on.resume(GROUP, VERSION, "riskbudgets")
@kopf.on.create(GROUP, VERSION, "riskbudgets")
@kopf.on.update(GROUP, VERSION, "riskbudgets")
def riskbudget_changed(body: kopf.Body, **_: Any) -> None:
    """A spec change (the kill switch above all) reaches every charged strategy now, in parallel."""
    rt = _runtime()
    result = reconcile_riskbudget(rt.kube, dict(body), now=_now())
    _post(body, result.events)
    _fan_out(result.strategies)


@kopf.timer(GROUP, VERSION, "riskbudgets", interval=RESYNC_S, initial_delay=RESYNC_S / 2)
def riskbudget_usage(body: kopf.Body, **_: Any) -> None:
    """Usage follows the strategies' reports; the strategies themselves have their own timers."""
    rt = _runtime()
    _post(body, reconcile_riskbudget(rt.kube, dict(body), now=_now()).events)


@kopf.on.delete(GROUP, VERSION, "riskbudgets")
def riskbudget_deleted(body: kopf.Body, **_: Any) -> None:
    """Charged strategies are blocked (RiskBudgetNotFound) and their workloads stopped."""
    rt = _runtime()
    namespace, name = str(body["metadata"]["namespace"]), str(body["metadata"]["name"])
    _fan_out(strategies_of_budget(rt.kube, namespace, name))


def _fan_out(strategies: list[dict[str, Any]]) -> None:
    rt = _runtime()
    # each task in a copy of this context: kopf.event() finds the operator's settings in context variables
    futures = [rt.fanout.submit(contextvars.copy_context().run, _strategy, s) for s in strategies]
    for failure in [f.exception() for f in futures]:
        if failure is not None:  # the strategy's own timer retries; the budget's pass is done
            log.warning("re-reconciling a charged strategy failed: %s", failure)


# --- ModelVersion --------------------------------------------------------------------------------------------------


@kopf.on.resume(GROUP, VERSION, "modelversions")
@kopf.on.create(GROUP, VERSION, "modelversions")
@kopf.on.update(GROUP, VERSION, "modelversions")
def modelversion_changed(body: kopf.Body, **_: Any) -> None:
    """The version's own children and status, then the strategies of its family (their desk config lists
    the family's versions)."""
    rt = _runtime()
    namespace, family = str(body["metadata"]["namespace"]), str(body["spec"]["model"])
    with model_lock(namespace, str(body["metadata"]["name"])):
        _post(body, reconcile_modelversion(rt.kube, dict(body), settings=rt.settings, now=_now()).events)
        _rollout(body)  # a rollout-command annotation is an update: applied in this very pass
    _fan_out(strategies_of_family(rt.kube, namespace, family))


@kopf.timer(GROUP, VERSION, "modelversions", interval=RESYNC_S, initial_delay=RESYNC_S / 3)
def modelversion_status(body: kopf.Body, **_: Any) -> None:
    """Status follows the RayJob / RayService, which KubeRay changes without telling us."""
    rt = _runtime()
    with model_lock(str(body["metadata"]["namespace"]), str(body["metadata"]["name"])):
        _post(body, reconcile_modelversion(rt.kube, dict(body), settings=rt.settings, now=_now()).events)


@kopf.timer(GROUP, VERSION, "modelversions", interval=ROLLOUT_TICK_S, initial_delay=ROLLOUT_TICK_S)
def modelversion_rollout(body: kopf.Body, **_: Any) -> None:
    """The rollout's clock: a canary or shadow is advanced when its analysis or pause end is due (the
    schedule is in its status, so a restarted operator resumes it), its drawdown guard on every tick."""
    if not wants_pass(dict(body), utcnow()):
        return
    with model_lock(str(body["metadata"]["namespace"]), str(body["metadata"]["name"])):
        _rollout(body)


def _rollout(body: kopf.Body) -> None:
    """One rollout pass (the caller holds the version's lock); the family's routes follow a status change."""
    rt = _runtime()

    def routes(namespace: str, family: str) -> list[tuple[str, str, str]]:
        return reconcile_family(rt.kube, namespace, family, settings=rt.settings).events

    result = reconcile_rollout(rt.kube, dict(body), analysis=rt.analysis, now=utcnow(), on_routes=routes)
    if result.current is not None:
        _post(result.current, result.events)


@kopf.on.delete(GROUP, VERSION, "modelversions")
def modelversion_deleted(body: kopf.Body, **_: Any) -> None:
    """The family's RayService loses this version (or goes), and the strategies' config drops it."""
    rt = _runtime()
    namespace, family = str(body["metadata"]["namespace"]), str(body["spec"]["model"])
    reconcile_family(rt.kube, namespace, family, settings=rt.settings)
    _fan_out([s for s in strategies_of_family(rt.kube, namespace, family)])


# --- children: deleted or edited by hand ---------------------------------------------------------------------------


def _foreign_edit(body: kopf.Body) -> bool:
    """Someone other than us or a built-in controller wrote the object's spec or data (kubectl edit/scale)."""
    for entry in body.get("metadata", {}).get("managedFields") or []:
        fields = entry.get("fieldsV1") or {}
        if entry.get("manager") not in _OWN_MANAGERS and ("f:spec" in fields or "f:data" in fields):
            return True
    return False


def _child_changed(event: kopf.RawEvent, body: kopf.Body) -> None:
    labels = body.get("metadata", {}).get("labels") or {}
    owner = labels.get(naming.STRATEGY_LABEL)
    if owner is None or _rt is None:
        return
    if event.get("type") == "DELETED" or (event.get("type") == "MODIFIED" and _foreign_edit(body)):
        namespace = str(body["metadata"]["namespace"])
        obj = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Strategy",
               "metadata": {"name": owner, "namespace": namespace}}  # fmt: skip
        _strategy(obj)


@kopf.on.event("apps", "v1", "deployments", labels={naming.MANAGED_BY_LABEL: naming.MANAGED_BY})
def deployment_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    _child_changed(event, body)


@kopf.on.event("", "v1", "configmaps", labels={naming.MANAGED_BY_LABEL: naming.MANAGED_BY})
def configmap_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    _child_changed(event, body)
