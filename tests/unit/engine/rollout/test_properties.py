"""Properties of advance() over arbitrary sequences of time steps, verdicts, guard signals and commands."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tradeplane.api.v1alpha1.modelversion import ModelVersionPhase as Phase
from tradeplane.api.v1alpha1.modelversion import RolloutSpec
from tradeplane.engine.rollout.controller import (
    TRANSITIONS,
    Command,
    GuardSignal,
    ManualCommand,
    advance,
)
from tradeplane.engine.rollout.state import state_from_status, status_patch

from .support import CANDIDATE, FAIL, INCONCLUSIVE, PASS, STABLE, Clock, canary_spec

INPUTS = st.sampled_from(
    [
        {},
        {"verdict": PASS},
        {"verdict": PASS},
        {"verdict": PASS},
        {"verdict": FAIL},
        {"verdict": INCONCLUSIVE},
        {"guard": GuardSignal(3.0, 10.0)},
        {"guard": GuardSignal(11.0, 10.0)},
        {"command": ManualCommand(Command.PROMOTE, "p")},
        {"command": ManualCommand(Command.ABORT, "a")},
        {"command": ManualCommand(Command.RETRY, "r")},
    ]
)
SPECS = [
    canary_spec(maxFailures=4, maxConsecutiveFailures=3),
    RolloutSpec.model_validate({"strategy": "shadow"}),
    RolloutSpec.model_validate({"strategy": "immediate"}),
]


@settings(max_examples=150, deadline=None)
@given(
    spec_index=st.integers(0, len(SPECS) - 1),
    moves=st.lists(st.tuples(st.integers(0, 400), INPUTS), min_size=1, max_size=60),
)
def test_weight_only_drops_on_rollback_and_phases_follow_the_graph(
    spec_index: int, moves: list[tuple[int, dict[str, object]]]
) -> None:
    spec = SPECS[spec_index]
    clock = Clock()
    tr = advance(spec, None, clock.now, candidate=CANDIDATE, stable=STABLE)
    assert tr.state.phase in TRANSITIONS[None]
    s = tr.state
    allowed_weights = {0.0, 1.0, 5.0, 20.0, 100.0}
    for dt, inputs in moves:
        tr = advance(spec, s, clock.tick(dt), **inputs)  # type: ignore[arg-type]
        new = tr.state
        assert new.phase in TRANSITIONS[s.phase], (s.phase, new.phase)
        if new.weight_pct < s.weight_pct:
            assert new.phase is Phase.ROLLED_BACK and tr.rolled_back
        assert new.weight_pct in allowed_weights
        assert new.history[: len(s.history)] == s.history  # history only grows
        if new.phase is not s.phase or new.step != s.step:
            assert len(new.history) == len(s.history) + 1 and new.history[-1].time == clock.now
            assert new.history[-1].phase is new.phase and new.history[-1].reason
        if new.phase is Phase.CANARY:
            assert new.consecutive_failures < 3 and new.failures < 4  # a rule breach never stays in Canary
            assert new.weight_pct == [1.0, 5.0, 20.0, 100.0][new.step]
        if new.phase is Phase.PROMOTED:
            assert new.stable == CANDIDATE and new.weight_pct == 100.0
        assert state_from_status(status_patch(new)) == new
        s = new
