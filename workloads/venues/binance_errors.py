"""Binance errors as exceptions that say what happened, which request it was, and what the caller may do.

Every error carries the HTTP status, Binance's ``code`` and ``msg`` and the request (method, path and the
parameters without ``signature``); the secret is never part of a request, and the API key travels in a
header that is not kept. The classes also derive from the generic venue errors of :mod:`.base`, so the
execute workload can handle every venue alike:

=========================  ==========================================  =======================================
class                      when                                         what the caller does
=========================  ==========================================  =======================================
BinanceAuthError           -1022 bad signature, -2014/-2015 bad key     fix the credentials; never retried
BinanceTimestampError      -1021 outside recvWindow / ahead of server   the client re-syncs and retries once
BinanceDuplicateOrderError -2010 "Duplicate order sent.", -4116         the order exists: it is queried
BinanceUnknownOrderError   -2013 does not exist, -2011 unknown order    the order is not at the venue
BinanceRejectedError       any other 4xx with a code                    refused; nothing placed
BinanceRateLimitError      429 past the retries                         wait ``retry_after_s``
BinanceBannedError         418                                          nothing is sent until ``until_s``
BinanceAmbiguousError      timeout, connection lost, 5xx on a write      query the order before resending
BinanceEndpointMovedError  -4120 conditional order on /fapi/v1/order    set conditional_api="algo"
=========================  ==========================================  =======================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from .base import OrderRejectedError, OrderStateUnknownError, UnknownOrderError, UnsupportedOrderError, VenueError

#: Request parameters never repeated in an error (signature: derived from the secret).
_HIDDEN: Final = frozenset({"signature"})
#: Parameters worth naming in a message, in this order.
_SHOWN: Final = ("symbol", "side", "type", "quantity", "price", "stopPrice", "newClientOrderId", "origClientOrderId")


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """A request as errors and logs show it: no signature, no headers."""

    method: str
    path: str
    params: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, method: str, path: str, params: Sequence[tuple[str, str]]) -> RequestInfo:
        return cls(method, path, tuple((k, v) for k, v in params if k not in _HIDDEN))

    def __str__(self) -> str:
        p = dict(self.params)
        shown = " ".join(f"{k}={p[k]}" for k in _SHOWN if k in p)
        return f"{self.method} {self.path}" + (f" [{shown}]" if shown else "")


class BinanceError(VenueError):
    """An error answer (or no answer) from Binance for ``request``."""

    def __init__(self, request: RequestInfo, status: int, code: int | None, msg: str) -> None:
        self.request, self.status, self.code, self.msg = request, status, code, msg
        what = f"Binance {code}: {msg}" if code is not None else f"Binance HTTP {status}: {msg}"
        super().__init__(f"{what} (HTTP {status}, {request})")


class BinanceAuthError(BinanceError):
    """Signature or API key refused (-1022, -2014, -2015): the credentials are wrong; never retried."""


class BinanceTimestampError(BinanceError):
    """-1021: the timestamp is outside recvWindow or ahead of the server (clock skew)."""


class BinanceRejectedError(BinanceError, OrderRejectedError):
    """The request was refused; nothing was placed or changed."""


class BinanceDuplicateOrderError(BinanceRejectedError):
    """An open order with this client order id exists already (-2010 "Duplicate order sent.", -4116)."""


class BinanceUnknownOrderError(BinanceError, UnknownOrderError):
    """-2013 "Order does not exist." / -2011 "Unknown order sent."."""


class BinanceEndpointMovedError(BinanceRejectedError, UnsupportedOrderError):
    """-4120: USD-M conditional orders go through the Algo Order API (``conditional_api="algo"``)."""


class BinanceRateLimitError(BinanceError):
    """429 past the client's retries; ``retry_after_s`` from the header (None when absent)."""

    def __init__(self, request: RequestInfo, status: int, code: int | None, msg: str, retry_after_s: float | None):
        super().__init__(request, status, code, msg)
        self.retry_after_s = retry_after_s


class BinanceBannedError(BinanceError):
    """418: the IP is banned until ``until_s`` (server time, seconds)."""

    def __init__(self, request: RequestInfo, status: int, code: int | None, msg: str, until_s: float):
        super().__init__(request, status, code, msg)
        self.until_s = until_s


class BinanceAmbiguousError(BinanceError, OrderStateUnknownError):
    """No definitive answer (timeout, lost connection, 5xx): the request may or may not have taken effect."""


AUTH_CODES: Final = frozenset({-1022, -2014, -2015})
TIMESTAMP_CODES: Final = frozenset({-1021})
UNKNOWN_ORDER_CODES: Final = frozenset({-2011, -2013})
DUPLICATE_CODES: Final = frozenset({-4116})
DUPLICATE_MSG: Final = "duplicate order sent"


def error_from_response(request: RequestInfo, status: int, code: int | None, msg: str) -> BinanceError:
    """The exception for a 4xx answer with Binance's ``code``/``msg`` (5xx, 429 and 418 are the client's)."""
    if code in AUTH_CODES or status == 401:
        return BinanceAuthError(request, status, code, msg)
    if code in TIMESTAMP_CODES:
        return BinanceTimestampError(request, status, code, msg)
    if code in DUPLICATE_CODES or (code == -2010 and DUPLICATE_MSG in msg.lower()):
        return BinanceDuplicateOrderError(request, status, code, msg)
    if code in UNKNOWN_ORDER_CODES or (code == -2010 and "unknown order" in msg.lower()):
        return BinanceUnknownOrderError(request, status, code, msg)
    if code == -4120:
        return BinanceEndpointMovedError(request, status, code, msg)
    return BinanceRejectedError(request, status, code, msg)
