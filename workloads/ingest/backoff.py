"""Reconnect delays: exponential backoff with full jitter, 0.5 s → 8 s by default.

Why full jitter (a uniform draw in ``[0, ceiling]``) rather than a fixed exponential: when the exchange drops
every connection at once (maintenance, a network blip), hundreds of clients with fixed delays come back in
synchronised waves; full jitter spreads them and, on average, reconnects sooner than "equal jitter" (AWS
Architecture Blog, "Exponential Backoff And Jitter"). The ceiling doubles per failed attempt and is capped,
so a long outage is retried every few seconds, not every few minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Protocol


class Uniform(Protocol):
    """The one method of ``random.Random`` the backoff needs (injectable for tests)."""

    def uniform(self, a: float, b: float) -> float: ...


def backoff_ceiling(attempt: int, *, base: float = 0.5, cap: float = 8.0) -> float:
    """The largest delay of retry number ``attempt`` (0 = the first retry): ``min(cap, base · 2^attempt)``."""
    if attempt < 0:
        raise ValueError(f"attempt must be ≥ 0, got {attempt}")
    if base <= 0 or cap < base:
        raise ValueError(f"need 0 < base ≤ cap, got base={base} cap={cap}")
    if attempt >= 64:  # 2**attempt overflows nothing in Python, but the cap has long been reached
        return cap
    return min(cap, base * (2.0**attempt))


def backoff_delay(attempt: int, rng: Uniform, *, base: float = 0.5, cap: float = 8.0) -> float:
    """Full-jitter delay of retry number ``attempt``: uniform in ``[0, backoff_ceiling(attempt)]``."""
    return rng.uniform(0.0, backoff_ceiling(attempt, base=base, cap=cap))


class Backoff:
    """Attempt counter + delays for one reconnecting client; :meth:`reset` after a connection proved healthy."""

    def __init__(self, *, base: float = 0.5, cap: float = 8.0, rng: Uniform | None = None) -> None:
        backoff_ceiling(0, base=base, cap=cap)  # validates base and cap
        self.base = base
        self.cap = cap
        self.rng: Uniform = rng if rng is not None else random.Random()
        self.attempt = 0

    def next_delay(self) -> float:
        """The delay before the next attempt; each call counts one failed attempt."""
        delay = backoff_delay(self.attempt, self.rng, base=self.base, cap=self.cap)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


async def wait_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless ``stop`` is set first; returns True when stopping (every retry loop's pause)."""
    if seconds <= 0:
        return stop.is_set()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()
