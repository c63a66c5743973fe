"""The state's round trip through ModelVersion.status: an operator restart resumes at the same step and timers."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from tradeplane.api.v1alpha1.modelversion import ModelVersionPhase as Phase
from tradeplane.api.v1alpha1.modelversion import ModelVersionStatus
from tradeplane.engine.rollout.analysis import analyze
from tradeplane.engine.rollout.controller import advance, next_due
from tradeplane.engine.rollout.state import EXTRA_KEY, RolloutState, state_from_status, status_patch

from .support import CANDIDATE, FAIL, PASS, STABLE, T0, Clock, canary_spec, offline_curve, window


def _mid_rollout() -> tuple[RolloutState, Clock]:
    """Step 2 (5 %) of the 4-step canary: one failure behind it, its latest analysis passed, pause not over."""
    spec, clock = canary_spec(), Clock()
    s = advance(spec, None, clock.now, candidate=CANDIDATE, stable=STABLE).state
    s = advance(spec, s, clock.tick(60), verdict=FAIL).state
    s = advance(spec, s, clock.tick(60), verdict=PASS).state
    s = advance(spec, s, clock.tick(180)).state  # 300 s: step 2
    v = analyze(window(3), window(4), spec.analysis, offline_curve())
    s = advance(spec, s, clock.tick(60.5), verdict=v).state
    assert (s.step, s.failures, s.step_passed, s.phase) == (1, 1, True, Phase.CANARY)
    return s, clock


def test_round_trip_through_the_status_dict_is_exact() -> None:
    s, _ = _mid_rollout()
    patch = json.loads(json.dumps(status_patch(s)))  # what the API server stores and returns
    assert patch["phase"] == "Canary" and patch["currentStep"] == 1 and patch["weightPct"] == 5.0
    assert patch["failures"] == 1 and patch[EXTRA_KEY]["stepStartedAt"] == "2025-03-01T12:05:00Z"
    assert patch[EXTRA_KEY]["lastAnalysisAt"] == "2025-03-01T12:06:00.500000Z"
    std = ModelVersionStatus.model_validate({k: v for k, v in patch.items() if k != EXTRA_KEY})
    assert [h.phase for h in std.history] == [Phase.CANARY, Phase.CANARY] and len(std.analysis) == 8
    assert state_from_status(patch) == s


def test_restart_resumes_at_the_same_step_with_the_same_timers() -> None:
    spec = canary_spec()
    s, clock = _mid_rollout()
    restored = state_from_status(json.loads(json.dumps(status_patch(s))))
    assert restored is not None and next_due(restored, spec) == next_due(s, spec)
    steps = []
    for dt in (10, 230):  # step 2 began at 300 s: at 370.5 s nothing happens, at 600.5 s step 3 begins
        t = clock.tick(dt)
        a, b = advance(spec, s, t), advance(spec, restored, t)
        assert a == b
        s, restored = a.state, b.state
        steps.append(s.step)
    assert steps == [1, 2] and s.weight_pct == 20.0 and s.step_started_at == T0 + timedelta(seconds=600.5)


def test_not_started_phases_and_empty_status_mean_no_state() -> None:
    assert state_from_status(None) is None and state_from_status({}) is None
    assert state_from_status({"phase": "Ready"}) is None


def test_without_the_extra_dict_the_state_is_rebuilt_from_history() -> None:
    s, _ = _mid_rollout()
    patch = status_patch(s)
    del patch[EXTRA_KEY]
    with pytest.raises(ValueError, match="pass candidate="):
        state_from_status(patch)
    rebuilt = state_from_status(patch, candidate=CANDIDATE)
    assert rebuilt is not None and (rebuilt.step, rebuilt.weight_pct, rebuilt.failures) == (1, 5.0, 1)
    assert rebuilt.step_started_at == s.history[-1].time == s.step_started_at


def test_bad_times_in_the_status_are_named() -> None:
    s, _ = _mid_rollout()
    patch = status_patch(s)
    patch[EXTRA_KEY]["stepStartedAt"] = "yesterday"
    with pytest.raises(ValueError, match=r"rollout\.stepStartedAt: not an RFC 3339 time"):
        state_from_status(patch)
