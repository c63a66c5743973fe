"""Sink throughput: rows/s written through ``TableWriter`` into the ClickHouse server (the Debian 18.16 one
the tests run, started here the same way) and into embedded chDB, with bounded memory.

Target (issue 7): >= 300k rows/s on both; docs/architecture.md asks 500k. Two workloads, each timed from
the engine's arrays to acknowledged inserts (row conversion included, as the sink does it):

- **market**: the whole USD-M BTCUSDT capture (599k events: depth/snapshot/bookTicker levels and trades) as
  micro-batches of 8192 events → :class:`MarketRows` → one ``TableWriter`` per table (``book_diffs``,
  ``trades``; 100k rows per insert) — the materialized views on ``trades`` (bars, volume buckets) run too;
- **runtime**: 300k ``fills`` rows (14 columns, five strings) appended 1000 at a time, 50k rows per insert.

Each round writes under a new venue/run name, so no block is a duplicate of an earlier round's (the
server store's insert ledger and chDB's block de-duplication stay on, as in production). Best and median of
``ROUNDS``. Peak memory: the tracemalloc peak (Python and numpy allocations) of one extra untimed round per
backend and workload, and the process's peak RSS (chDB's engine included).

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_sink.py`` (set TRADEPLANE_BENCH_CLICKHOUSE_HOST and
_PORT to use a running server instead). Prints the numbers and writes benchmarks/results/sink.json.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from harness import REPO, cpu_model, shared_dir

from tradeplane.engine.events import SymbolTable
from tradeplane.engine.replay import read_capture
from tradeplane.workloads.store import Store, TableWriter
from tradeplane.workloads.store.chdb_store import ChdbStore
from tradeplane.workloads.store.clickhouse_server import ClickHouseServerStore
from tradeplane.workloads.store.market import MarketRows

CAPTURE = "usdm_btcusdt_20240808.jsonl.gz"
MICRO_BATCH = 8192
RUNTIME_ROWS = 300_000
ROUNDS = 3


def _market_round(store: Store, events: np.ndarray, venue: str) -> int:
    rows = MarketRows([f"{venue}:BTCUSDT"], bucket_quote=1e6)
    writers: dict[str, TableWriter] = {}
    for k in range(0, events.shape[0], MICRO_BATCH):
        for table, columns in rows.rows(events[k : k + MICRO_BATCH]).items():
            writers.setdefault(table, TableWriter(store, table, max_rows=100_000)).append(columns)
    for writer in writers.values():
        writer.close()
    return sum(w.rows_written for w in writers.values())


def _runtime_chunks() -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    ts = 1_722_470_400_000_000_000 + np.sort(rng.integers(0, 86_400_000_000_000, RUNTIME_ROWS))
    strategies = np.array(["spot-majors", "usdm-btc", "mean-rev"], dtype=object)
    symbols = np.array(["BTCUSDT", "ETHUSDT", "SOLUSDT"], dtype=object)
    cols: dict[str, Any] = {
        "strategy": strategies[rng.integers(0, 3, RUNTIME_ROWS)],
        "symbol": symbols[rng.integers(0, 3, RUNTIME_ROWS)],
        "ts": ts,
        "venue": np.full(RUNTIME_ROWS, "paper", dtype=object),
        "side": rng.choice(np.array([-1, 1], np.int8), RUNTIME_ROWS),
        "qty": rng.uniform(0.001, 2.0, RUNTIME_ROWS),
        "price": rng.uniform(50_000, 70_000, RUNTIME_ROWS),
        "fee": rng.uniform(-0.1, 2.0, RUNTIME_ROWS),
        "liquidity": np.where(rng.random(RUNTIME_ROWS) < 0.5, "maker", "taker").astype(object),
        "client_order_id": np.array([f"tp-{i:012x}-entry" for i in range(RUNTIME_ROWS)], dtype=object),
        "trade_id": np.array([str(10_000_000 + i) for i in range(RUNTIME_ROWS)], dtype=object),
        "exchange_ts": ts,
        "ingest_ts": ts + 1_500_000,
    }
    return [{k: v[i : i + 1000] for k, v in cols.items()} for i in range(0, RUNTIME_ROWS, 1000)]


def _runtime_round(store: Store, chunks: list[dict[str, Any]], run_id: str) -> int:
    writer = TableWriter(store, "fills", max_rows=50_000, constants={"run_id": run_id})
    for chunk in chunks:
        writer.append(chunk)
    writer.close()
    return writer.rows_written


def _measure(run: Callable[[str], int], tag: str) -> dict[str, Any]:
    rates = []
    rows = 0
    for r in range(ROUNDS):
        gc.collect()
        t0 = time.perf_counter()
        rows = run(f"{tag}{r}")
        rates.append(rows / (time.perf_counter() - t0))
    gc.collect()
    tracemalloc.start()
    run(f"{tag}mem")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "rows": rows,
        "rows_per_s": round(max(rates)),
        "rows_per_s_median": round(statistics.median(rates)),
        "tracemalloc_peak_mb": round(peak / 2**20, 1),
    }


def _server() -> tuple[str, int, Any]:
    host = os.environ.get("TRADEPLANE_BENCH_CLICKHOUSE_HOST")
    if host:
        return host, int(os.environ.get("TRADEPLANE_BENCH_CLICKHOUSE_PORT", "9000")), None
    sys.path.insert(0, str(REPO))
    from tests.services.clickhouse import ClickHouseServer

    server = ClickHouseServer(Path(tempfile.mkdtemp(prefix="bench-sink-ch-")))
    server.start().wait_ready()
    return server.host, server.port, server


def _server_rss_mb(server: Any) -> float | None:
    if server is None or not server.processes:
        return None
    status = Path(f"/proc/{server.processes[0].pid}/status").read_text()
    line = next(ln for ln in status.splitlines() if ln.startswith("VmHWM:"))
    return round(int(line.split()[1]) / 1024, 1)


def main() -> None:
    events = read_capture(shared_dir() / "data" / "binance" / "ws" / CAPTURE, SymbolTable()).events
    chunks = _runtime_chunks()
    results: dict[str, Any] = {}
    host, port, server = _server()
    try:
        srv = ClickHouseServerStore(host, port, database=f"bench_sink_{os.getpid()}")
        srv.migrate()
        results["server"] = {
            "version": ".".join(map(str, srv.server_version)),
            "dedup": srv.health()["dedup"],
            "market": _measure(lambda tag: _market_round(srv, events, tag), "srv"),
            "runtime": _measure(lambda tag: _runtime_round(srv, chunks, tag), "srv"),
            "server_peak_rss_mb": _server_rss_mb(server),
        }
        srv.execute(f"DROP DATABASE IF EXISTS {srv.database}")
        srv.close()
    finally:
        if server is not None:
            server.stop()
            server.remove_workdir()
    with tempfile.TemporaryDirectory(prefix="bench-sink-chdb-") as tmp, ChdbStore(Path(tmp) / "store") as chdb:
        chdb.migrate()
        results["chdb"] = {
            "version": str(chdb.query("SELECT version() AS v")["v"][0]),
            "market": _measure(lambda tag: _market_round(chdb, events, tag), "chdb"),
            "runtime": _measure(lambda tag: _runtime_round(chdb, chunks, tag), "chdb"),
        }
    result = {
        "machine": f"{cpu_model()}, {os.cpu_count()} cpus, python {platform.python_version()}",
        "cpu_affinity": sorted(os.sched_getaffinity(0)),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "capture": CAPTURE,
        "market_events": int(events.shape[0]),
        "micro_batch": MICRO_BATCH,
        "rounds": ROUNDS,
        "target_rows_per_s": 300_000,
        **results,
        "process_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    out = REPO / "benchmarks" / "results" / "sink.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
