"""Binance spot and USD-M futures as :class:`~.base.VenueAdapter`: signed REST orders, idempotent submits,
rate-limit weights, and the user-data stream for execution reports.

Endpoints (weights as Binance documents them, see :data:`ENDPOINT_WEIGHTS`):

============  ===========================  ==================================================
              spot                         USD-M futures
============  ===========================  ==================================================
place         POST /api/v3/order           POST /fapi/v1/order (reduceOnly, STOP_MARKET, …)
OCO           POST /api/v3/orderList/oco   — (no OCO: two reduce-only conditional orders)
query         GET /api/v3/order            GET /fapi/v1/order
cancel        DELETE /api/v3/order         DELETE /fapi/v1/order
open orders   GET /api/v3/openOrders       GET /fapi/v1/openOrders
positions     GET /api/v3/account          GET /fapi/v2/positionRisk
user stream   /api/v3/userDataStream       /fapi/v1/listenKey
============  ===========================  ==================================================

Idempotency. ``newClientOrderId`` is our client order id (derived from the intent, :mod:`...engine.trading.ids`).
A submit that fails ambiguously — a timeout, a lost connection, a 5xx: the order may or may not exist —
first queries the order by ``origClientOrderId``; only when the venue does not have it is the request sent
again, under the same id. Binance's duplicate-order answer (-2010 "Duplicate order sent." on spot, -4116 on
futures) means an open order with that id exists: it is queried and returned as placed
(:attr:`~.base.Placement.DUPLICATE`). So a retried submit never makes a second order. The one window this
cannot close: a request that is still in flight at the venue when the query does not find it, whose order
then fills completely before the resend (Binance accepts a reused id once the first order is filled); the
adapter waits ``settle_s`` before querying to make that window small.

Numbers go out as Decimals formatted to the symbol's tick and step (:mod:`.filters`); the symbol filters and
the rate limits come from exchangeInfo at :meth:`BinanceVenue.start`.

Execution reports come from the user-data stream (:mod:`.binance_stream`). Without it (``user_stream=False``,
or while it reconnects) :meth:`BinanceVenue.next_reports` polls the status of the orders this adapter tracks
and reports the differences; such reports have no trade id and no fee (``fee_quote`` NaN). The cumulative
filled quantity per order de-duplicates stream and poll reports, so a fill is reported once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, TypeVar

import aiohttp
from yarl import URL

from ...engine.trading.ids import is_ours
from ...engine.trading.reconcile import VenueOrder, VenuePosition
from .base import (
    BUY,
    SELL,
    ExecutionReport,
    OcoSpec,
    OrderAck,
    OrderSpec,
    OrderStateUnknownError,
    OrderType,
    OrderValidationError,
    Placement,
    TimeInForce,
    UnknownOrderError,
    UnsupportedOrderError,
)
from .binance_errors import (
    BinanceAmbiguousError,
    BinanceBannedError,
    BinanceDuplicateOrderError,
    BinanceError,
    BinanceRateLimitError,
    BinanceTimestampError,
    BinanceUnknownOrderError,
    RequestInfo,
    error_from_response,
)
from .binance_stream import UserDataStream, WsApiUserDataStream, parse_user_event, unwrap
from .filters import SymbolFilters, plain
from .signing import DEFAULT_RECV_WINDOW_MS, MAX_RECV_WINDOW_MS, Credentials, Params, ServerClock, encode_params
from .signing import signed_query as _signed_query
from .weights import SPOT_LIMITS, USDM_LIMITS, IpBannedError, RateLimit, RateLimiter, parse_rate_limits, retry_after_s

SPOT: Final = "spot"
USDM: Final = "usdm"
SPOT_WS_API_URL: Final = "wss://ws-api.binance.com:443/ws-api/v3"
#: Endpoint security: no key, API key header only (listenKey), or key + signature.
NONE: Final = "NONE"
KEY: Final = "KEY"
SIGNED: Final = "SIGNED"

_MS_NS: Final = 1_000_000
_EPS: Final = 1e-12
_DONE_KEEP: Final = 10_000  #: final orders remembered so that a late ack does not track them again
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Market:
    venue: str
    base_url: str
    ws_url: str
    time: str
    exchange_info: str
    order: str
    open_orders: str
    listen_key: str
    open_orders_all_weight: int
    limits: tuple[RateLimit, ...]


_MARKETS: Final = {
    SPOT: _Market(
        "binance-spot",
        "https://api.binance.com",
        "wss://stream.binance.com:9443/ws",
        "/api/v3/time",
        "/api/v3/exchangeInfo",
        "/api/v3/order",
        "/api/v3/openOrders",
        "/api/v3/userDataStream",
        80,
        SPOT_LIMITS,
    ),
    USDM: _Market(
        "binance-usdm",
        "https://fapi.binance.com",
        "wss://fstream.binance.com/ws",
        "/fapi/v1/time",
        "/fapi/v1/exchangeInfo",
        "/fapi/v1/order",
        "/fapi/v1/openOrders",
        "/fapi/v1/listenKey",
        40,
        USDM_LIMITS,
    ),
}

#: (method, path) → request weight (IP), as documented; open orders without a symbol cost more (see _Market).
ENDPOINT_WEIGHTS: Final[Mapping[tuple[str, str], int]] = {
    ("GET", "/api/v3/time"): 1,
    ("GET", "/api/v3/exchangeInfo"): 20,
    ("POST", "/api/v3/order"): 1,
    ("GET", "/api/v3/order"): 4,
    ("DELETE", "/api/v3/order"): 1,
    ("GET", "/api/v3/openOrders"): 6,
    ("GET", "/api/v3/account"): 20,
    ("POST", "/api/v3/orderList/oco"): 1,
    ("DELETE", "/api/v3/orderList"): 1,
    ("POST", "/api/v3/userDataStream"): 2,
    ("PUT", "/api/v3/userDataStream"): 2,
    ("DELETE", "/api/v3/userDataStream"): 2,
    ("GET", "/fapi/v1/time"): 1,
    ("GET", "/fapi/v1/exchangeInfo"): 1,
    ("POST", "/fapi/v1/order"): 0,  # counts against the order limits only
    ("GET", "/fapi/v1/order"): 1,
    ("DELETE", "/fapi/v1/order"): 1,
    ("GET", "/fapi/v1/openOrders"): 1,
    ("GET", "/fapi/v2/positionRisk"): 5,
    ("POST", "/fapi/v1/listenKey"): 1,
    ("PUT", "/fapi/v1/listenKey"): 1,
    ("DELETE", "/fapi/v1/listenKey"): 1,
    ("POST", "/fapi/v1/algoOrder"): 0,  # order limits only
    ("GET", "/fapi/v1/algoOrder"): 1,
    ("DELETE", "/fapi/v1/algoOrder"): 1,
    ("GET", "/fapi/v1/openAlgoOrders"): 1,  # 40 without a symbol
}


@dataclass(frozen=True)
class BinanceConfig:
    """Everything a Binance adapter takes. The key and secret are left out of the repr."""

    market: str  #: "spot" | "usdm"
    api_key: str = field(repr=False)
    api_secret: str = field(repr=False)
    symbols: tuple[str, ...] = ()  #: traded symbols (their filters are loaded; empty: every listed symbol)
    base_url: str = ""  #: REST base; default the market's production URL
    ws_url: str = ""  #: listenKey stream base (``…/ws``); default the market's
    ws_api_url: str = ""  #: spot WebSocket API (``…/ws-api/v3``); default Binance's
    #: how to receive the user-data stream: "ws-api" (spot) | "listen-key" (USD-M; spot before 2026-02-20) | "auto"
    stream_api: str = "auto"
    recv_window_ms: int = DEFAULT_RECV_WINDOW_MS
    timeout_s: float = 10.0  #: per HTTP request
    headroom: float = 0.9  #: throttle at this fraction of each rate limit
    submit_attempts: int = 3  #: sends of one order after ambiguous failures (same client order id)
    settle_s: float = 0.2  #: wait after an ambiguous failure before querying the order
    read_attempts: int = 3  #: tries of a GET after a timeout or 5xx
    rate_limit_retries: int = 2  #: 429s waited out per request before BinanceRateLimitError
    user_stream: bool = True  #: open the user-data stream at start (else reports are polled)
    keepalive_s: float = 1800.0  #: listenKey keep-alive period
    poll_interval_s: float = 1.0  #: order-status polling period while there is no stream
    load_exchange_info: bool = True  #: filters and rate limits from exchangeInfo at start
    working_type: str = "CONTRACT_PRICE"  #: USD-M trigger price: CONTRACT_PRICE | MARK_PRICE
    #: USD-M STOP_MARKET / TAKE_PROFIT_MARKET through "order" (/fapi/v1/order) or "algo" (/fapi/v1/algoOrder,
    #: where Binance moved conditional orders in December 2025; the old endpoint then answers -4120)
    conditional_api: str = "order"

    def __post_init__(self) -> None:
        if self.market not in _MARKETS:
            raise ValueError(f"market: {self.market!r} is not one of {sorted(_MARKETS)}")
        if not 0 < self.recv_window_ms <= MAX_RECV_WINDOW_MS:
            raise ValueError(f"recv_window_ms: must be in (0, {MAX_RECV_WINDOW_MS}], got {self.recv_window_ms}")
        for name in ("submit_attempts", "read_attempts"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s: must be > 0, got {self.timeout_s}")
        if self.stream_api not in ("auto", "ws-api", "listen-key"):
            raise ValueError(f"stream_api: {self.stream_api!r} is not 'auto', 'ws-api' or 'listen-key'")
        if self.stream_api == "ws-api" and self.market != SPOT:
            raise ValueError("stream_api: 'ws-api' user-data subscriptions are spot only; USD-M uses 'listen-key'")
        if self.conditional_api not in ("order", "algo"):
            raise ValueError(f"conditional_api: {self.conditional_api!r} is not 'order' or 'algo'")
        if self.working_type not in ("CONTRACT_PRICE", "MARK_PRICE"):
            raise ValueError(f"working_type: {self.working_type!r} is not CONTRACT_PRICE or MARK_PRICE")

    @property
    def venue(self) -> str:
        return _MARKETS[self.market].venue

    @property
    def user_stream_api(self) -> str:
        """The user-data subscription in use: ``ws-api`` or ``listen-key``."""
        if self.stream_api != "auto":
            return self.stream_api
        return "ws-api" if self.market == SPOT else "listen-key"

    @classmethod
    def from_env(
        cls, market: str, *, env: Mapping[str, str] | None = None, prefix: str = "BINANCE_", **kw: Any
    ) -> BinanceConfig:
        """Key and secret from ``<prefix>API_KEY`` / ``<prefix>API_SECRET`` (e.g. a mounted Kubernetes Secret)."""
        src = os.environ if env is None else env
        missing = [f"{prefix}{n}" for n in ("API_KEY", "API_SECRET") if not src.get(f"{prefix}{n}")]
        if missing:
            raise ValueError(f"Binance credentials: environment variable(s) {', '.join(missing)} not set")
        return cls(market, src[f"{prefix}API_KEY"], src[f"{prefix}API_SECRET"], **kw)


def _code_msg(text: str) -> tuple[int | None, str]:
    try:
        d = json.loads(text)
        return int(d["code"]), str(d.get("msg", ""))
    except (ValueError, KeyError, TypeError):
        return None, text[:200]


class BinanceRestClient:
    """Signed requests with clock sync, rate limiting and retries where they are safe (see :meth:`request`)."""

    def __init__(
        self,
        config: BinanceConfig,
        *,
        clock: ServerClock | None = None,
        limiter: RateLimiter | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.config = config
        self.market = _MARKETS[config.market]
        self.base_url = (config.base_url or self.market.base_url).rstrip("/")
        self.creds = Credentials(config.api_key, config.api_secret)
        self.clock = clock or ServerClock()
        self.limiter = limiter or RateLimiter(self.market.limits, headroom=config.headroom, now=self.clock.now_s)
        self._session = session
        self._own_session = session is None
        self.requests = 0
        self.resyncs = 0

    async def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.config.timeout_s))
            self._own_session = True
        return self._session

    def weight(self, method: str, path: str, params: Params) -> int:
        if method == "GET" and path == self.market.open_orders and all(k != "symbol" for k, _ in params):
            return self.market.open_orders_all_weight
        return ENDPOINT_WEIGHTS.get((method, path), 1)

    async def request(
        self,
        method: str,
        path: str,
        params: Params = (),
        *,
        security: str = SIGNED,
        weight: int | None = None,
        orders: int = 0,
    ) -> Any:
        """Send one request and return its decoded JSON, or raise a :mod:`.binance_errors` exception.

        Retried here: a 429 (after waiting Retry-After; the request was not processed), a GET after a
        timeout or 5xx, and any signed request once after -1021 (after re-syncing the clock). A write that
        times out or gets a 5xx raises :class:`BinanceAmbiguousError`: only the caller knows how to check.
        """
        cost = self.weight(method, path, params) if weight is None else weight
        info = RequestInfo.of(method, path, params)
        resynced = False
        rate_retries = 0
        tries = 0
        while True:
            try:
                await self.limiter.acquire(cost, orders)
            except IpBannedError as e:
                raise BinanceBannedError(info, 418, None, str(e), e.until_s) from None
            if security == SIGNED:
                query = _signed_query(
                    params, self.creds, timestamp_ms=self.clock.now_ms(), recv_window_ms=self.config.recv_window_ms
                )
            else:
                query = encode_params(params)
            url = URL(f"{self.base_url}{path}" + (f"?{query}" if query else ""), encoded=True)
            headers = {"X-MBX-APIKEY": self.creds.api_key} if security != NONE else {}
            self.requests += 1
            tries += 1
            try:
                sess = await self.session()
                async with sess.request(method, url, headers=headers) as resp:
                    status, hdrs = resp.status, resp.headers
                    text = await resp.text()
            except (TimeoutError, aiohttp.ClientError) as e:
                if method == "GET" and tries < self.config.read_attempts:
                    await asyncio.sleep(0.05 * 2**tries)
                    continue
                raise BinanceAmbiguousError(info, 0, None, f"no answer ({type(e).__name__}: {e})") from e
            self.limiter.observe_headers(hdrs)
            if status == 429:
                ra = retry_after_s(hdrs)
                self.limiter.on_429(ra)
                code, msg = _code_msg(text)
                if rate_retries < self.config.rate_limit_retries:
                    rate_retries += 1
                    continue
                raise BinanceRateLimitError(info, status, code, msg, ra)
            if status == 418:
                self.limiter.on_418(retry_after_s(hdrs))
                code, msg = _code_msg(text)
                raise BinanceBannedError(info, status, code, msg, self.limiter.banned_until_s)
            if status >= 500:
                code, msg = _code_msg(text)
                if method == "GET" and tries < self.config.read_attempts:
                    await asyncio.sleep(0.05 * 2**tries)
                    continue
                raise BinanceAmbiguousError(info, status, code, msg)
            if status >= 400:
                code, msg = _code_msg(text)
                err = error_from_response(info, status, code, msg)
                if isinstance(err, BinanceTimestampError) and security == SIGNED and not resynced:
                    resynced = True
                    self.resyncs += 1
                    await self.sync_time()
                    continue
                raise err
            try:
                return json.loads(text) if text else {}
            except ValueError:
                raise BinanceAmbiguousError(info, status, None, f"undecodable answer {text[:200]!r}") from None

    async def server_time_ms(self) -> int:
        data = await self.request("GET", self.market.time, security=NONE)
        return int(data["serverTime"])

    async def sync_time(self) -> float:
        """Measure the clock offset against the server; returns it (ms)."""
        return await self.clock.sync(self.server_time_ms)

    async def exchange_info(self, symbols: Sequence[str] = ()) -> dict[str, Any]:
        params: list[tuple[str, str]] = []
        if symbols and self.config.market == SPOT:
            params.append(("symbols", json.dumps(list(symbols), separators=(",", ":"))))
        data = await self.request("GET", self.market.exchange_info, params, security=NONE)
        return dict(data)

    async def close(self) -> None:
        if self._session is not None and self._own_session and not self._session.closed:
            await self._session.close()

    def health(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "clock_offset_ms": round(self.clock.offset_ms, 1),
            "clock_rtt_ms": round(self.clock.rtt_ms, 1),
            "clock_syncs": self.clock.syncs,
            "resyncs": self.resyncs,
            "rate_limits": self.limiter.health(),
        }


@dataclass(slots=True)
class _Tracked:
    """What has been reported of one order: the de-duplication state of its reports."""

    symbol: str
    cum: float
    avg: float
    status: str
    venue_order_id: str


def _num(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def venue_order_from_json(d: Mapping[str, Any], *, cancel: bool = False) -> VenueOrder:
    """A REST order object (query, open orders, place or cancel answer) as a VenueOrder.

    Spot cancel answers carry the cancel request's own id in ``clientOrderId`` and the order's in
    ``origClientOrderId``; ``cancel=True`` picks the latter.
    """
    coid = str((d.get("origClientOrderId") if cancel else None) or d.get("clientOrderId", ""))
    qty, filled = _num(d.get("origQty")), _num(d.get("executedQty"))
    price = _num(d.get("price"))
    if not price > 0:
        price = _num(d.get("stopPrice"))
    avg = _num(d.get("avgPrice"))
    if not avg > 0:
        quote = _num(d.get("cummulativeQuoteQty", d.get("cumQuote")))
        avg = quote / filled if filled > 0 and quote > 0 else math.nan
    return VenueOrder(
        client_order_id=coid,
        symbol=str(d.get("symbol", "")),
        side=BUY if d.get("side") == "BUY" else SELL,
        qty=qty,
        filled_qty=filled if math.isfinite(filled) else 0.0,
        price=price if price > 0 else 0.0,
        status=str(d.get("status", "")),
        avg_price=avg,
    )


def _exchange_ts(d: Mapping[str, Any]) -> int:
    return _ts_ns(d, "transactTime", "updateTime", "time")


def _ts_ns(d: Mapping[str, Any], *keys: str) -> int:
    for k in keys:
        v = d.get(k)
        if isinstance(v, int | float) and v > 0:
            return int(v) * _MS_NS
    return 0


class BinanceVenue:
    """What spot and USD-M share: submit with idempotency, cancel, queries, reports. Use :func:`binance_venue`."""

    def __init__(
        self,
        config: BinanceConfig,
        *,
        rest: BinanceRestClient | None = None,
        clock: ServerClock | None = None,
        now_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.config = config
        self.rest = rest or BinanceRestClient(config, clock=clock)
        self._m = self.rest.market
        self._now_ns = now_ns
        self.filters: dict[str, SymbolFilters] = {}
        for s in config.symbols:
            with contextlib.suppress(ValueError):  # else loaded from exchangeInfo at start
                self.filters[s] = SymbolFilters.from_engine(config.venue, s)
        self._tracked: dict[str, _Tracked] = {}
        self._done: OrderedDict[tuple[str, str], None] = OrderedDict()  # (coid, order id) recently final
        self._reports: deque[ExecutionReport] = deque()
        self._wake = asyncio.Event()
        self._stream: UserDataStream | WsApiUserDataStream | None = None
        self.counts: dict[str, int] = {p.value: 0 for p in Placement}
        self.counts.update(resent=0, reports=0, duplicate_reports=0, polls=0)
        self.last_poll_error = ""

    @property
    def venue(self) -> str:
        return self._m.venue

    # --- lifecycle -----------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Sync the clock, load filters and rate limits from exchangeInfo, open the user-data stream."""
        await self.rest.sync_time()
        if self.config.load_exchange_info:
            info = await self.rest.exchange_info(self.config.symbols)
            limits = parse_rate_limits(info.get("rateLimits", ()))
            if limits:
                self.rest.limiter.set_limits(limits)
            wanted = set(self.config.symbols)
            for s in info.get("symbols", ()):
                if not wanted or s.get("symbol") in wanted:
                    self.filters[str(s["symbol"])] = SymbolFilters.from_exchange_info(s)
            missing = sorted(wanted - set(self.filters))
            if missing:
                raise ValueError(f"exchangeInfo has no symbol(s) {', '.join(missing)} on {self.venue}")
        if self.config.user_stream and self.config.user_stream_api == "ws-api":
            self._stream = WsApiUserDataStream(
                ws_api_url=self.config.ws_api_url or SPOT_WS_API_URL,
                session=await self.rest.session(),
                creds=self.rest.creds,
                clock=self.rest.clock,
                recv_window_ms=self.config.recv_window_ms,
                on_message=self._on_stream_message,
                on_connect=self._on_stream_connect,
            )
            await self._stream.start(timeout_s=self.config.timeout_s)
        elif self.config.user_stream:
            self._stream = UserDataStream(
                ws_url=self.config.ws_url or self._m.ws_url,
                session=await self.rest.session(),
                create_key=self._create_listen_key,
                keepalive_key=self._keepalive_listen_key,
                close_key=self._close_listen_key,
                on_message=self._on_stream_message,
                on_connect=self._on_stream_connect,
                keepalive_s=self.config.keepalive_s,
            )
            await self._stream.start(timeout_s=self.config.timeout_s)

    async def close(self) -> None:
        if self._stream is not None:
            await self._stream.close()
            self._stream = None
        await self.rest.close()

    async def __aenter__(self) -> BinanceVenue:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- orders --------------------------------------------------------------------------------------------
    def symbol_filters(self, symbol: str) -> SymbolFilters:
        f = self.filters.get(symbol)
        if f is None:
            raise OrderValidationError(
                f"symbol: no exchange filters for {symbol} on {self.venue} (add it to BinanceConfig.symbols)"
            )
        return f

    def order_params(self, order: OrderSpec) -> list[tuple[str, str]]:
        """The request parameters of ``order`` (formatted to the symbol's filters), without signing fields."""
        raise NotImplementedError

    async def submit(self, order: OrderSpec) -> OrderAck:
        params = self.order_params(order)
        coid, symbol = order.client_order_id, order.symbol

        async def send() -> dict[str, Any]:
            return dict(await self.rest.request("POST", self._m.order, params, orders=1))

        send_ts = self._now_ns()
        raw, placement = await self._idempotent(send, lambda: self._fetch_raw(symbol, coid), coid)
        o = venue_order_from_json(raw)
        self._track(o, baseline=0.0, venue_order_id=str(raw.get("orderId", "")))
        return OrderAck(o, str(raw.get("orderId", "")), placement, send_ts, self._now_ns(), _exchange_ts(raw))

    async def submit_oco(self, oco: OcoSpec) -> tuple[OrderAck, OrderAck]:
        raise UnsupportedOrderError(
            f"{self.venue} has no OCO order lists: send the stop and the take-profit as reduce-only "
            "STOP_MARKET and TAKE_PROFIT_MARKET orders and cancel the survivor when one fills"
        )

    async def _idempotent(
        self, send: Callable[[], Awaitable[T]], find: Callable[[], Awaitable[T | None]], what: str
    ) -> tuple[T, Placement]:
        """Send; on a duplicate answer or an ambiguous failure, find what the venue has before resending."""
        last: BinanceError | None = None
        for attempt in range(self.config.submit_attempts):
            if attempt:
                self.counts["resent"] += 1
            try:
                result = await send()
                self.counts[Placement.PLACED.value] += 1
                return result, Placement.PLACED
            except BinanceDuplicateOrderError as e:
                found = await find()
                if found is None:
                    raise OrderStateUnknownError(f"{e}; but no order {what} was found by querying") from e
                self.counts[Placement.DUPLICATE.value] += 1
                return found, Placement.DUPLICATE
            except BinanceAmbiguousError as e:
                last = e
                await asyncio.sleep(self.config.settle_s)
                found = await find()
                if found is not None:
                    self.counts[Placement.RECOVERED.value] += 1
                    return found, Placement.RECOVERED
        raise OrderStateUnknownError(
            f"order {what}: {self.config.submit_attempts} ambiguous attempts and the venue does not list it; "
            f"last error: {last}"
        ) from last

    async def _fetch(self, symbol: str, coid: str) -> VenueOrder | None:
        got = await self._fetch_raw(symbol, coid)
        return None if got is None else venue_order_from_json(got)

    async def _fetch_raw(self, symbol: str, coid: str) -> dict[str, Any] | None:
        try:
            data = await self.rest.request("GET", self._m.order, [("symbol", symbol), ("origClientOrderId", coid)])
        except BinanceUnknownOrderError:
            return None
        return dict(data)

    async def order_status(self, symbol: str, client_order_id: str) -> VenueOrder | None:
        return await self._fetch(symbol, client_order_id)

    async def cancel(self, symbol: str, client_order_id: str) -> VenueOrder:
        params = [("symbol", symbol), ("origClientOrderId", client_order_id)]
        last: BinanceError | None = None
        for _ in range(self.config.submit_attempts):
            try:
                data = await self.rest.request("DELETE", self._m.order, params)
            except BinanceUnknownOrderError as e:
                found = await self._fetch(symbol, client_order_id)
                if found is None:
                    raise
                if found.is_open:  # listed yet "unknown": an order list leg being cancelled; retry
                    last = e
                    continue
                return found  # already final: filled, cancelled or expired
            except BinanceAmbiguousError as e:
                last = e
                await asyncio.sleep(self.config.settle_s)
                found = await self._fetch(symbol, client_order_id)
                if found is None:
                    raise UnknownOrderError(f"cancel {client_order_id}: the venue does not know it ({e})") from e
                if not found.is_open:
                    return found
                continue
            return self._cancel_answer(data, client_order_id)
        raise OrderStateUnknownError(f"cancel {client_order_id} on {symbol}: still open after retries ({last})")

    def _cancel_answer(self, data: Mapping[str, Any], coid: str) -> VenueOrder:
        reports = data.get("orderReports")
        if isinstance(reports, list):  # spot: cancelling one leg of an order list cancels the list
            for r in reports:
                if coid in (r.get("origClientOrderId"), r.get("clientOrderId")):
                    return venue_order_from_json(r, cancel=True)
        return venue_order_from_json(data, cancel=True)

    async def open_orders(self, symbol: str | None = None) -> list[VenueOrder]:
        params = [("symbol", symbol)] if symbol else []
        data = await self.rest.request("GET", self._m.open_orders, params)
        return [self._listed(d) for d in data]

    def _listed(self, d: Mapping[str, Any]) -> VenueOrder:
        """An order from a listing; ours are tracked from their current fill on (the reconciler has the past)."""
        o = venue_order_from_json(d)
        if is_ours(o.client_order_id):
            self._track(o, baseline=o.filled_qty, venue_order_id=str(d.get("orderId", "")))
        return o

    async def positions(self) -> list[VenuePosition]:
        raise NotImplementedError

    # --- reports -------------------------------------------------------------------------------------------
    def _track(self, o: VenueOrder, *, baseline: float, venue_order_id: str = "") -> None:
        """Start tracking ``o`` (its fills above ``baseline`` are still to be reported)."""
        coid = o.client_order_id
        if coid not in self._tracked and (coid, venue_order_id) not in self._done:  # the stream may be ahead
            self._tracked[coid] = _Tracked(o.symbol, baseline, math.nan, "", venue_order_id)

    def _accept(self, r: ExecutionReport) -> None:
        """Queue ``r`` unless it repeats what was reported (by cumulative quantity); update the tracking."""
        t = self._tracked.get(r.client_order_id)
        if t is None:
            t = _Tracked(r.symbol, max(0.0, r.cum_qty - r.qty), math.nan, "", r.venue_order_id)
            self._tracked[r.client_order_id] = t
        if r.qty > 0:
            new = r.cum_qty - t.cum
            if new <= _EPS * max(1.0, r.cum_qty):
                if r.status == t.status or not r.is_final:
                    self.counts["duplicate_reports"] += 1
                    return
                r = replace(r, qty=0.0, price=math.nan, fee=0.0, fee_quote=0.0, trade_id="", exec_type=r.status)
            elif abs(new - r.qty) > _EPS * max(1.0, r.cum_qty):
                r = replace(r, qty=new)  # part of it was reported by a poll already
        elif r.status == t.status and r.cum_qty <= t.cum:
            self.counts["duplicate_reports"] += 1
            return
        t.cum, t.status = max(t.cum, r.cum_qty), r.status
        if math.isfinite(r.avg_price):
            t.avg = r.avg_price
        if r.is_final:
            del self._tracked[r.client_order_id]
            self._done[(r.client_order_id, r.venue_order_id)] = None
            while len(self._done) > _DONE_KEEP:
                self._done.popitem(last=False)
        self._reports.append(r)
        self.counts["reports"] += 1
        self._wake.set()

    def _on_stream_message(self, msg: Mapping[str, Any]) -> None:
        r = parse_user_event(msg, self.venue, self.filters)
        if r is not None and r.client_order_id:
            self._accept(r)

    async def _on_stream_connect(self) -> None:
        await self._poll_once()  # whatever happened while the stream was down

    async def _poll_once(self, only: frozenset[str] | None = None) -> None:
        self.counts["polls"] += 1
        for coid, t in list(self._tracked.items()):
            if only is not None and coid not in only:
                continue
            try:
                raw = await self._fetch_raw(t.symbol, coid)
            except BinanceError as e:
                self.last_poll_error = str(e)
                continue
            if raw is None:
                continue
            o = venue_order_from_json(raw)
            new = o.filled_qty - t.cum
            if new <= _EPS * max(1.0, o.filled_qty) and o.status == t.status:
                continue
            if new > _EPS * max(1.0, o.filled_qty):
                if math.isfinite(o.avg_price) and math.isfinite(t.avg) and t.cum > 0:
                    price = (o.avg_price * o.filled_qty - t.avg * t.cum) / new
                else:
                    price = o.fill_price
                qty, exec_type = new, "TRADE"
            elif o.status == "NEW" or not o.status:
                t.status = o.status
                continue
            else:
                qty, price, exec_type = 0.0, math.nan, o.status
            self._accept(
                ExecutionReport(
                    venue=self.venue,
                    symbol=o.symbol,
                    client_order_id=coid,
                    venue_order_id=str(raw.get("orderId", "")),
                    side=o.side,
                    order_type=str(raw.get("type", "")),
                    exec_type=exec_type,
                    status=o.status,
                    qty=qty,
                    price=price,
                    cum_qty=o.filled_qty,
                    order_qty=o.qty,
                    avg_price=o.avg_price,
                    fee=0.0,
                    fee_asset="",
                    fee_quote=math.nan if qty > 0 else 0.0,
                    is_maker=False,
                    trade_id="",
                    exchange_ts=_ts_ns(raw, "updateTime", "time", "transactTime"),
                    reduce_only=bool(raw.get("reduceOnly", False)),
                    source="poll",
                )
            )

    @property
    def streaming(self) -> bool:
        return self._stream is not None and self._stream.connected.is_set()

    async def next_reports(self, timeout_s: float) -> list[ExecutionReport]:
        """Reports since the last call. With the stream up, waits for it; otherwise polls the tracked
        orders every ``poll_interval_s`` until something is reported or ``timeout_s`` has passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout_s)
        while True:
            self._release_held()
            if self._reports:
                break
            if not self.streaming and self._tracked:
                await self._poll_once()
                if self._reports:
                    break
            left = deadline - loop.time()
            if left <= 0:
                break
            wait = left if self.streaming and not self._holding() else min(left, self.config.poll_interval_s)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
        out = list(self._reports)
        self._reports.clear()
        return out

    def _holding(self) -> bool:
        """Whether stream reports are held back for a moment (see :class:`BinanceUsdmVenue`)."""
        return False

    def _release_held(self) -> None:
        """Queue held reports whose time is up."""

    # --- user-data stream keys -----------------------------------------------------------------------------
    async def _create_listen_key(self) -> str:
        data = await self.rest.request("POST", self._m.listen_key, security=KEY)
        return str(data["listenKey"])

    async def _keepalive_listen_key(self, key: str) -> None:
        params = [("listenKey", key)] if self.config.market == SPOT else []
        await self.rest.request("PUT", self._m.listen_key, params, security=KEY)

    async def _close_listen_key(self, key: str) -> None:
        params = [("listenKey", key)] if self.config.market == SPOT else []
        await self.rest.request("DELETE", self._m.listen_key, params, security=KEY)

    def health(self) -> dict[str, Any]:
        return {
            "venue": self.venue,
            "streaming": self.streaming,
            "stream": self._stream.health() if self._stream is not None else None,
            "tracked_orders": len(self._tracked),
            "counts": dict(self.counts),
            "last_poll_error": self.last_poll_error,
            **self.rest.health(),
        }


class BinanceSpotVenue(BinanceVenue):
    """Binance spot: MARKET, LIMIT (GTX → LIMIT_MAKER), STOP_LOSS / TAKE_PROFIT triggers, OCO exits."""

    _TYPES: Final = {
        OrderType.MARKET: "MARKET",
        OrderType.LIMIT: "LIMIT",
        OrderType.STOP_MARKET: "STOP_LOSS",
        OrderType.TAKE_PROFIT_MARKET: "TAKE_PROFIT",
    }

    def order_params(self, order: OrderSpec) -> list[tuple[str, str]]:
        f = self.symbol_filters(order.symbol)
        qty = f.qty(order.qty)
        kind = OrderType(order.order_type)
        tif = TimeInForce(order.time_in_force)
        vtype = self._TYPES[kind]
        if kind is OrderType.LIMIT and tif is TimeInForce.GTX:
            vtype = "LIMIT_MAKER"
        p: list[tuple[str, str]] = [
            ("symbol", order.symbol),
            ("side", "BUY" if order.side == BUY else "SELL"),
            ("type", vtype),
        ]
        if vtype == "LIMIT":
            p.append(("timeInForce", tif.value))
        p.append(("quantity", plain(qty)))
        if order.price is not None:
            price = f.price(order.price)
            f.check_notional(qty, price)
            p.append(("price", plain(price)))
        if order.stop_price is not None:
            stop = f.price(order.stop_price, "stop_price")
            f.check_notional(qty, stop)
            p.append(("stopPrice", plain(stop)))
        p.append(("newClientOrderId", order.client_order_id))
        p.append(("newOrderRespType", "RESULT"))
        return p

    def oco_params(self, oco: OcoSpec) -> list[tuple[str, str]]:
        f = self.symbol_filters(oco.symbol)
        qty = f.qty(oco.qty)
        tp = f.price(oco.take_profit_price, "take_profit_price")
        stop = f.price(oco.stop_price, "stop_price")
        f.check_notional(qty, min(tp, stop))
        if (oco.side == SELL and tp <= stop) or (oco.side == BUY and tp >= stop):
            raise OrderValidationError(f"take_profit_price: {tp} and stop_price {stop} coincide at tick {f.tick_size}")
        tp_leg = [("Type", "LIMIT_MAKER"), ("Price", plain(tp)), ("ClientOrderId", oco.take_profit_client_order_id)]
        stop_leg = [("Type", "STOP_LOSS"), ("StopPrice", plain(stop)), ("ClientOrderId", oco.stop_client_order_id)]
        above, below = (tp_leg, stop_leg) if oco.side == SELL else (stop_leg, tp_leg)
        return [
            ("symbol", oco.symbol),
            ("side", "BUY" if oco.side == BUY else "SELL"),
            ("quantity", plain(qty)),
            ("listClientOrderId", oco.list_client_order_id),
            *((f"above{k}", v) for k, v in above),
            *((f"below{k}", v) for k, v in below),
            ("newOrderRespType", "RESULT"),
        ]

    async def submit_oco(self, oco: OcoSpec) -> tuple[OrderAck, OrderAck]:
        params = self.oco_params(oco)
        ids = (oco.take_profit_client_order_id, oco.stop_client_order_id)

        async def send() -> tuple[dict[str, Any], dict[str, Any]]:
            data = await self.rest.request("POST", "/api/v3/orderList/oco", params, orders=2)
            legs = {str(r.get("clientOrderId")): dict(r) for r in data.get("orderReports", ())}
            missing = [i for i in ids if i not in legs]
            if missing:
                raise BinanceAmbiguousError(
                    RequestInfo.of("POST", "/api/v3/orderList/oco", params), 200, None, f"answer lacks legs {missing}"
                )
            return legs[ids[0]], legs[ids[1]]

        async def find() -> tuple[dict[str, Any], dict[str, Any]] | None:
            tp, stop = await self._fetch_raw(oco.symbol, ids[0]), await self._fetch_raw(oco.symbol, ids[1])
            if tp is None and stop is None:
                return None
            if tp is None or stop is None:
                raise OrderStateUnknownError(f"OCO {oco.list_client_order_id}: only one leg is at the venue")
            return tp, stop

        send_ts = self._now_ns()
        legs, placement = await self._idempotent(send, find, oco.list_client_order_id)
        ack_ts = self._now_ns()
        acks = []
        for raw in legs:
            o, vid = venue_order_from_json(raw), str(raw.get("orderId", ""))
            self._track(o, baseline=0.0, venue_order_id=vid)
            acks.append(OrderAck(o, vid, placement, send_ts, ack_ts, _exchange_ts(raw)))
        return acks[0], acks[1]

    async def positions(self) -> list[VenuePosition]:
        """Base-asset holdings (free + locked) of the traded symbols, entry price unknown (NaN).

        Spot has no positions: a dedicated (sub-)account makes its holdings the strategy's position.
        """
        data = await self.rest.request("GET", "/api/v3/account", [("omitZeroBalances", "true")])
        held = {str(b["asset"]): _num(b.get("free")) + _num(b.get("locked")) for b in data.get("balances", ())}
        out = []
        for sym, f in sorted(self.filters.items()):
            qty = held.get(f.base_asset, 0.0)
            if qty > 0:
                out.append(VenuePosition(sym, qty, math.nan))
        return out


ALGO_ORDER: Final = "/fapi/v1/algoOrder"
HOLD_S: Final = 2.0  #: how long a report of an unnamed order may wait for its algo order (s)
OPEN_ALGO_ORDERS: Final = "/fapi/v1/openAlgoOrders"
_CONDITIONAL: Final = (OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET)
#: Algo statuses that end the conditional order without an actual order (FINISHED: see the actual order).
_ALGO_FINAL: Final = frozenset({"CANCELED", "EXPIRED", "REJECTED"})


class BinanceUsdmVenue(BinanceVenue):
    """Binance USD-M futures: MARKET, LIMIT (GTX post-only), STOP_MARKET / TAKE_PROFIT_MARKET, reduceOnly.

    With ``conditional_api="algo"`` the conditional orders go to the Algo Order API: ``clientAlgoId`` is our
    client order id, and the order the venue places when it triggers (its "actual order") is mapped back to
    it — through ``actualOrderId`` of the algo order, learned from ``ALGO_UPDATE`` events or by querying. A
    fill of an actual order the stream cannot name yet makes the adapter poll its algo orders, so the fill
    is reported (once) either way.
    """

    def __init__(self, config: BinanceConfig, **kw: Any) -> None:
        super().__init__(config, **kw)
        self._algo_ids: set[str] = set()  #: client ids known to be algo orders
        self._actual: dict[str, str] = {}  #: actual order id → client algo id
        self._algo_poll: asyncio.Task[None] | None = None
        #: stream reports of orders that may be the actual order of a triggered algo order, held until the
        #: algo order names them (or HOLD_S passes: then they are someone else's and go out as they are)
        self._held: dict[str, tuple[float, list[ExecutionReport]]] = {}

    @property
    def uses_algo(self) -> bool:
        return self.config.conditional_api == "algo"

    def order_params(self, order: OrderSpec) -> list[tuple[str, str]]:
        f = self.symbol_filters(order.symbol)
        qty = f.qty(order.qty)
        kind = OrderType(order.order_type)
        p: list[tuple[str, str]] = [
            ("symbol", order.symbol),
            ("side", "BUY" if order.side == BUY else "SELL"),
            ("type", kind.value),
        ]
        if kind is OrderType.LIMIT:
            p.append(("timeInForce", TimeInForce(order.time_in_force).value))
        p.append(("quantity", plain(qty)))
        if order.price is not None:
            price = f.price(order.price)
            if not order.reduce_only:
                f.check_notional(qty, price)
            p.append(("price", plain(price)))
        if order.stop_price is not None:
            stop = f.price(order.stop_price, "stop_price")
            if not order.reduce_only:
                f.check_notional(qty, stop)
            p.append(("stopPrice", plain(stop)))
            p.append(("workingType", self.config.working_type))
        if order.reduce_only:
            p.append(("reduceOnly", "true"))
        p.append(("newClientOrderId", order.client_order_id))
        p.append(("newOrderRespType", "RESULT"))
        return p

    def algo_params(self, order: OrderSpec) -> list[tuple[str, str]]:
        """The Algo Order API parameters of a conditional order (``triggerPrice``, ``clientAlgoId``)."""
        p = dict(self.order_params(order))
        out = [("algoType", "CONDITIONAL")]
        out += [(k, p[k]) for k in ("symbol", "side", "type", "quantity")]
        out += [("triggerPrice", p["stopPrice"]), ("workingType", p["workingType"])]
        if order.reduce_only:
            out.append(("reduceOnly", "true"))
        out.append(("clientAlgoId", order.client_order_id))
        return out

    async def submit(self, order: OrderSpec) -> OrderAck:
        if not (self.uses_algo and OrderType(order.order_type) in _CONDITIONAL):
            return await super().submit(order)
        params = self.algo_params(order)
        coid = order.client_order_id
        self._algo_ids.add(coid)

        async def send() -> dict[str, Any]:
            return await self._algo_as_order(await self.rest.request("POST", ALGO_ORDER, params, orders=1))

        send_ts = self._now_ns()
        raw, placement = await self._idempotent(send, lambda: self._fetch_algo_raw(coid), coid)
        o = venue_order_from_json(raw)
        self._track(o, baseline=0.0, venue_order_id=str(raw.get("orderId", "")))
        return OrderAck(o, str(raw.get("orderId", "")), placement, send_ts, self._now_ns(), _exchange_ts(raw))

    async def _algo_as_order(self, a: Mapping[str, Any]) -> dict[str, Any]:
        """An algo order in the shape of an order: its actual order's fills and status once it triggered."""
        coid = str(a.get("clientAlgoId", ""))
        status = str(a.get("algoStatus", ""))
        d: dict[str, Any] = {
            "clientOrderId": coid,
            "orderId": a.get("algoId", ""),
            "symbol": a.get("symbol", ""),
            "side": a.get("side", ""),
            "type": a.get("orderType", ""),
            "origQty": a.get("quantity", "0"),
            "executedQty": "0",
            "price": a.get("price", "0"),
            "stopPrice": a.get("triggerPrice", "0"),
            "reduceOnly": a.get("reduceOnly", False),
            "updateTime": a.get("updateTime", 0),
            "status": status if status in _ALGO_FINAL else "NEW",
            "algoStatus": status,
        }
        actual = str(a.get("actualOrderId") or "")
        if actual and status not in _ALGO_FINAL:
            self._map_actual(actual, coid)
            try:
                act = await self.rest.request("GET", self._m.order, [("symbol", str(d["symbol"])), ("orderId", actual)])
            except BinanceUnknownOrderError:
                return d  # triggered, the actual order not visible yet
            d.update({k: act[k] for k in ("executedQty", "avgPrice", "status", "updateTime") if k in act})
        return d

    async def _fetch_algo_raw(self, coid: str) -> dict[str, Any] | None:
        try:
            a = await self.rest.request("GET", ALGO_ORDER, [("clientAlgoId", coid)])
        except BinanceUnknownOrderError:
            return None
        self._algo_ids.add(coid)
        return await self._algo_as_order(a)

    async def _fetch_raw(self, symbol: str, coid: str) -> dict[str, Any] | None:
        if coid in self._algo_ids:
            return await self._fetch_algo_raw(coid)
        raw = await super()._fetch_raw(symbol, coid)
        if raw is None and self.uses_algo:
            raw = await self._fetch_algo_raw(coid)
        return raw

    async def cancel(self, symbol: str, client_order_id: str) -> VenueOrder:
        coid = client_order_id
        if self.uses_algo and coid not in self._algo_ids and await super()._fetch_raw(symbol, coid) is None:
            await self._fetch_algo_raw(coid)  # learns whether it is an algo order
        if coid not in self._algo_ids:
            return await super().cancel(symbol, coid)
        try:
            await self.rest.request("DELETE", ALGO_ORDER, [("clientAlgoId", coid)])
        except BinanceUnknownOrderError:
            pass  # already triggered or over: what the venue has decides
        except BinanceAmbiguousError:
            await asyncio.sleep(self.config.settle_s)
        raw = await self._fetch_algo_raw(coid)
        if raw is None:
            raise UnknownOrderError(f"cancel {coid}: the venue knows no such algo order")
        if raw.get("algoStatus") == "NEW":
            raise OrderStateUnknownError(f"cancel {coid}: the algo order is still working after the cancel")
        return venue_order_from_json(raw)

    async def open_orders(self, symbol: str | None = None) -> list[VenueOrder]:
        out = await super().open_orders(symbol)
        if self.uses_algo:
            params = [("symbol", symbol)] if symbol else []
            data = await self.rest.request("GET", OPEN_ALGO_ORDERS, params, weight=1 if symbol else 40)
            for a in data:
                self._algo_ids.add(str(a.get("clientAlgoId", "")))
                out.append(self._listed(await self._algo_as_order(a)))
        return out

    def _on_stream_message(self, msg: Mapping[str, Any]) -> None:
        ev = unwrap(msg)
        if ev.get("e") == "ALGO_UPDATE":
            self._on_algo_update(ev)
            return
        r = parse_user_event(msg, self.venue, self.filters)
        if r is None or not r.client_order_id:
            return
        caid = self._actual.get(r.venue_order_id)
        if caid is not None:
            if r.exec_type != "NEW":  # the algo order's own placement was its NEW
                self._accept(replace(r, client_order_id=caid))
            return
        if not is_ours(r.client_order_id) and any(c in self._tracked for c in self._algo_ids):
            # perhaps the order a triggered algo order placed, before the ALGO_UPDATE that names it
            deadline, held = self._held.get(r.venue_order_id, (time.monotonic() + HOLD_S, []))
            held.append(r)
            self._held[r.venue_order_id] = (deadline, held)
            if r.is_fill:
                self._poll_algo_soon()
            return
        self._accept(r)

    def _map_actual(self, actual: str, coid: str) -> None:
        """``actual`` is the order algo order ``coid`` placed: its held reports become ``coid``'s."""
        self._actual[actual] = coid
        _, held = self._held.pop(actual, (0.0, []))
        for r in held:
            if r.exec_type != "NEW":
                self._accept(replace(r, client_order_id=coid))

    def _holding(self) -> bool:
        return bool(self._held)

    def _release_held(self) -> None:
        now = time.monotonic()
        for oid, (deadline, held) in list(self._held.items()):
            if now >= deadline:
                del self._held[oid]
                for r in held:
                    self._accept(r)

    def _on_algo_update(self, ev: Mapping[str, Any]) -> None:
        o = ev.get("o")
        if not isinstance(o, Mapping):
            return
        coid, status, actual = str(o.get("caid", "")), str(o.get("X", "")), str(o.get("ai") or "")
        self._algo_ids.add(coid)
        if actual:
            self._map_actual(actual, coid)
        if status not in _ALGO_FINAL:
            return  # NEW / TRIGGERING / TRIGGERED / FINISHED: the actual order's events carry the rest
        t = self._tracked.get(coid)
        self._accept(
            ExecutionReport(
                venue=self.venue,
                symbol=str(o.get("s", "")),
                client_order_id=coid,
                venue_order_id=str(o.get("aid", "")),
                side=BUY if o.get("S") == "BUY" else SELL,
                order_type=str(o.get("o", "")),
                exec_type=status,
                status=status,
                qty=0.0,
                price=math.nan,
                cum_qty=t.cum if t is not None else 0.0,
                order_qty=_num(o.get("q")),
                avg_price=math.nan,
                fee=0.0,
                fee_asset="",
                fee_quote=0.0,
                is_maker=False,
                trade_id="",
                exchange_ts=int(_num(ev.get("T", ev.get("E", 0)))) * _MS_NS,
                reduce_only=bool(o.get("R", False)),
            )
        )

    def _poll_algo_soon(self) -> None:
        if self._algo_poll is None or self._algo_poll.done():
            only = frozenset(c for c in self._algo_ids if c in self._tracked)
            self._algo_poll = asyncio.get_running_loop().create_task(self._poll_once(only))

    async def close(self) -> None:
        if self._algo_poll is not None:
            self._algo_poll.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._algo_poll
        await super().close()

    async def positions(self) -> list[VenuePosition]:
        """Non-zero positions, one per symbol (hedge-mode legs are netted)."""
        data = await self.rest.request("GET", "/fapi/v2/positionRisk")
        net: dict[str, tuple[float, float]] = {}
        for p in data:
            amt = _num(p.get("positionAmt"))
            if not (math.isfinite(amt) and amt != 0.0):
                continue
            sym, px = str(p["symbol"]), _num(p.get("entryPrice"))
            q0, n0 = net.get(sym, (0.0, 0.0))
            net[sym] = (q0 + amt, n0 + abs(amt) * px)
        out = []
        for sym, (q, notional) in sorted(net.items()):
            if q != 0.0:
                gross = sum(abs(_num(p.get("positionAmt"))) for p in data if p.get("symbol") == sym)
                out.append(VenuePosition(sym, q, notional / gross if gross > 0 else math.nan))
        return out


def binance_venue(config: BinanceConfig, **kw: Any) -> BinanceVenue:
    """The adapter for ``config.market`` (spot or usdm)."""
    cls = BinanceSpotVenue if config.market == SPOT else BinanceUsdmVenue
    return cls(config, **kw)


__all__ = [
    "ENDPOINT_WEIGHTS",
    "SPOT",
    "USDM",
    "BinanceConfig",
    "BinanceRestClient",
    "BinanceSpotVenue",
    "BinanceUsdmVenue",
    "BinanceVenue",
    "binance_venue",
    "venue_order_from_json",
]
