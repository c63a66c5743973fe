"""Prometheus metrics every workload exposes, in the workload's own ``CollectorRegistry``.

Why a registry per process instead of prometheus_client's global ``REGISTRY``: components (the Kafka
adapter, the sink's writer, the ingest client) receive the registry in their constructors, so tests
build as many as they like side by side without "Duplicated timeseries" errors, and /metrics shows exactly
what this workload registered.

Standard content of a workload registry:

* ``process_*`` (CPU seconds, resident memory, open fds, start time), ``python_info`` and ``python_gc_*``:
  the collectors prometheus_client installs in its global registry, installed here explicitly.
* ``tradeplane_workload_info{workload,version,strategy}``, ``tradeplane_workload_loop_steps_total``,
  ``tradeplane_workload_loop_step_seconds`` (a histogram; one observation per loop step, i.e. per batch,
  never per event), ``tradeplane_workload_loop_errors_total``, ``tradeplane_workload_heartbeat_age_seconds``,
  ``tradeplane_workload_stopping``.
* ``tradeplane_workload_ready`` and ``tradeplane_workload_check_ok{check}``: the readiness tree evaluated at
  scrape time (checks are cheap by contract, see :mod:`.health`), so alerts need no probe logs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from .health import CheckTree

#: loop step durations: a step is one poll + one batch, from sub-millisecond to a slow flush
STEP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def install_process_collectors(registry: CollectorRegistry) -> list[str]:
    """Add the process, platform and GC collectors; those whose series the registry already has are skipped.

    Returns the names installed. The check compares collected series names because these collectors do
    not describe themselves, so ``register`` would accept a second ProcessCollector and expose every
    ``process_*`` series twice (which Prometheus rejects).
    """
    present = {m.name for m in registry.collect()}
    installed = []
    for name, make in (
        ("process", ProcessCollector),
        ("platform", PlatformCollector),
        ("gc", GCCollector),
    ):
        collector = make(registry=CollectorRegistry())  # a scratch registry: the constructors self-register
        if {m.name for m in collector.collect()} & present:
            continue
        registry.register(collector)
        installed.append(name)
    return installed


def new_registry() -> CollectorRegistry:
    """A fresh registry with the process collectors installed."""
    registry = CollectorRegistry()
    install_process_collectors(registry)
    return registry


@dataclass(frozen=True, slots=True)
class WorkloadMetrics:
    """The loop and lifecycle metrics :class:`~.service.WorkloadService` maintains."""

    info: Info
    loop_steps: Counter
    loop_step_seconds: Histogram
    loop_errors: Counter
    heartbeat_age: Gauge
    stopping: Gauge

    @classmethod
    def create(
        cls,
        registry: CollectorRegistry,
        *,
        workload: str,
        version: str,
        strategy: str | None,
        heartbeat_age: Callable[[], float],
    ) -> WorkloadMetrics:
        info = Info("tradeplane_workload", "This workload process.", registry=registry)
        info.info({"workload": workload, "version": version, "strategy": strategy or ""})
        age = Gauge(
            "tradeplane_workload_heartbeat_age_seconds",
            "Seconds since the main loop last completed a step.",
            registry=registry,
        )
        age.set_function(heartbeat_age)
        return cls(
            info=info,
            loop_steps=Counter("tradeplane_workload_loop_steps", "Main loop steps completed.", registry=registry),
            loop_step_seconds=Histogram(
                "tradeplane_workload_loop_step_seconds",
                "Duration of one main loop step.",
                buckets=STEP_BUCKETS,
                registry=registry,
            ),
            loop_errors=Counter(
                "tradeplane_workload_loop_errors",
                "Main loop steps that raised (the process then stops).",
                registry=registry,
            ),
            heartbeat_age=age,
            stopping=Gauge(
                "tradeplane_workload_stopping", "1 once a stop was requested (SIGTERM/SIGINT).", registry=registry
            ),
        )


class HealthCollector:
    """Exports the readiness tree at scrape time."""

    def __init__(self, tree: CheckTree, stopping: Callable[[], bool]) -> None:
        self._tree = tree
        self._stopping = stopping

    def describe(self) -> Iterable[Metric]:
        return [
            GaugeMetricFamily("tradeplane_workload_ready", ""),
            GaugeMetricFamily("tradeplane_workload_check_ok", "", labels=["check"]),
        ]

    def collect(self) -> Iterable[Metric]:
        report = self._tree.evaluate()
        ready = GaugeMetricFamily(
            "tradeplane_workload_ready", "1 when every readiness check passes and no stop was requested."
        )
        ready.add_metric([], 1.0 if report.ready and not self._stopping() else 0.0)
        checks = GaugeMetricFamily(
            "tradeplane_workload_check_ok", "1 when the check passes, 0 when it fails or is blocked.", labels=["check"]
        )
        for node in report.nodes:
            checks.add_metric([node.name], 1.0 if node.status == "ok" else 0.0)
        return [ready, checks]


def exposition(registry: CollectorRegistry, accept: str | None) -> tuple[bytes, str]:
    """The registry rendered for an HTTP ``Accept`` header: (body, content type).

    Prometheus' text format by default, OpenMetrics when the scraper asks for it.
    """
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type
