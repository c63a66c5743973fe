"""The ingest workload: Binance market data (websocket + REST) → ``md.<venue>.<symbol>`` micro-batches.

Entry point: :class:`IngestSession` (``run(stop_event)`` in a process main, ``run_async(stop)`` in a loop,
``health()``), configured by :class:`IngestConfig`. The synchronous core is :class:`IngestPipeline`
(frames in, published batches and quality records out); the parts are small modules: :mod:`.streams`
(which streams on which connection, rotation deadline), :mod:`.backoff`, :mod:`.ws_client` (one
connection group), :mod:`.rest`, :mod:`.exchange_info`, :mod:`.pollers`, :mod:`.dedupe`,
:mod:`.publisher`, :mod:`.metrics`. ``docs/dataplane.md`` (ingest section) describes the behaviour.
"""

from .backoff import Backoff, backoff_ceiling, backoff_delay, wait_or_stop
from .config import ConfigError, IngestConfig
from .dedupe import OverlapDedupe, order_keys
from .exchange_info import ExchangeInfoCache, ExchangeInfoError, parse_exchange_info
from .metrics import BatchHistogram, IngestMetrics
from .pipeline import QUALITY_SCHEMA_VERSION, FlushResult, IngestPipeline, PoisonHandler, message_mask
from .pollers import PollError, mark_price_payloads, open_interest_events
from .publisher import MdEncoder, Publisher, next_seq, orjson_bytes
from .rest import RestClient, RestError
from .session import IngestSession
from .streams import combined_stream_url, rotation_deadline, split_streams
from .ws_client import StreamGroup

__all__ = [
    "QUALITY_SCHEMA_VERSION",
    "Backoff",
    "BatchHistogram",
    "ConfigError",
    "ExchangeInfoCache",
    "ExchangeInfoError",
    "FlushResult",
    "IngestConfig",
    "IngestMetrics",
    "IngestPipeline",
    "IngestSession",
    "MdEncoder",
    "OverlapDedupe",
    "PoisonHandler",
    "PollError",
    "Publisher",
    "RestClient",
    "RestError",
    "StreamGroup",
    "backoff_ceiling",
    "backoff_delay",
    "combined_stream_url",
    "mark_price_payloads",
    "message_mask",
    "next_seq",
    "open_interest_events",
    "order_keys",
    "orjson_bytes",
    "parse_exchange_info",
    "rotation_deadline",
    "split_streams",
    "wait_or_stop",
]
