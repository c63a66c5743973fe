"""Circuit breakers: each one trips, stays tripped through its cooldown after the input recovers, then clears;
a relapse during the cooldown restarts it; the latency p99 window is bounded and accurate to its buckets."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeplane.engine.risk import reasons
from tradeplane.engine.risk.breakers import WINDOW_S, Breaker, LatencyWindow
from tradeplane.engine.risk.engine import ACTIVE, REDUCING, RiskEngine

from .support import T0, USDM, S, config, engine, fill, order

COOLDOWN = 60 * S  # the example desk's cooldownSeconds


@dataclass(frozen=True)
class BreakerCase:
    trip: Callable[[RiskEngine, int], None]
    heal: Callable[[RiskEngine, int], int]  # makes the input healthy from ts on; returns when the breaker saw it
    equity: float = 1_000_000.0


def _lag(ms: float) -> Callable[[RiskEngine, int], None]:
    return lambda eng, ts: eng.observe(ts, ingest_lag_ms=ms)


def _lag_heal(eng: RiskEngine, ts: int) -> int:
    eng.observe(ts, ingest_lag_ms=20.0)
    return ts


def _gap_trip(eng: RiskEngine, ts: int) -> None:
    eng.observe(ts, gap_ratio_pct=0.5)


def _gap_heal(eng: RiskEngine, ts: int) -> int:
    eng.observe(ts, gap_ratio_pct=0.0)
    return ts


def _latency_trip(eng: RiskEngine, ts: int) -> None:
    for i in range(100):  # 98 × 1 ms and 2 × 20 ms: the nearest-rank p99 (the 99th of 100) is 20 ms
        eng.observe(ts, decision_latency_ns=1_000_000 if i < 98 else 20_000_000)


def _latency_heal(eng: RiskEngine, ts: int) -> int:
    # fast decisions from ts on; the slow ones leave the rolling minute 60 s after their second
    t = ts
    while eng.breakers.decision_latency.recovered_at < 0:
        eng.observe(t, decision_latency_ns=500_000)
        t += S
    return eng.breakers.decision_latency.recovered_at


def _drawdown_trip(eng: RiskEngine, ts: int) -> None:
    fill(eng, 10_000, strategy="a", leverage=5, ts=ts)
    eng.on_mark(USDM, "BTCUSDT", 93.0, ts)  # 7 % ≥ 6.4 % (80 % of 8 %), below the 8 % halt


def _drawdown_heal(eng: RiskEngine, ts: int) -> int:
    eng.on_mark(USDM, "BTCUSDT", 99.0, ts)
    return ts


BREAKERS = {
    reasons.BREAKER_INGEST_LAG: BreakerCase(_lag(750.0), _lag_heal),
    reasons.BREAKER_FEED_GAP: BreakerCase(_gap_trip, _gap_heal),
    reasons.BREAKER_DECISION_LATENCY: BreakerCase(_latency_trip, _latency_heal),
    reasons.BREAKER_DRAWDOWN: BreakerCase(_drawdown_trip, _drawdown_heal, equity=10_000.0),
}


@pytest.mark.parametrize(("code", "case"), BREAKERS.items(), ids=BREAKERS.keys())
def test_breaker_trips_holds_through_cooldown_and_clears(code: str, case: BreakerCase) -> None:
    eng = engine(config(limits={"max_daily_loss_usdt": 5000.0}), equity=case.equity)
    case.trip(eng, T0)
    assert eng.breakers_tripped() == (code,)
    phase = eng.evaluate(T0)
    if code != reasons.BREAKER_DRAWDOWN:  # the drawdown itself is also a Reducing condition (RISK_DRAWDOWN)
        assert (phase.phase, phase.reason) == (REDUCING, code)
    rejection = eng.check_order(order(100, strategy="z", symbol="ETHUSDT", ts=T0 + S))
    assert rejection is not None and rejection.reason in (code, reasons.RISK_REDUCE_ONLY)

    healed = case.heal(eng, T0 + 2 * S)
    assert eng.evaluate(healed).phase == REDUCING
    still = eng.check_order(order(100, strategy="z", symbol="ETHUSDT", ts=healed + COOLDOWN - 1))
    assert still is not None and still.reason == code and "cooling down" in still.detail
    assert eng.evaluate(healed + COOLDOWN - 1).reason == code
    assert eng.breakers_tripped() == (code,)

    actions = eng.evaluate(healed + COOLDOWN)
    assert (actions.phase, actions.reason) == (ACTIVE, "")
    assert eng.breakers_tripped() == ()
    assert eng.check_order(order(100, strategy="z", symbol="ETHUSDT", ts=healed + COOLDOWN)) is None


@pytest.mark.parametrize(("code", "case"), BREAKERS.items(), ids=BREAKERS.keys())
def test_breakers_never_block_exits(code: str, case: BreakerCase) -> None:
    eng = engine(config(limits={"max_daily_loss_usdt": 5000.0}), equity=case.equity)
    fill(eng, 1000, strategy="x", symbol="SOLUSDT", ts=T0)
    case.trip(eng, T0)
    assert code in eng.breakers_tripped()
    assert eng.check_order(order(1000, strategy="x", symbol="SOLUSDT", side=-1, is_entry=False)) is None


def test_a_relapse_during_the_cooldown_restarts_it() -> None:
    eng = engine()
    eng.observe(T0, ingest_lag_ms=900.0)
    eng.observe(T0 + S, ingest_lag_ms=10.0)
    eng.observe(T0 + 30 * S, ingest_lag_ms=900.0)
    eng.observe(T0 + 31 * S, ingest_lag_ms=10.0)
    assert eng.evaluate(T0 + 61 * S).reason == reasons.BREAKER_INGEST_LAG  # 60 s after the first recovery
    assert eng.evaluate(T0 + 91 * S).phase == ACTIVE  # 60 s after the second


def test_zero_cooldown_clears_on_the_first_healthy_input() -> None:
    eng = engine(config(breakers={"cooldown_seconds": 0}))
    eng.observe(T0, gap_ratio_pct=1.0)
    assert eng.phase == REDUCING
    eng.observe(T0 + 1, gap_ratio_pct=0.1)
    assert eng.phase == ACTIVE


LAG_VALUES = {"at-limit": (500.0, False), "above": (500.001, True), "nan": (float("nan"), True)}


@pytest.mark.parametrize(("lag_ms", "tripped"), LAG_VALUES.values(), ids=LAG_VALUES.keys())
def test_ingest_lag_limit_is_strictly_above_and_nan_is_unhealthy(lag_ms: float, tripped: bool) -> None:
    eng = engine()
    eng.observe(T0, ingest_lag_ms=lag_ms)
    assert (reasons.BREAKER_INGEST_LAG in eng.breakers_tripped()) is tripped


def test_latency_breaker_uses_the_p99_not_the_worst_sample() -> None:
    eng = engine()
    for i in range(1000):
        eng.observe(T0 + i * 1_000_000, decision_latency_ns=1_000_000)
    for i in range(10):  # 10 of 1010 slow: the nearest-rank p99 (rank 1000) is still 1 ms
        eng.observe(T0 + S + i, decision_latency_ns=50_000_000)
    assert eng.breakers_tripped() == ()
    eng.observe(T0 + 2 * S, decision_latency_ns=50_000_000)  # 11 of 1011: rank 1001 is slow
    assert eng.breakers_tripped() == (reasons.BREAKER_DECISION_LATENCY,)
    assert "decision latency p99" in eng.detail


def test_breaker_state_machine() -> None:
    br = Breaker("X")
    assert br.update(True, 1.0, 10, 5) and br.tripped and br.tripped_at == 10
    assert not br.update(True, 2.0, 11, 5)  # already tripped
    assert not br.update(False, 0.0, 12, 5) and br.recovered_at == 12
    assert br.active(16, 5) and not br.active(17, 5)  # read-only view: the cooldown ends at 17
    assert br.tripped  # … but only expire/update change the state
    assert br.expire(17, 5) and not br.tripped and br.recovered_at == -1


# --- latency window -----------------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=2e3, max_value=5e8), min_size=1, max_size=400))
def test_latency_p99_is_the_nearest_rank_p99_within_one_bucket(samples: list[float]) -> None:
    win = LatencyWindow()
    for i, x in enumerate(samples):
        win.add(T0 + i * 1000, x)
    exact = float(np.sort(samples)[int(np.ceil(0.99 * len(samples))) - 1])
    p99 = win.p99_ns()
    assert exact <= p99 * (1 + 1e-12)
    assert p99 <= exact * 1.05 * (1 + 1e-12)


def test_latency_window_forgets_samples_older_than_a_minute() -> None:
    win = LatencyWindow()
    win.add(T0, 9e6)
    win.add(T0 + 30 * S, 1e6)
    assert win.count == 2
    win.advance(T0 + (WINDOW_S - 1) * S)
    assert win.count == 2  # T0's second is still the oldest of the 60
    win.advance(T0 + WINDOW_S * S)
    assert win.count == 1 and win.p99_ns() == pytest.approx(1e6, rel=0.05)
    win.advance(T0 + 10 * WINDOW_S * S)
    assert win.count == 0 and np.isnan(win.p99_ns())
    win.add(T0, 1e6)  # a sample from a second that has left the window is dropped
    assert win.count == 0


def test_latency_window_memory_does_not_grow_with_the_decision_rate() -> None:
    win = LatencyWindow()
    shape = win._counts.shape
    for i in range(20_000):
        win.add(T0 + i * 10_000_000, 1e5 + i)  # 100 per second for 200 s
    assert win._counts.shape == shape
    assert win.count == 100 * WINDOW_S
