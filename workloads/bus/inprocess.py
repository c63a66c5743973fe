"""The in-process bus of the local runner: synchronous, deterministic, no copies, no threads.

Delivery order is the publish order, globally: records go through one FIFO. ``publish`` called from
outside a handler delivers the record — and everything handlers publish in reaction, breadth-first —
before it returns. ``publish`` called from inside a handler only queues the record (and returns its
offset); it is delivered after the current record has reached all of its handlers. So every handler sees
records in exactly the order they were published, a handler never re-enters itself, and the same inputs
give the same sequence of handler calls on every run (what the backtest–live parity test relies on).

Who receives a record is fixed when it is published: subscriptions and consumers made later do not get
it, a subscription cancelled before delivery does not get it.

A handler that raises does not starve the others: the record still reaches every remaining handler, then
the first exception is re-raised from the outermost ``publish`` (with a note naming the topic, offset and
handler). Records still queued stay queued; the next ``publish`` or :meth:`InProcessBus.flush` delivers
them.

Values are passed by reference (in-process nothing is encoded; Kafka will carry bytes). A numpy array is
delivered as a read-only view, so no receiver can change what another receiver sees; the publisher must
not modify the array afterwards either (it is not copied).

Single-threaded: one bus per runtime event loop.
"""

from __future__ import annotations

import fnmatch
from collections import deque
from typing import Any

import numpy as np

from .base import BackpressureError, Handler, Key, Record
from .topics import validate_topic

DEFAULT_POLL = 1024


class InProcessSubscription:
    """A push subscription of :class:`InProcessBus` (``cancel()`` to stop)."""

    __slots__ = ("_bus", "active", "handler", "pattern")

    def __init__(self, bus: InProcessBus, pattern: str, handler: Handler) -> None:
        self._bus = bus
        self.pattern = pattern
        self.handler = handler
        self.active = True

    def cancel(self) -> None:
        if self.active:
            self.active = False
            self._bus._forget(self)

    def __repr__(self) -> str:
        return f"InProcessSubscription({self.pattern!r}, {getattr(self.handler, '__qualname__', self.handler)!r})"


class InProcessConsumer:
    """A pull consumer of :class:`InProcessBus` with a queue of at most ``max_queue`` records."""

    __slots__ = ("_bus", "_queue", "active", "max_queue", "name", "pattern")

    def __init__(self, bus: InProcessBus, pattern: str, max_queue: int, name: str) -> None:
        self._bus = bus
        self.pattern = pattern
        self.max_queue = max_queue
        self.name = name
        self.active = True
        self._queue: deque[Record] = deque()

    def poll(self, max_n: int = DEFAULT_POLL) -> list[Record]:
        if max_n < 0:
            raise ValueError(f"consumer {self.name!r}: max_n must be >= 0, got {max_n}")
        q = self._queue
        n = min(max_n, len(q))
        return [q.popleft() for _ in range(n)]

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def full(self) -> bool:
        return len(self._queue) >= self.max_queue

    def close(self) -> None:
        if self.active:
            self.active = False
            self._queue.clear()
            self._bus._forget(self)

    def __repr__(self) -> str:
        return f"InProcessConsumer({self.name!r}, {self.pattern!r}, {len(self._queue)}/{self.max_queue})"


def _frozen(value: Any) -> Any:
    """A read-only view of a writable numpy array; anything else as is."""
    if isinstance(value, np.ndarray) and value.flags.writeable:
        view = value.view()
        view.flags.writeable = False
        return view
    return value


class InProcessBus:
    """Topics, push subscriptions and bounded pull consumers in one process (see the module docstring).

    ``validate_topics`` (default on) rejects names outside the families of :mod:`.topics`.
    """

    def __init__(self, *, validate_topics: bool = True) -> None:
        self._validate = validate_topics
        self._offsets: dict[str, int] = {}
        self._subs: list[InProcessSubscription] = []
        self._consumers: list[InProcessConsumer] = []
        # topic -> (matching subscriptions, matching consumers), rebuilt after any (un)registration
        self._routes: dict[str, tuple[tuple[InProcessSubscription, ...], tuple[InProcessConsumer, ...]]] = {}
        self._pending: deque[tuple[Record, tuple[InProcessSubscription, ...]]] = deque()
        self._dispatching = False
        self._closed = False
        self._consumer_seq = 0

    # -- registration --------------------------------------------------------------------------------

    def subscribe(self, pattern: str, handler: Handler) -> InProcessSubscription:
        """Push: ``handler(record)`` for every record published from now on whose topic matches ``pattern``
        (``fnmatch.fnmatchcase``: ``*`` matches dots too, so ``md.*`` is all market data)."""
        self._check_open()
        if not pattern:
            raise ValueError("pattern must be a non-empty string")
        sub = InProcessSubscription(self, pattern, handler)
        self._subs.append(sub)
        self._routes.clear()
        return sub

    def consumer(self, pattern: str, max_queue: int, *, name: str | None = None) -> InProcessConsumer:
        """Pull: a consumer queueing every record published from now on whose topic matches ``pattern``.

        ``name`` (default ``consumer-<n>``) appears in :class:`BackpressureError` and must be unique on
        this bus.
        """
        self._check_open()
        if not pattern:
            raise ValueError("pattern must be a non-empty string")
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {max_queue}")
        self._consumer_seq += 1
        cname = name if name is not None else f"consumer-{self._consumer_seq}"
        if any(c.name == cname for c in self._consumers):
            raise ValueError(f"a consumer named {cname!r} already exists on this bus")
        cons = InProcessConsumer(self, pattern, max_queue, cname)
        self._consumers.append(cons)
        self._routes.clear()
        return cons

    def _forget(self, item: InProcessSubscription | InProcessConsumer) -> None:
        if isinstance(item, InProcessSubscription):
            self._subs.remove(item)
        else:
            self._consumers.remove(item)
        self._routes.clear()

    def _route(self, topic: str) -> tuple[tuple[InProcessSubscription, ...], tuple[InProcessConsumer, ...]]:
        route = self._routes.get(topic)
        if route is None:
            if self._validate:
                validate_topic(topic)
            route = (
                tuple(s for s in self._subs if fnmatch.fnmatchcase(topic, s.pattern)),
                tuple(c for c in self._consumers if fnmatch.fnmatchcase(topic, c.pattern)),
            )
            self._routes[topic] = route
        return route

    # -- publishing ----------------------------------------------------------------------------------

    def publish(self, topic: str, key: Key, value: Any) -> int:
        """Publish one record; returns its offset in ``topic`` (see the module docstring for the order).

        Raises ``ValueError`` for an invalid topic and :class:`BackpressureError` when a matching consumer
        is full; in both cases nothing is published (no offset used, no queue touched).
        """
        self._check_open()
        subs, consumers = self._route(topic)
        for c in consumers:
            if len(c) >= c.max_queue:
                raise BackpressureError(topic, c.name, c.max_queue)
        offset = self._offsets.get(topic, 0)
        self._offsets[topic] = offset + 1
        record = Record(topic, key, _frozen(value), offset)
        for c in consumers:
            c._queue.append(record)
        if subs:
            self._pending.append((record, subs))
        if not self._dispatching:
            self._drain()
        return offset

    def _drain(self) -> None:
        self._dispatching = True
        try:
            pending = self._pending
            while pending:
                record, subs = pending.popleft()
                first: BaseException | None = None
                for sub in subs:
                    if not sub.active:
                        continue
                    try:
                        sub.handler(record)
                    except Exception as exc:
                        if first is None:
                            exc.add_note(f"in bus handler {sub!r} for topic {record.topic!r} offset {record.offset}")
                            first = exc
                if first is not None:
                    raise first
        finally:
            self._dispatching = False

    def flush(self) -> None:
        """Deliver records left pending by a handler that raised (no-op otherwise)."""
        if not self._dispatching:
            self._drain()

    # -- offsets and lifecycle -----------------------------------------------------------------------

    def end_offset(self, topic: str) -> int:
        return self._offsets.get(topic, 0)

    def offsets(self) -> dict[str, int]:
        """Every topic published so far → its end offset (records published)."""
        return dict(self._offsets)

    @property
    def pending(self) -> int:
        """Records published but not yet delivered to their handlers."""
        return len(self._pending)

    def close(self) -> None:
        """Deliver what is pending, then refuse further publishing (idempotent)."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the bus is closed")
