"""``tradeplane workload execute``: the venue side of a desk — in paper mode the simulator.

Loop step: fetch ``md.*`` micro-batches, de-duplicate them by their per-symbol sequence, release them in
receive order (:class:`~tradeplane.workloads.paper.feed.MarketFeed`), feed the simulator
(:class:`~tradeplane.engine.sim.runner.BacktestRun`) and advance it to the frontier minus ``hold_back_ms``.
Every strategy call on the way is one lock-step round trip with ``decide`` (:mod:`..paper.protocol`):
the venue step goes out on ``venue.<account>``, the answer comes back on ``orders.<account>``.

Why hold back: the simulated exchange at local time ``t`` must have every event that happened by ``t``.
Events arrive with a feed latency; advancing only to ``frontier − hold_back`` lets those in flight land
first. Set it above the feed's worst latency and the run is byte-identical to the local run over the same
events; events that still arrive too late are counted (``tradeplane_execute_late_events_total``).

Shutdown (SIGTERM): stop consuming, then *drain*: run the session to the last event received (every
strategy call still goes to ``decide``, so keep ``decide`` running until ``execute`` has exited), flush the
producer, close. A restart starts a new paper session (a fresh account); ``decide`` follows.

Live mode (the desk's Strategies say ``spec.mode: live``) is :mod:`..live.execute`: decide's commands carried
out on Binance through :mod:`..venues`.
"""

from __future__ import annotations

import logging
import secrets
import time

from prometheus_client import Counter, Gauge
from pydantic import Field

from ...api.v1alpha1.strategy import market_data_venue
from ...engine.sim.runner import BacktestRun
from ...settings import Settings
from ..bus.dedup import SequenceFilter
from ..bus.kafka import KafkaConsumer
from ..bus.mdbatch import MdBatchError, decode_md_batch
from ..bus.topics import md_pattern, orders_topic, venue_topic
from ..local.manifests import load_desk
from ..local.runner import desk_instruments, venue_config
from ..paper.feed import MarketFeed
from ..paper.options import PaperDeskOptions, bus_check, lockstep_bus
from ..paper.protocol import OrderCommands, ProtocolError, decode_order_commands
from ..paper.remote import RemoteDesk
from ..service.health import CheckResult
from ..service.main import parse_options
from ..service.service import LoopStep, WorkloadService

log = logging.getLogger("tradeplane.workload.execute")
_MS = 1_000_000


class ExecuteOptions(PaperDeskOptions):
    hold_back_ms: float = Field(default=250.0, ge=0, description="Local time is advanced to the newest event "
                                "received minus this (above the feed's worst latency; module docs).")  # fmt: skip
    min_feed_latency_ms: float = Field(default=0.0, ge=0, description="Smallest feed latency the clock alignment "
                                       "enforces (the local runner uses 1 ms for captures).")  # fmt: skip
    start_wait_ms: float = Field(default=2_000.0, ge=0, description="How long symbols that sent nothing yet may "
                                 "hold back the first release.")  # fmt: skip
    max_poll: int = Field(default=2_000, ge=1, description="md records per loop step at most.")


def setup(service: WorkloadService, settings: Settings) -> LoopStep:
    from ..live.execute import live_requested, setup_live  # imports the paper modules: not at the top

    if live_requested(settings):  # the Strategies say spec.mode: live (docs/dataplane.md, "Live mode: execute")
        return setup_live(service, settings)
    opts = parse_options(settings, ExecuteOptions)
    desk = load_desk(list(opts.manifests))
    instruments, legs = desk_instruments(desk)
    cfg = venue_config(legs, instruments, initial_balance=opts.initial_balance, seed=opts.seed)
    feed = MarketFeed({(market_data_venue(i.venue), i.symbol): i.id for i in instruments},
                      min_feed_latency_ns=round(opts.min_feed_latency_ms * _MS),
                      start_wait_ns=round(opts.start_wait_ms * _MS))  # fmt: skip
    pattern = md_pattern(market_data_venue(i.venue) for i in instruments)
    bus = lockstep_bus(settings, opts, "execute", service.registry)
    md: KafkaConsumer = bus.consumer(pattern, max_queue=10_000, name=f"execute-{opts.account}-md")
    answers: KafkaConsumer = bus.consumer(orders_topic(opts.account), max_queue=1_000,
                                          name=f"execute-{opts.account}-orders-{secrets.token_hex(4)}",
                                          auto_offset_reset="earliest")  # fmt: skip
    seen = SequenceFilter()
    session = secrets.randbits(63)
    late = Counter("tradeplane_execute_late_events", "Events fed after the exchange time they belong to.",
                   registry=service.registry)  # fmt: skip
    steps = Counter("tradeplane_execute_steps", "Lock-step round trips with decide.", registry=service.registry)
    waiting = Gauge("tradeplane_execute_answer_wait_seconds", "Time the last step waited for decide.",
                    registry=service.registry)  # fmt: skip
    state = {"last_md": 0.0, "last_answer": 0.0, "waiting_since": 0.0, "late": 0}
    topic_out = venue_topic(opts.account)

    def exchange(seq: int, data: bytes) -> OrderCommands:
        bus.publish(topic_out, opts.account, data, seq=seq)
        started = time.monotonic()
        state["waiting_since"] = started
        limit = opts.answer_timeout_s
        if service.stop_requested.is_set():  # draining: what is left of the shutdown deadline
            limit = min(limit, max(0.1, service.shutdown_remaining_s()))
        while time.monotonic() - started < limit:
            for r in answers.fetch(100, timeout=0.05):
                try:
                    msg = decode_order_commands(r.value)
                except ProtocolError as exc:
                    bus.send_to_dlq(r, "protocol", str(exc))
                    continue
                if msg.session != session or msg.seq < seq:
                    continue  # another session's, or an answer we already have
                if msg.seq > seq:
                    raise ProtocolError("seq", f"answer to step {msg.seq} while waiting for {seq}")
                answers.commit(flush_producer=False)
                steps.inc()
                state["last_answer"], state["waiting_since"] = time.monotonic(), 0.0
                waiting.set(state["last_answer"] - started)
                return msg
        raise TimeoutError(f"decide did not answer step {seq} of session {session} within {limit:.1f} s "
                           f"(is the decide workload for account {opts.account!r} running?)")  # fmt: skip

    remote = RemoteDesk(exchange, session=session, n_symbols=len(instruments), levels=cfg.top_levels)
    holder: dict[str, BacktestRun] = {}
    hold_back = round(opts.hold_back_ms * _MS)

    def step() -> None:
        records = md.fetch(opts.max_poll, timeout=0.1)
        for r in records:
            if r.seq is not None and not seen.accept(r.topic, r.key, r.seq):
                continue
            try:
                feed.add(decode_md_batch(r.value))
            except MdBatchError as exc:
                bus.send_to_dlq(r, f"md_{exc.field}", str(exc))
        if records:
            state["last_md"] = time.monotonic()
        events = feed.take()
        run = holder.get("run")
        if events.shape[0]:
            if run is None:
                run = holder["run"] = BacktestRun(events, remote, cfg)
                log.info("paper session started", extra={"session": session, "events": int(events.shape[0])})
            else:
                run.extend(events)
        if run is not None:
            run.advance(feed.local_frontier - hold_back)
            new_late = run.sim.late_events - state["late"]
            if new_late:
                late.inc(new_late)
                state["late"] = run.sim.late_events
        if records:
            md.commit(flush_producer=False)

    def drain() -> None:
        run = holder.get("run")
        if run is None:
            return
        result = run.finish()
        log.info("paper session drained", extra={"session": session, "steps": remote.seq,
                                                 "parents": int(result.parents.shape[0]),
                                                 "fills": int(result.fills.shape[0]),
                                                 "late_events": run.sim.late_events})  # fmt: skip

    def decide_check() -> CheckResult:
        since = state["waiting_since"]
        if since and time.monotonic() - since > min(5.0, opts.answer_timeout_s):
            return CheckResult.failed(f"waiting {time.monotonic() - since:.1f} s for decide's answer to step "
                                      f"{remote.seq}")  # fmt: skip
        return CheckResult.passed(f"{remote.seq} steps answered")

    def market_check() -> CheckResult:
        if not state["last_md"]:
            return CheckResult.failed("no market data received yet")
        return CheckResult.passed(f"last md batch {time.monotonic() - state['last_md']:.1f} s ago; "
                                  f"{feed.released} events fed")  # fmt: skip

    service.add_check("kafka", bus_check(bus))
    service.add_check("market-data", market_check, depends_on=["kafka"], readiness=False)
    service.add_check("decide", decide_check, depends_on=["kafka"])
    service.on_shutdown(md.close, "stop consuming")
    service.on_shutdown(drain, "drain the paper session")
    service.on_shutdown(lambda: bus.flush(timeout=max(0.1, service.shutdown_remaining_s())), "flush producer")
    service.on_shutdown(lambda: bus.close(timeout=max(0.1, service.shutdown_remaining_s())), "close")
    return step
