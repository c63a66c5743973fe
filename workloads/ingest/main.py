"""``tradeplane workload ingest``: the ingest session as a cluster process, publishing to Kafka.

The process shell (:mod:`..service`) owns probes, metrics, logs and SIGTERM; this module only maps the
workload options onto :class:`~.config.IngestConfig`, builds the Kafka bus and the session, and says how
they are checked and stopped.

Why the session runs on a private event loop driven in slices (``asyncio_step`` style) rather than in a
thread: the main loop's heartbeat is then bumped only after the event loop has run a slice, so ``/healthz``
goes stale exactly when the session's loop is blocked or dead, not merely when some thread exists. It also
keeps the Kafka bus (not thread-safe) on one thread: the session publishes from the loop, and the step
serves delivery reports between slices on the same thread. A session that ends by itself makes the step
raise (exit code 5, the orchestrator restarts the process).

Topics are created before the session starts, from the loop step, with a bounded wait per attempt: a broker
that is down at start fails ``/readyz`` (``kafka``), never ``/healthz``, and no websocket frame is read that
could not be published.

Shutdown, in data-flow order, within ``workload.shutdown_deadline_s``:

1. ``stop ingest session``: the connections close, the session decodes and publishes what it had read
   (its own ``bus.flush`` is deferred to the next hook, which knows the remaining budget);
2. ``flush publisher``: records the producer refused are retried, then the producer is flushed within
   ``service.shutdown_remaining_s()``; a line ``ingest flushed`` logs what was published and delivered;
3. ``close event loop``, ``close kafka``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import fields as dataclass_fields
from typing import Annotated, Any, Final

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from ...settings import ENV_PREFIX, Settings, SettingsError
from ..bus.base import Consumer, Handler, Key, Record, Subscription
from ..bus.inprocess import InProcessBus
from ..bus.kafka import DeliveryReport, KafkaBus
from ..bus.mdbatch import encode_md_batch
from ..bus.topics import dlq_topic, md_topic
from ..service.health import CheckResult
from ..service.main import parse_options
from ..service.service import LoopStep, WorkloadService
from .config import ConfigError, IngestConfig
from .pipeline import IngestPipeline
from .session import IngestSession

log = logging.getLogger("tradeplane.workload.ingest")

#: A publish waits this long for room in a full producer queue before the session's outbox keeps the
#: record and retries it every 10 ms: the session handles backpressure itself, so the event loop must
#: not block for the bus's default 5 s per refused record.
_BACKPRESSURE_S: Final = 0.05
#: ``kafka`` fails when records are queued and nothing was acknowledged for this long.
_DELIVERY_STALL_S: Final = 10.0
#: ``kafka`` fails for this long after a delivery error.
_DELIVERY_ERROR_HOLD_S: Final = 60.0
#: Share of the remaining shutdown budget the session may take to stop (the rest: flush and close).
_STOP_SHARE: Final = 0.5
#: Kept for closing the bus and the loop when the flush hook sets its own deadline (seconds).
_CLOSE_RESERVE_S: Final = 0.5


def _as_list(value: Any) -> Any:
    """Env values arrive as strings: ``"BTCUSDT,ETHUSDT"`` or a JSON list; YAML gives a list already."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


def _none_words(value: Any) -> Any:
    """``none``/``off``/empty turn an optional duration off (env values cannot spell null)."""
    if isinstance(value, str) and value.strip().lower() in ("", "none", "null", "off"):
        return None
    return value


StrList = Annotated[list[str], BeforeValidator(_as_list)]
OptionalSeconds = Annotated[float | None, BeforeValidator(_none_words)]


class IngestOptions(BaseModel):
    """``workload.options`` of the ingest (``TRADEPLANE_WORKLOAD__OPTIONS__<KEY>``).

    Every key but the last three is an :class:`IngestConfig` field; a key that is not given keeps
    IngestConfig's default (so the defaults live in one place), and IngestConfig's own checks run on the
    result. Lists may be given as ``a,b,c`` or a JSON list; ``quality`` as a mapping of
    ``QualityConfig`` fields (``TRADEPLANE_WORKLOAD__OPTIONS__QUALITY__MAX_GAP_RATIO``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    venue: str = Field(description="binance-spot, binance-usdm or binance-coinm.")
    symbols: StrList = Field(description="Symbols to ingest (upper-cased).")
    streams: StrList | None = Field(default=None, description="Per-symbol stream suffixes.")
    ws_url: str | None = Field(default=None, description="Websocket base URL (default: Binance's).")
    rest_url: str | None = Field(default=None, description="REST base URL (default: Binance's).")
    name: str | None = Field(default=None, description="Workload name in logs and quality records.")
    quality_topic: str | None = Field(default=None, description="Topic of the quality records.")
    max_streams_per_connection: int | None = Field(default=None, description="Streams per connection.")
    max_connection_age_s: float | None = Field(default=None, description="Rotate connections after this long.")
    rotation_jitter_s: float | None = None
    rotation_overlap_s: float | None = None
    open_timeout_s: float | None = None
    ping_interval_s: OptionalSeconds = None
    ping_timeout_s: OptionalSeconds = None
    idle_timeout_s: float | None = None
    backoff_base_s: float | None = None
    backoff_cap_s: float | None = None
    batch_max_ms: float | None = None
    batch_max_messages: int | None = None
    max_frame_bytes: int | None = None
    snapshot_limit: int | None = Field(default=None, description="Levels per side of REST depth snapshots.")
    snapshot_min_interval_s: float | None = None
    rest_timeout_s: float | None = None
    exchange_info_refresh_s: float | None = None
    funding_poll_s: float | None = None
    open_interest_poll_s: float | None = None
    book_buffer_events: int | None = None
    quality: dict[str, int | float] | None = None
    mark_degraded: bool | None = None
    max_publish_backlog: int | None = None
    # --- the process's own keys ---
    slice_s: float = Field(default=0.2, gt=0, le=1.0, description="Event-loop slice per main-loop step.")
    dead_letters: bool = Field(default=True, description="Send frames the decoder rejects to dlq.md.")
    topic_timeout_s: float = Field(default=5.0, gt=0, le=30.0, description="Per attempt at creating the topics.")
    linger_ms: float = Field(
        default=0.0,
        ge=0,
        le=100.0,
        description="Kafka producer linger: how long an md record may wait to share a request. 0: the session's "
        "micro-batch is the batch; records published while a request is in flight still share the next one.",
    )


#: The option keys that are IngestConfig fields (the rest belong to the process).
CONFIG_KEYS: Final = frozenset(f.name for f in dataclass_fields(IngestConfig))


def option_env(key: str) -> str:
    """``TRADEPLANE_WORKLOAD__OPTIONS__<KEY>`` of an option key."""
    return f"{ENV_PREFIX}WORKLOAD__OPTIONS__{key.upper()}"


def ingest_config(opts: IngestOptions) -> IngestConfig:
    """The :class:`IngestConfig` of the options; its :class:`ConfigError` becomes a :class:`SettingsError`
    naming the option and its env variable (the CLI exits with code 3)."""
    data = {k: v for k, v in opts.model_dump(exclude_unset=True).items() if k in CONFIG_KEYS}
    data["symbols"] = [s.upper() for s in opts.symbols]
    try:
        return IngestConfig.from_mapping(data)
    except ConfigError as exc:
        message = str(exc).removeprefix(f"ingest config {exc.field}: ")
        key = f"workload.options.{exc.field}"
        raise SettingsError(f"invalid workload options:\n  {key} ({option_env(exc.field)}): {message}") from None


def warm_up(config: IngestConfig) -> float:
    """Run decode → book → quality → encode once on made-up frames of the first symbol; returns seconds.

    Why: the engine's compiled kernels load on first use (about 0.3 s in a fresh process). Without this the
    first real frames wait for them, which shows up as ingest lag right after every (re)start. Nothing is
    published: the frames go to a throwaway in-process bus."""
    started = time.perf_counter()
    symbol, now_ms = config.symbols[0], time.time_ns() // 1_000_000
    stream = symbol.lower()
    times: dict[str, Any] = {"E": now_ms, "T": now_ms} if config.futures else {"E": now_ms}

    def depth(first: int, last: int) -> bytes:
        chain = {"pu": first - 1} if config.futures else {}
        data = {"e": "depthUpdate", **times, "s": symbol, "U": first, "u": last, **chain,
                "b": [["100.0", "1"]], "a": [["101.0", "1"]]}  # fmt: skip
        return orjson.dumps({"stream": f"{stream}@depth", "data": data})

    trade = {"e": "trade", "E": now_ms, "T": now_ms, "s": symbol, "t": 1, "p": "100.5", "q": "1", "m": True}
    ticker = {"e": "bookTicker", "u": 11, "s": symbol, "b": "100.0", "B": "1", "a": "101.0", "A": "1", **times}
    snapshot = {"lastUpdateId": 10, **times, "bids": [["100.0", "1"]], "asks": [["101.0", "1"]]}
    pipeline = IngestPipeline(config, InProcessBus(), encode=encode_md_batch)
    for frame in (depth(10, 11), orjson.dumps({"stream": f"{stream}@trade", "data": trade}),
                  orjson.dumps({"stream": f"{stream}@bookTicker", "data": ticker})):  # fmt: skip
        pipeline.add_frame(frame)
    pipeline.flush()
    pipeline.add_snapshot(symbol, orjson.dumps(snapshot))
    pipeline.add_frame(depth(12, 12))
    pipeline.flush()
    return time.perf_counter() - started


class DeliveryTracker:
    """What the broker acknowledged, from the producer's delivery reports (served on the loop thread).

    Read by the ``kafka`` check from HTTP threads: plain int/float/str stores, atomic under the GIL."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.delivered = 0
        self.failed = 0
        self.last_ok: float | None = None
        self.last_error = ""
        self.last_error_at: float | None = None

    def on_delivery(self, report: DeliveryReport) -> None:
        if report.error is None:
            self.delivered += 1
            self.last_ok = self.clock()
        else:
            self.failed += 1
            self.last_error = f"{report.topic} [{report.partition}]: {report.error}"
            self.last_error_at = self.clock()


class SessionBus:
    """The session's view of the Kafka bus: publishes go through; ``flush`` and ``close`` do nothing,
    because the shutdown hooks flush the producer within the deadline's remaining budget and close it."""

    def __init__(self, bus: KafkaBus) -> None:
        self._bus = bus

    def publish(self, topic: str, key: Key, value: Any) -> int:
        return self._bus.publish(topic, key, value)

    def subscribe(self, pattern: str, handler: Handler) -> Subscription:
        return self._bus.subscribe(pattern, handler)

    def consumer(self, pattern: str, max_queue: int, *, name: str | None = None) -> Consumer:
        return self._bus.consumer(pattern, max_queue, name=name)

    def end_offset(self, topic: str) -> int:
        return self._bus.end_offset(topic)

    def flush(self) -> None:
        """Deferred to the ``flush publisher`` hook."""

    def close(self) -> None:
        """The ``close kafka`` hook closes the bus."""


class IngestRunner:
    """Drives an :class:`IngestSession` inside the service shell: loop step, checks, shutdown hooks."""

    def __init__(
        self, service: WorkloadService, config: IngestConfig, opts: IngestOptions, bus: KafkaBus,
        tracker: DeliveryTracker,
    ) -> None:  # fmt: skip
        self.service = service
        self.config = config
        self.opts = opts
        self.bus = bus
        self.tracker = tracker
        self.loop = asyncio.new_event_loop()
        self.stop_event = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.session = IngestSession(
            config,
            SessionBus(bus),
            registry=service.registry,
            on_poison=self.dead_letter if opts.dead_letters else None,
        )
        self.poison_source = f"md.{config.venue}"  #: source topic of a dead-lettered frame (no symbol known)
        self.topics = [md_topic(config.venue, s) for s in config.symbols] + [config.quality_topic]
        if opts.dead_letters:
            self.topics.append(dlq_topic("md"))
        self.topics_ready = False
        self.topics_error = ""
        self.topics_ready_at: float | None = None
        self._topic_attempts = 0

    # --- the loop step ----------------------------------------------------------------------------------------

    def step(self) -> None:
        """Create the topics (first steps), then run the event loop for ``slice_s`` and serve delivery reports."""
        if self.task is None:
            if not self._ensure_topics():
                self.service.stop_requested.wait(min(1.0, 0.2 * self._topic_attempts))
                return
            self._warm_up()
            self.task = self.loop.create_task(self.session.run_async(self.stop_event), name="ingest-session")
            log.info("ingest session started", extra={"venue": self.config.venue, "symbols": list(self.config.symbols),
                                                      "streams": len(self.config.stream_names())})  # fmt: skip
        task = self.task
        self.loop.run_until_complete(asyncio.wait({task}, timeout=self.opts.slice_s))
        self.bus.poll(0)
        if task.done():
            error = None if task.cancelled() else task.exception()
            raise RuntimeError(f"the ingest session ended by itself ({error!r})") from error

    def _ensure_topics(self) -> bool:
        self._topic_attempts += 1
        try:
            self.bus.ensure_topics(self.topics, timeout=self.opts.topic_timeout_s)
        except Exception as exc:  # broker down or refusing: retried by the next step, visible in /readyz
            self.topics_error = f"{type(exc).__name__}: {exc}"
            if self._topic_attempts == 1 or self._topic_attempts % 30 == 0:
                log.warning("cannot create topics yet", extra={"error": self.topics_error, "topics": self.topics})
            return False
        self.topics_ready, self.topics_error = True, ""
        self.topics_ready_at = time.monotonic()
        return True

    def _warm_up(self) -> None:
        try:
            took = warm_up(self.config)
        except Exception:  # an optimisation only: the session compiles on its first batch instead
            log.warning("ingest warm-up failed", exc_info=True)
            return
        log.info("ingest warm-up done", extra={"seconds": round(took, 3)})

    def dead_letter(self, raw: bytes, reason: str) -> None:
        """``on_poison``: the frame goes to ``dlq.md`` unchanged with the decoder's reason."""
        try:
            self.bus.dead_letters.send(Record(self.poison_source, None, raw, -1), "decode-error", reason)
        except Exception:  # already counted in decode_errors_total; never let it stop the feed
            log.exception("could not dead-letter a poison frame")

    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    # --- readiness checks (HTTP threads; report state, never block) -------------------------------------------------

    def kafka_check(self) -> CheckResult:
        if not self.topics_ready:
            why = self.topics_error or "not attempted yet"
            return CheckResult.failed(f"cannot create topics: {why}", bootstrap=self.bus.bootstrap_servers)
        t = self.tracker
        now = t.clock()
        queued = self.bus.producer_queue
        details = {"delivered": t.delivered, "failed": t.failed, "producer_queue": queued}
        if self.bus.brokers_down:
            return CheckResult.failed(f"all brokers down; {queued} records queued", **details)
        if t.last_error_at is not None and now - t.last_error_at < _DELIVERY_ERROR_HOLD_S:
            return CheckResult.failed(f"delivery failed {now - t.last_error_at:.1f} s ago: {t.last_error}", **details)
        since = t.last_ok if t.last_ok is not None else self.topics_ready_at
        if queued and since is not None and now - since > _DELIVERY_STALL_S:
            return CheckResult.failed(f"{queued} records queued, nothing acknowledged for {now - since:.1f} s",
                                      **details)  # fmt: skip
        last = "none yet" if t.last_ok is None else f"last {now - t.last_ok:.1f} s ago"
        return CheckResult.passed(f"{t.delivered} records delivered ({last})", **details)

    def exchange_check(self) -> CheckResult:
        if not self.running():
            return CheckResult.failed("ingest session not running")
        h = self.session.health()
        details = {k: h[k] for k in ("connected_streams", "streams", "synced_symbols", "unsynced_symbols",
                                     "last_message_age_s", "snapshots_in_flight")}  # fmt: skip
        if h["ok"]:
            return CheckResult.passed(f"{h['connected_streams']} streams connected, "
                                      f"{len(h['synced_symbols'])} symbols synced", **details)  # fmt: skip
        problems = []
        down = [c for c in h["connections"] if not c["connected"]]
        if down:
            causes = sorted({str(c["last_cause"]) for c in down if c["last_cause"]})
            problems.append(f"{len(down)} of {len(h['connections'])} connections down"
                            + (f" ({'; '.join(causes)})" if causes else ""))  # fmt: skip
        age, idle = h["last_message_age_s"], self.config.idle_timeout_s
        if age is None:
            problems.append("no frame received yet")
        elif idle and age >= idle:
            problems.append(f"no frame for {age:.1f} s")
        if h["unsynced_symbols"]:
            problems.append("unsynced: " + ", ".join(f"{s} ({why})" for s, why in h["unsynced_symbols"].items()))
        return CheckResult.failed("; ".join(problems) or "not ready", **details)

    def publisher_check(self) -> CheckResult:
        if not self.running():
            return CheckResult.failed("ingest session not running")
        publisher = self.session.pipeline.publisher
        details = {"md_batches": publisher.batches, "quality_records": publisher.records, "backlog": publisher.backlog}
        if self.session.paused:
            return CheckResult.failed(f"publish backlog {publisher.backlog} above max_publish_backlog "
                                      f"{self.config.max_publish_backlog}: readers paused", **details)  # fmt: skip
        return CheckResult.passed(f"{publisher.batches} md batches published, backlog {publisher.backlog}", **details)

    # --- shutdown hooks (run one after the other on helper threads, after the main loop stopped) --------------------

    def stop_session(self) -> None:
        """Close the connections; the session flushes what it had read into the publisher."""
        task = self.task
        if task is None or task.done():
            return
        budget = max(0.5, self.service.shutdown_remaining_s() * _STOP_SHARE)

        async def stop() -> None:
            self.stop_event.set()
            done, _ = await asyncio.wait({task}, timeout=budget)
            if not done:
                log.error("the ingest session did not stop within %.1f s; cancelling it", budget)
                task.cancel()
                await asyncio.wait({task}, timeout=1.0)

        self.loop.run_until_complete(stop())
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise RuntimeError("the ingest session failed while stopping") from task.exception()

    def flush(self) -> None:
        """Publish what the producer refused so far, then wait for the broker to acknowledge everything."""
        session, publisher = self.session, self.session.pipeline.publisher
        deadline = time.monotonic() + max(0.0, self.service.shutdown_remaining_s() - _CLOSE_RESERVE_S)
        while True:
            drained = publisher.drain()
            if drained and session.pipeline.buffered:
                session.flush()  # frames held back while the backlog was full
                continue
            if drained:
                break
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{publisher.backlog} records were never accepted by the producer")
            self.bus.poll(0.05)
        self.bus.flush(timeout=max(0.0, deadline - time.monotonic()))
        t = self.tracker
        log.info("ingest flushed", extra={
            "md_batches": publisher.batches, "quality_records": publisher.records, "topics": self.bus.offsets(),
            "delivered": t.delivered, "delivery_errors": t.failed, "frames": session.pipeline.frames_in,
            "events": session.pipeline.events_out, "poison": session.pipeline.poison_out})  # fmt: skip

    def close_loop(self) -> None:
        """Cancel what is left on the event loop (client internals) and close it."""
        loop = self.loop
        if loop.is_closed():
            return
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for t in pending:
            t.cancel()
        if pending:
            loop.run_until_complete(asyncio.wait(pending, timeout=1.0))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    def close_bus(self) -> None:
        self.bus.close(timeout=max(0.1, self.service.shutdown_remaining_s()))


def setup(service: WorkloadService, settings: Settings) -> LoopStep:
    """The ``ingest`` workload: options → IngestConfig, a Kafka bus, checks ``kafka``, ``exchange`` and
    ``publisher`` (depends on ``kafka``), hooks in data-flow order; returns the event-loop slice step."""
    opts = parse_options(settings, IngestOptions)
    config = ingest_config(opts)
    tracker = DeliveryTracker()
    security = settings.kafka.client_security()
    bus = KafkaBus(
        settings.kafka.bootstrap_servers,
        client_id=config.name,
        linger_ms=opts.linger_ms,
        backpressure_timeout=_BACKPRESSURE_S,
        on_delivery=tracker.on_delivery,
        producer_config=security,
        consumer_config=security,
        registry=service.registry,
    )
    runner = IngestRunner(service, config, opts, bus, tracker)
    service.add_check("kafka", runner.kafka_check)
    service.add_check("exchange", runner.exchange_check)
    service.add_check("publisher", runner.publisher_check, depends_on=["kafka"])
    service.on_shutdown(runner.stop_session, "stop ingest session")
    service.on_shutdown(runner.flush, "flush publisher")
    service.on_shutdown(runner.close_loop, "close event loop")
    service.on_shutdown(runner.close_bus, "close kafka")
    return runner.step
