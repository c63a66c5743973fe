"""What an ingest process subscribes to, where, and how it behaves when the feed misbehaves.

Why one frozen dataclass validated up front: an ingest runs unattended for days, so a typo in a stream name
or a zero backoff must fail at start with the field named, not hours later as a reconnect storm. Every
duration is in seconds (floats), every size a plain int; :meth:`IngestConfig.from_mapping` builds one from a
JSON/YAML mapping and names unknown keys.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ...engine.binance import VENUE_COINM, VENUE_SPOT, VENUE_USDM
from ...engine.book import QualityConfig
from ..bus.topics import validate_topic

#: Public endpoints per venue (combined streams live under ``<ws_url>/stream``).
DEFAULT_WS_URLS: Final = {
    VENUE_SPOT: "wss://stream.binance.com:9443",
    VENUE_USDM: "wss://fstream.binance.com",
    VENUE_COINM: "wss://dstream.binance.com",
}
DEFAULT_REST_URLS: Final = {
    VENUE_SPOT: "https://api.binance.com",
    VENUE_USDM: "https://fapi.binance.com",
    VENUE_COINM: "https://dapi.binance.com",
}
#: REST path prefix per venue.
REST_PREFIX: Final = {VENUE_SPOT: "/api/v3", VENUE_USDM: "/fapi/v1", VENUE_COINM: "/dapi/v1"}
#: Binance's documented streams-per-connection limits (spot 1024, futures 200).
MAX_STREAMS: Final = {VENUE_SPOT: 1024, VENUE_USDM: 200, VENUE_COINM: 200}
#: Binance closes every connection after 24 h; rotate well before.
DEFAULT_MAX_AGE_S: Final = 23 * 3600.0

_SYMBOL: Final = re.compile(r"[A-Z0-9_]{2,30}")
_STREAM: Final = re.compile(r"[A-Za-z0-9_@!]{2,60}")


class ConfigError(ValueError):
    """An invalid ingest configuration; ``field`` names the setting at fault."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"ingest config {field_name}: {message}")
        self.field = field_name


@dataclass(frozen=True)
class IngestConfig:
    """One ingest process: one venue, its symbols and the streams each symbol subscribes to.

    ``streams`` are per-symbol stream suffixes (``depth@100ms`` becomes ``btcusdt@depth@100ms``).
    Durations are seconds; a poll interval of 0 turns that poller off.
    """

    venue: str
    symbols: tuple[str, ...]
    streams: tuple[str, ...] = ("depth@100ms", "bookTicker", "trade")
    ws_url: str = ""  #: default: Binance's public endpoint of the venue
    rest_url: str = ""
    name: str = ""  #: workload name (logs, quality records); default ``ingest-<venue>``
    quality_topic: str = ""  #: where gap/resync/disconnect records go; default ``audit.<name>``
    max_streams_per_connection: int = 0  #: 0: the venue's limit (MAX_STREAMS)
    max_connection_age_s: float = DEFAULT_MAX_AGE_S  #: rotate a connection after this long (Binance: 24 h)
    rotation_jitter_s: float = 300.0  #: rotations happen up to this much earlier, spread per connection
    rotation_overlap_s: float = 2.0  #: old and new connection both live this long after the new one's 1st frame
    open_timeout_s: float = 10.0  #: TCP + TLS + websocket handshake
    ping_interval_s: float | None = 20.0  #: client pings (None: only answer the server's)
    ping_timeout_s: float | None = 20.0  #: no pong within this → the connection is dead
    idle_timeout_s: float = 30.0  #: no data frame within this → the connection is dead (0: off; see the docs)
    backoff_base_s: float = 0.5  #: reconnect delay ceiling of the first retry
    backoff_cap_s: float = 8.0  #: the ceiling never exceeds this
    batch_max_ms: float = 2.0  #: decode at most this long after the first frame of a batch arrived
    batch_max_messages: int = 2048  #: ... or as soon as this many frames are waiting
    max_frame_bytes: int = 1 << 20
    snapshot_limit: int = 1000  #: levels per side of REST depth snapshots
    snapshot_min_interval_s: float = 1.0  #: per symbol, between two snapshot requests (REST weight)
    rest_timeout_s: float = 10.0
    exchange_info_refresh_s: float = 86400.0  #: tick/step sizes are re-read this often
    funding_poll_s: float = 60.0  #: premiumIndex poll (futures venues only); 0: off
    open_interest_poll_s: float = 60.0  #: openInterest poll (futures venues only); 0: off
    book_buffer_events: int = 16384  #: pre-snapshot buffer per symbol (BookConfig.buffer_events)
    quality: QualityConfig = field(default_factory=QualityConfig)
    mark_degraded: bool = True  #: set the DEGRADED flag on late/early events before publishing (QualityMonitor)
    max_publish_backlog: int = 10_000  #: records waiting for a full bus before frames stop being decoded

    def __post_init__(self) -> None:
        if self.venue not in DEFAULT_WS_URLS:
            raise ConfigError("venue", f"must be one of {', '.join(DEFAULT_WS_URLS)}, got {self.venue!r}")
        symbols = tuple(self.symbols)
        if not symbols:
            raise ConfigError("symbols", "at least one symbol is required")
        for s in symbols:
            if not isinstance(s, str) or not _SYMBOL.fullmatch(s):
                raise ConfigError("symbols", f"{s!r} is not an upper-case Binance symbol (e.g. BTCUSDT)")
        if len(set(symbols)) != len(symbols):
            raise ConfigError("symbols", f"duplicates in {list(symbols)}")
        object.__setattr__(self, "symbols", symbols)
        streams = tuple(self.streams)
        if not streams:
            raise ConfigError("streams", "at least one stream per symbol is required")
        for s in streams:
            if not isinstance(s, str) or not _STREAM.fullmatch(s) or s.startswith("@"):
                raise ConfigError("streams", f"{s!r} is not a stream suffix such as 'depth@100ms' or 'trade'")
            if s.startswith("kline"):
                raise ConfigError("streams", f"{s!r}: klines are bars, not events, and have no md topic")
        object.__setattr__(self, "streams", streams)
        if not self.ws_url:
            object.__setattr__(self, "ws_url", DEFAULT_WS_URLS[self.venue])
        if not self.rest_url:
            object.__setattr__(self, "rest_url", DEFAULT_REST_URLS[self.venue])
        object.__setattr__(self, "ws_url", self.ws_url.rstrip("/"))
        object.__setattr__(self, "rest_url", self.rest_url.rstrip("/"))
        if not self.ws_url.startswith(("ws://", "wss://")):
            raise ConfigError("ws_url", f"must start with ws:// or wss://, got {self.ws_url!r}")
        if not self.rest_url.startswith(("http://", "https://")):
            raise ConfigError("rest_url", f"must start with http:// or https://, got {self.rest_url!r}")
        if not self.name:
            object.__setattr__(self, "name", f"ingest-{self.venue}")
        if not self.quality_topic:
            object.__setattr__(self, "quality_topic", f"audit.{self.name}")
        try:
            validate_topic(self.quality_topic)
        except ValueError as exc:
            raise ConfigError("quality_topic", str(exc)) from None
        if self.max_streams_per_connection == 0:
            object.__setattr__(self, "max_streams_per_connection", MAX_STREAMS[self.venue])
        self._positive_int("max_streams_per_connection", "batch_max_messages", "max_frame_bytes", "snapshot_limit",
                           "book_buffer_events", "max_publish_backlog")  # fmt: skip
        self._positive("max_connection_age_s", "open_timeout_s", "backoff_base_s", "backoff_cap_s",
                       "batch_max_ms", "rest_timeout_s", "exchange_info_refresh_s")  # fmt: skip
        self._non_negative("idle_timeout_s", "rotation_jitter_s", "rotation_overlap_s", "snapshot_min_interval_s",
                           "funding_poll_s", "open_interest_poll_s")  # fmt: skip
        for name in ("ping_interval_s", "ping_timeout_s"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int | float) and value > 0):
                raise ConfigError(name, f"must be a number > 0 or None, got {value!r}")
        if self.backoff_cap_s < self.backoff_base_s:
            raise ConfigError("backoff_cap_s", f"{self.backoff_cap_s} is below backoff_base_s {self.backoff_base_s}")
        if self.rotation_jitter_s >= self.max_connection_age_s:
            raise ConfigError("rotation_jitter_s", f"must be below max_connection_age_s ({self.max_connection_age_s})")
        if not isinstance(self.quality, QualityConfig):
            raise ConfigError("quality", f"must be a QualityConfig, got {type(self.quality).__name__}")

    def _positive_int(self, *names: str) -> None:
        for name in names:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(name, f"must be an int ≥ 1, got {value!r}")

    def _positive(self, *names: str) -> None:
        for name in names:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ConfigError(name, f"must be a number > 0, got {value!r}")

    def _non_negative(self, *names: str) -> None:
        for name in names:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise ConfigError(name, f"must be a number ≥ 0, got {value!r}")

    @property
    def futures(self) -> bool:
        """USD-M / COIN-M: funding and open interest exist, diffs chain by ``pu``."""
        return self.venue != VENUE_SPOT

    @property
    def rest_prefix(self) -> str:
        return REST_PREFIX[self.venue]

    def stream_names(self) -> list[str]:
        """Every subscribed stream, symbol by symbol in config order: ``btcusdt@depth@100ms``, ..."""
        return [f"{s.lower()}@{suffix}" for s in self.symbols for suffix in self.streams]

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> IngestConfig:
        """Build from a JSON/YAML mapping; ``quality`` may be a mapping of QualityConfig fields. Unknown keys
        raise :class:`ConfigError` naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(unknown[0], f"unknown setting (known: {', '.join(sorted(known))})")
        kwargs = dict(data)
        for name in ("symbols", "streams"):
            if name in kwargs:
                value = kwargs[name]
                if isinstance(value, str) or not isinstance(value, list | tuple):
                    raise ConfigError(name, f"must be a list of strings, got {value!r}")
                kwargs[name] = tuple(value)
        quality = kwargs.get("quality")
        if isinstance(quality, Mapping):
            try:
                kwargs["quality"] = QualityConfig(**quality)
            except (TypeError, ValueError) as exc:
                raise ConfigError("quality", str(exc)) from None
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise ConfigError("?", str(exc)) from None
