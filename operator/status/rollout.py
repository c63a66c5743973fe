"""A ModelVersion's status while it is rolled out: the conditions of the rollout phases, and the controller's
status patch made safe for the API server (pure).

Why conditions are adjusted here and not replaced: Ready and Degraded still follow serving (a canary whose
RayService breaks is Degraded whatever its step); only Progressing says where the rollout is, and a rollback
is Degraded because the version was judged unfit. Both reconcilers (the version's own and the rollout's)
apply this same function, so they never write conflicting conditions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ...api.v1alpha1 import ConditionType
from .. import reasons
from .conditions import condition, with_times

ACTIVE = ("Canary", "Shadow")


def _last_reason(status: Mapping[str, Any]) -> str:
    history = status.get("history") or []
    return str(history[-1].get("reason", "")) if history else ""


def _describe(status: Mapping[str, Any]) -> str:
    phase = status.get("phase")
    if phase == "Canary":
        step = int(status.get("currentStep") or 0) + 1
        return f"canary step {step} at {float(status.get('weightPct') or 0.0):g} %: {_last_reason(status)}"
    return f"{str(phase).lower()}: {_last_reason(status)}"


def rollout_conditions(
    conditions: Sequence[Mapping[str, Any]],
    status: Mapping[str, Any],
    generation: int | None,
    now: str,
    *,
    stored: Sequence[Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """``conditions`` (Ready, Progressing, Degraded as serving left them) adjusted for the rollout phase in
    ``status`` (phase, currentStep, weightPct, history); unchanged for a phase outside a rollout. Transition
    times are kept from ``stored`` (the conditions as stored; default ``conditions``) where the status held."""
    phase = status.get("phase")
    if phase not in (*ACTIVE, "Promoted", "RolledBack"):
        return [dict(c) for c in conditions]
    message = _describe(status)[:4096]
    by_type = {c.get("type"): dict(c) for c in conditions}
    if phase in ACTIVE:
        by_type["Progressing"] = condition(ConditionType.PROGRESSING, True, reasons.ROLLOUT_PROGRESSING, message,
                                           generation)  # fmt: skip
    elif phase == "Promoted":
        by_type["Progressing"] = condition(ConditionType.PROGRESSING, False, reasons.ROLLOUT_PROMOTED, message,
                                           generation)  # fmt: skip
    else:
        by_type["Progressing"] = condition(ConditionType.PROGRESSING, False, reasons.ROLLOUT_ROLLED_BACK, message,
                                           generation)  # fmt: skip
        by_type["Degraded"] = condition(ConditionType.DEGRADED, True, reasons.ROLLOUT_ROLLED_BACK, message, generation)
    order = [t.value for t in (ConditionType.READY, ConditionType.PROGRESSING, ConditionType.DEGRADED)]
    new = [by_type[t] for t in order if t in by_type] + [c for t, c in by_type.items() if t not in order]
    return with_times(new, conditions if stored is None else stored, now)


def _drop_empty(value: Any) -> Any:
    """Inside lists, None and '' fields are left out: a merge patch replaces a list whole, and the 1.20 API
    server turns '' into null, which a non-nullable schema field refuses."""
    if isinstance(value, Mapping):
        return {k: _drop_empty(v) for k, v in value.items() if v is not None and v != ""}
    if isinstance(value, list):
        return [_drop_empty(v) for v in value]
    return value


def api_patch(patch: Mapping[str, Any]) -> dict[str, Any]:
    """engine/rollout's ``status_patch`` as a merge patch the API server takes: list items without empty
    fields, and in the ``rollout`` object '' as None (a merge-patch delete: the field reads back as unset,
    which state_from_status takes as '')."""
    out: dict[str, Any] = {}
    for key, value in patch.items():
        if key == "rollout" and isinstance(value, Mapping):
            out[key] = {k: (None if v == "" else v) for k, v in value.items()}
        elif isinstance(value, list):
            out[key] = _drop_empty(value)
        elif value is not None:
            out[key] = value
    return out
