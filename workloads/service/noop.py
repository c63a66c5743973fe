"""The ``noop`` workload: the process shell with nothing inside, for tests and for checking a deployment.

It does no work, but exercises every part of the shell with a controllable dependency:

* readiness check ``ready-file`` passes while ``options.ready_file`` exists (delete it → /readyz 503), and
  ``pipeline`` depends on it (reported ``blocked by ready-file``);
* shutdown hooks in data-flow order: ``stop consuming`` → ``flush`` (writes ``options.flush_marker`` as
  JSON: steps run, stop reason, hooks seen before it) → ``close``; ``options.fail_hook`` adds a hook that
  raises and ``options.flush_delay_s`` makes the flush slow, to see the exit codes end to end.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field

from ...settings import Settings
from .health import CheckResult
from .main import parse_options
from .service import LoopStep, WorkloadService


class NoopOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    step_s: float = Field(default=0.05, gt=0, le=5, description="Length of one (idle) loop step.")
    ready_file: Path | None = Field(default=None, description="Ready while this file exists (unset: always).")
    flush_marker: Path | None = Field(default=None, description="The flush hook writes this file.")
    flush_delay_s: float = Field(default=0.0, ge=0, description="The flush hook takes this long.")
    fail_hook: bool = Field(default=False, description="Add a shutdown hook that raises.")


def setup(service: WorkloadService, settings: Settings) -> LoopStep:
    opts = parse_options(settings, NoopOptions)
    steps = Counter("tradeplane_noop_steps", "Idle steps of the noop workload.", registry=service.registry)
    done: list[str] = []
    count = [0]

    def ready_file() -> CheckResult:
        if opts.ready_file is None:
            return CheckResult.passed("no ready_file configured")
        if opts.ready_file.exists():
            return CheckResult.passed(f"{opts.ready_file} exists")
        return CheckResult.failed(f"{opts.ready_file} does not exist")

    service.add_check("ready-file", ready_file)
    service.add_check("pipeline", lambda: CheckResult.passed("idle"), depends_on=["ready-file"])

    def flush() -> None:
        if opts.flush_delay_s:
            time.sleep(opts.flush_delay_s)
        if opts.flush_marker is not None:
            body = {"steps": count[0], "reason": service.stop_reason, "after": list(done)}
            opts.flush_marker.write_text(json.dumps(body) + "\n", encoding="utf-8")
        done.append("flush")

    def failing() -> None:
        raise RuntimeError("noop: fail_hook is set")

    service.on_shutdown(lambda: done.append("stop consuming"), "stop consuming")
    if opts.fail_hook:
        service.on_shutdown(failing, "failing hook")
    service.on_shutdown(flush, "flush")
    service.on_shutdown(lambda: done.append("close"), "close")

    def step() -> None:
        service.stop_requested.wait(opts.step_s)
        count[0] += 1
        steps.inc()

    return step
