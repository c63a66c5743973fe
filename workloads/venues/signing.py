"""Binance request signing: HMAC-SHA256 over the exact parameter string, timestamp + recvWindow, clock sync.

What Binance checks (REST API docs, "SIGNED (TRADE and USER_DATA) Endpoint security"):

* ``signature`` = hex HMAC-SHA256 keyed with the secret over ``totalParams``, the query string concatenated
  with the request body (no ``&`` between them), exactly as sent;
* ``timestamp`` (ms) must satisfy ``timestamp < serverTime + 1000`` and ``serverTime - timestamp <=
  recvWindow`` (default 5000, at most 60000), else -1021.

So the string that is signed is the string that is sent: :func:`signed_query` builds it once and the REST
client puts it on the URL unchanged. ``timestamp`` comes from :class:`ServerClock`, the local clock plus the
offset measured against the server's ``/time`` (half the round trip is attributed to each direction), so a
host whose clock drifts still lands inside the window; the client re-syncs and retries once on -1021.

The secret lives only inside :class:`Credentials`: its repr masks it, and nothing else keeps a copy.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Final
from urllib.parse import urlencode

DEFAULT_RECV_WINDOW_MS: Final = 5000
MAX_RECV_WINDOW_MS: Final = 60_000

Params = Sequence[tuple[str, str]]
"""Request parameters in sending order (the order is part of what is signed)."""


def hmac_signature(payload: str, secret: str) -> str:
    """Lower-case hex HMAC-SHA256 of ``payload`` keyed with ``secret`` (both UTF-8)."""
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


class Credentials:
    """An API key and its secret. The secret is never shown (repr, str, errors) and only used to sign."""

    __slots__ = ("_secret", "api_key")

    def __init__(self, api_key: str, secret: str) -> None:
        if not api_key or not secret:
            raise ValueError("api_key and secret must both be non-empty")
        self.api_key = api_key
        self._secret = secret

    def sign(self, payload: str) -> str:
        return hmac_signature(payload, self._secret)

    def __repr__(self) -> str:
        return f"Credentials(api_key={mask(self.api_key)!r}, secret='***')"

    __str__ = __repr__


def mask(key: str) -> str:
    """The first and last four characters of an API key, for logs."""
    return key if len(key) <= 8 else f"{key[:4]}…{key[-4:]}"


def encode_params(params: Params) -> str:
    """``k=v&k=v`` in the given order, percent-encoded the way Binance decodes it."""
    return urlencode(list(params))


def signed_query(params: Params, creds: Credentials, *, timestamp_ms: int, recv_window_ms: int) -> str:
    """The query string of a SIGNED request: the parameters, ``recvWindow``, ``timestamp``, then
    ``signature`` over everything before it (Binance's documented example puts them in this order)."""
    if not 0 < recv_window_ms <= MAX_RECV_WINDOW_MS:
        raise ValueError(f"recvWindow must be in (0, {MAX_RECV_WINDOW_MS}] ms, got {recv_window_ms}")
    names = {k for k, _ in params}
    for reserved in ("recvWindow", "timestamp", "signature"):
        if reserved in names:
            raise ValueError(f"parameter {reserved!r} is set by the signer, not the caller")
    body = encode_params([*params, ("recvWindow", str(recv_window_ms)), ("timestamp", str(timestamp_ms))])
    return f"{body}&signature={creds.sign(body)}"


class ServerClock:
    """The server's time as the local clock plus a measured offset (ms).

    ``local_ms`` is injectable (tests skew it); ``sync`` measures ``offset = server − midpoint(request)``.
    """

    def __init__(self, local_ms: Callable[[], float] | None = None) -> None:
        self._local_ms = local_ms or (lambda: time.time() * 1000.0)
        self.offset_ms = 0.0
        self.rtt_ms = 0.0
        self.syncs = 0
        self.last_sync_local_ms = 0.0

    def now_ms(self) -> int:
        """The server's current time as best known (ms since the epoch)."""
        return int(self._local_ms() + self.offset_ms)

    def now_s(self) -> float:
        return (self._local_ms() + self.offset_ms) / 1000.0

    async def sync(self, server_time_ms: Callable[[], Awaitable[int]]) -> float:
        """Measure the offset against ``server_time_ms()`` (one round trip); returns the new offset."""
        t0 = self._local_ms()
        server = await server_time_ms()
        t1 = self._local_ms()
        self.rtt_ms = t1 - t0
        self.offset_ms = server - (t0 + t1) / 2.0
        self.syncs += 1
        self.last_sync_local_ms = t1
        return self.offset_ms
