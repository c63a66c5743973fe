"""Entry point of every cluster workload process: ``tradeplane workload NAME``.

A workload is registered under its name as a *setup* function: it receives the :class:`WorkloadService`
and the process :class:`~tradeplane.settings.Settings`, builds its clients (passing ``service.registry``
to them), adds its checks and shutdown hooks, and returns the loop step. Everything else — logging,
the HTTP endpoints, signals, the loop, the hooks, the exit code — is :func:`run_workload`'s job, so all
four workloads start, report and stop the same way.

Registry values may be the function itself or an import path ``"package.module:function"``, resolved
only when that workload is started: the sink's process never imports the decide workload's numba kernels
or the ingest's WebSocket stack.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ...settings import ENV_PREFIX, Settings, SettingsError
from .heap import freeze_startup_heap
from .logs import configure_workload_logging
from .service import LoopStep, WorkloadService

WorkloadSetup = Callable[[WorkloadService, Settings], LoopStep]

#: name → setup function or "module:function". The ingest/decide/execute/sink parts register here.
WORKLOADS: dict[str, WorkloadSetup | str] = {
    "noop": "tradeplane.workloads.service.noop:setup",
    "sink": "tradeplane.workloads.sink.main:setup",
    "decide": "tradeplane.workloads.decide.main:setup",
    "execute": "tradeplane.workloads.execute.main:setup",
    "ingest": "tradeplane.workloads.ingest.main:setup",
}

_log = logging.getLogger("tradeplane.workload")

M = TypeVar("M", bound=BaseModel)


class UnknownWorkloadError(LookupError):
    """No workload of that name is registered; the message lists the known names."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown workload {name!r}; known: {', '.join(sorted(WORKLOADS)) or '(none)'}")
        self.name = name


def register_workload(name: str, setup: WorkloadSetup | str) -> None:
    """Add a workload; a name can be registered once (re-registering the same target is a no-op)."""
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"workload name must be letters, digits, '-' or '_', got {name!r}")
    existing = WORKLOADS.get(name)
    if existing is not None and existing != setup:
        raise ValueError(f"workload {name!r} is already registered ({existing!r})")
    WORKLOADS[name] = setup


def resolve_workload(name: str) -> WorkloadSetup:
    """The setup function of ``name`` (importing its module if registered by path)."""
    target = WORKLOADS.get(name)
    if target is None:
        raise UnknownWorkloadError(name)
    if not isinstance(target, str):
        return target
    module_name, _, attr = target.partition(":")
    if not attr:
        raise ValueError(f"workload {name!r}: import path {target!r} must look like 'package.module:function'")
    fn = getattr(importlib.import_module(module_name), attr, None)
    if not callable(fn):
        raise ValueError(f"workload {name!r}: {target!r} is not a callable")
    setup: WorkloadSetup = fn
    return setup


def parse_options(settings: Settings, model: type[M]) -> M:
    """Validate ``settings.workload.options`` with a workload's options model.

    Errors name the key and its env variable (``workload.options.step_s (TRADEPLANE_WORKLOAD__OPTIONS__STEP_S)``)
    and raise :class:`SettingsError`, which the CLI turns into exit code 3.
    """
    try:
        return model.model_validate(settings.workload.options)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            key = ".".join(["workload", "options", *(str(p) for p in err["loc"])])
            env = ENV_PREFIX + key.replace(".", "__").upper()
            lines.append(f"{key} ({env}): {err['msg']}")
        raise SettingsError("invalid workload options:\n  " + "\n  ".join(lines)) from None


def run_workload(name: str, settings: Settings, *, install_signals: bool = True, freeze_heap: bool = False) -> int:
    """Run workload ``name`` until SIGTERM/SIGINT and return its exit code (:mod:`.shutdown`).

    ``freeze_heap`` (the ``tradeplane workload`` process sets it): after setup, the start-up objects are
    taken out of every later garbage collection (:func:`.heap.freeze_startup_heap`). Off for callers that
    run a workload inside a bigger process (tests), whose own objects would be frozen with it.

    Raises :class:`UnknownWorkloadError` for an unregistered name, ``OSError`` when the port is taken, and
    :class:`SettingsError` for bad options (the endpoints are closed again; no hook runs: nothing was
    accepted yet). A setup that fails otherwise is logged, the hooks it had registered run, and the exit
    code is ``EXIT_LOOP_FAILED``.
    """
    setup = resolve_workload(name)
    configure_workload_logging(
        name, level=settings.log_level, strategy=settings.workload.strategy, secrets=settings.secret_values()
    )
    service = WorkloadService.from_settings(name, settings)
    # Before setup: probes answer while clients connect (liveness counts the start as a beat), and a
    # SIGTERM during a slow connect still gets a graceful stop. A busy port raises OSError here.
    service.start()
    if install_signals:
        service.install_signal_handlers()
    try:
        step = setup(service, settings)
    except SettingsError:
        service.close()
        raise
    except Exception as exc:
        _log.exception("workload setup failed", extra={"error": f"{type(exc).__name__}: {exc}"})
        return service.shutdown(loop_failed=True)
    if freeze_heap:
        _log.info("start-up heap frozen", extra={"objects": freeze_startup_heap()})
    code = service.run(step)
    if service.shutdown_report is not None and service.shutdown_report.abandoned:
        # A hook thread is still running and may hold non-daemon threads of a client library; the
        # deadline is the deadline, so leave without waiting for them.
        logging.shutdown()
        os._exit(code)
    return code


def describe_workloads() -> dict[str, Any]:
    """Names and targets, for ``tradeplane workload --list``."""
    return {name: (t if isinstance(t, str) else f"{t.__module__}:{t.__qualname__}") for name, t in WORKLOADS.items()}
