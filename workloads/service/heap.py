"""The garbage collector's view of a workload's start-up state.

Why: a workload builds most of its objects once, before its first step — compiled kernels, models, books,
settings, client libraries — and keeps them for its whole life. CPython's full collections walk every tracked
object each time, so that state makes each one long: measured at start, a full collection took 55–150 ms in
ingest and 68 ms in decide, whose decision tick is 10–100 ms. Such a collection runs whenever enough objects
have survived to the oldest generation, so a process that runs for days pauses like that every now and then,
and every decision waiting behind the pause is late. Freezing what exists at the end of start-up takes it out
of every later collection; what the steps create is still collected as usual.
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> int:
    """Collect once, then move every object alive now to the permanent generation; returns how many.

    Call it once, after set-up and before the loop (``run_workload(freeze_heap=True)`` does). Frozen objects
    are never collected as cycles, which is what start-up state is for: it lives as long as the process.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
