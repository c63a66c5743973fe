"""The quiet-write rules: condition shape, transition times, status_differs, transitions, and ``contains`` (does a
live child still match what is rendered)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tradeplane.api.v1alpha1 import Condition, ConditionType
from tradeplane.operator.reconcile.children import contains
from tradeplane.operator.status.conditions import condition, status_differs, transitions, with_times

T0 = "2026-03-01T10:00:00Z"
T1 = "2026-03-01T10:05:00Z"


# --- condition ---------------------------------------------------------------------------------------------------

CONDITIONS: dict[str, tuple[tuple[ConditionType, bool, str, str, int | None], dict[str, Any]]] = {
    "ready-true-with-message": (
        (ConditionType.READY, True, "Reconciled", "all good", 3),
        {"type": "Ready", "status": "True", "reason": "Reconciled", "message": "all good", "observedGeneration": 3},
    ),
    "empty-message-omitted": (
        (ConditionType.PROGRESSING, False, "Reconciled", "", 3),
        {"type": "Progressing", "status": "False", "reason": "Reconciled", "observedGeneration": 3},
    ),
    "no-generation-omitted": (
        (ConditionType.DEGRADED, True, "InvalidSpec", "bad", None),
        {"type": "Degraded", "status": "True", "reason": "InvalidSpec", "message": "bad"},
    ),
    "generation-zero-kept": (
        (ConditionType.READY, False, "ChildrenNotReady", "", 0),
        {"type": "Ready", "status": "False", "reason": "ChildrenNotReady", "observedGeneration": 0},
    ),
}


@pytest.mark.parametrize(("args", "expected"), CONDITIONS.values(), ids=list(CONDITIONS))
def test_condition(args: tuple[ConditionType, bool, str, str, int | None], expected: dict[str, Any]) -> None:
    got = condition(*args)
    assert got == expected
    Condition.model_validate(got)


# --- with_times --------------------------------------------------------------------------------------------------


def cond(kind: str, status: str, reason: str = "R", time: str | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": kind, "status": status, "reason": reason, **extra}
    if time is not None:
        out["lastTransitionTime"] = time
    return out


#: id → (new conditions, old conditions, expected lastTransitionTime per type)
TIMES: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, str]]] = {
    "first-time": ([cond("Ready", "True")], [], {"Ready": T1}),
    "status-unchanged-keeps-time": ([cond("Ready", "True")], [cond("Ready", "True", time=T0)], {"Ready": T0}),
    "status-changed-gets-now": ([cond("Ready", "False")], [cond("Ready", "True", time=T0)], {"Ready": T1}),
    "reason-changed-keeps-time": ([cond("Ready", "False", "B")], [cond("Ready", "False", "A", time=T0)],
                                  {"Ready": T0}),
    "message-changed-keeps-time": ([cond("Ready", "False", message="new")],
                                   [cond("Ready", "False", message="old", time=T0)], {"Ready": T0}),
    "old-without-time-gets-now": ([cond("Ready", "True")], [cond("Ready", "True")], {"Ready": T1}),
    "per-type": (
        [cond("Ready", "True"), cond("Progressing", "False"), cond("Degraded", "False")],
        [cond("Degraded", "False", time=T0), cond("Ready", "False", time=T0), cond("Progressing", "False", time=T0)],
        {"Ready": T1, "Progressing": T0, "Degraded": T0},
    ),
    "other-type-does-not-count": ([cond("Degraded", "True")], [cond("Ready", "True", time=T0)], {"Degraded": T1}),
    "unknown-to-false-is-a-change": ([cond("Ready", "False")], [cond("Ready", "Unknown", time=T0)], {"Ready": T1}),
}  # fmt: skip


@pytest.mark.parametrize(("new", "old", "times"), TIMES.values(), ids=list(TIMES))
def test_with_times(new: list[dict[str, Any]], old: list[dict[str, Any]], times: dict[str, str]) -> None:
    got = with_times(new, old, T1)
    assert [c["type"] for c in got] == [c["type"] for c in new], "order kept"
    assert {c["type"]: c["lastTransitionTime"] for c in got} == times
    assert [{k: v for k, v in c.items() if k != "lastTransitionTime"} for c in got] == new, "nothing else changes"
    assert all("lastTransitionTime" not in c for c in new), "inputs are not modified"


# --- status_differs ----------------------------------------------------------------------------------------------

BASE: dict[str, Any] = {
    "phase": "Running",
    "configRev": "0123456789abcdef",
    "children": [{"kind": "ConfigMap", "name": "s-config"}, {"kind": "Deployment", "name": "s-ingest"}],
    "conditions": [cond("Ready", "True", "Reconciled", T0, observedGeneration=2)],
    "observedGeneration": 2,
}


def _with(**changes: Any) -> dict[str, Any]:
    return {**BASE, **changes}


#: id → (current, desired, differs)
DIFFERS: dict[str, tuple[dict[str, Any] | None, dict[str, Any], bool]] = {
    "identical": (dict(BASE), dict(BASE), False),
    "current-none": (None, dict(BASE), True),
    "current-empty": ({}, dict(BASE), True),
    "desired-empty": (dict(BASE), {}, False),
    "desk-owned-keys-ignored": (
        _with(positions=[{"symbol": "BTCUSDT", "quantity": 1.0}], pnl={"realizedUsdt": 1.0}, lastSignal=None),
        dict(BASE), False),
    "phase-changed": (dict(BASE), _with(phase="Pending"), True),
    "generation-changed": (dict(BASE), _with(observedGeneration=3), True),
    "child-added": (dict(BASE), _with(children=[*BASE["children"], {"kind": "Service", "name": "s-metrics"}]), True),
    "child-removed": (dict(BASE), _with(children=BASE["children"][:1]), True),
    "nested-condition-reason": (dict(BASE), _with(conditions=[cond("Ready", "True", "Other", T0,
                                                                   observedGeneration=2)]), True),
    "nested-condition-time": (dict(BASE), _with(conditions=[cond("Ready", "True", "Reconciled", T1,
                                                                 observedGeneration=2)]), True),
    "condition-added": (dict(BASE), _with(conditions=[*BASE["conditions"], cond("Degraded", "False")]), True),
    "null-rev-equals-absent": ({k: v for k, v in BASE.items() if k != "configRev"}, _with(configRev=None), False),
    "rev-cleared": (dict(BASE), _with(configRev=None), True),
}  # fmt: skip


@pytest.mark.parametrize(("current", "desired", "differs"), DIFFERS.values(), ids=list(DIFFERS))
def test_status_differs(current: dict[str, Any] | None, desired: dict[str, Any], differs: bool) -> None:
    assert status_differs(current, desired) is differs


# --- transitions -------------------------------------------------------------------------------------------------

TRANSITIONS: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]] = {
    "none": ([cond("Ready", "True", "A", T0)], [cond("Ready", "True", "A", T0)], []),
    "from-nothing": ([], [cond("Ready", "False", "A"), cond("Degraded", "False", "A")], ["Ready", "Degraded"]),
    "status-changed": ([cond("Ready", "False", "A")], [cond("Ready", "True", "A")], ["Ready"]),
    "reason-changed": ([cond("Ready", "False", "A")], [cond("Ready", "False", "B")], ["Ready"]),
    "message-only-is-no-transition": ([cond("Ready", "False", "A", message="x")],
                                      [cond("Ready", "False", "A", message="y")], []),
    "time-only-is-no-transition": ([cond("Ready", "True", "A", T0)], [cond("Ready", "True", "A", T1)], []),
    "only-the-changed-one": (
        [cond("Ready", "False", "A"), cond("Progressing", "True", "A"), cond("Degraded", "False", "A")],
        [cond("Ready", "True", "A"), cond("Progressing", "True", "A"), cond("Degraded", "False", "A")], ["Ready"]),
    "condition-dropped-is-not-an-event": ([cond("Ready", "True", "A"), cond("Degraded", "True", "A")],
                                          [cond("Ready", "True", "A")], []),
}  # fmt: skip


@pytest.mark.parametrize(("old", "new", "changed"), TRANSITIONS.values(), ids=list(TRANSITIONS))
def test_transitions(old: list[dict[str, Any]], new: list[dict[str, Any]], changed: list[str]) -> None:
    got = transitions(old, new)
    assert [c["type"] for c in got] == changed
    by_type = {c["type"]: c for c in new}
    assert all(c == by_type[c["type"]] for c in got), "the new condition is reported, unchanged"


# --- contains ----------------------------------------------------------------------------------------------------

DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "s-decide", "namespace": "desk", "labels": {"a": "1"}, "annotations": {"rev": "x"}},
    "spec": {
        "replicas": 1,
        "template": {
            "spec": {
                "containers": [
                    {
                        "name": "decide",
                        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                        "resources": {"requests": {"cpu": "500m"}},
                    }
                ]
            }
        },
    },
}


_DELETE = object()


def live(**edits: Any) -> dict[str, Any]:
    """The Deployment as the server returns it: defaults, status and bookkeeping added to what was sent; ``edits``
    (``a__b__0__c`` paths) then change, replace or (with ``_DELETE``) remove one field each."""
    out: dict[str, Any] = copy.deepcopy(DEPLOYMENT)
    out["metadata"] |= {"uid": "u", "resourceVersion": "42", "generation": 2, "managedFields": [{"manager": "op"}]}
    out["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = "3"
    out["spec"] |= {"revisionHistoryLimit": 10, "progressDeadlineSeconds": 600}
    c = out["spec"]["template"]["spec"]["containers"][0]
    c |= {"terminationMessagePath": "/dev/termination-log", "imagePullPolicy": "IfNotPresent"}
    out["spec"]["template"]["spec"]["dnsPolicy"] = "ClusterFirst"
    out["status"] = {"replicas": 1, "availableReplicas": 1}
    for path, value in edits.items():
        *parents, last = path.split("__")
        node: Any = out
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        if value is _DELETE:
            del node[int(last) if last.isdigit() else last]
        elif last.isdigit():
            node[int(last)] = value
        else:
            node[last] = value
    return out


ENV = "spec__template__spec__containers__0__env"
CONTAINER = "spec__template__spec__containers__0"

#: id → (live object, contains the rendered DEPLOYMENT)
CONTAINS: dict[str, tuple[Any, bool]] = {
    "server-added-fields-ignored": (live(), True),
    "extra-annotation-by-someone-else": (live(metadata__annotations={"rev": "x", "kubectl": "y"}), True),
    "replicas-changed": (live(spec__replicas=3), False),
    "label-changed": (live(metadata__labels={"a": "2"}), False),
    "label-removed": (live(metadata__labels={}), False),
    "annotation-removed": (live(metadata__annotations={"other": "x"}), False),
    "nested-env-value-changed": (live(**{f"{ENV}__1": {"name": "B", "value": "3"}}), False),
    "nested-cpu-changed": (live(**{f"{CONTAINER}__resources": {"requests": {"cpu": "1"}}}), False),
    "env-var-added": (live(**{ENV: [{"name": "A", "value": "1"}, {"name": "B", "value": "2"},
                                    {"name": "C", "value": "3"}]}), False),
    "env-var-removed": (live(**{ENV: [{"name": "A", "value": "1"}]}), False),
    "env-reordered": (live(**{ENV: [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}]}), False),
    "env-entry-with-server-default": (live(**{f"{ENV}__0": {"name": "A", "value": "1", "x": None}}), True),
    "container-added": (live(spec__template__spec__containers=[DEPLOYMENT["spec"]["template"]["spec"]["containers"][0],
                                                                {"name": "sidecar"}]), False),
    "spec-missing": (live(spec=_DELETE), False),
    "mapping-became-list": (live(metadata__labels=[]), False),
    "list-became-mapping": (live(**{ENV: {}}), False),
    "not-a-mapping": ("Deployment", False),
    "none": (None, False),
}  # fmt: skip


@pytest.mark.parametrize(("obj", "matches"), CONTAINS.values(), ids=list(CONTAINS))
def test_contains(obj: Any, matches: bool) -> None:
    assert contains(obj, DEPLOYMENT) is matches


SCALARS: dict[str, tuple[Any, Any, bool]] = {
    "equal-strings": ("a", "a", True),
    "different-strings": ("a", "b", False),
    "equal-ints": (1, 1, True),
    "string-vs-int": ("1", 1, False),
    "none-vs-value": (None, "a", False),
    "empty-desired-mapping": ({"x": 1}, {}, True),
    "empty-desired-list": ([], [], True),
    "empty-desired-list-vs-items": ([1], [], False),
    "desired-none-key-missing": ({}, {"k": None}, False),
    "desired-none-key-null": ({"k": None}, {"k": None}, True),
    "deep-nesting": ({"a": [{"b": {"c": [1, 2], "d": 0}}]}, {"a": [{"b": {"c": [1, 2]}}]}, True),
    "deep-nesting-changed": ({"a": [{"b": {"c": [1, 3]}}]}, {"a": [{"b": {"c": [1, 2]}}]}, False),
}


@pytest.mark.parametrize(("live_value", "desired", "matches"), SCALARS.values(), ids=list(SCALARS))
def test_contains_values(live_value: Any, desired: Any, matches: bool) -> None:
    assert contains(live_value, desired) is matches
