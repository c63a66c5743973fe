"""``tradeplane workload decide`` in live mode: the desk decides on ``md.*`` as it arrives.

Why not the lock-step: in paper mode execute's simulator drives decide one Kafka round trip per call, so a
decision waits for the simulator's hold-back and a round trip (docs/benchmarks.md: p99 of seconds). Live,
decide owns its clock: the md micro-batches are released in receive order up to the frontier as they
arrive (:class:`~.market.LiveFeed`, no fixed hold-back), an order-less backtest loop keeps the book and the
decision tick (:class:`~.market.MarketClock`), and the desk is called at each tick. Orders go out on
``orders.<account>`` at once (``OrderCommands``; this session's ``seq`` 1 is the hello execute greets with the
venue's account, then 2, 3, …; never waiting for an answer); execute's reports come back on
``venue.<account>`` and reach the desk in its next call (:mod:`.decide_context`). The outbox is published
exactly as in paper mode.

Offsets of the md topics are committed after processing, at most every ``commit_every_s`` (the commit
flushes the producer first, so what a batch produced is delivered before the batch is marked done). A
restart starts a new session (a fresh desk, parents numbered from 1 again); execute follows the new session.
"""

from __future__ import annotations

import logging
import secrets
import time
from functools import partial

from prometheus_client import Counter, Gauge, Histogram
from pydantic import Field

from ...api.v1alpha1.strategy import market_data_venue
from ...engine.events import EventArray
from ...engine.runtime.instruments import Instrument
from ...engine.runtime.outbox import Outbox
from ...engine.sim.portfolio import new_account
from ...engine.sim.runner import BacktestConfig, BacktestRun, Context, MarketBatch, Records
from ...settings import Settings
from ..bus.dedup import SequenceFilter
from ..bus.kafka import KafkaConsumer
from ..bus.mdbatch import MdBatchError, decode_md_batch
from ..bus.outbox import outbox_messages, outbox_topics
from ..bus.topics import md_pattern, orders_topic, venue_topic
from ..decide.main import DecideOptions, _final_report, _Sequencer, route_sources, serve_clients
from ..decide.report import StatusBook, StatusReporter
from ..decide.routes import desk_routes
from ..local.manifests import Desk
from ..local.runner import backtest_config, build_desk
from ..local.source import synthetic_market
from ..paper.options import bus_check, lockstep_bus
from ..paper.protocol import CancelParent, OrderCommands, ProtocolError, decode_venue_step, encode_order_commands
from ..service.health import CheckResult
from ..service.service import LoopStep, WorkloadService
from .decide_context import LiveContext, VenueReports, after_announcement
from .market import LiveFeed, MarketClock

log = logging.getLogger("tradeplane.workload.decide")
_MS = 1_000_000
#: until execute greets the session (and while it has sent no command), the hello is said again this often:
#: an execute's orders consumer reads from the end, and one assigned a moment before it resolves that offset
#: can skip the hello that its own announcement prompted
HELLO_EVERY_S = 2.0
#: the venue reports consumer's fetch wait at least (a tick is 100 ms by default)
REPORTS_FETCH_WAIT_MS = 10
_LAG_BUCKETS = (1e-3, 2.5e-3, 5e-3, 7.5e-3, 1e-2, 1.25e-2, 1.5e-2, 1.75e-2, 2e-2, 2.25e-2, 2.5e-2, 3e-2, 4e-2, 5e-2,
                7.5e-2, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)  # fmt: skip


class LiveDecideOptions(DecideOptions):
    max_wait_ms: float = Field(default=50.0, ge=0, description="Live mode: how long (wall time) a silent "
                               "symbol may hold back the release of the others' market data; 0: never.")  # fmt: skip
    max_poll_md: int = Field(default=5_000, ge=1, description="Live mode: md records per loop step at most.")
    poll_timeout_ms: float = Field(default=20.0, gt=0, le=1_000, description="Live mode: how long a loop step "
                                   "waits for the first md record (a quiet market still re-checks the release "
                                   "bound this often).")  # fmt: skip


def lineage(opts: DecideOptions, session: int) -> dict[str, object]:
    """What every audit record of this process says about where its decisions came from."""
    return {"run_id": opts.run_id, "manifests": [str(p) for p in opts.manifests], "mode": "live", "session": session}


def warm_up(manifests: Desk, opts: LiveDecideOptions, cfg: BacktestConfig, instruments: list[Instrument]) -> float:
    """Run a throwaway desk over a few seconds of synthetic market through the same incremental loop, so that
    numba compiles (or loads) every kernel and the models score once before the first real event: otherwise
    the first seconds of live decisions would wait for the compiler. Returns the seconds it took."""
    started = time.perf_counter()
    throwaway, _, _ = build_desk(manifests, opts.home, initial_balance=opts.initial_balance)
    events = synthetic_market(instruments, seconds=3.0, seed=0).events
    half = events.shape[0] // 2
    run = BacktestRun(events[:half], throwaway, cfg)
    run.advance(int(events["ingest_ts"][half - 1]))
    run.extend(events[half:])
    run.finish()
    return time.perf_counter() - started


def setup_live(service: WorkloadService, settings: Settings, opts: LiveDecideOptions, manifests: Desk) -> LoopStep:
    serve = serve_clients(opts, service)
    desk, instruments, families = build_desk(manifests, opts.home, initial_balance=opts.initial_balance,
                                             clock=time.perf_counter_ns, serve=serve)  # fmt: skip
    routes = desk_routes(families, desk, root=opts.routes_dir, poll_s=opts.routes_poll_s,
                         sources=route_sources(opts, settings, families))  # fmt: skip
    cfg = backtest_config(desk, instruments, initial_balance=opts.initial_balance, seed=opts.seed)
    n = len(instruments)
    contracts = cfg.contracts
    ctx = LiveContext({s: c.lot_size for s, c in contracts.items()}, {s: c.tick_size for s, c in contracts.items()},
                      new_account([contracts[s] for s in range(n)], opts.initial_balance / n))  # fmt: skip
    warm_s = warm_up(manifests, opts, cfg, instruments)
    session = secrets.randbits(63) or 1  # 0 is execute's announcement
    inbox = VenueReports(session, ctx, started_ns=time.time_ns())
    feed = LiveFeed({(market_data_venue(i.venue), i.symbol): i.id for i in instruments},
                    max_wait_ns=round(opts.max_wait_ms * _MS))  # fmt: skip
    pattern = md_pattern(market_data_venue(i.venue) for i in instruments)
    bus = lockstep_bus(settings, opts, "decide", service.registry)
    bus.ensure_topics(outbox_topics(manifests.strategies, account=opts.account))  # no creation on a first entry
    md: KafkaConsumer = bus.consumer(pattern, max_queue=10_000, name=f"decide-{opts.account}-md")
    # venue reports reach the desk at its next tick anyway: no need to poll their topic as eagerly as md
    reports_wait = max(opts.fetch_wait_ms, REPORTS_FETCH_WAIT_MS)
    reports_in: KafkaConsumer = bus.consumer(venue_topic(opts.account), max_queue=1_000,
                                             name=f"decide-{opts.account}-venue-{session:x}",
                                             auto_offset_reset="earliest", fetch_wait_max_ms=reports_wait)  # fmt: skip
    seen = SequenceFilter()
    out_seq = _Sequencer()
    lineage_out = lineage(opts, session)
    orders_out = orders_topic(opts.account)
    reg = service.registry
    published = Counter("tradeplane_decide_records", "Records published, by family.", ["family"], registry=reg)
    lag = Histogram("tradeplane_decide_lag_seconds", "Wall time at publish minus the exchange time of the newest "
                    "event the decision saw.", buckets=_LAG_BUCKETS, registry=reg)  # fmt: skip
    tick_lag = Histogram("tradeplane_decide_tick_lag_seconds", "Wall time at publish minus the decision tick (local "
                         "time: ingest's receive clock): ingest → Kafka → decide.", buckets=_LAG_BUCKETS,
                         registry=reg)  # fmt: skip
    commands_total = Counter("tradeplane_decide_commands", "Parent commands sent to execute, by op.", ["op"],
                             registry=reg)  # fmt: skip
    reports_total = Counter("tradeplane_decide_reports", "Venue reports received, by outcome.", ["outcome"],
                            registry=reg)  # fmt: skip
    late_total = Counter("tradeplane_decide_late_events", "Events of a quiet symbol received after the release "
                         "had passed them (moved up to it).", registry=reg)  # fmt: skip
    frontier_lag = Gauge("tradeplane_decide_frontier_lag_seconds", "Wall time minus the receive time released "
                         "up to, at the last loop step.", registry=reg)  # fmt: skip
    books = [StatusBook(name) for name in manifests.strategies] if opts.report_status_s > 0 else []
    reporters = [StatusReporter(b, settings.namespace, every_s=opts.report_status_s) for b in books]
    state = {"orders_seq": 0, "calls": 0, "commands": 0, "late": 0, "newest": 0, "hellos": 0, "announced": 0}
    times = {"last_commit": 0.0, "last_md": 0.0, "hello": 0.0}
    stash: list[Outbox] = []
    failure: list[str] = []

    def publish(batch: Outbox) -> None:
        for book in books:
            book.observe(batch)
        for topic, key, value in outbox_messages(batch, account=opts.account, lineage=lineage_out):
            bus.publish(topic, key, value, seq=out_seq(topic, key))
            published.labels(topic.split(".", 1)[0]).inc()

    desk.on_drain = stash.append

    def call(market: Context, batch: MarketBatch) -> None:
        """One decision tick: the desk on the market batch and execute's reports; commands out first."""
        if batch.events.shape[0]:
            state["newest"] = max(state["newest"], int(batch.events["exchange_ts"].max()))
        ctx.now, ctx.touch_of = batch.now, market.touch
        fills, reports = ctx.take_executions()
        desk.on_batch(ctx, MarketBatch(batch.now, batch.events, batch.tops, fills, reports))
        state["calls"] += 1
        commands = ctx.take_commands()
        if commands:
            state["orders_seq"] += 1
            msg = OrderCommands(session, state["orders_seq"], batch.now, commands)
            bus.publish(orders_out, opts.account, encode_order_commands(msg), seq=msg.seq)
            state["commands"] += len(commands)
            for c in commands:
                commands_total.labels("cancel" if isinstance(c, CancelParent) else "start").inc()
        sent = bool(commands)
        for out in stash:
            sent = sent or len(out) > 0
            publish(out)
        stash.clear()
        if sent and state["newest"]:
            now = time.time_ns()
            lag.observe((now - state["newest"]) / 1e9)
            tick_lag.observe((now - batch.now) / 1e9)

    def observe(events: EventArray, tops: Records) -> None:
        """Released market data between ticks: the desk's features catch up now, not at the tick."""
        if events.shape[0]:
            state["newest"] = max(state["newest"], int(events["exchange_ts"].max()))
        desk.on_market(events, tops)

    clock = MarketClock(feed, cfg, call, observe)

    def hello() -> None:
        """Seq 1 of the session, no commands: execute takes the session and answers with the account."""
        bus.publish(orders_out, opts.account, encode_order_commands(OrderCommands(session, 1, time.time_ns())), seq=1)
        bus.flush(timeout=5.0)
        state["orders_seq"] = max(state["orders_seq"], 1)
        state["hellos"] += 1
        times["hello"] = time.monotonic()

    def read_reports() -> None:
        for r in reports_in.fetch(1_000, timeout=0.0):
            try:
                step = decode_venue_step(r.value)
            except ProtocolError as exc:
                bus.send_to_dlq(r, f"venue_{exc.field}", str(exc))
                reports_total.labels("invalid").inc()
                continue
            try:
                applied = inbox.accept(step)
            except ProtocolError as exc:
                failure.append(str(exc))
                log.error("venue reports: %s", exc, extra={"session": session, "reason": str(exc)})
                raise
            reports_total.labels("applied" if applied else "ignored").inc()
        if inbox.announced_at > state["announced"]:
            state["announced"] = inbox.announced_at
            try:
                after_announcement(session, state["commands"], inbox.announced_at)
            except ProtocolError as exc:
                failure.append(str(exc))
                log.error("execute restarted", extra={"session": session, "reason": str(exc)})
                raise
            hello()
        elif not inbox.last and not state["commands"] and time.monotonic() - times["hello"] >= HELLO_EVERY_S:
            hello()  # not greeted yet: an execute that started just now may have missed it

    def step() -> None:
        records = md.fetch(opts.max_poll_md, timeout=opts.poll_timeout_ms / 1000)
        read_reports()
        for r in records:
            if r.seq is not None and not seen.accept(r.topic, r.key, r.seq):
                continue
            try:
                feed.add(decode_md_batch(r.value))
            except MdBatchError as exc:
                bus.send_to_dlq(r, f"md_{exc.field}", str(exc))
        if records:
            times["last_md"] = time.monotonic()
        clock.advance()
        if feed.late != state["late"]:
            late_total.inc(feed.late - state["late"])
            state["late"] = feed.late
        if feed.released:
            frontier_lag.set((time.time_ns() - feed.frontier) / 1e9)
        for reporter in reporters:
            reporter.maybe_report()
        for msg in routes.check():  # rollout weights from the operator, no restart
            log.info(msg)
        if records and time.monotonic() - times["last_commit"] >= opts.commit_every_s:
            md.commit()  # flushes the producer first: what these batches produced is delivered
            times["last_commit"] = time.monotonic()

    def market_check() -> CheckResult:
        if not feed.released:
            return CheckResult.failed("waiting for market data")
        behind = (time.time_ns() - feed.frontier) / 1e9
        return CheckResult.passed(f"{feed.released} events released; frontier {behind:.3f} s behind wall time; "
                                  f"{feed.late} late")  # fmt: skip

    def desk_check() -> CheckResult:
        if failure:
            return CheckResult.failed(failure[0])
        taken = "" if inbox.last else " (execute has not taken the session yet)"
        return CheckResult.passed(f"session {session}: {state['calls']} calls, {state['commands']} commands in "
                                  f"{state['orders_seq']} messages, {inbox.last} venue reports{taken}")  # fmt: skip

    def commit() -> None:
        if times["last_md"]:
            md.commit()

    service.add_check("kafka", bus_check(bus))
    service.add_check("market-data", market_check, depends_on=["kafka"], readiness=False)
    service.add_check("desk", desk_check, depends_on=["kafka"])
    service.on_shutdown(commit, "commit")
    service.on_shutdown(md.close, "stop consuming")
    service.on_shutdown(reports_in.close, "stop reading venue reports")
    service.on_shutdown(lambda: bus.flush(timeout=max(0.1, service.shutdown_remaining_s())), "flush producer")
    service.on_shutdown(lambda: bus.close(timeout=max(0.1, service.shutdown_remaining_s())), "close")
    for reporter in reporters:
        service.on_shutdown(partial(_final_report, reporter), "report status")
    hello()
    log.info("live session started", extra={"session": session, "strategies": list(manifests.strategies),
                                            "instruments": [i.key for i in instruments],
                                            "warm_up_s": round(warm_s, 3)})  # fmt: skip
    return step
