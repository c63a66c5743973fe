"""The rollout state machine driven through whole scenarios with a fake clock.

Real analyses (analyze() on synthetic windows) drive the promotion, calibration and latency scenarios; the
failure-rule scenarios use hand-made verdicts so the sequence of PASS / FAIL / INCONCLUSIVE is exact.
"""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest

from tradeplane.api.v1alpha1.modelversion import ModelVersionPhase as Phase
from tradeplane.api.v1alpha1.modelversion import RolloutSpec
from tradeplane.engine.rollout.analysis import AnalysisVerdict, Sample, analyze
from tradeplane.engine.rollout.controller import (
    Command,
    GuardSignal,
    ManualCommand,
    StepKind,
    Transition,
    advance,
    analysis_window,
    next_due,
)
from tradeplane.engine.rollout.state import RolloutState

from .support import CANDIDATE, FAIL, INCONCLUSIVE, PASS, STABLE, T0, Clock, canary_spec, offline_curve, window

OFFLINE = offline_curve()


def _start(spec: RolloutSpec, clock: Clock) -> Transition:
    return advance(spec, None, clock.now, candidate=CANDIDATE, stable=STABLE)


def _run(spec: RolloutSpec, clock: Clock, candidate: Sample | None = None, *, limit: int = 200) -> list[Transition]:
    """Call advance() at every due analysis with a fresh window of ``candidate``-like data, until the rollout
    leaves Canary (or ``limit`` analyses): the operator's loop without the operator."""
    tr = _start(spec, clock)
    out = [tr]
    for i in range(limit):
        due = next_due(tr.state, spec)
        assert due is not None
        clock.now = due
        cand = candidate if candidate is not None else window(1000 + i)
        v = analyze(cand, window(5000 + i), spec.analysis, OFFLINE)
        tr = advance(spec, tr.state, clock.now, verdict=v)
        out.append(tr)
        if tr.state.phase is not Phase.CANARY:
            break
    return out


def test_start_sets_step_zero_and_routes_the_first_weight() -> None:
    spec, clock = canary_spec(), Clock()
    tr = _start(spec, clock)
    s = tr.state
    assert (s.phase, s.step, s.weight_pct, s.step_started_at) == (Phase.CANARY, 0, 1.0, T0)
    assert tr.route_changed and tr.route.canary_weights() == {CANDIDATE: 0.01} and tr.route.stable == STABLE
    assert tr.next_analysis_at == T0 + timedelta(seconds=60) == tr.wake_at
    assert [h.phase for h in s.history] == [Phase.CANARY] and "step 1/4 at 1 %" in s.history[0].reason
    assert analysis_window(s, T0 + timedelta(seconds=90)) == (T0, T0 + timedelta(seconds=90))


def test_good_candidate_is_promoted_through_every_step_with_pauses_respected() -> None:
    spec, clock = canary_spec(), Clock()
    trs = _run(spec, clock)
    final = trs[-1].state
    assert final.phase is Phase.PROMOTED and trs[-1].promoted
    assert (final.stable, final.previous_stable, final.weight_pct, final.failures) == (CANDIDATE, STABLE, 100.0, 0)
    assert trs[-1].route.role == "stable" and trs[-1].route.stable == CANDIDATE
    # the weights walked 1 → 5 → 20 → 100 in order, each step held its full 300 s pause
    weights = [t.state.weight_pct for t in trs if t.state.phase is Phase.CANARY]
    assert sorted(set(weights)) == [1.0, 5.0, 20.0, 100.0] and weights == sorted(weights)
    starts = [h.time for h in final.history]
    assert [h.phase for h in final.history] == [Phase.CANARY] * 4 + [Phase.PROMOTED]
    assert all(b - a >= timedelta(seconds=300) for a, b in itertools.pairwise(starts))
    assert final.history[-1].time == T0 + timedelta(seconds=4 * 300)  # no step waited longer than needed
    # the first analysis (at 60 s) passed, yet the step stayed: the pause had not ended
    first = trs[1]
    assert first.state.last_verdict is not None and first.state.last_verdict.value == "Pass"
    assert (first.state.step, first.state.step_passed, first.route_changed) == (0, True, False)
    assert first.wake_at == T0 + timedelta(seconds=120)  # min(next analysis, pause end 300 s)
    # the cohort step says so, for the router
    kinds = {t.state.weight_pct: t.route.kind for t in trs if t.state.phase is Phase.CANARY}
    assert kinds == {1.0: StepKind.WEIGHT, 5.0: StepKind.WEIGHT, 20.0: StepKind.COHORT, 100.0: StepKind.WEIGHT}


def test_pass_then_call_after_pause_without_verdict_advances() -> None:
    spec, clock = canary_spec(), Clock()
    s = _start(spec, clock).state
    s = advance(spec, s, clock.tick(60), verdict=PASS).state
    early = advance(spec, s, clock.tick(200))  # 260 s < 300 s pause
    assert early.state == s and early.events == () and not early.route_changed
    on_time = advance(spec, s, T0 + timedelta(seconds=300))
    assert on_time.state.step == 1 and on_time.route.fraction == 0.05 and on_time.route_changed
    assert on_time.state.step_started_at == T0 + timedelta(seconds=300) and not on_time.state.step_passed


def test_fail_after_pass_blocks_the_step() -> None:
    spec, clock = canary_spec(), Clock()
    s = _start(spec, clock).state
    s = advance(spec, s, clock.tick(60), verdict=PASS).state
    s = advance(spec, s, clock.tick(250), verdict=FAIL).state  # 310 s: pause over, but the latest run failed
    assert (s.step, s.step_passed, s.failures) == (0, False, 1)


@pytest.mark.parametrize("max_consecutive", [1, 2, 5])
def test_miscalibrated_candidate_is_rolled_back_on_calibration_drift(max_consecutive: int) -> None:
    """Shifted +0.15: rolled back at the FIRST analysis whatever the failure rules say (calibration drift is a
    hard limit), with the drift and both hit rates in the reason."""
    spec, clock = canary_spec(maxConsecutiveFailures=max_consecutive, maxFailures=5), Clock()
    trs = _run(spec, clock, window(7, shift=0.15))
    assert len(trs) == 2  # the start, then the first analysis
    final = trs[-1]
    assert final.rolled_back and final.state.phase is Phase.ROLLED_BACK and final.state.weight_pct == 0.0
    assert final.route.role == "none" and final.route.canary_weights() == {} and final.route.stable == STABLE
    reason = final.state.history[-1].reason
    assert reason.startswith("calibration drift beyond its limit rolls back at once")
    assert "calibration_drift_pp" in reason and "live hit rate" in reason and "vs offline" in reason
    assert "beyond ±5 pp" in reason
    drift = next(r for r in final.state.analysis if r.metric == "calibration_drift_pp")
    assert not drift.passed and drift.candidate is not None and drift.candidate > 10


def test_slow_candidate_is_rolled_back_on_latency() -> None:
    spec, clock = canary_spec(maxConsecutiveFailures=1), Clock()
    trs = _run(spec, clock, window(8, latency_ms=9.0))
    final = trs[-1].state
    assert final.phase is Phase.ROLLED_BACK and len(trs) == 2
    assert "latency_p99_ms" in final.history[-1].reason and "> ceiling 5 ms" in final.history[-1].reason
    assert [r.metric for r in final.analysis if not r.passed] == ["latency_p99_ms"]


def test_too_few_samples_never_promote() -> None:
    spec, clock = canary_spec(), Clock()
    trs = _run(spec, clock, window(9, n=200), limit=100)  # 100 analyses, 100 minutes
    final = trs[-1].state
    assert final.phase is Phase.CANARY and final.step == 0 and final.weight_pct == 1.0
    assert final.failures == 0 and final.consecutive_failures == 0
    assert final.last_reason == "candidate n=200 < min_samples=500"
    assert len(final.history) == 1 and not any(t.route_changed for t in trs[1:])


def test_unmatured_labels_never_promote() -> None:
    spec, clock = canary_spec(), Clock()
    trs = _run(spec, clock, window(10, matured=0.0), limit=30)
    assert trs[-1].state.phase is Phase.CANARY and trs[-1].state.step == 0
    assert "matured labels" in trs[-1].state.last_reason


def _feed(spec: RolloutSpec, verdicts: list[AnalysisVerdict]) -> list[RolloutState]:
    clock = Clock()
    s = _start(spec, clock).state
    out = []
    for v in verdicts:
        s = advance(spec, s, clock.tick(60), verdict=v).state
        out.append(s)
    return out


def test_consecutive_failure_rule() -> None:
    spec = canary_spec(maxFailures=5, maxConsecutiveFailures=2)
    states = _feed(spec, [FAIL, INCONCLUSIVE, FAIL])  # INCONCLUSIVE neither counts nor breaks the streak
    assert [s.phase for s in states] == [Phase.CANARY, Phase.CANARY, Phase.ROLLED_BACK]
    assert [s.consecutive_failures for s in states] == [1, 1, 2]
    assert states[-1].history[-1].reason.startswith("2 failed analyses in a row (maxConsecutiveFailures=2): brier")


def test_total_failure_rule() -> None:
    spec = canary_spec(maxFailures=3, maxConsecutiveFailures=2)
    states = _feed(spec, [FAIL, PASS, FAIL, PASS, FAIL])  # never two in a row, but three in total
    assert [s.failures for s in states] == [1, 1, 2, 2, 3]
    assert [s.consecutive_failures for s in states] == [1, 0, 1, 0, 1]
    assert states[-2].phase is Phase.CANARY and states[-1].phase is Phase.ROLLED_BACK
    assert states[-1].history[-1].reason.startswith("3 failed analyses (maxFailures=3): brier 0.31 > ceiling 0.25")


def test_drawdown_guard_rolls_back_between_analyses() -> None:
    spec, clock = canary_spec(), Clock()
    s = _start(spec, clock).state
    s = advance(spec, s, clock.tick(60), verdict=PASS).state
    calm = advance(spec, s, clock.tick(10), guard=GuardSignal(4.0, 10.0, "desk"))
    assert calm.state == s
    tr = advance(spec, s, clock.tick(5), guard=GuardSignal(12.5, 10.0, "desk"))  # 75 s: next analysis at 120 s
    assert tr.rolled_back and tr.state.phase is Phase.ROLLED_BACK and tr.route.fraction == 0.0
    assert tr.state.history[-1].time == T0 + timedelta(seconds=75)
    assert tr.state.history[-1].reason == "drawdown guard: candidate drawdown 12.50 % ≥ RiskBudget 'desk' limit 10.00 %"
    assert tr.next_analysis_at is None and tr.wake_at is None


def test_manual_promote_abort_retry() -> None:
    spec, clock = canary_spec(), Clock()
    s = _start(spec, clock).state
    s = advance(spec, s, clock.tick(60), verdict=FAIL).state
    promoted = advance(spec, s, clock.tick(1), command=ManualCommand(Command.PROMOTE, "alice"), verdict=FAIL)
    p = promoted.state
    assert promoted.promoted and p.phase is Phase.PROMOTED and (p.stable, p.previous_stable) == (CANDIDATE, STABLE)
    assert p.failures == 1  # the verdict in the same call was not applied: the command won
    assert p.history[-1].reason.startswith("promoted manually by alice")

    aborted = advance(spec, p, clock.tick(30), command=ManualCommand(Command.ABORT, "bob"))
    a = aborted.state
    assert aborted.rolled_back and a.phase is Phase.ROLLED_BACK and (a.stable, a.previous_stable) == (STABLE, None)
    assert aborted.route.stable == STABLE and aborted.route.role == "none"
    assert a.history[-1].reason == f"aborted by bob; stable back to {STABLE}"

    ignored = advance(spec, a, clock.tick(1), command=ManualCommand(Command.PROMOTE, "carol"))
    assert (
        ignored.state == a
        and ignored.events[0].reason == "CommandIgnored"
        and "retry first" in ignored.events[0].message
    )

    retried = advance(spec, a, clock.tick(1), command=ManualCommand(Command.RETRY, "carol"))
    r = retried.state
    assert (r.phase, r.step, r.weight_pct, r.failures, r.consecutive_failures) == (Phase.CANARY, 0, 1.0, 0, 0)
    assert r.step_started_at == clock.now and r.history[: len(a.history)] == a.history
    assert r.history[-1].reason.startswith("retried by carol: canary step 1/4")
    assert retried.route.canary_weights() == {CANDIDATE: 0.01}


def test_abort_during_canary_keeps_the_stable() -> None:
    spec, clock = canary_spec(), Clock()
    s = _start(spec, clock).state
    tr = advance(spec, s, clock.tick(5), command=ManualCommand(Command.ABORT, "ops"))
    assert (
        tr.state.phase is Phase.ROLLED_BACK
        and tr.state.stable == STABLE
        and tr.state.history[-1].reason == "aborted by ops"
    )


def test_shadow_never_auto_promotes_but_reports_and_can_be_promoted_manually() -> None:
    spec = RolloutSpec.model_validate(
        {"strategy": "shadow", "analysis": canary_spec().analysis.model_dump(by_alias=True)}
    )
    clock = Clock()
    tr = _start(spec, clock)
    assert tr.state.phase is Phase.SHADOW and tr.route.role == "shadow" and tr.route.fraction == 0.0
    s = tr.state
    for i in range(30):
        v = analyze(window(100 + i), window(100 + i, shift=0.0), spec.analysis, OFFLINE, paired=True)
        tr = advance(spec, s, clock.tick(60), verdict=v)
        s = tr.state
        assert s.phase is Phase.SHADOW and s.weight_pct == 0.0 and not tr.route_changed
        assert [e.reason for e in tr.events] == ["ShadowComparison"]
    assert any(r.metric == "decision_agreement" for r in s.analysis)
    for _ in range(3):  # failures are reported, not acted on
        s = advance(spec, s, clock.tick(60), verdict=FAIL).state
    assert s.phase is Phase.SHADOW and s.failures == 3
    done = advance(spec, s, clock.tick(1), command=ManualCommand(Command.PROMOTE, "alice"))
    assert done.promoted and done.state.stable == CANDIDATE and done.route.role == "stable"


def test_immediate_is_promoted_at_once() -> None:
    spec = RolloutSpec.model_validate({"strategy": "immediate"})
    tr = _start(spec, Clock())
    assert tr.promoted and tr.state.phase is Phase.PROMOTED and tr.state.weight_pct == 100.0
    assert (tr.state.stable, tr.state.previous_stable) == (CANDIDATE, STABLE) and tr.next_analysis_at is None


def test_naive_time_and_missing_candidate_are_refused() -> None:
    spec = canary_spec()
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        advance(spec, None, T0.replace(tzinfo=None), candidate=CANDIDATE)
    with pytest.raises(ValueError, match="candidate must name the version"):
        advance(spec, None, T0)


def test_inconclusive_after_pass_blocks_the_step() -> None:
    """Only the latest verdict counts: too few samples never promote, even after an earlier pass."""
    spec, clock = canary_spec(), Clock()
    s = _start(spec, clock).state
    s = advance(spec, s, clock.tick(60), verdict=PASS).state
    s = advance(spec, s, clock.tick(60), verdict=INCONCLUSIVE).state
    after_pause = advance(spec, s, T0 + timedelta(seconds=301))
    assert (after_pause.state.step, after_pause.state.step_passed, after_pause.state.failures) == (0, False, 0)
    assert after_pause.wake_at == T0 + timedelta(seconds=180)  # only the next analysis can change anything
