"""``tradeplane workload execute`` in live mode: decide's order commands carried out on Binance.

Data flow (docs/dataplane.md, "Live mode: execute")::

    orders.<account> ─► LiveExecution: one ExecutionDesk per decide session ─► Binance adapter (REST)
    md.<venue>.*     ─► TouchBook (touch per symbol)                         ◄─ user-data stream / polls
    venue.<account>  ◄─ fills, order reports, changed parents, account, touch (per decide session, seq 1, 2, …)

Why the adapter runs on a private event loop driven in slices from the service's sync loop step (as ingest
does): the adapter is asyncio (aiohttp REST, the user-data WebSocket) while the Kafka clients are sync and not
thread-safe; one thread runs both, the heartbeat is bumped only after a slice actually ran, and a blocked loop
shows in ``/healthz``. Each step: read md (touch) and commands, apply the commands to the session's desk, run
one slice on the loop — collect venue reports, step the desk, submit and cancel what it asks (concurrently),
resolve submits the adapter could not tell — and publish a venue report when something changed.

Startup safety: before any command is taken, every open order whose client id carries this account's prefix
(:func:`~.execute_orders.account_prefix`) is cancelled — a crashed execute must not leave orders working
that no desk knows. Shutdown: stop taking commands, stop the working parents and cancel their children
(``cancel_on_shutdown``), publish the last report, flush, close the adapter.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
from prometheus_client import Counter, Histogram
from pydantic import BaseModel, ConfigDict, ValidationError

from ...api.v1alpha1.strategy import TradingMode, market_data_venue
from ...engine.sim.orders import REASON_NONE, REASON_POST_ONLY_WOULD_CROSS
from ...engine.sim.portfolio import Portfolio
from ...settings import Settings, SettingsError
from ..bus.dedup import SequenceFilter
from ..bus.kafka import KafkaBus, KafkaConsumer
from ..bus.mdbatch import MdBatchError, decode_md_batch
from ..bus.topics import md_pattern, orders_topic, venue_topic
from ..local.manifests import ManifestError, load_desk, trading_mode
from ..local.runner import desk_instruments, venue_config
from ..paper.options import PaperDeskOptions, bus_check, lockstep_bus
from ..paper.protocol import ProtocolError, decode_order_commands, encode_venue_step
from ..service.health import CheckResult
from ..service.main import parse_options
from ..service.service import LoopStep, WorkloadService
from ..venues.base import (
    OrderRejectedError,
    OrderStateUnknownError,
    OrderValidationError,
    UnknownOrderError,
    UnsupportedOrderError,
    VenueError,
)
from ..venues.binance_errors import BinanceError
from ..venues.binance_rest import BinanceVenue, binance_venue
from .execute_options import LiveExecuteOptions, binance_config
from .execute_orders import account_prefix, order_spec
from .execute_session import Child, LiveExecution
from .execute_touch import TouchBook

log = logging.getLogger("tradeplane.workload.execute")
T = TypeVar("T")
_MS = 1_000_000
#: Binance codes of a post-only order that would have taken (spot -2010 "would immediately match", USD-M -5022)
_WOULD_CROSS = (-2010, -5022)
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class _ManifestsOnly(BaseModel):
    model_config = ConfigDict(extra="ignore")
    manifests: Any


def live_requested(settings: Settings) -> bool:
    """Whether the manifests in the options say live (False when they are missing: the paper path reports it)."""
    try:
        raw = _ManifestsOnly.model_validate(settings.workload.options)
        paths = PaperDeskOptions.model_validate({"manifests": raw.manifests}).manifests
    except ValidationError:
        return False
    try:
        return trading_mode(load_desk(list(paths))) is TradingMode.LIVE
    except ManifestError as exc:
        raise SettingsError(str(exc)) from None


class LiveExecuteRunner:
    """The live execute process: loop step, checks, shutdown hooks (see the module docstring)."""

    def __init__(self, service: WorkloadService, settings: Settings, opts: LiveExecuteOptions) -> None:
        self.service, self.opts = service, opts
        desk = load_desk(list(opts.manifests))
        instruments, legs = desk_instruments(desk)
        venues = {str(i.venue) for i in instruments}
        if len(venues) != 1:
            raise SettingsError(f"live execute trades on one venue per account; the desk has {sorted(venues)}")
        cfg = venue_config(legs, instruments, initial_balance=opts.initial_balance, seed=opts.seed)
        self.levels = cfg.top_levels
        self.symbols = [i.symbol for i in instruments]
        ticks = {s: c.tick_size for s, c in cfg.contracts.items()}
        lots = {s: c.lot_size for s, c in cfg.contracts.items()}
        self.ticks = ticks
        self.config = binance_config(opts, settings, venues.pop(), tuple(dict.fromkeys(self.symbols)))
        self.venue: BinanceVenue = binance_venue(self.config)
        portfolio = Portfolio(
            [cfg.contracts[s] for s in range(len(instruments))], opts.initial_balance / len(instruments)
        )
        self.state = LiveExecution(opts.account, self.symbols, ticks, lots, portfolio, executor=cfg.executor,
                                   seed=opts.seed)  # fmt: skip
        self.touch = TouchBook({(market_data_venue(i.venue), i.symbol): i.id for i in instruments}, ticks)
        pattern = md_pattern(market_data_venue(i.venue) for i in instruments)
        self.bus: KafkaBus = lockstep_bus(settings, opts, "execute", service.registry)
        tag = secrets.token_hex(4)
        self.md: KafkaConsumer = self.bus.consumer(pattern, max_queue=10_000, name=f"execute-{opts.account}-md-{tag}",
                                                   auto_offset_reset="latest")  # fmt: skip
        #: a fresh group from the end: commands sent while no execute ran are never carried out late
        self.orders: KafkaConsumer = self.bus.consumer(orders_topic(opts.account), max_queue=1_000,
                                                       name=f"execute-{opts.account}-orders-{tag}",
                                                       auto_offset_reset="latest")  # fmt: skip
        self.topic_out = venue_topic(opts.account)
        self.seen = SequenceFilter()
        self.loop = asyncio.new_event_loop()
        self.started = False
        self.announced = False
        self.seeds: dict[str, tuple[float, float]] = {}  #: venue symbol → (position, entry price) at start
        self.venue_error = ""
        self.fatal = ""
        self.taking = True
        self.last_report = 0.0
        self.last_md = 0.0
        self._retry_at = 0.0
        r = service.registry
        self.m_submitted = Counter("tradeplane_execute_orders_submitted", "Child orders sent to the venue.",
                                   ["type"], registry=r)  # fmt: skip
        self.m_cancelled = Counter("tradeplane_execute_orders_cancelled", "Cancels sent to the venue.", registry=r)
        self.m_rejected = Counter("tradeplane_execute_orders_rejected", "Child orders the venue refused (or "
                                  "that were never placed), by reason.", ["reason"], registry=r)  # fmt: skip
        self.m_fills = Counter("tradeplane_execute_fills", "Fills of this account's children.", registry=r)
        self.m_reports = Counter("tradeplane_execute_report_messages", "Venue reports sent to decide.", registry=r)
        self.m_commands = Counter("tradeplane_execute_commands", "Order command messages, by outcome.", ["outcome"],
                                  registry=r)  # fmt: skip
        self.m_latency = Histogram("tradeplane_execute_venue_roundtrip_seconds", "Venue request round trips.",
                                   ["op"], registry=r, buckets=_LATENCY_BUCKETS)  # fmt: skip
        self.latencies: list[float] = []  #: command receipt → venue ack, seconds (the last 1000; logged at exit)

    # --- the loop step ---------------------------------------------------------------------------------------
    def step(self) -> None:
        if self.fatal:
            raise ProtocolError("stopped", self.fatal)
        if not self.started:
            if time.monotonic() >= self._retry_at:
                self.loop.run_until_complete(self._start())
            else:
                self.service.stop_requested.wait(0.1)
            return
        self._read_md()
        if not self.announced:
            self._seed_and_announce()
        received = time.monotonic()
        commands = self.orders.fetch(100, timeout=self.opts.slice_ms / 2e3) if self.taking else []
        applied = False
        for rec in commands:
            try:
                msg = decode_order_commands(rec.value)
            except ProtocolError as exc:
                self.bus.send_to_dlq(rec, "protocol", str(exc))
                continue
            try:
                outcome = self.state.apply(msg, time.time_ns(), self.touch)
            except ProtocolError as exc:
                self.fatal = str(exc)
                log.error("protocol error on orders", extra={"session": msg.session, "seq": msg.seq,
                                                             "error": str(exc)})  # fmt: skip
                raise
            self.m_commands.labels(outcome).inc()
            applied = applied or outcome == "applied"
            if outcome == "applied" and msg.seq == 1:
                log.info("live session started", extra={"session": msg.session})
        self.loop.run_until_complete(self._tick(received if applied else None))
        if commands:
            self.orders.commit(flush_producer=False)
        self.bus.poll(0)

    def _read_md(self) -> None:
        records = self.md.fetch(self.opts.max_poll, timeout=0)
        for r in records:
            if r.seq is not None and not self.seen.accept(r.topic, r.key, r.seq):
                continue
            try:
                self.touch.add(decode_md_batch(r.value))
            except MdBatchError as exc:
                self.bus.send_to_dlq(r, f"md_{exc.field}", str(exc))
        if records:
            self.last_md = time.monotonic()
            self.md.commit(flush_producer=False)

    async def _start(self) -> None:
        """Connect the adapter, then cancel what an earlier execute of this account left open."""
        try:
            await self.venue.start()
            prefix = account_prefix(self.opts.account)
            left = [o for o in await self.venue.open_orders() if o.client_order_id.startswith(prefix) and o.is_open]
            for o in left:
                await self._timed("cancel", self.venue.cancel(o.symbol, o.client_order_id))
                self.m_cancelled.inc()
            held = await self._timed("positions", self.venue.positions()) if self.opts.seed_account else []
        except (VenueError, OSError, aiohttp.ClientError, ValueError) as exc:
            self.venue_error = f"{type(exc).__name__}: {exc}"
            self._retry_at = time.monotonic() + 2.0
            log.warning("venue start failed", extra={"error": self.venue_error})
            await self.venue.close()
            self.venue = binance_venue(self.config)
            return
        self.started, self.venue_error = True, ""
        self.seeds = {p.symbol: (p.qty, p.entry_price) for p in held}
        left_ids = [o.client_order_id for o in left]
        log.info("cancelled orders left open at start", extra={"count": len(left), "prefix": prefix,
                                                                "orders": left_ids})  # fmt: skip
        log.info("live execute started", extra={"venue": self.venue.venue, "symbols": self.symbols})

    def _seed_and_announce(self) -> None:
        """Seed the account from the venue's positions, then tell decide this execute takes commands.

        Both wait for what makes them true: a spot holding has no entry price, so it is entered at the mid
        once the symbol has a touch; the announcement waits for the orders assignment. A command sent in the
        moment between the assignment and the consumer's ``latest`` offset being resolved can still be
        skipped: decide says its hello again until it is greeted (``HELLO_EVERY_S``)."""
        rows = {name: i for i, name in reversed(list(enumerate(self.symbols)))}
        for name, (qty, entry) in list(self.seeds.items()):
            if math.isnan(entry) and name in rows:
                bid, ask = self.touch(rows[name])
                if not (math.isfinite(bid) and math.isfinite(ask)):
                    return
                self.seeds[name] = (qty, (bid + ask) / 2)
        if not self.orders.assignment:
            return
        foreign = self.state.seed_positions(self.seeds)
        now = time.time_ns()
        step = self.state.announcement(now, self.touch.touch, self.levels)
        self.bus.publish(self.topic_out, self.opts.account, encode_venue_step(step))
        self.bus.flush(timeout=5.0)
        self.announced = True
        log.info("account seeded from the venue; announced", extra={
            "positions": {k: v[0] for k, v in self.seeds.items()}, "not_traded": foreign})  # fmt: skip

    async def _timed(self, op: str, call: Awaitable[T]) -> T:
        t0 = time.perf_counter()
        try:
            return await call
        finally:
            self.m_latency.labels(op).observe(time.perf_counter() - t0)

    async def _tick(self, received: float | None) -> None:
        busy = bool(self.state.out.submit or self.state.out.cancel)
        wait = 0.0 if busy or received is not None else self.opts.slice_ms / 2e3
        await self._collect(wait)
        await self._resolve_unknown()
        await self._carry_out(received)  # cancels queued by commands (a parent cancel, a new session)
        self.state.step(time.time_ns(), self.touch)
        await self._carry_out(received)
        self._publish()

    async def _collect(self, wait: float) -> None:
        now = time.time_ns()
        for r in await self.venue.next_reports(wait):
            if self.state.on_report(r, now) and r.qty > 0:
                self.m_fills.inc()

    async def _carry_out(self, received: float | None) -> None:
        out = self.state.take_outbound()
        if not (out.submit or out.cancel):
            return
        calls: list[Awaitable[None]] = [self._cancel(coid) for coid in out.cancel]
        calls += [self._submit(coid, c, received) for coid, c in out.submit]
        await asyncio.gather(*calls)

    async def _submit(self, coid: str, c: Child, received: float | None) -> None:
        now = time.time_ns()
        try:
            spec = order_spec(c.row, coid, c.symbol, self.ticks[int(c.row["symbol"])],
                              self.venue.symbol_filters(c.symbol))  # fmt: skip
            ack = await self._timed("submit", self.venue.submit(spec))
        except OrderStateUnknownError as exc:
            log.warning("submit outcome unknown; resolving by order status", extra={"order": coid, "error": str(exc)})
            self.state.on_unknown(coid, now)
            return
        except (OrderRejectedError, OrderValidationError, UnsupportedOrderError, BinanceError) as exc:
            code = getattr(exc, "code", None)
            reason = f"code {code}" if isinstance(code, int) else type(exc).__name__
            self.m_rejected.labels(reason).inc()
            crossed = int(c.row["tif"]) == 1 and code in _WOULD_CROSS
            log.info("child order rejected", extra={"order": coid, "reason": reason, "error": str(exc)})
            self.state.on_rejected(
                coid, time.time_ns(), reason=REASON_POST_ONLY_WOULD_CROSS if crossed else REASON_NONE
            )
            return
        except (OSError, aiohttp.ClientError) as exc:  # unmapped transport error: may exist
            self.state.on_unknown(coid, now)
            log.warning("submit failed in transport; resolving by order status", extra={"order": coid,
                                                                                        "error": str(exc)})  # fmt: skip
            return
        self.m_submitted.labels("market" if int(c.row["type"]) == 0 else "limit").inc()
        if received is not None:
            self.latencies = [*self.latencies[-999:], time.monotonic() - received]
        self.state.on_order(coid, ack.order, ack.exchange_ts or time.time_ns())

    async def _cancel(self, coid: str) -> None:
        c = self.state.children.get(coid)
        if c is None:
            return
        try:
            o = await self._timed("cancel", self.venue.cancel(c.symbol, coid))
        except UnknownOrderError:
            return  # never placed (rejected, or unknown and not there): nothing to cancel
        except (VenueError, OSError, aiohttp.ClientError) as exc:
            log.warning("cancel failed; retried next step", extra={"order": coid, "error": str(exc)})
            self.state.out.cancel.append(coid)
            return
        self.m_cancelled.inc()
        self.state.on_order(coid, o, time.time_ns())

    async def _resolve_unknown(self) -> None:
        """A submit the adapter could not resolve: query it (never re-send under a new id before that)."""
        now = time.time_ns()
        for coid, c in self.state.unknown():
            try:
                o = await self._timed("status", self.venue.order_status(c.symbol, coid))
            except (VenueError, OSError, aiohttp.ClientError):
                continue
            if o is not None:
                self.state.on_order(coid, o, now)
            elif now - c.unknown_since > self.opts.unknown_resolve_s * 1e9:
                self.m_rejected.labels("unknown").inc()
                self.state.on_rejected(coid, now)

    def _publish(self, *, force: bool = False) -> None:
        due = time.monotonic() - self.last_report >= self.opts.report_every_ms / 1e3
        if not (due or force):
            return
        step = self.state.report(time.time_ns(), self.touch.touch, self.levels)
        if step is None:
            return
        self.bus.publish(self.topic_out, self.opts.account, encode_venue_step(step), seq=step.seq)
        self.last_report = time.monotonic()
        self.m_reports.inc()

    # --- checks (HTTP threads: read state, never block) ---------------------------------------------------------
    def venue_check(self) -> CheckResult:
        if not self.started:
            return CheckResult.failed(f"venue not started: {self.venue_error or 'connecting'}")
        h = self.venue.health()
        details = {"streaming": h.get("streaming"), "tracked_orders": h.get("tracked_orders")}
        if self.config.user_stream and not h.get("streaming"):
            return CheckResult.failed("user-data stream down (polling order status)", **details)
        return CheckResult.passed(f"{h['venue']} connected", **details)

    def session_check(self) -> CheckResult:
        if self.fatal:
            return CheckResult.failed(self.fatal)
        if not self.orders.assignment:
            return CheckResult.failed(f"waiting for the {orders_topic(self.opts.account)} assignment")
        cur = self.state.current
        c = self.state.counts
        if self.started and not self.announced:
            return CheckResult.passed(f"seeding the account: waiting for a touch of {sorted(self.seeds)} or the "
                                      "orders assignment")  # fmt: skip
        if cur is None:
            extra = f"; ignored {c['ignored']} commands of session {self.state.last_ignored_session} (its decide " \
                    "ends that session on this execute's announcement)" if c["ignored"] else ""  # fmt: skip
            return CheckResult.passed(f"waiting for a decide session (seq 1){extra}")
        return CheckResult.passed(f"session {cur.session}: command {cur.last_seq}, report {cur.report_seq}; "
                                  f"{len(self.state.working())} working children", session=cur.session)  # fmt: skip

    def market_check(self) -> CheckResult:
        if not self.last_md:
            return CheckResult.failed("no market data received yet")
        return CheckResult.passed(f"last md batch {time.monotonic() - self.last_md:.1f} s ago; {self.touch.known} of "
                                  f"{len(self.symbols)} symbols with a touch")  # fmt: skip

    # --- shutdown hooks ----------------------------------------------------------------------------------------
    def stop_taking(self) -> None:
        self.taking = False
        self.orders.close()
        self.md.close()

    def cancel_working(self) -> None:
        """Stop the parents, cancel their children, collect the venue's answers, publish the last report."""
        if not self.started or self.loop.is_closed():
            return
        budget = max(0.5, self.service.shutdown_remaining_s() * 0.5)

        async def run() -> None:
            if self.opts.cancel_on_shutdown:
                self.state.cancel_all_parents(time.time_ns())
                for coid, c in self.state.working():
                    if not c.cancel_sent:
                        c.cancel_sent = True
                        self.state.out.cancel.append(coid)
                out = self.state.take_outbound()
                await asyncio.gather(*(self._cancel(coid) for coid in out.cancel))
            await self._collect(0.3)
            self.state.step(time.time_ns(), self.touch)
            dropped = self.state.take_outbound()  # nothing new goes out while stopping
            for coid, _ in dropped.submit:
                self.state.on_rejected(coid, time.time_ns())
            self._publish(force=True)

        self.loop.run_until_complete(asyncio.wait_for(run(), budget))
        lat = sorted(self.latencies)
        log.info("live execute stopped", extra={
            "working": len(self.state.working()), "counts": self.state.counts,
            "command_to_ack_ms_p50": round(lat[len(lat) // 2] * 1e3, 2) if lat else math.nan,
            "command_to_ack_ms_max": round(lat[-1] * 1e3, 2) if lat else math.nan})  # fmt: skip

    def close_venue(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.run_until_complete(self.venue.close())
        pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
        for t in pending:
            t.cancel()
        if pending:
            self.loop.run_until_complete(asyncio.wait(pending, timeout=1.0))
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()


def setup_live(service: WorkloadService, settings: Settings) -> LoopStep:
    """Live execute: checks ``kafka``, ``venue``, ``session`` (and informational ``market-data``), hooks in
    data-flow order; returns the loop step."""
    opts = parse_options(settings, LiveExecuteOptions)
    runner = LiveExecuteRunner(service, settings, opts)
    service.add_check("kafka", bus_check(runner.bus))
    service.add_check("venue", runner.venue_check)
    service.add_check("session", runner.session_check, depends_on=["kafka"])
    service.add_check("market-data", runner.market_check, depends_on=["kafka"], readiness=False)
    service.on_shutdown(runner.stop_taking, "stop taking commands")
    service.on_shutdown(runner.cancel_working, "cancel working children")
    service.on_shutdown(lambda: runner.bus.flush(timeout=max(0.1, service.shutdown_remaining_s())), "flush producer")
    service.on_shutdown(runner.close_venue, "close venue")
    service.on_shutdown(lambda: runner.bus.close(timeout=max(0.1, service.shutdown_remaining_s())), "close")
    step: Callable[[], None] = runner.step
    return step
