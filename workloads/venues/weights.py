"""Binance rate-limit accounting: throttle before the limit, back off on 429, stop on 418.

Binance counts per fixed window (1 minute, 10 seconds, 1 day … aligned to the server clock):

* ``REQUEST_WEIGHT`` — every request costs its endpoint's weight; the used weight comes back in
  ``X-MBX-USED-WEIGHT-<n><S|M|H|D>`` (per IP).
* ``ORDERS`` — every placed order counts; the count comes back in ``X-MBX-ORDER-COUNT-<n><S|M|H|D>``
  (per account; an OCO counts 2).
* ``RAW_REQUESTS`` — every request counts 1 (no header).

Past a limit the server answers 429 with ``Retry-After`` (seconds; an order-count 429 may come without
it); continuing to send then earns 418, an IP ban of 2 minutes to 3 days, also with ``Retry-After``.

:class:`RateLimiter` keeps a counter per limit (the limits come from exchangeInfo ``rateLimits``, with the
documented defaults until then). Before each request it adds the request's cost and, if that would pass
``headroom`` × limit in the current window, waits for the next window instead of sending: the
pre-emptive throttle, so the 429 is not reached. Each response's headers raise the counter to what the
server reports (the server also counts other processes on the same IP, so the larger value wins). A 429
blocks every request until ``Retry-After`` (or the end of the window) has passed; a 418 makes every
request fail fast with :class:`IpBannedError` until the ban is over — sleeping through a ban of hours
inside a request would look like a hang.

Time is the server's (``now`` is injected: the REST client passes its :class:`~.signing.ServerClock`) so
windows line up with the server's.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

REQUEST_WEIGHT: Final = "REQUEST_WEIGHT"
ORDERS: Final = "ORDERS"
RAW_REQUESTS: Final = "RAW_REQUESTS"

_INTERVAL_S: Final = {"SECOND": 1, "MINUTE": 60, "HOUR": 3600, "DAY": 86400}
_LETTER: Final = {"SECOND": "S", "MINUTE": "M", "HOUR": "H", "DAY": "D"}
_HEADER: Final = re.compile(r"^x-mbx-(used-weight|order-count)-(\d+)([smhd])$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """One entry of exchangeInfo ``rateLimits``."""

    kind: str  #: REQUEST_WEIGHT | ORDERS | RAW_REQUESTS
    interval: str  #: SECOND | MINUTE | HOUR | DAY
    interval_num: int
    limit: int

    @property
    def window_s(self) -> int:
        return _INTERVAL_S[self.interval] * self.interval_num

    @property
    def header(self) -> str:
        """The response header reporting this counter (lower case); empty for RAW_REQUESTS."""
        tag = f"{self.interval_num}{_LETTER[self.interval]}".lower()
        if self.kind == REQUEST_WEIGHT:
            return f"x-mbx-used-weight-{tag}"
        if self.kind == ORDERS:
            return f"x-mbx-order-count-{tag}"
        return ""


def parse_rate_limits(items: Iterable[Mapping[str, Any]]) -> tuple[RateLimit, ...]:
    """exchangeInfo ``rateLimits`` → RateLimits; a malformed entry raises naming its index and field."""
    out: list[RateLimit] = []
    for i, item in enumerate(items):
        try:
            kind, interval = str(item["rateLimitType"]), str(item["interval"])
            num, limit = int(item["intervalNum"]), int(item["limit"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"rateLimits[{i}]: bad or missing field ({e!r}) in {dict(item)!r}") from None
        if kind not in (REQUEST_WEIGHT, ORDERS, RAW_REQUESTS):
            raise ValueError(f"rateLimits[{i}].rateLimitType: unknown {kind!r}")
        if interval not in _INTERVAL_S:
            raise ValueError(f"rateLimits[{i}].interval: unknown {interval!r}")
        if num <= 0 or limit <= 0:
            raise ValueError(f"rateLimits[{i}]: intervalNum and limit must be > 0 in {dict(item)!r}")
        out.append(RateLimit(kind, interval, num, limit))
    return tuple(out)


#: Binance's published defaults (exchangeInfo replaces them at start).
SPOT_LIMITS: Final = (
    RateLimit(REQUEST_WEIGHT, "MINUTE", 1, 6000),
    RateLimit(ORDERS, "SECOND", 10, 100),
    RateLimit(ORDERS, "DAY", 1, 200_000),
    RateLimit(RAW_REQUESTS, "MINUTE", 5, 61_000),
)
USDM_LIMITS: Final = (
    RateLimit(REQUEST_WEIGHT, "MINUTE", 1, 2400),
    RateLimit(ORDERS, "MINUTE", 1, 1200),
    RateLimit(ORDERS, "SECOND", 10, 300),
)


class IpBannedError(RuntimeError):
    """The IP is banned (HTTP 418) until ``until_s`` (server time, seconds); nothing is sent until then."""

    def __init__(self, until_s: float, now_s: float) -> None:
        self.until_s = until_s
        super().__init__(f"IP banned by the venue (HTTP 418) for another {until_s - now_s:.1f} s; not sending")


def _key(lim: RateLimit) -> tuple[str, str, int]:
    return lim.kind, lim.interval, lim.interval_num


class _Counter:
    __slots__ = ("limit", "used", "window")

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self.window = -1
        self.used = 0

    def roll(self, now_s: float) -> None:
        w = math.floor(now_s / self.limit.window_s)
        if w != self.window:
            self.window, self.used = w, 0

    def window_end_s(self) -> float:
        return float((self.window + 1) * self.limit.window_s)


class RateLimiter:
    """Counters for one venue's limits; see the module docstring. Not thread-safe (one event loop)."""

    def __init__(
        self,
        limits: Iterable[RateLimit],
        *,
        headroom: float = 0.9,
        now: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not 0 < headroom <= 1:
            raise ValueError(f"headroom must be in (0, 1], got {headroom}")
        self.headroom = headroom
        self._now = now
        self._sleep = sleep
        self._counters: list[_Counter] = []
        self.set_limits(limits)
        self.backoff_until_s = 0.0
        self.banned_until_s = 0.0
        self.throttled = 0  #: requests delayed by the pre-emptive throttle
        self.waited_s = 0.0  #: total time spent waiting (throttle and back-off)
        self.hits_429 = 0
        self.hits_418 = 0

    @property
    def limits(self) -> tuple[RateLimit, ...]:
        return tuple(c.limit for c in self._counters)

    def set_limits(self, limits: Iterable[RateLimit]) -> None:
        """Replace the limits (e.g. from exchangeInfo), keeping what was used of counters that remain."""
        old = {_key(c.limit): c for c in self._counters}
        self._counters = []
        for lim in limits:
            c = _Counter(lim)
            prev = old.get(_key(lim))
            if prev is not None:
                c.window, c.used = prev.window, prev.used
            self._counters.append(c)

    def used(self, kind: str) -> dict[str, int]:
        """Current usage per window of ``kind``, e.g. {'x-mbx-used-weight-1m': 312}."""
        now = self._now()
        out: dict[str, int] = {}
        for c in self._counters:
            if c.limit.kind == kind:
                c.roll(now)
                out[c.limit.header or f"{c.limit.interval_num}{c.limit.interval}"] = c.used
        return out

    def _cost(self, c: _Counter, weight: int, orders: int) -> int:
        kind = c.limit.kind
        return weight if kind == REQUEST_WEIGHT else orders if kind == ORDERS else 1

    def delay_s(self, weight: int, orders: int = 0) -> float:
        """Seconds to wait before a request of this cost may go (0: now). Raises when banned."""
        now = self._now()
        if now < self.banned_until_s:
            raise IpBannedError(self.banned_until_s, now)
        wait = max(0.0, self.backoff_until_s - now)
        for c in self._counters:
            cost = self._cost(c, weight, orders)
            if cost <= 0:
                continue
            c.roll(now)
            cap = math.floor(c.limit.limit * self.headroom)
            if c.used + cost > cap and c.used > 0:  # an empty window always admits one request
                wait = max(wait, c.window_end_s() - now)
        return wait

    async def acquire(self, weight: int, orders: int = 0) -> float:
        """Wait until a request of this cost fits, then count it; returns the seconds waited."""
        waited = 0.0
        while True:
            d = self.delay_s(weight, orders)
            if d <= 0:
                break
            if waited == 0.0:
                self.throttled += 1
            await self._sleep(d + 0.001)
            waited += d
        now = self._now()
        for c in self._counters:
            c.roll(now)
            c.used += self._cost(c, weight, orders)
        self.waited_s += waited
        return waited

    def observe_headers(self, headers: Mapping[str, str]) -> None:
        """Raise the counters to what the server reports in ``X-MBX-USED-WEIGHT-*`` / ``X-MBX-ORDER-COUNT-*``."""
        now = self._now()
        by_header = {c.limit.header: c for c in self._counters if c.limit.header}
        for name, value in headers.items():
            m = _HEADER.match(name)
            if m is None:
                continue
            c = by_header.get(name.lower())
            if c is None:
                continue
            try:
                n = int(value)
            except ValueError:
                continue
            c.roll(now)
            c.used = max(c.used, n)

    def on_429(self, retry_after_s: float | None) -> float:
        """A 429: block everything until ``Retry-After`` (or, without it, the end of the fullest window)."""
        self.hits_429 += 1
        now = self._now()
        if retry_after_s is not None and retry_after_s >= 0:
            until = now + retry_after_s
        else:
            ends = [c.window_end_s() for c in self._counters if c.limit.kind == ORDERS and c.window >= 0]
            until = min(ends) if ends else now + 1.0
        self.backoff_until_s = max(self.backoff_until_s, until)
        return self.backoff_until_s - now

    def on_418(self, retry_after_s: float | None) -> None:
        """A 418 (IP banned): refuse every request until ``Retry-After`` has passed (2 min without it)."""
        self.hits_418 += 1
        now = self._now()
        self.banned_until_s = max(self.banned_until_s, now + (retry_after_s if retry_after_s is not None else 120.0))

    def health(self) -> dict[str, Any]:
        now = self._now()
        return {
            "used": {c.limit.header or c.limit.kind: c.used for c in self._counters},
            "limits": {c.limit.header or c.limit.kind: c.limit.limit for c in self._counters},
            "throttled": self.throttled,
            "waited_s": round(self.waited_s, 3),
            "hits_429": self.hits_429,
            "hits_418": self.hits_418,
            "backoff_s": round(max(0.0, self.backoff_until_s - now), 3),
            "banned_s": round(max(0.0, self.banned_until_s - now), 3),
        }


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """The ``Retry-After`` header in seconds, or None when absent or unreadable."""
    raw = headers.get("Retry-After") or headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None
