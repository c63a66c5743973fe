"""Feature-engine throughput and incremental latency (budget: order book + features ≥ 5M events/s, one core).

Input: the real Binance USD-M BTCUSDT capture (599k events: depth diffs + REST snapshot, bookTicker,
trades), decoded with ``read_capture`` and applied to ``BookSet`` for real book tops; plus a synthetic
stress stream (a third of its events produce a top, a third are trades — far denser in feature work than
any real feed). Measures, best of several runs after a warm-up (numba compile excluded):

- features alone over the whole day at once (the batch path) and in 1,000-event micro-batches;
- book + features together in 1,000-event micro-batches (the budget line);
- incremental latency: one event per ``FeatureEngine.update`` call (with its top when it completes a
  depth message), p50 / p99 over 50,000 consecutive events.

Run pinned: ``taskset -c 1 .venv/bin/python benchmarks/bench_features.py``. Prints the numbers and writes
benchmarks/results/features.json.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tradeplane.engine.book import BookSet
from tradeplane.engine.events import EventArray, SymbolTable
from tradeplane.engine.features import BookFeatureSpec, FeatureEngine, FeatureSpec
from tradeplane.engine.features.synthetic import synthetic_stream
from tradeplane.engine.replay import read_capture

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TRADEPLANE_SHARED_DIR", REPO.parent / "shared"))
CAPTURE = SHARED / "data/binance/ws/usdm_btcusdt_20240808.jsonl.gz"
SPEC = FeatureSpec(book=BookFeatureSpec(levels=10, void_ticks=10, tick_sizes={0: 0.1}))
MICRO = 1_000
LATENCY_EVENTS = 50_000


def best_of(fn: Callable[[], object], runs: int = 5) -> float:
    """Seconds of the fastest of ``runs`` calls (after one warm-up call)."""
    fn()
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def split(tei: np.ndarray, n: int, size: int) -> list[tuple[int, int, int, int]]:
    """[lo, hi) event ranges of ``size`` with the [a, b) range of their tops."""
    out = []
    for lo in range(0, n, size):
        hi = min(n, lo + size)
        a, b = (int(x) for x in np.searchsorted(tei, [lo, hi]))
        out.append((lo, hi, a, b))
    return out


def features_whole(events: EventArray, tops: EventArray, tei: np.ndarray) -> float:
    return best_of(lambda: FeatureEngine(SPEC).update(events, tops, tei))


def features_micro(events: EventArray, tops: EventArray, tei: np.ndarray) -> float:
    parts = split(tei, len(events), MICRO)

    def run() -> None:
        engine = FeatureEngine(SPEC)
        for lo, hi, a, b in parts:
            engine.update(events[lo:hi], tops[a:b], tei[a:b] - lo)

    return best_of(run)


def book_and_features_micro(events: EventArray) -> float:
    chunks = [events[lo : lo + MICRO] for lo in range(0, len(events), MICRO)]

    def run() -> None:
        books = BookSet()
        engine = FeatureEngine(SPEC)
        for chunk in chunks:
            engine.update_book_batch(chunk, books.apply(chunk))

    return best_of(run)


def book_micro(events: EventArray) -> float:
    chunks = [events[lo : lo + MICRO] for lo in range(0, len(events), MICRO)]

    def run() -> None:
        books = BookSet()
        for chunk in chunks:
            books.apply(chunk)

    return best_of(run)


def latency_us(events: EventArray, tops: EventArray, tei: np.ndarray) -> tuple[float, float, float]:
    """p50 / p99 / p99 of calls that carry a top, in µs, one event per update call."""
    engine = FeatureEngine(SPEC)
    start = len(events) // 4  # past the snapshot, in the steady state
    a0 = int(np.searchsorted(tei, start))
    engine.update(events[:start], tops[:a0], tei[:a0])
    stop = start + LATENCY_EVENTS
    per_event = split(tei, stop, 1)[start:]
    samples = np.empty(len(per_event))
    with_top = np.zeros(len(per_event), bool)
    for k, (lo, hi, a, b) in enumerate(per_event):
        t_ev, t_top, t_idx = events[lo:hi], tops[a:b], tei[a:b] - lo
        t0 = time.perf_counter_ns()
        engine.update(t_ev, t_top, t_idx)
        samples[k] = time.perf_counter_ns() - t0
        with_top[k] = b > a
    us = samples / 1e3
    return float(np.percentile(us, 50)), float(np.percentile(us, 99)), float(np.percentile(us[with_top], 99))


def main() -> None:
    t0 = time.perf_counter()
    events = read_capture(CAPTURE, SymbolTable()).events
    book = BookSet().apply(events)
    tops, tei = book.tops, book.top_event_index
    synth = synthetic_stream(1_000_000, seed=1, p_long_gap=0.0)
    n, ns = len(events), len(synth.events)
    whole = features_whole(events, tops, tei)
    micro = features_micro(events, tops, tei)
    both = book_and_features_micro(events)
    book_only = book_micro(events)
    synth_whole = features_whole(synth.events, synth.tops, synth.top_event_index)
    p50, p99, p99_top = latency_us(events, tops, tei)
    result = {
        "machine": f"{platform.machine()} {platform.processor() or ''} python {platform.python_version()}".strip(),
        "input": f"{CAPTURE.name}: {n} events, {len(tops)} book tops, "
        f"{int(((events['kind'] & 0xFF) == 4).sum())} trades",
        "clocks": [c.name for c in SPEC.clocks],
        "features_events_per_s_whole_day": round(n / whole),
        "features_events_per_s_micro_1000": round(n / micro),
        "book_plus_features_events_per_s_micro_1000": round(n / both),
        "book_alone_events_per_s_micro_1000": round(n / book_only),
        "features_whole_day_ms": round(whole * 1e3, 2),
        "synthetic_stress_events_per_s_whole": round(ns / synth_whole),
        "synthetic_stress_input": f"{ns} events, {len(synth.tops)} tops",
        "incremental_latency_us_p50": round(p50, 1),
        "incremental_latency_us_p99": round(p99, 1),
        "incremental_latency_us_p99_with_top": round(p99_top, 1),
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    for key, value in result.items():
        print(f"{key:>46}: {value}")
    out = REPO / "benchmarks" / "results" / "features.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
