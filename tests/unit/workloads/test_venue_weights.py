"""Rate-limit accounting on a virtual clock: exchangeInfo parsing, the pre-emptive throttle, headers from
the server, 429 back-off per Retry-After (and to the window end without it), 418 bans that fail fast."""

from __future__ import annotations

import asyncio

import pytest

from tradeplane.workloads.venues import RateLimit, RateLimiter, parse_rate_limits
from tradeplane.workloads.venues.weights import ORDERS, REQUEST_WEIGHT, IpBannedError, retry_after_s

#: The shape Binance documents for exchangeInfo ``rateLimits`` (spot REST docs, "Rate limiters").
DOC_RATE_LIMITS = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 10},
    {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 5000},
]


class VirtualTime:
    """A clock that only moves when someone sleeps (seconds)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.t = start
        self.slept: list[float] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.t += s


def limiter(limits: list[RateLimit], vt: VirtualTime, headroom: float = 0.9) -> RateLimiter:
    return RateLimiter(limits, headroom=headroom, now=vt.now, sleep=vt.sleep)


def test_parse_documented_rate_limits_and_their_headers() -> None:
    limits = parse_rate_limits(DOC_RATE_LIMITS)
    assert [(lim.kind, lim.window_s, lim.limit) for lim in limits] == [
        ("REQUEST_WEIGHT", 60, 1200),
        ("ORDERS", 10, 10),
        ("RAW_REQUESTS", 300, 5000),
    ]
    assert [lim.header for lim in limits] == ["x-mbx-used-weight-1m", "x-mbx-order-count-10s", ""]


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1},
            r"rateLimits\[1\]: bad or missing field",
        ),
        (
            {"rateLimitType": "WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 5},
            r"rateLimits\[1\].rateLimitType",
        ),
        ({"rateLimitType": "ORDERS", "interval": "WEEK", "intervalNum": 1, "limit": 5}, r"rateLimits\[1\].interval"),
        ({"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 0, "limit": 5}, r"rateLimits\[1\]: intervalNum"),
    ],
)
def test_a_malformed_rate_limit_is_named(item: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_rate_limits([DOC_RATE_LIMITS[0], item])


def test_throttles_before_the_limit_and_resumes_in_the_next_window() -> None:
    vt = VirtualTime(start=6_000.0 + 12.5)  # 12.5 s into a minute window
    rl = limiter([RateLimit(REQUEST_WEIGHT, "MINUTE", 1, 100)], vt)  # headroom 0.9: 90 per window
    waits = [asyncio.run(rl.acquire(10)) for _ in range(9)]
    assert waits == [0.0] * 9 and rl.used(REQUEST_WEIGHT) == {"x-mbx-used-weight-1m": 90}
    assert rl.delay_s(10) == pytest.approx(47.5)  # 90 + 10 > 90: wait for the window to end
    waited = asyncio.run(rl.acquire(10))
    assert waited == pytest.approx(47.5, abs=0.01) and rl.throttled == 1
    assert vt.t >= 6_060.0  # the request went in the next window …
    assert rl.used(REQUEST_WEIGHT) == {"x-mbx-used-weight-1m": 10}  # … and is the only one counted there


def test_windows_are_aligned_to_the_clock_not_to_the_first_request() -> None:
    vt = VirtualTime(start=6_059.0)
    rl = limiter([RateLimit(REQUEST_WEIGHT, "MINUTE", 1, 10)], vt, headroom=1.0)
    asyncio.run(rl.acquire(10))
    assert rl.delay_s(1) == pytest.approx(1.0)  # the window ends at 6060, one second later


def test_server_headers_raise_the_count_and_weightless_orders_count_only_as_orders() -> None:
    vt = VirtualTime(start=6_000.0)
    rl = limiter([RateLimit(REQUEST_WEIGHT, "MINUTE", 1, 100), RateLimit(ORDERS, "SECOND", 10, 10)], vt, headroom=1.0)
    asyncio.run(rl.acquire(1))
    rl.observe_headers({"X-MBX-USED-WEIGHT-1M": "99", "Content-Type": "application/json", "X-MBX-ORDER-COUNT-10S": "4"})
    assert rl.used(REQUEST_WEIGHT) == {"x-mbx-used-weight-1m": 99}  # other processes on the IP count too
    assert rl.used(ORDERS) == {"x-mbx-order-count-10s": 4}
    rl.observe_headers({"X-MBX-USED-WEIGHT-1M": "50"})  # an older answer never lowers it
    assert rl.used(REQUEST_WEIGHT) == {"x-mbx-used-weight-1m": 99}
    assert rl.delay_s(0, orders=1) == 0.0  # a USD-M order (weight 0) only needs order room
    assert rl.delay_s(2) > 0
    for _ in range(6):
        asyncio.run(rl.acquire(0, orders=1))
    assert rl.used(ORDERS) == {"x-mbx-order-count-10s": 10} and rl.delay_s(0, orders=1) > 0


def test_429_blocks_every_request_until_retry_after() -> None:
    vt = VirtualTime(start=6_000.0)
    rl = limiter([RateLimit(REQUEST_WEIGHT, "MINUTE", 1, 1000)], vt)
    assert rl.on_429(retry_after_s({"Retry-After": "3"})) == pytest.approx(3.0)
    assert rl.delay_s(1) == pytest.approx(3.0)
    assert asyncio.run(rl.acquire(1)) == pytest.approx(3.0, abs=0.01)
    assert rl.delay_s(1) == 0.0 and rl.hits_429 == 1


def test_order_count_429_without_retry_after_waits_for_the_order_window() -> None:
    vt = VirtualTime(start=6_004.0)
    rl = limiter([RateLimit(ORDERS, "SECOND", 10, 5)], vt)
    asyncio.run(rl.acquire(1, orders=1))
    assert rl.on_429(retry_after_s({})) == pytest.approx(6.0)  # the 10 s window ends at 6010


def test_418_fails_fast_until_the_ban_is_over() -> None:
    vt = VirtualTime(start=6_000.0)
    rl = limiter([RateLimit(REQUEST_WEIGHT, "MINUTE", 1, 1000)], vt)
    rl.on_418(retry_after_s({"retry-after": "120"}))
    with pytest.raises(IpBannedError, match=r"banned by the venue \(HTTP 418\) for another 120.0 s"):
        asyncio.run(rl.acquire(1))
    assert vt.slept == []  # never slept through the ban
    vt.t += 120.5
    assert asyncio.run(rl.acquire(1)) == 0.0


def test_new_limits_from_exchange_info_keep_what_was_used() -> None:
    vt = VirtualTime(start=6_000.0)
    rl = limiter([RateLimit(REQUEST_WEIGHT, "MINUTE", 1, 6000)], vt)
    asyncio.run(rl.acquire(40))
    rl.set_limits(parse_rate_limits([{**DOC_RATE_LIMITS[0], "limit": 50}]))
    assert rl.used(REQUEST_WEIGHT) == {"x-mbx-used-weight-1m": 40}
    assert rl.delay_s(10) > 0  # 40 + 10 > 45 (0.9 × 50)


def test_retry_after_header_parsing() -> None:
    assert retry_after_s({"Retry-After": "7"}) == 7.0
    assert retry_after_s({"Retry-After": "soon"}) is None
    assert retry_after_s({}) is None
