"""What the benchmark programs share: where the real data is, which machine ran, and how a run is timed.

Imported by the ``bench_*.py`` programs, which run as scripts (``python benchmarks/bench_x.py``), so this
folder is on ``sys.path``.
"""

from __future__ import annotations

import gc
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """``../shared`` beside the repository, or ``$TRADEPLANE_SHARED_DIR``."""
    override = os.environ.get("TRADEPLANE_SHARED_DIR")
    return Path(override) if override else REPO.parent / "shared"


def cpu_model() -> str:
    """The CPU's model name (Linux), so results from different machines are not compared blindly."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def best_and_median(run: Callable[[], object], rounds: int) -> tuple[float, float]:
    """Seconds per run over ``rounds`` runs after one warm-up run (compiles and caches kernels): (best, median)."""
    run()
    times = []
    for _ in range(rounds):
        gc.collect()
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)
