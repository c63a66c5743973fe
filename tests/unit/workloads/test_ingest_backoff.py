"""Reconnect backoff: the ceiling doubles from 0.5 s and stops at 8 s, every delay is a full-jitter draw in
[0, ceiling], seeded generators repeat, and the attempt counter resets once a connection proved healthy."""

from __future__ import annotations

import asyncio
import random
import statistics
import time

import pytest

from tradeplane.workloads.ingest import Backoff, backoff_ceiling, backoff_delay, wait_or_stop


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0), (30, 8.0), (10_000, 8.0)],
    ids=lambda v: str(v),
)
def test_ceiling_doubles_then_caps(attempt: int, ceiling: float) -> None:
    assert backoff_ceiling(attempt) == ceiling


def test_delays_stay_within_zero_and_the_ceiling() -> None:
    rng = random.Random(7)
    for attempt in range(12):
        ceiling = backoff_ceiling(attempt)
        draws = [backoff_delay(attempt, rng) for _ in range(2000)]
        assert min(draws) >= 0.0
        assert max(draws) <= ceiling
        # full jitter: the draws cover the whole range (not "equal jitter", which never goes below half)
        assert min(draws) < 0.05 * ceiling
        assert max(draws) > 0.95 * ceiling
        assert statistics.fmean(draws) == pytest.approx(ceiling / 2, rel=0.06)


def test_seeded_generators_give_the_same_delays() -> None:
    a = Backoff(rng=random.Random(3))
    b = Backoff(rng=random.Random(3))
    assert [a.next_delay() for _ in range(10)] == [b.next_delay() for _ in range(10)]


def test_backoff_counts_attempts_and_resets() -> None:
    class Top:
        def uniform(self, a: float, b: float) -> float:
            return b  # always the ceiling: makes the schedule visible

    backoff = Backoff(rng=Top())
    assert [backoff.next_delay() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert backoff.attempt == 7
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_custom_base_and_cap() -> None:
    assert [backoff_ceiling(i, base=0.1, cap=0.3) for i in range(4)] == [0.1, 0.2, 0.3, 0.3]


@pytest.mark.parametrize(("base", "cap"), [(0.0, 8.0), (-1.0, 8.0), (2.0, 1.0)])
def test_invalid_base_or_cap_is_refused(base: float, cap: float) -> None:
    with pytest.raises(ValueError, match="base"):
        Backoff(base=base, cap=cap)


def test_negative_attempt_is_refused() -> None:
    with pytest.raises(ValueError, match="attempt"):
        backoff_ceiling(-1)


def test_wait_or_stop_returns_early_when_stopped() -> None:
    async def main() -> tuple[bool, float, bool]:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.05, stop.set)
        t0 = time.monotonic()
        stopped = await wait_or_stop(stop, 5.0)
        elapsed = time.monotonic() - t0
        return stopped, elapsed, await wait_or_stop(asyncio.Event(), 0.01)

    stopped, elapsed, timed_out = asyncio.run(main())
    assert stopped and elapsed < 1.0
    assert timed_out is False
