"""The rollout state machine: a pure function from (spec, state, now, inputs) to (new state, what to do).

Why pure and clock-free: the same controller runs in the operator (kopf timers, the status as storage) and in
``tradeplane run`` (its own loop, a file as storage), and is tested with a fake clock. Nothing here sleeps,
reads a clock or touches traffic; :func:`advance` says what the caller must do (:class:`Transition`: the
route to apply, events, promoted/rolled back) and when to call again (:func:`next_due`, :func:`wake_at`).

Rules (docs/rollouts.md draws them):
- canary: steps in order; a step advances only once its pause has elapsed AND the latest analysis in that
  step passed; after the last step → Promoted (the candidate becomes stable, the old stable is kept);
- a FAIL counts; ``max_consecutive_failures`` in a row or ``max_failures`` in total → RolledBack (weight 0)
  with the failing metrics and values as the reason; INCONCLUSIVE neither counts nor promotes (nor resets
  the consecutive count: it is no evidence either way);
- calibration drift beyond its limit (the issue's "roll back above 5 pp") rolls back at the first analysis
  that shows it, without waiting for the failure counts;
- the drawdown guard rolls a canary back at once, whatever the analysis schedule;
- shadow: weight 0, analyses are a comparison report only, never an automatic transition;
- immediate: Promoted at once;
- manual commands win over everything in the same call: promote, abort, retry.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Final, Literal

from tradeplane.api.v1alpha1.modelversion import ModelVersionPhase, RolloutSpec, RolloutStep, RolloutStrategy

from .signals import Command, Event, GuardSignal, ManualCommand, Route, StepKind, Transition
from .state import RolloutState, check_time
from .verdict import AnalysisVerdict, Verdict

__all__ = [
    "TRANSITIONS",
    "Command",
    "Event",
    "GuardSignal",
    "ManualCommand",
    "Route",
    "StepKind",
    "Transition",
    "advance",
    "analysis_window",
    "next_due",
    "pause_ends_at",
    "route_for",
    "step_kind",
    "step_pct",
    "wake_at",
]

Phase = ModelVersionPhase

#: Metrics whose failure rolls back at once instead of counting toward the failure rules.
IMMEDIATE_ROLLBACK: Final = frozenset({"calibration_drift_pp"})

#: Every phase change :func:`advance` can make (None = not started). A self-loop is a step change or no change.
TRANSITIONS: Final[dict[Phase | None, frozenset[Phase]]] = {
    None: frozenset({Phase.CANARY, Phase.SHADOW, Phase.PROMOTED}),
    Phase.CANARY: frozenset({Phase.CANARY, Phase.PROMOTED, Phase.ROLLED_BACK}),
    Phase.SHADOW: frozenset({Phase.SHADOW, Phase.PROMOTED, Phase.ROLLED_BACK}),
    Phase.PROMOTED: frozenset({Phase.PROMOTED, Phase.ROLLED_BACK}),
    Phase.ROLLED_BACK: frozenset({Phase.ROLLED_BACK, Phase.CANARY, Phase.SHADOW, Phase.PROMOTED}),
    Phase.FAILED: frozenset({Phase.FAILED, Phase.CANARY, Phase.SHADOW, Phase.PROMOTED}),
}


def step_kind(step: RolloutStep) -> StepKind:
    return StepKind.COHORT if step.cohort_pct is not None else StepKind.WEIGHT


def step_pct(step: RolloutStep) -> float:
    pct = step.cohort_pct if step.cohort_pct is not None else step.weight_pct
    assert pct is not None  # the API validator guarantees exactly one
    return pct


def _step(spec: RolloutSpec, state: RolloutState) -> tuple[int, RolloutStep]:
    if not spec.steps:
        raise ValueError(f"rollout of {state.candidate!r} is in phase Canary but the spec has no steps")
    i = min(state.step, len(spec.steps) - 1)  # the spec lost steps mid-rollout: stay on the last one
    return i, spec.steps[i]


def route_for(spec: RolloutSpec, state: RolloutState) -> Route:
    """The route the caller should have in place for ``state``."""
    if state.phase is Phase.CANARY:
        _, step = _step(spec, state)
        return Route(state.stable, state.candidate, "canary", state.weight_pct / 100.0, step_kind(step))
    if state.phase is Phase.SHADOW:
        return Route(state.stable, state.candidate, "shadow", 0.0, StepKind.WEIGHT)
    if state.phase is Phase.PROMOTED:
        return Route(state.candidate, state.candidate, "stable", 1.0, StepKind.WEIGHT)
    return Route(state.stable, state.candidate, "none", 0.0, StepKind.WEIGHT)


def next_due(state: RolloutState | None, spec: RolloutSpec) -> datetime | None:
    """When the next analysis is due: one interval after the later of the last analysis and the step start
    (a new step gets a full interval of its own traffic). None outside Canary and Shadow."""
    if state is None or state.phase not in (Phase.CANARY, Phase.SHADOW):
        return None
    marks = [t for t in (state.last_analysis_at, state.step_started_at) if t is not None]
    if not marks:
        return None
    return max(marks) + timedelta(seconds=spec.analysis.interval_seconds)


def pause_ends_at(state: RolloutState, spec: RolloutSpec) -> datetime | None:
    """When the current canary step's pause ends (None outside Canary)."""
    if state.phase is not Phase.CANARY or state.step_started_at is None:
        return None
    _, step = _step(spec, state)
    return state.step_started_at + timedelta(seconds=step.pause_seconds)


def wake_at(state: RolloutState | None, spec: RolloutSpec) -> datetime | None:
    """The earliest time a call can change something: the next analysis, or the pause end of a step that
    has already passed its analysis."""
    if state is None:
        return None
    times = [next_due(state, spec)]
    if state.step_passed:
        times.append(pause_ends_at(state, spec))
    present = [t for t in times if t is not None]
    return min(present) if present else None


def analysis_window(state: RolloutState, now: datetime) -> tuple[datetime, datetime]:
    """The window an analysis at ``now`` should read: since the current step (or shadow) started, so a
    verdict judges traffic at this step's weight and samples accumulate over the step."""
    now = check_time("now", now)
    return (state.step_started_at or now), now


# ------------------------------------------------------------------------------------------- transitions


def _begin(spec: RolloutSpec, base: RolloutState, now: datetime, reason: str, events: list[Event]) -> RolloutState:
    """Enter the first phase of ``spec.strategy`` from ``base`` (a fresh state, or a rolled-back one)."""
    reset = {
        "step": 0,
        "step_started_at": now,
        "last_analysis_at": None,
        "step_passed": False,
        "failures": 0,
        "consecutive_failures": 0,
        "last_verdict": None,
        "last_reason": "",
        "analysis": (),
    }
    if spec.strategy is RolloutStrategy.CANARY:
        if not spec.steps:
            raise ValueError("a canary rollout needs at least one step")
        first = spec.steps[0]
        msg = (
            f"{reason}: canary step 1/{len(spec.steps)} at {step_pct(first):g} % "
            f"({step_kind(first).value}), held ≥ {first.pause_seconds} s"
        )
        events.append(Event("Normal", "RolloutStarted", msg))
        return base.with_history(Phase.CANARY, now, msg, weight_pct=step_pct(first), **reset)
    if spec.strategy is RolloutStrategy.SHADOW:
        msg = f"{reason}: shadow, scored on every decision, never executed"
        events.append(Event("Normal", "RolloutStarted", msg))
        return base.with_history(Phase.SHADOW, now, msg, weight_pct=0.0, **reset)
    return _promote(base, now, f"{reason}: immediate strategy", events, reset)


def _promote(
    s: RolloutState, now: datetime, reason: str, events: list[Event], extra: dict[str, object] | None = None
) -> RolloutState:
    prev = s.stable if s.stable != s.candidate else s.previous_stable
    msg = f"{reason}; {s.candidate} is stable, previous stable {prev or 'none'} kept for rollback"
    events.append(Event("Normal", "Promoted", msg))
    changes: dict[str, object] = {**(extra or {}), "stable": s.candidate, "previous_stable": prev}
    return s.with_history(Phase.PROMOTED, now, msg, **{**changes, "weight_pct": 100.0, "step_passed": False})


def _rollback(s: RolloutState, now: datetime, reason: str, events: list[Event]) -> RolloutState:
    if s.phase is Phase.PROMOTED:  # back to the version that was stable before this one
        stable, previous = s.previous_stable, None
        reason = f"{reason}; stable back to {stable or 'none'}"
    else:
        stable, previous = s.stable, s.previous_stable
    events.append(Event("Warning", "RolledBack", reason))
    return s.with_history(
        Phase.ROLLED_BACK, now, reason, stable=stable, previous_stable=previous, weight_pct=0.0, step_passed=False
    )


def _command(
    spec: RolloutSpec, s: RolloutState, now: datetime, cmd: ManualCommand, events: list[Event]
) -> RolloutState:
    active = (Phase.CANARY, Phase.SHADOW)
    done = (Phase.ROLLED_BACK, Phase.FAILED)
    if cmd.action is Command.PROMOTE and s.phase in active:
        return _promote(s, now, f"promoted manually by {cmd.by}", events)
    if cmd.action is Command.ABORT and (s.phase in active or s.phase is Phase.PROMOTED):
        return _rollback(s, now, f"aborted by {cmd.by}", events)
    if cmd.action is Command.RETRY and s.phase in done:
        return _begin(spec, s, now, f"retried by {cmd.by}", events)
    hint = {Command.PROMOTE: "retry first" if s.phase in done else "already promoted"}.get(cmd.action, "")
    events.append(
        Event(
            "Warning",
            "CommandIgnored",
            f"{cmd.action.value} by {cmd.by} ignored in phase {s.phase.value}" + (f" ({hint})" if hint else ""),
        )
    )
    return s


def _verdict(
    spec: RolloutSpec, s: RolloutState, now: datetime, v: AnalysisVerdict, events: list[Event]
) -> RolloutState:
    a = spec.analysis
    s = replace(s, last_analysis_at=now, last_verdict=v.verdict, last_reason=v.reason, analysis=v.results)
    if v.verdict is Verdict.FAIL:
        s = replace(s, failures=s.failures + 1, consecutive_failures=s.consecutive_failures + 1, step_passed=False)
    elif v.verdict is Verdict.PASS:
        s = replace(s, consecutive_failures=0, step_passed=True)
    else:
        s = replace(s, step_passed=False)
    counts = f"{s.failures}/{a.max_failures} failed, {s.consecutive_failures}/{a.max_consecutive_failures} in a row"
    if s.phase is Phase.SHADOW:  # a report, never a transition
        kind: Literal["Normal", "Warning"] = "Warning" if v.verdict is Verdict.FAIL else "Normal"
        events.append(Event(kind, "ShadowComparison", f"{v.verdict.value} ({counts}): {v.reason}"))
        return s
    if v.verdict is Verdict.FAIL:
        if IMMEDIATE_ROLLBACK.intersection(r.metric for r in v.failed):
            # calibration is the model's promise about its own probabilities: sizing and the utility divide by
            # them, so a drift beyond the limit is not waited out for a second run
            return _rollback(s, now, f"calibration drift beyond its limit rolls back at once: {v.reason}", events)
        if s.consecutive_failures >= a.max_consecutive_failures:
            rule = (
                f"{s.consecutive_failures} failed analyses in a row "
                f"(maxConsecutiveFailures={a.max_consecutive_failures})"
            )
            return _rollback(s, now, f"{rule}: {v.reason}", events)
        if s.failures >= a.max_failures:
            rule = f"{s.failures} failed analyses (maxFailures={a.max_failures})"
            return _rollback(s, now, f"{rule}: {v.reason}", events)
        events.append(Event("Warning", "AnalysisFailed", f"{counts}: {v.reason}"))
    elif v.verdict is Verdict.PASS:
        events.append(Event("Normal", "AnalysisPassed", v.reason))
    else:
        events.append(Event("Normal", "AnalysisInconclusive", v.reason))
    return s


def _progress(spec: RolloutSpec, s: RolloutState, now: datetime, events: list[Event]) -> RolloutState:
    """Advance one step (or promote after the last) once the pause is over and the step's analysis passed."""
    i, step = _step(spec, s)
    ends = pause_ends_at(s, spec)
    if not s.step_passed or ends is None or now < ends:
        return s
    n = len(spec.steps)
    if i == n - 1:
        return _promote(s, now, f"step {i + 1}/{n} passed its analysis and its {step.pause_seconds} s pause", events)
    nxt = spec.steps[i + 1]
    msg = (
        f"step {i + 1}/{n} passed after its {step.pause_seconds} s pause: step {i + 2}/{n} at "
        f"{step_pct(nxt):g} % ({step_kind(nxt).value})"
    )
    events.append(Event("Normal", "StepAdvanced", msg))
    return s.with_history(
        Phase.CANARY,
        now,
        msg,
        step=i + 1,
        weight_pct=step_pct(nxt),
        step_started_at=now,
        step_passed=False,
    )


def advance(
    spec: RolloutSpec,
    state: RolloutState | None,
    now: datetime,
    *,
    verdict: AnalysisVerdict | None = None,
    guard: GuardSignal | None = None,
    command: ManualCommand | None = None,
    candidate: str | None = None,
    stable: str | None = None,
) -> Transition:
    """One reconcile of the rollout at ``now``.

    ``state`` None starts the rollout (``candidate`` and ``stable`` name the versions; a verdict in that call
    is ignored, since it cannot be about a step that had not begun). Then, in order: a manual ``command``
    (if it changes the phase, nothing else is applied this call), the drawdown ``guard`` (canary only), the
    ``verdict`` of an analysis run at ``now``, and the step timer. Idempotent without inputs."""
    now = check_time("now", now)
    events: list[Event] = []
    if state is None:
        if not candidate:
            raise ValueError("candidate must name the version when the rollout starts (state is None)")
        base = RolloutState(phase=Phase.READY, candidate=candidate, stable=stable)
        s = _begin(spec, base, now, "rollout started", events)
        before: Route | None = None
        verdict = None
    else:
        s = state
        before = route_for(spec, state)
    start_phase = s.phase

    if command is not None:
        s = _command(spec, s, now, command, events)
    if s.phase is start_phase and s.phase is Phase.CANARY and s.step_started_at is None:
        s = replace(s, step_started_at=now)  # a state rebuilt without its timer: the pause restarts
    if s.phase is start_phase and guard is not None and guard.breached and s.phase is Phase.CANARY:
        budget = f" {guard.budget!r}" if guard.budget else ""
        s = _rollback(
            s,
            now,
            f"drawdown guard: candidate drawdown {guard.drawdown_pct:.2f} % ≥ RiskBudget{budget} limit "
            f"{guard.limit_pct:.2f} %",
            events,
        )
    if s.phase is start_phase and verdict is not None and s.phase in (Phase.CANARY, Phase.SHADOW):
        s = _verdict(spec, s, now, verdict, events)
    if s.phase is start_phase and s.phase is Phase.CANARY and state is not None:
        s = _progress(spec, s, now, events)

    after = route_for(spec, s)
    prev_phase = None if state is None else state.phase
    return Transition(
        state=s,
        route=after,
        route_changed=after != before,
        events=tuple(events),
        promoted=s.phase is Phase.PROMOTED and prev_phase is not Phase.PROMOTED,
        rolled_back=s.phase is Phase.ROLLED_BACK and prev_phase is not Phase.ROLLED_BACK,
        next_analysis_at=next_due(s, spec),
        wake_at=wake_at(s, spec),
    )
