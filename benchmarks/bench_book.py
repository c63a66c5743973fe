"""Order-book update speed on the real USD-M BTCUSDT capture: throughput and single-message latency.

The budget (docs/architecture.md) is book + features ≥ 5M events/s on one core, with numba over
micro-batches; the book alone must leave most of that to the features. The capture is decoded once, outside
every timing. Timed: ``BookSet.apply`` over the whole event array in one call, the same in micro-batches of
4096 events (the live shape), the micro-batches with the quality monitor in front (``QualityMonitor.process``:
offset/latency flags + book + gap ratio), and the latency of applying one depth message on its own
(p50/p99, Python call included). Throughput counts every event of the capture (bookTicker and trades pass
through the kernel unread) and, separately, the depth/snapshot level events the book actually applies.

Run pinned: ``taskset -c 1 .venv/bin/python benchmarks/bench_book.py``. Prints the numbers and writes
benchmarks/results/book.json.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import time

import numpy as np
from harness import REPO, best_and_median, cpu_model, shared_dir

from tradeplane.engine import events as evk
from tradeplane.engine.book import BookSet, QualityMonitor
from tradeplane.engine.replay import read_capture

CAPTURE = "usdm_btcusdt_20240808.jsonl.gz"
MICRO_BATCH = 4096
ROUNDS = 7


def main() -> None:
    path = shared_dir() / "data" / "binance" / "ws" / CAPTURE
    events = read_capture(path, evk.SymbolTable()).events
    kind = events["kind"] & evk.KIND_MASK
    book_events = int(np.count_nonzero((kind == evk.DEPTH) | (kind == evk.SNAPSHOT)))
    is_depth = kind == evk.DEPTH
    last = np.flatnonzero(is_depth & ((events["kind"] & evk.LAST_IN_MSG) != 0))
    depth_idx = np.flatnonzero(is_depth)
    first = depth_idx[np.searchsorted(depth_idx, np.concatenate([[-1], last[:-1]]), side="right")]
    n = events.shape[0]

    def whole() -> None:
        BookSet().apply(events)

    def micro() -> None:
        books = BookSet()
        for a in range(0, n, MICRO_BATCH):
            books.apply(events[a : a + MICRO_BATCH])

    flagged = events.copy()  # the monitor sets DEGRADED in place; setting it again is idempotent

    def micro_quality() -> None:
        books, monitor = BookSet(), QualityMonitor()
        for a in range(0, n, MICRO_BATCH):
            monitor.process(books, flagged[a : a + MICRO_BATCH])

    whole_best, whole_med = best_and_median(whole, ROUNDS)
    micro_best, micro_med = best_and_median(micro, ROUNDS)
    quality_best, quality_med = best_and_median(micro_quality, ROUNDS)

    # Latency: sync on everything up to the snapshot, then apply each later depth message alone.
    snap_last = int(np.flatnonzero(kind == evk.SNAPSHOT)[-1])
    later = np.flatnonzero(first > snap_last)
    latencies = []
    for _ in range(2):
        books = BookSet()
        books.apply(events[: first[later[0]]])
        gc.collect()
        for j in later.tolist():
            msg = events[first[j] : last[j] + 1]
            t0 = time.perf_counter_ns()
            books.apply(msg)
            latencies.append(time.perf_counter_ns() - t0)
    lat_us = np.asarray(latencies[len(later) :], dtype=np.float64) / 1e3  # second pass: warm caches

    result = {
        "machine": f"{cpu_model()}, {os.cpu_count()} cores, python {platform.python_version()}",
        "cpu_affinity": sorted(os.sched_getaffinity(0)),
        "load_average_1m": round(os.getloadavg()[0], 2),  # other work on the machine inflates the medians
        "capture": CAPTURE,
        "events": n,
        "book_level_events": book_events,
        "depth_messages": len(last),
        "whole_array_events_per_s": round(n / whole_best),
        "whole_array_events_per_s_median": round(n / whole_med),
        "whole_array_book_events_per_s": round(book_events / whole_best),
        f"micro_{MICRO_BATCH}_events_per_s": round(n / micro_best),
        f"micro_{MICRO_BATCH}_events_per_s_median": round(n / micro_med),
        f"micro_{MICRO_BATCH}_book_events_per_s": round(book_events / micro_best),
        f"micro_{MICRO_BATCH}_with_quality_events_per_s": round(n / quality_best),
        f"micro_{MICRO_BATCH}_with_quality_events_per_s_median": round(n / quality_med),
        "message_latency_us_p50": round(float(np.percentile(lat_us, 50)), 1),
        "message_latency_us_p99": round(float(np.percentile(lat_us, 99)), 1),
        "message_levels_mean": round(float(np.mean(last[later] - first[later] + 1)), 1),
    }
    for key, value in result.items():
        print(f"{key:>46}: {value}")
    out = REPO / "benchmarks" / "results" / "book.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
