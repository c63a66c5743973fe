"""Graceful shutdown: hook order, the deadline, failures that do not stop later hooks, exit codes, signals.

Deadlines are short real durations (a few tenths of a second) or a fake clock; a hook that hangs is
released at the end of its test so no thread outlives it.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

import pytest

from tradeplane.workloads.service import (
    EXIT_LOOP_FAILED,
    EXIT_OK,
    EXIT_SHUTDOWN_INCOMPLETE,
    WorkloadService,
)
from tradeplane.workloads.service.shutdown import ShutdownHooks


def _service(deadline_s: float = 5.0, **kw: object) -> WorkloadService:
    return WorkloadService("t", port=0, shutdown_deadline_s=deadline_s, **kw)  # type: ignore[arg-type]


def test_hooks_run_in_registration_order_within_the_deadline() -> None:
    svc = _service(deadline_s=5.0)
    ran: list[tuple[str, float]] = []
    for name in ("stop consuming", "flush producers", "flush sink buffers", "close"):
        svc.on_shutdown(lambda n=name: ran.append((n, svc.shutdown_remaining_s())), name)  # type: ignore[misc]
    assert svc.shutdown_remaining_s() == float("inf")
    svc.request_stop("test")
    assert svc.shutdown() == EXIT_OK
    assert [n for n, _ in ran] == ["stop consuming", "flush producers", "flush sink buffers", "close"]
    assert all(0 < left <= 5.0 for _, left in ran)  # each hook can bound its own waits by what is left
    assert svc.shutdown_report is not None and svc.shutdown_report.ok
    assert svc.shutdown() == EXIT_OK and len(ran) == 4  # the hooks run once


def test_a_failing_hook_is_logged_and_the_others_still_run(caplog: pytest.LogCaptureFixture) -> None:
    svc = _service()
    ran: list[str] = []

    def broken_flush() -> None:
        raise ConnectionError("broker gone")

    svc.on_shutdown(lambda: ran.append("stop consuming"), "stop consuming")
    svc.on_shutdown(broken_flush, "flush producers")
    svc.on_shutdown(lambda: ran.append("flush sink"), "flush sink")
    svc.on_shutdown(lambda: ran.append("close"), "close")
    with caplog.at_level(logging.INFO, logger="tradeplane.workload"):
        code = svc.shutdown()
    assert code == EXIT_SHUTDOWN_INCOMPLETE
    assert ran == ["stop consuming", "flush sink", "close"]
    failed = [r for r in caplog.records if r.getMessage() == "shutdown hook failed"]
    assert len(failed) == 1 and failed[0].hook == "flush producers"  # type: ignore[attr-defined]
    assert failed[0].exc_info is not None and failed[0].exc_info[0] is ConnectionError
    report = svc.shutdown_report
    assert report is not None
    assert [(o.name, o.status) for o in report.outcomes] == [
        ("stop consuming", "ok"), ("flush producers", "failed"), ("flush sink", "ok"), ("close", "ok"),
    ]  # fmt: skip
    assert report.outcomes[1].error == "ConnectionError: broker gone"
    stopped = next(r for r in caplog.records if r.getMessage() == "workload stopped")
    assert stopped.levelno == logging.ERROR and stopped.exit_code == EXIT_SHUTDOWN_INCOMPLETE  # type: ignore[attr-defined]


def test_a_hook_that_hangs_is_abandoned_at_the_deadline_and_later_hooks_are_skipped() -> None:
    svc = _service(deadline_s=0.3)
    release = threading.Event()
    ran: list[str] = []
    svc.on_shutdown(lambda: ran.append("stop consuming"), "stop consuming")
    svc.on_shutdown(lambda: release.wait(10), "flush")
    svc.on_shutdown(lambda: ran.append("close"), "close")
    started = time.monotonic()
    try:
        code = svc.shutdown()
        took = time.monotonic() - started
    finally:
        release.set()
    assert code == EXIT_SHUTDOWN_INCOMPLETE and 0.25 <= took < 1.0
    report = svc.shutdown_report
    assert report is not None and report.abandoned
    assert [o.status for o in report.outcomes] == ["ok", "timed_out", "skipped"] and ran == ["stop consuming"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_deadline_counts_from_the_stop_request_not_from_the_end_of_the_loop() -> None:
    clock = FakeClock()
    svc = _service(deadline_s=25.0, clock=clock)
    ran: list[str] = []
    svc.on_shutdown(lambda: ran.append("flush"), "flush")
    svc.request_stop("SIGTERM")
    clock.now += 26.0  # the last loop step took longer than the whole grace period
    assert svc.shutdown() == EXIT_SHUTDOWN_INCOMPLETE
    assert ran == [] and svc.shutdown_report is not None
    assert svc.shutdown_report.outcomes[0].status == "skipped"


def test_run_loops_until_stop_bumps_the_heartbeat_then_runs_the_hooks() -> None:
    svc = _service()
    steps: list[int] = []
    flushed: list[int] = []

    def step() -> None:
        steps.append(len(steps))
        if len(steps) == 5:
            svc.request_stop("enough")

    svc.on_shutdown(lambda: flushed.append(len(steps)), "flush")
    assert svc.run(step) == EXIT_OK
    assert len(steps) == 5 and flushed == [5]
    assert svc.registry.get_sample_value("tradeplane_workload_loop_steps_total") == 5
    alive, body = svc.liveness()
    assert alive and body["beats"] == 5
    with pytest.raises(RuntimeError, match="not started"):
        _ = svc.port  # closed after the run


@pytest.mark.parametrize(
    ("error", "code"),
    [pytest.param(ValueError("corrupt batch"), EXIT_LOOP_FAILED, id="step-raises"),
     pytest.param(KeyboardInterrupt(), EXIT_OK, id="ctrl-c-without-handlers")],
)  # fmt: skip
def test_a_step_that_raises_still_flushes(error: BaseException, code: int) -> None:
    svc = _service()
    flushed: list[str] = []
    svc.on_shutdown(lambda: flushed.append("flush"), "flush")

    def step() -> None:
        raise error

    assert svc.run(step) == code
    assert flushed == ["flush"]
    errors = svc.registry.get_sample_value("tradeplane_workload_loop_errors_total")
    assert errors == (1 if code == EXIT_LOOP_FAILED else 0)
    assert svc.stop_reason.startswith("main loop failed" if code else "KeyboardInterrupt")


def test_sigterm_requests_a_stop_and_close_restores_the_handlers() -> None:
    before = signal.getsignal(signal.SIGTERM)
    svc = _service()
    svc.install_signal_handlers()
    try:
        assert signal.getsignal(signal.SIGTERM) is not before
        os.kill(os.getpid(), signal.SIGTERM)
        assert svc.stop_requested.wait(2.0)
        assert svc.stop_reason == "SIGTERM"
        ready, body = svc.readiness()
        assert not ready and body["reason"] == "stopping (SIGTERM)"
    finally:
        svc.close()
    assert signal.getsignal(signal.SIGTERM) is before


def test_signal_handlers_need_the_main_thread() -> None:
    svc = _service()
    errors: list[BaseException] = []

    def install() -> None:
        try:
            svc.install_signal_handlers()
        except RuntimeError as exc:
            errors.append(exc)

    t = threading.Thread(target=install)
    t.start()
    t.join()
    assert len(errors) == 1 and "main thread" in str(errors[0])


def test_hook_registration_rules() -> None:
    hooks = ShutdownHooks()
    hooks.add(lambda: None, "flush")
    with pytest.raises(ValueError, match="'flush' is already registered"):
        hooks.add(lambda: None, "flush")

    def close_store() -> None:
        pass

    hooks.add(close_store)
    assert hooks.names() == ["flush", "test_hook_registration_rules.<locals>.close_store"]
    hooks.run(deadline=time.monotonic() + 1)
    with pytest.raises(RuntimeError, match="after the hooks ran"):
        hooks.add(lambda: None, "late")
