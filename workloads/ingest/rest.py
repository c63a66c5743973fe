"""The few public REST calls the ingest makes: depth snapshots, exchangeInfo, premiumIndex, openInterest.

Why raw bytes come back from :meth:`RestClient.depth`: the snapshot goes through the engine's decoder like
every websocket frame (``decode_payloads`` with ``snapshot_symbol``), so it is never parsed into Python
objects here. The small JSON documents (exchangeInfo, funding, open interest) are parsed with orjson; they
arrive once a minute or once a day, far from any hot path.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson


class RestError(RuntimeError):
    """A REST call failed: transport error, timeout, non-200 answer or a body that is not JSON.

    ``status`` is the HTTP status (0 when no answer arrived); ``retry_after`` is Binance's ``Retry-After``
    (seconds) on 418/429 answers, else None.
    """

    def __init__(self, path: str, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"GET {path}: {message}")
        self.path = path
        self.status = status
        self.retry_after = retry_after


class RestClient:
    """GET requests against one venue's REST base (``https://fapi.binance.com`` + ``/fapi/v1``).

    ``session`` is owned by the caller (one aiohttp session per process); ``used_weight`` keeps the last
    ``X-MBX-USED-WEIGHT-1M`` header Binance returned (None until one was seen).
    """

    def __init__(self, session: aiohttp.ClientSession, base_url: str, prefix: str, *, timeout_s: float) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.prefix = prefix
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.used_weight: int | None = None
        self.requests = 0

    async def get_bytes(self, endpoint: str, params: dict[str, str] | None = None) -> bytes:
        """The body of ``GET <base><prefix>/<endpoint>?params`` (raises :class:`RestError` unless 200)."""
        path = f"{self.prefix}/{endpoint}"
        self.requests += 1
        try:
            async with self.session.get(self.base_url + path, params=params, timeout=self.timeout) as resp:
                body = await resp.read()
                weight = resp.headers.get("X-MBX-USED-WEIGHT-1M")
                if weight is not None and weight.isdigit():
                    self.used_weight = int(weight)
                if resp.status != 200:
                    retry = resp.headers.get("Retry-After")
                    retry_after = float(retry) if retry and retry.replace(".", "", 1).isdigit() else None
                    text = body[:200].decode("utf-8", "replace")
                    raise RestError(path, resp.status, f"HTTP {resp.status}: {text}", retry_after)
                return body
        except aiohttp.ClientError as exc:
            raise RestError(path, 0, f"{type(exc).__name__}: {exc}") from exc
        except TimeoutError as exc:
            raise RestError(path, 0, f"timed out after {self.timeout.total} s") from exc

    async def get_json(self, endpoint: str, params: dict[str, str] | None = None) -> Any:
        body = await self.get_bytes(endpoint, params)
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise RestError(f"{self.prefix}/{endpoint}", 200, f"body is not JSON: {exc}") from exc

    async def depth(self, symbol: str, limit: int) -> bytes:
        """The raw depth snapshot document of ``symbol`` (``lastUpdateId``, ``bids``, ``asks``)."""
        return await self.get_bytes("depth", {"symbol": symbol, "limit": str(limit)})

    async def exchange_info(self) -> Any:
        return await self.get_json("exchangeInfo")

    async def premium_index(self) -> Any:
        """All symbols' mark price and funding (futures; one request for every symbol)."""
        return await self.get_json("premiumIndex")

    async def open_interest(self, symbol: str) -> Any:
        return await self.get_json("openInterest", {"symbol": symbol})
