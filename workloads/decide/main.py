"""``tradeplane workload decide``: the desk runtime — features, model router, gates, rules, sizing, risk —
publishing signals, intents, audit records, order and fill rows, and the desk's own rows.

Live mode (the desk's Strategies say ``spec.mode: live``): :mod:`..live.decide`, deciding on ``md.*`` as it
arrives. Paper mode: each venue step from ``execute`` (``venue.<account>``) is one call
of the desk, answered on ``orders.<account>`` with the parents it started and cancelled
(:class:`~tradeplane.workloads.paper.decider.PaperDecider`). The desk's outbox goes out with the same
encoding as the local run (:func:`~tradeplane.workloads.bus.outbox.outbox_messages`), keyed by symbol, each
record with a per-topic, per-key sequence (``tp-seq``) so the sink can drop redeliveries.

Offsets of ``venue.<account>`` are committed (at most every ``commit_every_s``) after the answers and the outbox
were handed to the producer (the commit flushes it first); a step
delivered twice is answered once (the cached answer is sent again).

Models are scored in-process (ONNX, from ``home``), or — with ``serve_url_template`` set — every ModelVersion
whose ``spec.serving.mode`` is ``rayserve`` is scored through its family's Ray Serve application
(:mod:`.serving`); routing between stable, canary and shadow stays in the desk's ModelRouter either way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Histogram
from pydantic import Field

from ...api.v1alpha1.strategy import TradingMode
from ...engine.runtime.desk import DeskRuntime
from ...engine.runtime.outbox import Outbox
from ...settings import Settings, SettingsError
from ..bus.kafka import KafkaConsumer
from ..bus.outbox import outbox_messages, outbox_topics
from ..bus.topics import orders_topic, venue_topic
from ..local.manifests import load_desk, trading_mode
from ..local.runner import backtest_config, build_desk
from ..paper.decider import PaperDecider
from ..paper.options import PaperDeskOptions, bus_check, lockstep_bus
from ..paper.protocol import ProtocolError, decode_venue_step, encode_order_commands
from ..serve.client import ClientOptions
from ..service.health import CheckResult
from ..service.main import parse_options
from ..service.service import LoopStep, WorkloadService
from .report import StatusBook, StatusReporter
from .routes import ROUTES_DIR, RoutesSource, RoutesWatcher, api_sources, desk_routes
from .serving import ServeClients

log = logging.getLogger("tradeplane.workload.decide")


class DecideOptions(PaperDeskOptions):
    home: Path = Field(default=Path(".tradeplane"), description="Where ModelVersion artifacts are found "
                       "(models/<version>/), as for `tradeplane run --home`.")  # fmt: skip
    run_id: str = Field(default="cluster", description="Lineage of the audit records (the sink's run_id).")
    max_poll: int = Field(default=100, ge=1, description="Venue steps per loop step at most.")
    report_status_s: float = Field(default=0.0, ge=0, description="Merge-patch positions, PnL and the last signal "
                                   "into each Strategy's status at most this often (s); 0: off. Needs the "
                                   "namespace (TRADEPLANE_NAMESPACE) and RBAC on strategies/status.")  # fmt: skip
    serve_url_template: str = Field(default="", description="Ray Serve HTTP proxy of a model family, with "
                                    "{family} substituted (the operator sets http://{family}-serve-serve-svc.<ns>"
                                    ".svc:8000); empty: every version is scored in-process.")  # fmt: skip
    serve_timeout_ms: float = Field(default=100.0, gt=0, description="Deadline of one Serve call; a miss opens "
                                    "the breaker and decisions fall back to rules (docs/dataplane.md).")  # fmt: skip
    routes_dir: Path = Field(default=ROUTES_DIR, description="Where the operator mounts each family's routes "
                             "(<dir>/<family>/routes.json): rollout weights applied without a restart.")  # fmt: skip
    routes_poll_s: float = Field(default=2.0, gt=0, description="How often the routes are read.")
    routes_from_api: bool = Field(default=False, description="Read each family's <family>-routes ConfigMap "
                                  "through the API server (namespace TRADEPLANE_NAMESPACE; the mounted file is "
                                  "the fallback): a rollout step reaches the router within routes_poll_s instead "
                                  "of the kubelet's volume sync. The operator turns it on.")  # fmt: skip
    commit_every_s: float = Field(default=0.5, ge=0, description="Commit the venue topic's offsets at most this "
                                  "often (a commit waits for the producer's deliveries: per step it would bound "
                                  "the lock-step's rate).")  # fmt: skip


def route_sources(opts: DecideOptions, settings: Settings, families: Mapping[str, Any]) -> dict[str, RoutesSource]:
    """The ConfigMaps through the API when ``routes_from_api`` (files as the fallback), else none (the files)."""
    if not opts.routes_from_api:
        return {}
    if not settings.namespace:
        raise SettingsError("workload.options.routes_from_api needs the namespace (TRADEPLANE_NAMESPACE)")
    return api_sources(settings.namespace, sorted(families), root=opts.routes_dir)


def _final_report(reporter: StatusReporter) -> None:
    """The status as the session ended, then the client closed."""
    reporter.maybe_report(force=True)
    reporter.close()


def serve_clients(opts: DecideOptions, service: WorkloadService) -> ServeClients | None:
    """The Serve clients of this process (with their ``serve`` readiness check and shutdown), or ``None``."""
    if not opts.serve_url_template:
        return None
    clients = ServeClients(opts.serve_url_template, ClientOptions(timeout_s=opts.serve_timeout_ms / 1000),
                           service.registry)  # fmt: skip
    service.add_check("serve", clients.check)
    service.on_shutdown(clients.close, "close Serve clients")
    return clients


def lineage(opts: DecideOptions) -> dict[str, object]:
    """What every audit record of this process says about where its decisions came from."""
    return {"run_id": opts.run_id, "manifests": [str(p) for p in opts.manifests], "mode": "paper"}


class _Sequencer:
    """Per-topic, per-key sequence numbers for ``tp-seq`` (what the sink de-duplicates by)."""

    def __init__(self) -> None:
        self._next: dict[tuple[str, str], int] = {}

    def __call__(self, topic: str, key: str) -> int:
        n = self._next.get((topic, key), 0)
        self._next[(topic, key)] = n + 1
        return n


def setup(service: WorkloadService, settings: Settings) -> LoopStep:
    from ..live.decide import LiveDecideOptions, setup_live  # imports this module: not at the top

    live_opts = parse_options(settings, LiveDecideOptions)
    if trading_mode(load_desk(list(live_opts.manifests))) is TradingMode.LIVE:
        return setup_live(service, settings, live_opts, load_desk(list(live_opts.manifests)))
    opts = parse_options(settings, DecideOptions)
    manifests = load_desk(list(opts.manifests))
    serve = serve_clients(opts, service)
    first, instruments, first_families = build_desk(manifests, opts.home, initial_balance=opts.initial_balance,
                                                    serve=serve)  # fmt: skip
    cfg = backtest_config(first, instruments, initial_balance=opts.initial_balance, seed=opts.seed)
    spare: list[DeskRuntime] = [first]
    bus = lockstep_bus(settings, opts, "decide", service.registry)
    bus.ensure_topics(outbox_topics(manifests.strategies, account=opts.account))  # no creation on a first entry
    steps_in: KafkaConsumer = bus.consumer(venue_topic(opts.account), max_queue=1_000,
                                           name=f"decide-{opts.account}")  # fmt: skip
    lineage_out = lineage(opts)
    seq = _Sequencer()
    published = Counter("tradeplane_decide_records", "Records published, by family.", ["family"],
                        registry=service.registry)  # fmt: skip
    step_seconds = Histogram("tradeplane_decide_step_seconds", "One venue step: desk call and publishing.",
                             buckets=(1e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.5),
                             registry=service.registry)  # fmt: skip
    state = {"last_step": 0.0, "last_commit": 0.0}

    books = [StatusBook(name) for name in manifests.strategies] if opts.report_status_s > 0 else []
    reporters = [StatusReporter(b, settings.namespace, every_s=opts.report_status_s) for b in books]

    def publish(batch: Outbox) -> None:
        for book in books:
            book.observe(batch)
        for topic, key, value in outbox_messages(batch, account=opts.account, lineage=lineage_out):
            bus.publish(topic, key, value, seq=seq(topic, key))
            published.labels(topic.split(".", 1)[0]).inc()

    watchers: list[RoutesWatcher] = []
    # once per process: every session's desk comes from the same manifests (the same families), and each
    # ConfigMap source holds a Kubernetes API client that a per-session build would leave open
    sources = route_sources(opts, settings, first_families)

    def build() -> DeskRuntime:
        if spare:
            desk, families = spare.pop(), first_families
        else:
            desk, _, families = build_desk(manifests, opts.home, initial_balance=opts.initial_balance, serve=serve)
        watchers[:] = [desk_routes(families, desk, root=opts.routes_dir, poll_s=opts.routes_poll_s,
                                   sources=sources)]  # fmt: skip
        desk.on_drain = publish
        log.info("paper session: a fresh desk", extra={"strategies": [s.name for s in desk.strategies]})
        return desk

    decider = PaperDecider(build, cfg)
    answers_topic = orders_topic(opts.account)

    def step() -> None:
        records = steps_in.fetch(opts.max_poll, timeout=0.1)
        for r in records:
            started = time.perf_counter()
            try:
                venue_step = decode_venue_step(r.value)
            except ProtocolError as exc:
                bus.send_to_dlq(r, f"venue_{exc.field}", str(exc))
                continue
            answer = decider.answer(venue_step)
            if answer is not None:
                bus.publish(answers_topic, opts.account, encode_order_commands(answer), seq=answer.seq)
            step_seconds.observe(time.perf_counter() - started)
            state["last_step"] = time.monotonic()
        for reporter in reporters:
            reporter.maybe_report()
        for watcher in watchers:
            for msg in watcher.check():
                log.info(msg)
        if records and time.monotonic() - state["last_commit"] >= opts.commit_every_s:
            steps_in.commit()  # flushes the producer first: every answered step's records are delivered
            state["last_commit"] = time.monotonic()

    def desk_check() -> CheckResult:
        info = decider.info
        if info is None:
            return CheckResult.passed("waiting for execute's first venue step")
        return CheckResult.passed(f"session {info.session}: {info.steps} steps, {info.commands} commands")

    service.add_check("kafka", bus_check(bus))
    service.add_check("desk", desk_check, depends_on=["kafka"])
    close_input: Callable[[], None] = steps_in.close
    service.on_shutdown(lambda: steps_in.commit() if decider.info else None, "commit")
    service.on_shutdown(close_input, "stop consuming")
    service.on_shutdown(lambda: bus.flush(timeout=max(0.1, service.shutdown_remaining_s())), "flush producer")
    service.on_shutdown(lambda: bus.close(timeout=max(0.1, service.shutdown_remaining_s())), "close")
    for reporter in reporters:
        service.on_shutdown(partial(_final_report, reporter), "report status")
    return step
