"""The process shell of every cluster workload: health, metrics, structured logs, graceful shutdown.

``tradeplane workload NAME`` → :func:`.main.run_workload` → a :class:`WorkloadService` that serves
``/healthz`` (main-loop heartbeat), ``/readyz`` (the dependency tree of readiness checks) and ``/metrics``
(the workload's own Prometheus registry), logs JSON lines, and on SIGTERM runs ordered shutdown hooks
under a deadline. See docs/dataplane.md, "Every workload".
"""

from .health import CheckResult, CheckTree, Heartbeat, NodeReport, TreeReport
from .logs import JsonLogFormatter, configure_workload_logging, log_context
from .main import WORKLOADS, UnknownWorkloadError, parse_options, register_workload, resolve_workload, run_workload
from .metrics import install_process_collectors, new_registry
from .service import LoopStep, WorkloadService, asyncio_step
from .shutdown import EXIT_LOOP_FAILED, EXIT_OK, EXIT_SHUTDOWN_INCOMPLETE, HookOutcome, ShutdownReport

__all__ = [
    "EXIT_LOOP_FAILED",
    "EXIT_OK",
    "EXIT_SHUTDOWN_INCOMPLETE",
    "WORKLOADS",
    "CheckResult",
    "CheckTree",
    "Heartbeat",
    "HookOutcome",
    "JsonLogFormatter",
    "LoopStep",
    "NodeReport",
    "ShutdownReport",
    "TreeReport",
    "UnknownWorkloadError",
    "WorkloadService",
    "asyncio_step",
    "configure_workload_logging",
    "install_process_collectors",
    "log_context",
    "new_registry",
    "parse_options",
    "register_workload",
    "resolve_workload",
    "run_workload",
]
