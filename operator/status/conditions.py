"""Standard conditions (Ready, Progressing, Degraded) and the rule that keeps status writes quiet.

Why a transition time is carried over: ``lastTransitionTime`` says when a condition last *changed*, not when
it was last computed; recomputing it every pass would make every status differ from the last one, and the
operator would write status on every pass (KubeRay's ``InconsistentRayClusterStatus`` exists for the same
reason).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ...api.v1alpha1 import ConditionType


def condition(kind: ConditionType, ok: bool, reason: str, message: str, generation: int | None) -> dict[str, Any]:
    """One condition in the API's camelCase shape, without a transition time (see :func:`with_times`)."""
    out: dict[str, Any] = {"type": kind.value, "status": "True" if ok else "False", "reason": reason}
    if message:  # an empty string reaches the 1.20 API server's merge patch as null, which the schema refuses
        out["message"] = message
    if generation is not None:
        out["observedGeneration"] = generation
    return out


def with_times(new: Sequence[Mapping[str, Any]], old: Sequence[Mapping[str, Any]], now: str) -> list[dict[str, Any]]:
    """``new`` with each condition's ``lastTransitionTime`` kept from ``old`` when its status did not change,
    else ``now``."""
    before = {c.get("type"): c for c in old}
    out: list[dict[str, Any]] = []
    for c in new:
        prev = before.get(c["type"])
        same = prev is not None and prev.get("status") == c["status"] and prev.get("lastTransitionTime")
        out.append(dict(c) | {"lastTransitionTime": prev["lastTransitionTime"] if same and prev else now})
    return out


def status_differs(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> bool:
    """Whether writing ``desired`` (a merge patch of some status keys) would change ``current``."""
    current = current or {}
    return any(current.get(k) != v for k, v in desired.items())


def transitions(old: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Conditions whose status or reason changed: each becomes an Event."""
    before = {c.get("type"): (c.get("status"), c.get("reason")) for c in old}
    return [dict(c) for c in new if before.get(c["type"]) != (c["status"], c["reason"])]
