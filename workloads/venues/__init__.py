"""Venue adapters: where the execute workload's orders go, and where its fills come from.

:mod:`.base` is the :class:`~.base.VenueAdapter` protocol with its order, acknowledgement and execution-report
types (the paper venue and Binance implement the same one); :mod:`.orders` builds an intent's orders.
:mod:`.binance_rest` is Binance spot and USD-M futures over signed REST (:mod:`.signing`), with rate-limit
accounting (:mod:`.weights`), filters (:mod:`.filters`), mapped errors (:mod:`.binance_errors`) and the
user-data stream (:mod:`.binance_stream`). User documentation: docs/dataplane.md, "Venues".
"""

from .base import (
    BUY,
    SELL,
    ExecutionReport,
    OcoSpec,
    OrderAck,
    OrderRejectedError,
    OrderSpec,
    OrderStateUnknownError,
    OrderType,
    OrderValidationError,
    Placement,
    TimeInForce,
    UnknownOrderError,
    UnsupportedOrderError,
    VenueAdapter,
    VenueError,
)
from .binance_errors import (
    BinanceAmbiguousError,
    BinanceAuthError,
    BinanceBannedError,
    BinanceDuplicateOrderError,
    BinanceEndpointMovedError,
    BinanceError,
    BinanceRateLimitError,
    BinanceRejectedError,
    BinanceTimestampError,
    BinanceUnknownOrderError,
)
from .binance_rest import (
    BinanceConfig,
    BinanceRestClient,
    BinanceSpotVenue,
    BinanceUsdmVenue,
    BinanceVenue,
    binance_venue,
)
from .filters import SymbolFilters
from .orders import entry_order, oco_list_id, protective_orders
from .signing import Credentials, ServerClock, hmac_signature, signed_query
from .weights import RateLimit, RateLimiter, parse_rate_limits

__all__ = [
    "BUY",
    "SELL",
    "BinanceAmbiguousError",
    "BinanceAuthError",
    "BinanceBannedError",
    "BinanceConfig",
    "BinanceDuplicateOrderError",
    "BinanceEndpointMovedError",
    "BinanceError",
    "BinanceRateLimitError",
    "BinanceRejectedError",
    "BinanceRestClient",
    "BinanceSpotVenue",
    "BinanceTimestampError",
    "BinanceUnknownOrderError",
    "BinanceUsdmVenue",
    "BinanceVenue",
    "Credentials",
    "ExecutionReport",
    "OcoSpec",
    "OrderAck",
    "OrderRejectedError",
    "OrderSpec",
    "OrderStateUnknownError",
    "OrderType",
    "OrderValidationError",
    "Placement",
    "RateLimit",
    "RateLimiter",
    "ServerClock",
    "SymbolFilters",
    "TimeInForce",
    "UnknownOrderError",
    "UnsupportedOrderError",
    "VenueAdapter",
    "VenueError",
    "binance_venue",
    "entry_order",
    "hmac_signature",
    "oco_list_id",
    "parse_rate_limits",
    "protective_orders",
    "signed_query",
]
