"""`WorkloadService`: the process shell every cluster workload (ingest, decide, execute, sink) runs in.

One per OS process. It owns what is the same in every workload — the HTTP endpoints, the metrics registry,
the heartbeat, the readiness tree, stop signals and the shutdown hooks — so a workload's own code is only
its checks, its hooks and one loop step::

    svc = WorkloadService("sink", port=8080)
    store = ClickHouseStore(..., registry=svc.registry)
    svc.add_check("clickhouse", lambda: CheckResult(store.healthy(), store.last_error))
    svc.add_check("consumer", consumer_check, depends_on=["clickhouse"])
    svc.on_shutdown(consumer.close, "stop consuming")
    svc.on_shutdown(writer.flush, "flush sink buffers")
    svc.on_shutdown(store.close, "close")
    svc.install_signal_handlers()
    sys.exit(svc.start().run(lambda: writer.process(consumer.poll(timeout=0.5))))

A loop step should return within about a second (poll with a timeout): the stop request is seen between
steps, and the heartbeat is bumped after each one.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

from prometheus_client import CollectorRegistry

from ... import __version__
from ...settings import Settings
from .health import Check, CheckTree, Heartbeat, TreeReport
from .metrics import HealthCollector, WorkloadMetrics, exposition, install_process_collectors, new_registry
from .server import HttpEndpoints, Response, json_response
from .shutdown import (
    EXIT_LOOP_FAILED,
    EXIT_OK,
    EXIT_SHUTDOWN_INCOMPLETE,
    Hook,
    ShutdownHooks,
    ShutdownReport,
    install_stop_signals,
)

LoopStep = Callable[[], object]  #: one poll + one batch; the return value is ignored

_log = logging.getLogger("tradeplane.workload")


class WorkloadService:
    """Health, metrics, signals and shutdown of one workload process. See the module docstring."""

    def __init__(
        self,
        name: str,
        *,
        host: str = "0.0.0.0",
        port: int = 8080,
        registry: CollectorRegistry | None = None,
        strategy: str | None = None,
        heartbeat_timeout_s: float = 30.0,
        shutdown_deadline_s: float = 25.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if shutdown_deadline_s <= 0:
            raise ValueError(f"shutdown_deadline_s must be > 0, got {shutdown_deadline_s}")
        self.name = name
        self.strategy = strategy
        self.shutdown_deadline_s = shutdown_deadline_s
        self._clock = clock
        if registry is None:
            registry = new_registry()
        else:
            install_process_collectors(registry)
        self.registry: CollectorRegistry = registry
        self.stop_requested = threading.Event()
        #: set when the main loop starts: until then the workload's setup is still connecting and registering
        #: its checks, and /readyz must not report ready on an empty dependency tree
        self.running = threading.Event()
        self.stop_reason = ""
        self._stop_at: float | None = None
        self.checks = CheckTree()
        self._heartbeat = Heartbeat(heartbeat_timeout_s, clock=clock)
        self.metrics = WorkloadMetrics.create(
            registry, workload=name, version=__version__, strategy=strategy, heartbeat_age=self._heartbeat.age_s
        )
        registry.register(HealthCollector(self.checks, self.stop_requested.is_set))
        self._hooks = ShutdownHooks(clock=clock)
        self._http = HttpEndpoints(
            host, port, {"/healthz": self._healthz, "/readyz": self._readyz, "/metrics": self._metrics}
        )
        self._restore_signals: Callable[[], None] | None = None
        self.shutdown_report: ShutdownReport | None = None
        self.exit_code: int | None = None

    @classmethod
    def from_settings(cls, name: str, settings: Settings, *, registry: CollectorRegistry | None = None) -> Self:
        """Build from the process settings (``settings.workload``: host, port, strategy, timeouts)."""
        w = settings.workload
        return cls(
            name,
            host=w.http_host,
            port=w.http_port,
            registry=registry,
            strategy=w.strategy,
            heartbeat_timeout_s=w.heartbeat_timeout_s,
            shutdown_deadline_s=w.shutdown_deadline_s,
        )

    # -- registration ---------------------------------------------------------------------------------

    def add_check(self, name: str, check: Check, *, depends_on: Sequence[str] = (), readiness: bool = True) -> None:
        """A readiness check (see :class:`~.health.CheckTree`); dependencies must be added first."""
        self.checks.add(name, check, depends_on=depends_on, readiness=readiness)

    def on_shutdown(self, fn: Hook, name: str | None = None) -> None:
        """Run ``fn`` at shutdown, after the hooks registered before it (register in data-flow order)."""
        self._hooks.add(fn, name)

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> WorkloadService:
        """Serve /healthz, /readyz and /metrics from a daemon thread (idempotent)."""
        if not self._http.running:
            self._http.start()
            paths = ["/healthz", "/readyz", "/metrics"]
            _log.info("http endpoints listening", extra={"port": self._http.port, "paths": paths})
        return self

    @property
    def port(self) -> int:
        """The bound HTTP port (useful when 0 was asked for)."""
        return self._http.port

    def heartbeat(self) -> None:
        """Proof of life for /healthz; :meth:`run` calls it after every step."""
        self._heartbeat.beat()

    def request_stop(self, reason: str = "requested") -> None:
        """Ask the main loop to stop; safe from signal handlers and other threads. Later calls are no-ops."""
        if self.stop_requested.is_set():
            return
        self.stop_reason = reason
        self._stop_at = self._clock()
        self.stop_requested.set()
        self.metrics.stopping.set(1)
        _log.info("stop requested", extra={"reason": reason, "deadline_s": self.shutdown_deadline_s})

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT → :meth:`request_stop`; a second signal exits at once. Main thread only."""
        if self._restore_signals is None:
            self._restore_signals = install_stop_signals(self.request_stop)

    def shutdown_remaining_s(self) -> float:
        """Seconds left for the shutdown hooks (``inf`` before they start); bound a flush's wait with it."""
        return self._hooks.remaining_s()

    def run(self, loop_step: LoopStep) -> int:
        """Loop ``loop_step`` until a stop is requested, bumping the heartbeat after each step; then run the
        shutdown hooks, close, and return the exit code (:mod:`.shutdown`). Starts the endpoints if needed.

        A step that raises stops the loop: the error is logged, the hooks still run (flush what was
        accepted), and the code is ``EXIT_LOOP_FAILED`` so the orchestrator restarts the process.
        """
        self.start()
        self.running.set()
        _log.info("workload running")
        failed = False
        steps, step_seconds = self.metrics.loop_steps, self.metrics.loop_step_seconds
        try:
            while not self.stop_requested.is_set():
                started = time.perf_counter()
                loop_step()
                step_seconds.observe(time.perf_counter() - started)
                steps.inc()
                self._heartbeat.beat()
        except KeyboardInterrupt:  # no signal handlers installed: Ctrl-C is still a graceful stop
            self.request_stop("KeyboardInterrupt")
        except Exception as exc:
            failed = True
            self.metrics.loop_errors.inc()
            _log.exception("main loop failed; shutting down", extra={"error": f"{type(exc).__name__}: {exc}"})
            self.request_stop(f"main loop failed: {type(exc).__name__}")
        return self.shutdown(loop_failed=failed)

    def shutdown(self, *, loop_failed: bool = False) -> int:
        """Run the shutdown hooks within the deadline (counted from the stop request), close, return the exit
        code. For workloads that drive their own loop instead of :meth:`run`. Runs the hooks once."""
        self.request_stop("shutdown")
        assert self._stop_at is not None
        report = self._hooks.run(self._stop_at + self.shutdown_deadline_s)
        self.shutdown_report = report
        code = EXIT_LOOP_FAILED if loop_failed else EXIT_OK if report.ok else EXIT_SHUTDOWN_INCOMPLETE
        self.exit_code = code
        log = _log.info if code == EXIT_OK else _log.error
        log(
            "workload stopped",
            extra={
                "exit_code": code,
                "reason": self.stop_reason,
                "hooks": {o.name: o.status for o in report.outcomes},
                "shutdown_s": round(self._clock() - self._stop_at, 3),
            },
        )
        self.close()
        return code

    def close(self) -> None:
        """Release the port and restore the signal handlers (idempotent). Does not run the hooks."""
        self._http.close()
        if self._restore_signals is not None:
            self._restore_signals()
            self._restore_signals = None

    def __enter__(self) -> WorkloadService:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- what the endpoints answer -----------------------------------------------------------------------

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        alive, body = self._heartbeat.report()
        return alive, {"workload": self.name, **body}

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        report: TreeReport = self.checks.evaluate()
        body = {"workload": self.name, **report.to_json()}
        if self.stop_requested.is_set():
            body["status"] = "fail"
            body["reason"] = f"stopping ({self.stop_reason})"
            return False, body
        if not self.running.is_set():
            body["status"] = "fail"
            body["reason"] = "starting: the workload's setup has not finished"
            return False, body
        return report.ready, body

    def _healthz(self, headers: Mapping[str, str]) -> Response:
        alive, body = self.liveness()
        return json_response(200 if alive else 503, body)

    def _readyz(self, headers: Mapping[str, str]) -> Response:
        ready, body = self.readiness()
        return json_response(200 if ready else 503, body)

    def _metrics(self, headers: Mapping[str, str]) -> Response:
        body, ctype = exposition(self.registry, headers.get("accept"))
        return 200, body, ctype


def asyncio_step(loop: asyncio.AbstractEventLoop, slice_s: float = 0.2) -> LoopStep:
    """A loop step that runs an asyncio event loop for ``slice_s`` seconds.

    For asyncio workloads (the ingest's WebSocket clients): their tasks live on ``loop`` and progress
    while each step runs; :meth:`WorkloadService.run` bumps the heartbeat between slices, so a loop
    blocked by a synchronous call shows up as a stale heartbeat. Tasks are not cancelled at the stop:
    do that in a shutdown hook (``loop.run_until_complete(client.close())``).
    """
    if slice_s <= 0:
        raise ValueError(f"slice_s must be > 0, got {slice_s}")

    def step() -> None:
        loop.run_until_complete(asyncio.sleep(slice_s))

    return step
