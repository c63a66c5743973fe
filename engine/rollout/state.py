"""The rollout state and its round trip through ``ModelVersion.status``.

Why the state is a frozen value and lives in the status: the operator may restart at any moment, and the
local runner may be stopped and started; both must resume at the same step with the same timers. So
everything the controller needs is in :class:`RolloutState`, which maps onto the standard status fields
(phase, currentStep, weightPct, analysis, failures, history) plus a small ``rollout`` dict for the rest
(timers, versions, the consecutive-failure count).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final

from tradeplane.api.v1alpha1.modelversion import ModelVersionPhase, ModelVersionStatus, RevisionRecord

from .verdict import MetricResult, Verdict

#: Key of the controller's extra state in the status dict (next to the standard ModelVersionStatus fields).
EXTRA_KEY: Final = "rollout"
#: Phases in which a rollout is under way or finished; any other phase (or none) means "not started".
ROLLOUT_PHASES: Final = frozenset(
    {
        ModelVersionPhase.CANARY,
        ModelVersionPhase.SHADOW,
        ModelVersionPhase.PROMOTED,
        ModelVersionPhase.ROLLED_BACK,
        ModelVersionPhase.FAILED,
    }
)
#: Oldest history records are dropped beyond this many, so retries cannot grow the status without bound.
MAX_HISTORY: Final = 100


def check_time(name: str, t: datetime) -> datetime:
    """``t`` as UTC; a naive datetime is refused, because "local time" differs between operator and laptop."""
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {t.isoformat()}")
    return t.astimezone(UTC)


def rfc3339(t: datetime) -> str:
    """UTC RFC 3339 with microseconds when present, e.g. ``2025-01-01T12:00:00Z``."""
    return check_time("time", t).isoformat().replace("+00:00", "Z")


def parse_time(name: str, s: str | None) -> datetime | None:
    if s is None:
        return None
    try:
        return check_time(name, datetime.fromisoformat(s))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: not an RFC 3339 time: {s!r} ({exc})") from exc


@dataclass(frozen=True)
class HistoryEntry:
    """One transition: the phase entered (or stayed in, for a step change), when, and why."""

    phase: ModelVersionPhase
    time: datetime
    reason: str

    def to_api(self) -> RevisionRecord:
        return RevisionRecord(phase=self.phase, time=rfc3339(self.time), reason=self.reason)


@dataclass(frozen=True)
class RolloutState:
    """Everything the controller knows about one candidate's rollout.

    ``weight_pct`` is the candidate's current share (of decisions or of symbols, see the step) in percent;
    ``step_passed``: the latest analysis verdict in the current step was PASS (a FAIL or an INCONCLUSIVE since
    clears it). ``stable`` is the version the family serves when the candidate has no traffic; after promotion
    it is the candidate itself and ``previous_stable`` the one to roll back to."""

    phase: ModelVersionPhase
    candidate: str
    stable: str | None
    previous_stable: str | None = None
    step: int = 0
    weight_pct: float = 0.0
    step_started_at: datetime | None = None
    last_analysis_at: datetime | None = None
    step_passed: bool = False
    failures: int = 0
    consecutive_failures: int = 0
    history: tuple[HistoryEntry, ...] = ()
    last_verdict: Verdict | None = None
    last_reason: str = ""
    analysis: tuple[MetricResult, ...] = ()

    def with_history(self, phase: ModelVersionPhase, now: datetime, reason: str, **changes: Any) -> RolloutState:
        """A copy with ``changes`` applied, ``phase`` entered and a history record appended."""
        history = (*self.history, HistoryEntry(phase, now, reason))[-MAX_HISTORY:]
        return replace(self, phase=phase, history=history, **changes)


def status_patch(state: RolloutState) -> dict[str, Any]:
    """The ``status`` patch (camelCase, JSON-ready) that stores ``state``: the ModelVersionStatus fields plus
    ``rollout`` (:data:`EXTRA_KEY`) with timers and versions."""
    std = ModelVersionStatus(
        phase=state.phase,
        current_step=state.step,
        weight_pct=state.weight_pct,
        analysis=[r.to_api() for r in state.analysis],
        failures=state.failures,
        history=[h.to_api() for h in state.history],
    ).model_dump(
        mode="json", by_alias=True, include={"phase", "current_step", "weight_pct", "analysis", "failures", "history"}
    )
    std[EXTRA_KEY] = {
        "candidate": state.candidate,
        "stable": state.stable,
        "previousStable": state.previous_stable,
        "stepStartedAt": None if state.step_started_at is None else rfc3339(state.step_started_at),
        "lastAnalysisAt": None if state.last_analysis_at is None else rfc3339(state.last_analysis_at),
        "stepPassed": state.step_passed,
        "consecutiveFailures": state.consecutive_failures,
        "lastVerdict": None if state.last_verdict is None else state.last_verdict.value,
        "lastReason": state.last_reason,
    }
    return std


def state_from_status(status: Mapping[str, Any] | None, *, candidate: str | None = None) -> RolloutState | None:
    """The state stored by :func:`status_patch`, or None when no rollout has started (no status, or a phase
    outside :data:`ROLLOUT_PHASES` such as Pending/Training/Ready).

    If the ``rollout`` dict is missing (e.g. pruned by an API server whose schema lacks it), the state is
    rebuilt best-effort: the step timer restarts at the last history record's time, the stable version is
    unknown, and ``candidate`` (the object's name) must be given."""
    if not status:
        return None
    std = {k: v for k, v in status.items() if k != EXTRA_KEY}
    parsed = ModelVersionStatus.model_validate(std)
    if parsed.phase is None or parsed.phase not in ROLLOUT_PHASES:
        return None
    history = tuple(
        HistoryEntry(h.phase, parse_time(f"history[{i}].time", h.time) or datetime.min.replace(tzinfo=UTC), h.reason)
        for i, h in enumerate(parsed.history)
    )
    extra = status.get(EXTRA_KEY)
    if not isinstance(extra, Mapping):
        if candidate is None:
            raise ValueError(f"status has no {EXTRA_KEY!r} dict; pass candidate= to rebuild the state")
        extra = {"candidate": candidate, "stepStartedAt": rfc3339(history[-1].time) if history else None}
    name = extra.get("candidate") or candidate
    if not isinstance(name, str) or not name:
        raise ValueError(f"{EXTRA_KEY}.candidate must be a non-empty string, got {name!r}")
    verdict = extra.get("lastVerdict")
    return RolloutState(
        phase=parsed.phase,
        candidate=name,
        stable=extra.get("stable"),
        previous_stable=extra.get("previousStable"),
        step=parsed.current_step or 0,
        weight_pct=parsed.weight_pct or 0.0,
        step_started_at=parse_time(f"{EXTRA_KEY}.stepStartedAt", extra.get("stepStartedAt")),
        last_analysis_at=parse_time(f"{EXTRA_KEY}.lastAnalysisAt", extra.get("lastAnalysisAt")),
        step_passed=bool(extra.get("stepPassed", False)),
        failures=parsed.failures,
        consecutive_failures=int(extra.get("consecutiveFailures", 0)),
        history=history,
        last_verdict=None if verdict is None else Verdict(verdict),
        last_reason=str(extra.get("lastReason", "")),
        analysis=tuple(MetricResult.from_api(r) for r in parsed.analysis),
    )
