"""A real local Ray runtime for tests, started in-process with ``ray.init``.

Ray's own launcher (``ray.init`` without an address) starts the GCS, raylet and workers as child processes and
``ray.shutdown`` stops exactly those, so no PID bookkeeping is needed here. Ray's state goes to a short temp
path because Ray's Unix socket paths must stay under the 107-byte limit.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.services._process import ServiceError

#: Enough for tests without claiming /dev/shm proportional to RAM (Ray's default is 30% of memory).
OBJECT_STORE_BYTES = 256 * 1024 * 1024
#: Serve's controller kills a proxy that misses three readiness checks of this many seconds (Ray's default 5),
#: and ``serve.start`` then fails. On a loaded 2-core box a proxy's start (its HTTP stack's imports) took longer
#: in CI; Ray's processes inherit the variable from this one, which starts them.
SERVE_ENV = {"RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "20"}


class RayRuntime:
    """``ray.init(num_cpus=...)`` in this process with its own temp dir; ``stop`` is ``ray.shutdown``."""

    def __init__(self, num_cpus: int = 2, temp_dir: Path | None = None) -> None:
        self.num_cpus = num_cpus
        self.temp_dir = temp_dir or Path(tempfile.mkdtemp(prefix="tpray-", dir="/tmp"))
        self.address: str | None = None
        self.startup_seconds: float | None = None

    def start(self) -> RayRuntime:
        """Start a fresh local Ray instance; refuses to attach to one someone else initialized."""
        import ray

        if ray.is_initialized():
            raise ServiceError("Ray is already initialized in this process; tests need their own runtime")
        for key, value in SERVE_ENV.items():
            os.environ.setdefault(key, value)
        began = time.monotonic()
        ray.init(
            num_cpus=self.num_cpus,
            include_dashboard=False,
            object_store_memory=OBJECT_STORE_BYTES,
            _temp_dir=str(self.temp_dir),
            logging_level=logging.WARNING,
        )
        self.startup_seconds = time.monotonic() - began
        self.address = ray.get_runtime_context().gcs_address
        return self

    def wait_ready(self, timeout: float = 120.0) -> RayRuntime:
        """Ready when a trivial remote task runs on a worker (``ray.init`` returning is not enough)."""
        import ray

        @ray.remote
        def ping() -> str:
            return "pong"

        try:
            answer = ray.get(ping.remote(), timeout=timeout)
        except Exception as exc:
            raise ServiceError(
                f"Ray did not run a task within {timeout:.0f}s: {exc!r}\nlogs: {self.temp_dir}/session_latest/logs"
            ) from exc
        if answer != "pong":
            raise ServiceError(f"Ray ping returned {answer!r}")
        return self

    def stop(self) -> None:
        """``ray.shutdown`` (stops the processes Ray started for us), then remove the temp dir."""
        import ray

        ray.shutdown()
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def connection_info(self) -> dict[str, Any]:
        return {"address": self.address, "temp_dir": str(self.temp_dir), "num_cpus": self.num_cpus}
