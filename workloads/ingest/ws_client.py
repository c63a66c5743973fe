"""One slice of the subscribed streams on one Binance combined-stream connection, kept alive for days.

A :class:`StreamGroup` owns the connection(s) of one slice (:func:`~.streams.split_streams`) and:

* **reads** frames as raw bytes (``recv(decode=False)``: no UTF-8 decode, no JSON here) and hands each to
  the sink with its connection id; the sink stamps and buffers it for the next micro-batch;
* **detects a dead connection** three ways: the server closed it; websockets' keepalive (a client ping
  unanswered within ``ping_timeout_s``; the server's pings are answered automatically); or no frame at all
  for ``idle_timeout_s`` — a connection that stays open but silent is as dead as a closed one;
* **reconnects** after a loss with full-jitter exponential backoff (:mod:`.backoff`), and reports the
  outage (last frame before, first frame after) so it is flagged in the data: trades and book tickers
  carry no sequence that would show what was missed;
* **rotates** before Binance's 24 h limit: it opens the new connection first, waits for its first frame,
  keeps both for ``rotation_overlap_s`` while the sink de-duplicates, then closes the old one. Nothing is
  lost (the streams are covered throughout) and nothing is published twice (:mod:`.dedupe`).

Everything runs on the session's event loop; the sink's methods are plain calls (no locks needed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from .backoff import Backoff, wait_or_stop
from .config import IngestConfig
from .streams import combined_stream_url, rotation_deadline

log = logging.getLogger(__name__)

#: Seconds a graceful close waits for the server's close frame before dropping the TCP connection.
CLOSE_TIMEOUT_S: Final = 2.0
#: The reader yields to the loop after this many frames (flush timers, REST, other connections).
YIELD_EVERY: Final = 64
#: Frames websockets may queue per connection before it stops reading the socket (TCP backpressure).
MAX_QUEUE: Final = 4096


class GroupSink(Protocol):
    """What a :class:`StreamGroup` reports to (the session)."""

    @property
    def paused(self) -> bool:
        """True while the publisher is backed up: readers wait in :meth:`wait_resumed` after a frame."""

    async def wait_resumed(self) -> None: ...

    def on_frame(self, payload: bytes, conn_id: int) -> None: ...

    def begin_overlap(self) -> None: ...

    def end_overlap(self) -> None: ...

    def on_outage(self, streams: tuple[str, ...], since_ns: int, until_ns: int, cause: str) -> None: ...


_ids = iter(range(1 << 62))


@dataclass(eq=False)
class Connection:
    """One websocket connection of a group and what it has delivered."""

    ws: ClientConnection
    opened: float  #: monotonic seconds
    id: int = field(default_factory=lambda: next(_ids))
    frames: int = 0
    first_frame: asyncio.Event = field(default_factory=asyncio.Event)
    last_frame: float | None = None  #: monotonic seconds
    last_frame_ns: int | None = None  #: wall clock
    killed: str | None = None  #: why we dropped it (idle), if we did

    def activity(self) -> float:
        return self.last_frame if self.last_frame is not None else self.opened


class StreamGroup:
    """Keeps one slice of streams connected (see the module docstring); :meth:`run` until ``stop`` is set."""

    def __init__(
        self,
        index: int,
        streams: list[str],
        config: IngestConfig,
        sink: GroupSink,
        *,
        on_connect_failure: Callable[[], None] | None = None,
        on_reconnect: Callable[[], None] | None = None,
        on_rotation: Callable[[], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.index = index
        self.streams = tuple(streams)
        self.config = config
        self.sink = sink
        self.url = combined_stream_url(config.ws_url, self.streams)
        self.rng = rng if rng is not None else random.Random()
        self.backoff = Backoff(base=config.backoff_base_s, cap=config.backoff_cap_s, rng=self.rng)
        self._on_connect_failure = on_connect_failure
        self._on_reconnect = on_reconnect
        self._on_rotation = on_rotation
        self.current: Connection | None = None
        self.connected = False
        self.reconnects = 0
        self.rotations = 0
        self.connect_failures = 0
        self.frames = 0
        self.last_cause: str | None = None
        self._lost: tuple[int, str] | None = None  #: (last frame ns before the loss, cause) until a new frame

    # --- connecting ------------------------------------------------------------------------------------------

    async def _open(self) -> Connection | None:
        """One connection attempt; None (counted, logged) when it fails."""
        c = self.config
        try:
            ws = await connect(
                self.url,
                open_timeout=c.open_timeout_s,
                ping_interval=c.ping_interval_s,
                ping_timeout=c.ping_timeout_s,
                close_timeout=CLOSE_TIMEOUT_S,
                compression=None,
                max_size=c.max_frame_bytes,
                max_queue=MAX_QUEUE,
                proxy=None,
            )
        except (OSError, TimeoutError, WebSocketException) as exc:
            self.connect_failures += 1
            if self._on_connect_failure is not None:
                self._on_connect_failure()
            log.warning("group %d: connecting to %s failed: %s", self.index, self.url[:120], exc)
            return None
        return Connection(ws, time.monotonic())

    async def _open_with_retry(self, stop: asyncio.Event, *, delay_first: bool) -> Connection | None:
        if delay_first and await wait_or_stop(stop, self.backoff.next_delay()):
            return None
        while not stop.is_set():
            conn = await self._open()
            if conn is not None:
                return conn
            if await wait_or_stop(stop, self.backoff.next_delay()):
                return None
        return None

    # --- the group's life -------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, read, rotate and reconnect until ``stop`` is set; then close the connection."""
        first = True
        while not stop.is_set():
            conn = await self._open_with_retry(stop, delay_first=not first)
            if conn is None:
                break
            if not first:
                self.reconnects += 1
                if self._on_reconnect is not None:
                    self._on_reconnect()
            first = False
            cause = await self._serve(conn, stop)
            if cause is None:
                break
            self.last_cause = cause
            since = self.current.last_frame_ns if self.current and self.current.last_frame_ns else time.time_ns()
            if self._lost is None:  # an outage that already began continues
                self._lost = (since, cause)
            log.warning("group %d: connection lost (%s); reconnecting", self.index, cause)
        self.connected = False
        if self._lost is not None:  # stopped while the outage lasted: flag it up to now
            since, cause = self._lost
            self._lost = None
            self.sink.on_outage(self.streams, since, time.time_ns(), f"{cause}; not reconnected before shutdown")

    async def _serve(self, conn: Connection, stop: asyncio.Event) -> str | None:
        """Read ``conn`` until it is lost (returns why) or ``stop`` (returns None); rotate when it is due."""
        c = self.config
        self.current, self.connected = conn, True
        reader = asyncio.create_task(self._read(conn))
        rotate_at = rotation_deadline(conn.opened, c.max_connection_age_s, c.rotation_jitter_s, self.rng)
        stopper = asyncio.create_task(stop.wait())
        try:
            while True:
                now = time.monotonic()
                idle_at = conn.activity() + c.idle_timeout_s if c.idle_timeout_s > 0 else float("inf")
                timeout = max(0.0, min(rotate_at, idle_at) - now)
                await asyncio.wait((reader, stopper), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if stop.is_set():
                    await self._close(conn, reader)
                    return None
                if reader.done():
                    self.connected = False
                    failure = reader.exception()
                    if failure is not None:  # a bug downstream of the socket: drop the connection, start over
                        log.error("group %d: reader failed", self.index, exc_info=failure)
                        await self._close(conn, reader)
                        return f"reader failed: {failure!r}"
                    return conn.killed or reader.result()
                now = time.monotonic()
                if c.idle_timeout_s > 0 and now >= conn.activity() + c.idle_timeout_s:
                    conn.killed = f"no frame for {c.idle_timeout_s} s"
                    conn.ws.transport.abort()  # a silent peer will not answer a close handshake either
                    continue
                if now >= rotate_at:
                    rotated = await self._rotate(conn, reader, stop)
                    if rotated is None:  # the new connection failed: keep the old one, try again later
                        rotate_at = now + self.backoff.next_delay()
                        continue
                    conn, reader = rotated
                    self.current = conn
                    rotate_at = rotation_deadline(conn.opened, c.max_connection_age_s, c.rotation_jitter_s, self.rng)
        finally:
            stopper.cancel()
            if stop.is_set() and not reader.done():
                reader.cancel()

    async def _rotate(
        self, old: Connection, old_reader: asyncio.Task[str], stop: asyncio.Event
    ) -> tuple[Connection, asyncio.Task[str]] | None:
        """Open a new connection, overlap, close the old one. None when the new one did not come up."""
        c = self.config
        # De-duplication starts before the new connection subscribes: every message it can deliver is then
        # produced after the high-water marks began to record what the old one delivers.
        self.sink.begin_overlap()
        new = await self._open()
        if new is None:
            self.sink.end_overlap()
            return None
        new_reader = asyncio.create_task(self._read(new))
        try:
            first = asyncio.create_task(new.first_frame.wait())
            stopper = asyncio.create_task(stop.wait())
            try:
                await asyncio.wait((first, new_reader, stopper), timeout=c.open_timeout_s + c.idle_timeout_s,
                                   return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
            finally:
                first.cancel()
                stopper.cancel()
            if not new.first_frame.is_set():  # died, timed out or stopping: drop the new one, keep the old
                await self._close(new, new_reader)
                return None
            await wait_or_stop(stop, c.rotation_overlap_s)
            await self._close(old, old_reader)
        finally:
            self.sink.end_overlap()
        self.rotations += 1
        if self._on_rotation is not None:
            self._on_rotation()
        log.info("group %d: rotated after %.0f s", self.index, time.monotonic() - old.opened)
        return new, new_reader

    async def _close(self, conn: Connection, reader: asyncio.Task[str]) -> None:
        with contextlib.suppress(Exception):
            await conn.ws.close()
        with contextlib.suppress(BaseException):
            await reader

    async def _read(self, conn: Connection) -> str:
        """Hand every frame to the sink; returns why the connection ended."""
        ws, sink = conn.ws, self.sink
        try:
            while True:
                payload = await ws.recv(decode=False)
                conn.frames += 1
                self.frames += 1
                conn.last_frame = time.monotonic()
                conn.last_frame_ns = time.time_ns()
                if not conn.first_frame.is_set():
                    self._first_frame(conn)
                sink.on_frame(payload, conn.id)
                if sink.paused:
                    await sink.wait_resumed()
                elif conn.frames % YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # recv() does not suspend while frames are queued: let timers run
        except ConnectionClosed as exc:
            rcvd = exc.rcvd
            return f"closed by server ({rcvd.code} {rcvd.reason})" if rcvd else f"connection lost ({exc})"

    def _first_frame(self, conn: Connection) -> None:
        conn.first_frame.set()
        self.backoff.reset()  # the connection delivers: the next loss starts from the shortest delay again
        if self._lost is not None:
            since, cause = self._lost
            self._lost = None
            self.sink.on_outage(self.streams, since, conn.last_frame_ns or time.time_ns(), cause)

    def health(self) -> dict[str, object]:
        now = time.monotonic()
        conn = self.current
        return {
            "group": self.index,
            "streams": len(self.streams),
            "connected": self.connected,
            "age_s": round(now - conn.opened, 3) if conn else None,
            "last_frame_age_s": round(now - conn.last_frame, 3) if conn and conn.last_frame else None,
            "frames": self.frames,
            "reconnects": self.reconnects,
            "rotations": self.rotations,
            "connect_failures": self.connect_failures,
            "last_cause": self.last_cause,
        }
