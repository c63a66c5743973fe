"""The ingest workload: Binance websocket + REST in, market-data micro-batches and quality records out.

:class:`IngestSession` wires the parts on one asyncio loop:

* one :class:`~.ws_client.StreamGroup` per slice of streams (``max_streams_per_connection``), each
  reconnecting and rotating on its own;
* the micro-batcher: frames are buffered by :class:`~.pipeline.IngestPipeline` and flushed when
  ``batch_max_messages`` are waiting or ``batch_max_ms`` after the first one arrived, whichever comes
  first (a quiet feed is still published within a few ms);
* REST: a depth snapshot whenever the book asks for one (initial sync, gap, buffer overflow, gap ratio),
  one request in flight per symbol, retried with backoff; exchangeInfo at start and daily (tick sizes for
  the books); premiumIndex and openInterest polls on futures venues.

``run(stop_event)`` is the synchronous entry for a process main (``stop_event`` is set by the SIGTERM
handler); ``run_async(stop)`` the same inside an existing loop. Shutdown closes the connections, then
flushes what was received and drains the publisher, so nothing already read from a socket is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry

from ..bus.base import Bus
from ..bus.mdbatch import encode_md_batch
from .backoff import Backoff, wait_or_stop
from .config import IngestConfig
from .exchange_info import ExchangeInfoCache, ExchangeInfoError
from .metrics import IngestMetrics
from .pipeline import FlushResult, IngestPipeline, PoisonHandler
from .pollers import PollError, mark_price_payloads, open_interest_events
from .publisher import MdEncoder, QualityEncoder, orjson_bytes
from .rest import RestClient, RestError
from .streams import split_streams
from .ws_client import StreamGroup

log = logging.getLogger(__name__)

#: Attempts at exchangeInfo before the first connection (then the books infer ticks and a retry follows).
_INITIAL_INFO_ATTEMPTS = 3
#: Retry interval of a failed exchangeInfo refresh (seconds).
_INFO_RETRY_S = 60.0
#: How soon a refused publish is retried (seconds).
_DRAIN_RETRY_S = 0.01


class IngestSession:
    """One ingest process: see the module docstring. Single-threaded (one event loop) apart from
    :meth:`health` and the metrics, which other threads may read."""

    def __init__(
        self,
        config: IngestConfig,
        bus: Bus,
        *,
        encode: MdEncoder = encode_md_batch,
        encode_quality: QualityEncoder = orjson_bytes,
        registry: CollectorRegistry | None = None,
        on_poison: PoisonHandler | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.bus = bus
        self.metrics = IngestMetrics(registry)
        self.pipeline = IngestPipeline(config, bus, encode=encode, encode_quality=encode_quality,
                                       metrics=self.metrics, on_poison=on_poison)  # fmt: skip
        self.rng = rng if rng is not None else random.Random()
        self.exchange_info = ExchangeInfoCache(config.exchange_info_refresh_s)
        self.groups = [
            StreamGroup(
                i,
                streams,
                config,
                self,
                rng=random.Random(self.rng.random()),
                on_connect_failure=self.metrics.connect_failures.inc,
                on_reconnect=self.metrics.reconnects.inc,
                on_rotation=self.metrics.rotations.inc,
            )
            for i, streams in enumerate(split_streams(config.stream_names(), config.max_streams_per_connection))
        ]
        self.flushes = 0
        self.started_at: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._rest: RestClient | None = None
        self._flush_handle: asyncio.TimerHandle | None = None
        self._drain_handle: asyncio.TimerHandle | None = None
        self._resumed: asyncio.Event | None = None
        self._inflight: set[str] = set()
        self._last_snapshot: dict[str, float] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopped = threading.Event()
        self.metrics.connected_streams.set_function(self.connected_streams)

    def connected_streams(self) -> int:
        """Streams on an open connection (read at scrape time by ``ws_connected_streams``)."""
        return sum(len(g.streams) for g in self.groups if g.connected)

    # --- entry points ----------------------------------------------------------------------------------------

    def run(self, stop_event: threading.Event) -> None:
        """Run until ``stop_event`` is set (synchronous: for a process main; blocks this thread)."""

        async def main() -> None:
            stop = asyncio.Event()

            async def watch() -> None:
                while not stop_event.is_set() and not stop.is_set():
                    await asyncio.sleep(0.05)
                stop.set()

            watcher = asyncio.create_task(watch())
            try:
                await self.run_async(stop)
            finally:
                watcher.cancel()

        asyncio.run(main())

    async def run_async(self, stop: asyncio.Event) -> None:
        """Run on the current loop until ``stop`` is set; returns after the shutdown flush."""
        self._loop = asyncio.get_running_loop()
        self._stop = stop
        self._resumed = asyncio.Event()
        self._resumed.set()
        self.started_at = time.monotonic()
        c = self.config
        try:
            async with aiohttp.ClientSession() as http:
                self._rest = RestClient(http, c.rest_url, c.rest_prefix, timeout_s=c.rest_timeout_s)
                await self._initial_exchange_info(stop)
                workers = [asyncio.create_task(g.run(stop)) for g in self.groups]
                workers.append(asyncio.create_task(self._refresh_exchange_info(stop)))
                if c.futures and c.funding_poll_s > 0:
                    workers.append(asyncio.create_task(self._poll_funding(stop)))
                if c.futures and c.open_interest_poll_s > 0:
                    workers.append(asyncio.create_task(self._poll_open_interest(stop)))
                await stop.wait()
                await asyncio.gather(*workers, return_exceptions=True)
                for task in list(self._tasks):
                    task.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)
        finally:
            self._rest = None  # no new snapshot requests from the last flush: nothing would serve them
            self.flush()
            self.pipeline.publisher.drain()
            with contextlib.suppress(Exception):
                self.bus.flush()
            self._stopped.set()

    # --- GroupSink ---------------------------------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        return self._resumed is not None and not self._resumed.is_set()

    async def wait_resumed(self) -> None:
        if self._resumed is not None:
            await self._resumed.wait()

    def on_frame(self, payload: bytes, conn_id: int) -> None:
        n = self.pipeline.add_frame(payload, conn_id)
        if n >= self.config.batch_max_messages:
            self.flush()
        elif self._flush_handle is None and self._loop is not None:
            self._flush_handle = self._loop.call_later(self.config.batch_max_ms / 1000.0, self.flush)

    def begin_overlap(self) -> None:
        self.flush()  # frames before the overlap are checked without de-duplication
        self.pipeline.begin_overlap()

    def end_overlap(self) -> None:
        self.pipeline.end_overlap()

    def on_outage(self, streams: tuple[str, ...], since_ns: int, until_ns: int, cause: str) -> None:
        self.pipeline.record_disconnect(streams, since_ns=since_ns, until_ns=until_ns, cause=cause)

    # --- batching ----------------------------------------------------------------------------------------------

    def flush(self) -> FlushResult | None:
        """Decode and publish what is buffered now; request the snapshots the books asked for."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        publisher = self.pipeline.publisher
        if publisher.backlog > self.config.max_publish_backlog and not publisher.drain():
            self._pause()
            return None
        if self.pipeline.buffered == 0:
            return None
        try:
            result = self.pipeline.flush()
        except Exception:  # a bug, not bad input (bad input is counted): keep the feed alive, make it visible
            log.exception("ingest flush failed; the batch is lost")
            self.metrics.decode_errors.labels("internal").inc()
            return None
        self.flushes += 1
        for symbol in result.resync:
            self.request_snapshot(symbol)
        if publisher.backlog:
            self._schedule_drain()
        return result

    def _pause(self) -> None:
        if self._resumed is not None and self._resumed.is_set():
            log.warning("publisher backlog %d: pausing the readers", self.pipeline.publisher.backlog)
            self._resumed.clear()
        self._schedule_drain()

    def _schedule_drain(self) -> None:
        if self._drain_handle is None and self._loop is not None:
            self._drain_handle = self._loop.call_later(_DRAIN_RETRY_S, self._retry_drain)

    def _retry_drain(self) -> None:
        self._drain_handle = None
        publisher = self.pipeline.publisher
        if publisher.drain():
            if self._resumed is not None:
                self._resumed.set()
            if self.pipeline.buffered:
                self.flush()
        else:
            self._schedule_drain()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- REST: snapshots, exchangeInfo, polls --------------------------------------------------------------------

    def request_snapshot(self, symbol: str) -> None:
        """Fetch a depth snapshot of ``symbol`` unless one is already on its way."""
        if symbol in self._inflight or self._rest is None or symbol not in self.config.symbols:
            return
        self._inflight.add(symbol)
        self._spawn(self._fetch_snapshot(symbol))

    async def _fetch_snapshot(self, symbol: str) -> None:
        assert self._rest is not None and self._stop is not None
        backoff = Backoff(base=self.config.backoff_base_s, cap=self.config.backoff_cap_s, rng=self.rng)
        try:
            last = self._last_snapshot.get(symbol)
            if last is not None:
                await wait_or_stop(self._stop, last + self.config.snapshot_min_interval_s - time.monotonic())
            while not self._stop.is_set():
                try:
                    body = await self._rest.depth(symbol, self.config.snapshot_limit)
                except RestError as exc:
                    delay = exc.retry_after if exc.retry_after is not None else backoff.next_delay()
                    log.warning("snapshot of %s failed (%s); retrying in %.2f s", symbol, exc, delay)
                    await wait_or_stop(self._stop, delay)
                    continue
                self._last_snapshot[symbol] = time.monotonic()
                self._inflight.discard(symbol)  # before the flush: it may ask for another one at once
                self.pipeline.add_snapshot(symbol, body)
                self.flush()
                return
        finally:
            self._inflight.discard(symbol)

    async def _initial_exchange_info(self, stop: asyncio.Event) -> None:
        backoff = Backoff(base=self.config.backoff_base_s, cap=self.config.backoff_cap_s, rng=self.rng)
        for attempt in range(_INITIAL_INFO_ATTEMPTS):
            if await self._load_exchange_info():
                return
            if attempt + 1 < _INITIAL_INFO_ATTEMPTS and await wait_or_stop(stop, backoff.next_delay()):
                return
        log.warning("no exchangeInfo: the books infer tick sizes until a refresh succeeds")

    async def _load_exchange_info(self) -> bool:
        assert self._rest is not None
        try:
            doc = await self._rest.exchange_info()
            self.exchange_info.update(doc, self.config.symbols, time.monotonic())
        except (RestError, ExchangeInfoError) as exc:
            self.exchange_info.failures += 1
            log.warning("exchangeInfo failed: %s", exc)
            return False
        if self.pipeline.set_tick_sizes(self.exchange_info.tick_sizes()):
            self.flush()  # frames decoded so far were checked against the old books
            log.info("tick sizes from exchangeInfo: %s", self.pipeline.tick_sizes)
        return True

    async def _refresh_exchange_info(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            age = self.exchange_info.age(time.monotonic())
            wait = _INFO_RETRY_S if age is None else max(0.0, self.exchange_info.refresh_s - age)
            if await wait_or_stop(stop, wait):
                return
            if self.exchange_info.due(time.monotonic()):
                await self._load_exchange_info()

    async def _poll_funding(self, stop: asyncio.Event) -> None:
        assert self._rest is not None
        while not stop.is_set():
            try:
                doc = await self._rest.premium_index()
                for payload in mark_price_payloads(doc, self.config.symbols):
                    self.pipeline.add_payload(payload)
                self.flush()
            except (RestError, PollError) as exc:
                log.warning("funding poll failed: %s", exc)
            if await wait_or_stop(stop, self.config.funding_poll_s):
                return

    async def _poll_open_interest(self, stop: asyncio.Event) -> None:
        assert self._rest is not None
        while not stop.is_set():
            answers: list[Mapping[str, Any]] = []
            for symbol in self.config.symbols:
                try:
                    answers.append(await self._rest.open_interest(symbol))
                except RestError as exc:
                    log.warning("open interest poll of %s failed: %s", symbol, exc)
            try:
                events = open_interest_events(answers, self.pipeline.symbols, self.config.venue, self.pipeline.stamp())
                self.pipeline.add_events(events)
                self.flush()
            except PollError as exc:
                log.warning("open interest poll: %s", exc)
            if await wait_or_stop(stop, self.config.open_interest_poll_s):
                return

    # --- health ------------------------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """Connections, the age of the last frame, book sync per symbol, publisher backlog.

        ``ok`` is True when every group is connected, a frame arrived within ``idle_timeout_s`` and every
        book is synced; a readiness check wants that, a liveness check only that the loop is running."""
        now_ns = time.time_ns()
        last = self.pipeline.last_frame_ns
        last_age = None if last is None else max(0.0, (now_ns - last) / 1e9)
        groups = [g.health() for g in self.groups]
        connected = self.connected_streams()
        sync = self.pipeline.sync_state()
        synced = [s for s, why in sync.items() if why is None]
        ok = (
            all(g.connected for g in self.groups)
            and last_age is not None
            and (self.config.idle_timeout_s == 0 or last_age < self.config.idle_timeout_s)
            and len(synced) == len(sync)
        )
        info_age = self.exchange_info.age(time.monotonic())
        return {
            "ok": ok,
            "venue": self.config.venue,
            "connected_streams": connected,
            "streams": sum(len(g.streams) for g in self.groups),
            "connections": groups,
            "last_message_age_s": None if last_age is None else round(last_age, 3),
            "synced_symbols": synced,
            "unsynced_symbols": {s: why for s, why in sync.items() if why is not None},
            "snapshots_in_flight": sorted(self._inflight),
            "exchange_info_age_s": None if info_age is None else round(info_age, 1),
            "publish_backlog": self.pipeline.publisher.backlog,
            "frames": self.pipeline.frames_in,
            "events": self.pipeline.events_out,
            "poison": self.pipeline.poison_out,
        }
