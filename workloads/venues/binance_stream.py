"""Binance's user-data stream: the WebSocket of account events, and its order events as ExecutionReports.

Why a stream and not only polling: a fill is known the moment the venue sends ``executionReport`` (spot) or
``ORDER_TRADE_UPDATE`` (USD-M futures), with its trade id, fee and maker flag, at no request weight. The
stream is not a guaranteed log, though: whatever happens while it reconnects is not resent, so every
(re)connect calls ``on_connect``, with which the adapter polls the orders it tracks and reports what it
missed (the adapter de-duplicates by cumulative filled quantity, so nothing is reported twice).

Two ways to subscribe, one per market:

* :class:`UserDataStream` (USD-M futures, and spot until Binance discontinued it on 2026-02-20): POST creates
  a listenKey (valid 60 minutes), PUT extends it (every ``keepalive_s``, 30 minutes by default), DELETE
  closes it; the socket is ``<ws_url>/<listenKey>``. A ``listenKeyExpired`` event or a closed socket leads to
  a new key and a reconnect.
* :class:`WsApiUserDataStream` (spot): one request ``userDataStream.subscribe.signature`` on the WebSocket API
  (``apiKey`` and ``timestamp`` signed like a REST request, the parameters sorted by name); events arrive as
  ``{"subscriptionId": n, "event": {...}}``. No key to keep alive.

Both reconnect with exponential back-off (0.5 s → 8 s, with jitter).

Field names (spot ``executionReport``): ``c`` client order id (for a cancel: the cancel request's id, the
order's own id is then ``C``), ``S`` side, ``o`` type, ``x`` execution type, ``X`` status, ``i`` order id,
``q`` quantity, ``l``/``L`` last fill quantity/price, ``z`` cumulative quantity, ``Z`` cumulative quote,
``n``/``N`` commission and its asset, ``t`` trade id, ``m`` maker, ``T`` transaction time (ms). USD-M
``ORDER_TRADE_UPDATE`` nests the order under ``o`` with the same letters plus ``ap`` average price, ``R``
reduce-only and ``rp`` realized profit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import aiohttp

from .base import BUY, SELL, ExecutionReport
from .filters import SymbolFilters, split_symbol
from .signing import Credentials, ServerClock

_MS_NS: Final = 1_000_000
BACKOFF_START_S: Final = 0.5
BACKOFF_MAX_S: Final = 8.0


def _f(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def fee_in_quote(fee: float, fee_asset: str, price: float, base: str, quote: str) -> float:
    """The fee in the quote asset when it was paid in the quote or the base asset, else NaN."""
    if fee == 0.0:
        return 0.0
    if fee_asset == quote:
        return fee
    if fee_asset == base and math.isfinite(price):
        return fee * price
    return math.nan


def _assets(symbol: str, filters: Mapping[str, SymbolFilters]) -> tuple[str, str]:
    f = filters.get(symbol)
    if f is not None:
        return f.base_asset, f.quote_asset
    try:
        return split_symbol(symbol)
    except ValueError:
        return "", ""


def unwrap(msg: Mapping[str, Any]) -> Mapping[str, Any]:
    """The event inside a combined-stream (``data``) or WebSocket-API (``event``) envelope, else ``msg``."""
    for key in ("data", "event"):
        inner = msg.get(key)
        if isinstance(inner, Mapping) and "e" in inner:
            return inner
    return msg


def parse_user_event(
    msg: Mapping[str, Any], venue: str, filters: Mapping[str, SymbolFilters]
) -> ExecutionReport | None:
    """One user-data message as an ExecutionReport; None for events that are not about an order
    (balances, account updates, order-list summaries, listenKeyExpired)."""
    ev = unwrap(msg)
    kind = ev.get("e")
    o: Mapping[str, Any]
    if kind == "executionReport":
        o, reduce_only, avg, rp = ev, False, math.nan, math.nan
        status = str(o.get("X", ""))
        coid = str(o.get("C") or o.get("c", "")) if status == "CANCELED" else str(o.get("c", ""))
        cum_quote = _f(o.get("Z"))
        cum = _f(o.get("z"))
        if cum > 0 and math.isfinite(cum_quote):
            avg = cum_quote / cum
    elif kind == "ORDER_TRADE_UPDATE":
        inner = ev.get("o")
        if not isinstance(inner, Mapping):
            return None
        o = inner
        status = str(o.get("X", ""))
        coid = str(o.get("c", ""))
        cum = _f(o.get("z"))
        avg = _f(o.get("ap"))
        avg = avg if avg > 0 else math.nan
        reduce_only = bool(o.get("R", False))
        rp = _f(o.get("rp"))
    else:
        return None
    symbol = str(o.get("s", ""))
    last_qty, last_px = _f(o.get("l")), _f(o.get("L"))
    qty = last_qty if last_qty > 0 else 0.0
    price = last_px if qty > 0 else math.nan
    fee = _f(o.get("n"))
    fee = fee if math.isfinite(fee) else 0.0
    fee_asset = str(o.get("N") or "")
    base, quote = _assets(symbol, filters)
    trade_id = o.get("t", -1)
    return ExecutionReport(
        venue=venue,
        symbol=symbol,
        client_order_id=coid,
        venue_order_id=str(o.get("i", "")),
        side=BUY if o.get("S") == "BUY" else SELL,
        order_type=str(o.get("o", "")),
        exec_type=str(o.get("x", "")),
        status=status,
        qty=qty,
        price=price,
        cum_qty=cum if math.isfinite(cum) else 0.0,
        order_qty=_f(o.get("q")),
        avg_price=avg,
        fee=fee,
        fee_asset=fee_asset,
        fee_quote=fee_in_quote(fee, fee_asset, price, base, quote),
        is_maker=bool(o.get("m", False)),
        trade_id="" if trade_id in (-1, 0, None) or qty <= 0 else str(trade_id),
        exchange_ts=int(_f(o.get("T", ev.get("T", ev.get("E", 0)))) * _MS_NS),
        reduce_only=reduce_only,
        realized_pnl=rp,
        source="stream",
    )


class UserDataStream:
    """One listenKey and its socket, kept alive and reconnected until :meth:`close`.

    The REST calls are injected (``create_key``, ``keepalive_key``, ``close_key``) so the stream does not know
    which market it serves; ``on_message`` receives every decoded JSON message, ``on_connect`` runs after
    each successful connect (the adapter's catch-up poll).
    """

    def __init__(
        self,
        *,
        ws_url: str,
        session: aiohttp.ClientSession,
        create_key: Callable[[], Awaitable[str]],
        keepalive_key: Callable[[str], Awaitable[None]],
        close_key: Callable[[str], Awaitable[None]],
        on_message: Callable[[Mapping[str, Any]], None],
        on_connect: Callable[[], Awaitable[None]],
        keepalive_s: float = 1800.0,
        heartbeat_s: float = 20.0,
    ) -> None:
        self.ws_url = ws_url.rstrip("/")
        self._session = session
        self._create_key, self._keepalive_key, self._close_key = create_key, keepalive_key, close_key
        self._on_message, self._on_connect = on_message, on_connect
        self.keepalive_s = keepalive_s
        self.heartbeat_s = heartbeat_s
        self.listen_key = ""
        self.connected = asyncio.Event()
        self.connects = 0
        self.keepalives = 0
        self.messages = 0
        self.last_error = ""
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    async def start(self, timeout_s: float = 10.0) -> None:
        """Create the key, connect, and return once the socket is up (raises after ``timeout_s``)."""
        self.listen_key = await self._create_key()
        self._tasks = [asyncio.create_task(self._run()), asyncio.create_task(self._keepalive())]
        try:
            await asyncio.wait_for(self.connected.wait(), timeout_s)
        except TimeoutError:
            await self.close()
            raise ConnectionError(f"user-data stream did not connect within {timeout_s} s: {self.last_error}") from None

    async def _run(self) -> None:
        backoff = BACKOFF_START_S
        while not self._closing:
            try:
                async with self._session.ws_connect(
                    f"{self.ws_url}/{self.listen_key}", heartbeat=self.heartbeat_s
                ) as ws:
                    self.connects += 1
                    backoff = BACKOFF_START_S
                    self.connected.set()
                    await self._on_connect()
                    expired = await self._read(ws)
                if expired and not self._closing:
                    self.connected.clear()
                    self.listen_key = await self._create_key()
                    continue
            except asyncio.CancelledError:
                raise
            except Exception as e:  # any failure of the socket or the key: reconnect with back-off
                self.last_error = f"{type(e).__name__}: {e}"
            self.connected.clear()
            if self._closing:
                return
            await asyncio.sleep(backoff * (0.5 + random.random() / 2))
            backoff = min(BACKOFF_MAX_S, backoff * 2)
            with contextlib.suppress(Exception):
                self.listen_key = await self._create_key()  # the old key may have expired meanwhile

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> bool:
        """Deliver messages until the socket closes; True when the venue said the key expired."""
        async for m in ws:
            if m.type is not aiohttp.WSMsgType.TEXT:
                if m.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                    break
                continue
            try:
                msg = json.loads(m.data)
            except ValueError:
                self.last_error = f"undecodable message: {m.data[:120]!r}"
                continue
            if not isinstance(msg, dict):
                continue
            self.messages += 1
            if unwrap(msg).get("e") == "listenKeyExpired":
                return True
            self._on_message(msg)
        return False

    async def _keepalive(self) -> None:
        while not self._closing:
            await asyncio.sleep(self.keepalive_s)
            try:
                await self._keepalive_key(self.listen_key)
                self.keepalives += 1
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the reader notices a dead key and makes a new one
                self.last_error = f"keepalive: {type(e).__name__}: {e}"

    async def close(self) -> None:
        """Stop both tasks and close the listenKey (idempotent; errors on the way out are ignored)."""
        if self._closing:
            return
        self._closing = True
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self.listen_key:
            with contextlib.suppress(Exception):
                await self._close_key(self.listen_key)
        self.connected.clear()

    def health(self) -> dict[str, Any]:
        return {
            "connected": self.connected.is_set(),
            "connects": self.connects,
            "keepalives": self.keepalives,
            "messages": self.messages,
            "last_error": self.last_error,
        }


class WsApiUserDataStream:
    """The spot user-data stream through the WebSocket API (``userDataStream.subscribe.signature``).

    Same surface as :class:`UserDataStream` (``start``, ``close``, ``connected``, ``health``); each (re)connect
    sends a freshly signed subscription, so there is nothing to keep alive but the socket.
    """

    def __init__(
        self,
        *,
        ws_api_url: str,
        session: aiohttp.ClientSession,
        creds: Credentials,
        clock: ServerClock,
        recv_window_ms: int,
        on_message: Callable[[Mapping[str, Any]], None],
        on_connect: Callable[[], Awaitable[None]],
        heartbeat_s: float = 20.0,
    ) -> None:
        self.ws_api_url = ws_api_url
        self._session, self._creds, self._clock = session, creds, clock
        self.recv_window_ms = recv_window_ms
        self._on_message, self._on_connect = on_message, on_connect
        self.heartbeat_s = heartbeat_s
        self.connected = asyncio.Event()
        self.connects = 0
        self.messages = 0
        self.subscription_id: int | None = None
        self.last_error = ""
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._ids = 0

    def subscribe_request(self) -> dict[str, Any]:
        """The signed ``userDataStream.subscribe.signature`` request (parameters signed sorted by name)."""
        params: dict[str, Any] = {
            "apiKey": self._creds.api_key,
            "recvWindow": self.recv_window_ms,
            "timestamp": self._clock.now_ms(),
        }
        payload = "&".join(f"{k}={params[k]}" for k in sorted(params))
        params["signature"] = self._creds.sign(payload)
        self._ids += 1
        return {"id": f"uds-{self._ids}", "method": "userDataStream.subscribe.signature", "params": params}

    async def start(self, timeout_s: float = 10.0) -> None:
        self._task = asyncio.create_task(self._run())
        try:
            await asyncio.wait_for(self.connected.wait(), timeout_s)
        except TimeoutError:
            await self.close()
            why = self.last_error or "no answer"
            raise ConnectionError(f"user-data stream did not subscribe within {timeout_s} s: {why}") from None

    async def _run(self) -> None:
        backoff = BACKOFF_START_S
        while not self._closing:
            try:
                async with self._session.ws_connect(self.ws_api_url, heartbeat=self.heartbeat_s) as ws:
                    request = self.subscribe_request()
                    await ws.send_str(json.dumps(request))
                    async for m in ws:
                        if m.type is not aiohttp.WSMsgType.TEXT:
                            if m.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                                break
                            continue
                        msg = json.loads(m.data)
                        if not isinstance(msg, dict):
                            continue
                        if msg.get("id") == request["id"]:
                            if msg.get("status") != 200:
                                err = msg.get("error") or {}
                                self.last_error = f"subscribe refused: {err.get('code')} {err.get('msg')}"
                                break
                            self.subscription_id = int(msg.get("result", {}).get("subscriptionId", 0))
                            self.connects += 1
                            backoff = BACKOFF_START_S
                            self.connected.set()
                            await self._on_connect()
                        elif "event" in msg:
                            self.messages += 1
                            self._on_message(msg)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # any failure of the socket: reconnect with back-off
                self.last_error = f"{type(e).__name__}: {e}"
            self.connected.clear()
            if self._closing:
                return
            await asyncio.sleep(backoff * (0.5 + random.random() / 2))
            backoff = min(BACKOFF_MAX_S, backoff * 2)

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self.connected.clear()

    def health(self) -> dict[str, Any]:
        return {
            "connected": self.connected.is_set(),
            "connects": self.connects,
            "messages": self.messages,
            "subscription_id": self.subscription_id,
            "last_error": self.last_error,
        }
