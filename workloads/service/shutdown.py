"""Graceful shutdown: SIGTERM/SIGINT → a stop request → ordered hooks under one deadline → an exit code.

Kubernetes sends SIGTERM, waits ``terminationGracePeriodSeconds`` (30 s by default) and then SIGKILLs. A
workload that loses its buffers in that window loses data, so shutdown is explicit:

1. The signal only *requests* a stop (an ``Event``); the main loop finishes its current step and exits.
2. The hooks run in registration order — register them in the order the data flows out: stop consuming →
   flush producers → flush sink buffers → close clients — against one deadline counted **from the stop
   request** (that is when Kubernetes' clock started).
3. A hook that raises is logged with its name and the next hooks still run (a failed producer flush must
   not keep the sink from flushing). A hook still running at the deadline is abandoned and the hooks after
   it are skipped: running ``close`` under a flush that is still in progress would be worse.
4. The exit code says how it went: :data:`EXIT_OK`, :data:`EXIT_SHUTDOWN_INCOMPLETE`, :data:`EXIT_LOOP_FAILED`.

Each hook runs on a short-lived helper thread so that a hook that hangs cannot hold the process past the
deadline. The main loop has stopped by then, so a hook never runs concurrently with a loop step.
A second SIGTERM/SIGINT while stopping exits at once (code 128 + signal number): the operator asked twice.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any, Literal

EXIT_OK = 0
EXIT_SHUTDOWN_INCOMPLETE = 4  #: a shutdown hook raised, or the deadline passed before all hooks ran
EXIT_LOOP_FAILED = 5  #: the main loop raised (the hooks still ran); the orchestrator should restart the process

Hook = Callable[[], object]  #: its return value is ignored (e.g. `producer.flush` returns a count)
HookStatus = Literal["ok", "failed", "timed_out", "skipped"]

_log = logging.getLogger("tradeplane.workload.shutdown")


@dataclass(frozen=True, slots=True)
class HookOutcome:
    name: str
    status: HookStatus
    duration_s: float
    error: str = ""


@dataclass(frozen=True, slots=True)
class ShutdownReport:
    outcomes: tuple[HookOutcome, ...]

    @property
    def ok(self) -> bool:
        return all(o.status == "ok" for o in self.outcomes)

    @property
    def abandoned(self) -> bool:
        """A hook was still running at the deadline (its thread may still hold resources)."""
        return any(o.status == "timed_out" for o in self.outcomes)


class ShutdownHooks:
    """Hooks run once, in order, each within what is left of the deadline."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._hooks: list[tuple[str, Hook]] = []
        self._clock = clock
        self._deadline = math.inf
        self._lock = threading.Lock()
        self._report: ShutdownReport | None = None

    def add(self, fn: Hook, name: str | None = None) -> None:
        label = name or getattr(fn, "__qualname__", None) or repr(fn)
        with self._lock:
            if self._report is not None:
                raise RuntimeError(f"shutdown hook {label!r} registered after the hooks ran")
            if any(n == label for n, _ in self._hooks):
                raise ValueError(f"shutdown hook {label!r} is already registered")
            self._hooks.append((label, fn))

    def names(self) -> list[str]:
        with self._lock:
            return [n for n, _ in self._hooks]

    def remaining_s(self) -> float:
        """Seconds left before the deadline while the hooks run (``inf`` before): a hook can bound its own
        waits with it, e.g. ``producer.flush(timeout=service.shutdown_remaining_s())``."""
        return max(0.0, self._deadline - self._clock())

    def run(self, deadline: float) -> ShutdownReport:
        """Run the hooks against ``deadline`` (an absolute time of ``clock``). Runs at most once; later
        calls return the first report."""
        with self._lock:
            if self._report is not None:
                return self._report
            hooks = list(self._hooks)
            self._deadline = deadline
        outcomes: list[HookOutcome] = []
        abandoned = False
        for name, fn in hooks:
            if abandoned or self._clock() >= deadline:
                outcomes.append(HookOutcome(name, "skipped", 0.0, "shutdown deadline passed before it could run"))
                _log.error("shutdown hook skipped: deadline passed", extra={"hook": name})
                continue
            outcome = self._run_one(name, fn, deadline)
            outcomes.append(outcome)
            abandoned = outcome.status == "timed_out"
        report = ShutdownReport(tuple(outcomes))
        with self._lock:
            self._report = report
        return report

    def _run_one(self, name: str, fn: Hook, deadline: float) -> HookOutcome:
        error: list[BaseException] = []

        def target() -> None:
            try:
                fn()
            except BaseException as exc:  # reported below; one failing hook must not stop the others
                error.append(exc)

        started = self._clock()
        worker = threading.Thread(target=target, name=f"tp-shutdown-{name}", daemon=True)
        worker.start()
        worker.join(timeout=max(0.0, deadline - self._clock()))
        took = self._clock() - started
        if worker.is_alive():
            msg = f"still running at the shutdown deadline after {took:.2f} s; abandoned"
            _log.error("shutdown hook timed out", extra={"hook": name, "duration_s": round(took, 3)})
            return HookOutcome(name, "timed_out", took, msg)
        if error:
            exc = error[0]
            _log.error(
                "shutdown hook failed",
                extra={"hook": name, "duration_s": round(took, 3)},
                exc_info=(type(exc), exc, exc.__traceback__),
            )
            return HookOutcome(name, "failed", took, f"{type(exc).__name__}: {exc}")
        _log.info("shutdown hook done", extra={"hook": name, "duration_s": round(took, 3)})
        return HookOutcome(name, "ok", took)


StopSignals = (signal.SIGTERM, signal.SIGINT)


def install_stop_signals(request_stop: Callable[[str], None]) -> Callable[[], None]:
    """SIGTERM/SIGINT call ``request_stop("SIGTERM")``; a second *signal* exits at once.

    Only signals count towards "second": a stop the process requested itself (the loop failed) still gets
    its full shutdown when Kubernetes then sends its one SIGTERM. Must be called from the main thread
    (Python delivers signals there). Returns a function that restores the previous handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("install_signal_handlers() must be called from the main thread")
    previous: dict[int, Any] = {}
    received: list[str] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if received:
            _log.warning("second stop signal: exiting now without finishing the shutdown hooks",
                         extra={"signal": name, "first_signal": received[0]})  # fmt: skip
            logging.shutdown()
            os._exit(128 + signum)
        received.append(name)
        request_stop(name)

    for sig in StopSignals:
        previous[sig] = signal.signal(sig, handler)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore
