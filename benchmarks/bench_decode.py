"""Raw Binance JSON → normalized event arrays: the decoder's throughput on the real USD-M capture.

Budget (docs/architecture.md, performance budgets): ≥ 500k messages/s on one core, measured from raw
capture lines already decompressed in memory to the finished EVENT_DTYPE array. Run it pinned:

    taskset -c 1 .venv/bin/python benchmarks/bench_decode.py

Two baselines are measured in the same run on the same lines, so machine noise hits all alike: parsing
alone with ``orjson.loads`` (generic Python objects), and a typed msgspec decode into per-type Structs
with every value materialised (the natural msgspec decoder, before any conversion to arrays). The
baselines run with the garbage collector off, as ``timeit`` does (with it on, the millions of level
tuples they create trigger full collections and they run 2-4x slower); the decoder is timed both with
the collector on, as in production, and off. Also reported: the whole-file replay (``read_capture``:
gzip → batches of 8192 lines → events, best of 5), how much of it is reading alone (inflating in blocks
and splitting lines, no decoding), and the events/s rate. Writes benchmarks/results/decode.json.
"""

from __future__ import annotations

import gc
import gzip
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import numba
import numpy as np
import orjson

from tradeplane.engine.binance import VENUE_USDM, decode_capture_lines
from tradeplane.engine.events import SymbolTable
from tradeplane.engine.replay import _capture_batches, read_capture

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TRADEPLANE_SHARED_DIR", REPO.parent / "shared"))
CAPTURE = SHARED / "data" / "binance" / "ws" / "usdm_btcusdt_20240808.jsonl.gz"
ROUNDS = 5


# The baseline's Structs: every field typed and materialised (level lists as lists of string pairs).
class _Data(msgspec.Struct, gc=False):
    e: str = ""
    E: int = 0
    T: int = 0
    s: str = ""
    U: int = 0
    u: int = 0
    pu: int = 0
    b: str | list[tuple[str, str]] = ""
    a: str | list[tuple[str, str]] = ""
    B: str = ""
    A: str = ""
    t: int = 0
    p: str = ""
    q: str = ""
    X: str = ""
    m: bool = False


class _Line(msgspec.Struct, gc=False):
    stream: str = ""
    data: _Data | None = None
    lastUpdateId: int = 0  # noqa: N815 (Binance's field name)
    bids: list[tuple[str, str]] = []
    asks: list[tuple[str, str]] = []


def best_of(rounds: int, run: Callable[[], Any], *, gc_off: bool = False) -> tuple[float, Any]:
    """Best wall time of ``rounds`` runs (the least disturbed one) and the last result."""
    best, result = float("inf"), None
    for _ in range(rounds):
        result = None  # free the previous round's objects outside the timed region
        gc.collect()
        if gc_off:
            gc.disable()
        try:
            t0 = time.perf_counter()
            result = run()
            best = min(best, time.perf_counter() - t0)
        finally:
            gc.enable()
    return best, result


def main() -> None:
    with gzip.open(CAPTURE) as f:
        lines = f.read().splitlines()
    payloads = [line.partition(b" ")[2] for line in lines]  # baselines parse the JSON only
    n = len(lines)

    decode_capture_lines(lines[:2000], SymbolTable(), VENUE_USDM)  # load the numba kernels (cached)
    symbols = SymbolTable()
    decode_s, result = best_of(ROUNDS, lambda: decode_capture_lines(lines, symbols, VENUE_USDM))
    stats = result.stats
    assert stats.messages == n and stats.malformed == 0 and not stats.unknown, stats
    decode_gc_off_s, _ = best_of(ROUNDS, lambda: decode_capture_lines(lines, symbols, VENUE_USDM), gc_off=True)

    orjson_s, _ = best_of(ROUNDS, lambda: [orjson.loads(p) for p in payloads], gc_off=True)
    typed = msgspec.json.Decoder(_Line)
    msgspec_s, _ = best_of(ROUNDS, lambda: [typed.decode(p) for p in payloads], gc_off=True)
    replay_s, replayed = best_of(ROUNDS, lambda: read_capture(CAPTURE, SymbolTable()))
    assert replayed.events.tobytes() == result.events.tobytes()
    read_lines_s, batches = best_of(ROUNDS, lambda: list(_capture_batches(CAPTURE, 8192)))
    assert sum(map(len, batches)) == n

    rate = n / decode_s
    out = {
        "machine": f"{platform.machine()} {platform.processor() or ''} python {platform.python_version()}".strip(),
        "cpu_affinity": sorted(os.sched_getaffinity(0)),
        "versions": {"numpy": np.__version__, "numba": numba.__version__, "msgspec": msgspec.__version__},
        "capture": CAPTURE.name,
        "messages": n,
        "events": int(stats.events),
        "by_type": stats.by_type,
        "decode_best_s": round(decode_s, 4),
        "decode_messages_per_s": round(rate),
        "decode_events_per_s": round(stats.events / decode_s),
        "decode_gc_off_messages_per_s": round(n / decode_gc_off_s),
        "baseline_orjson_loads_messages_per_s_gc_off": round(n / orjson_s),
        "baseline_msgspec_typed_messages_per_s_gc_off": round(n / msgspec_s),
        "replay_gzip_file_messages_per_s": round(n / replay_s),
        "replay_gzip_file_best_s": round(replay_s, 4),
        "replay_read_lines_only_s": round(read_lines_s, 4),
        "budget_messages_per_s": 500_000,
        "within_budget": rate >= 500_000,
        "rounds": ROUNDS,
    }
    for key, value in out.items():
        print(f"{key:>38}: {value}")
    print(
        f"decode {rate / 1e3:,.0f}k msg/s = {rate * orjson_s / n:.2f}x orjson.loads alone, "
        f"{rate * msgspec_s / n:.2f}x msgspec typed decode alone"
    )
    path = REPO / "benchmarks" / "results" / "decode.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
