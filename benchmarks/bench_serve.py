"""Ray Serve inference on the 2-core box: latency sequentially, throughput with dynamic batching under load.

The model is the decision benchmark's (bench_decision.py): LightGBM with GbmParams defaults (200 trees of 15
leaves) on synthetic rows over the 17-feature signature of examples/10-modelversion-stable.yaml, exported with
``classifier_to_onnx``. One family (``v1`` stable) is rendered by workloads/serve/config.py and deployed with
``app.deploy`` exactly as a RayService applies it (model replica 1 CPU, router 0.25 CPU, batching from the
ServingSpec defaults: 32 rows, 2 ms), on a local ``ray.init(num_cpus=2)`` in this process. The driver, the
replicas, the router, the HTTP proxy and the Serve controller share the same two cores.

Measured (latency: p50/p99 over SEQ_CALLS calls after WARMUP; every call gets its own row):

- ``onnx_in_process``: ``OnnxScorer.predict`` on one row in this process — the reference;
- ``handle_predict``: ``ServeScorer.predict`` (one row) through a DeploymentHandle to the version's deployment
  (one hop: what the decide workload's ModelRouter calls for a rayserve version);
- ``handle_score``: ``ServeClient.score`` through the family router (two hops: router → model);
- ``http_predict`` / ``http_score``: the same through Serve's HTTP proxy (JSON);
- ``bulk``: sequential requests of 32 and 256 rows (a decide workload scoring a tick's symbols in one call),
  rows/s next to the same in-process;
- ``concurrency``: closed loop, C coroutines each awaiting one single-row request after another for
  LOAD_SECONDS, for C in CONCURRENCY: requests/s, latency p50/p99, and the mean rows per batch the replica
  ran, and the CPU seconds per request the replica and this caller spent; at C = 32 also with batching off
  (``max_batch_size`` 1, a user_config change, no restart).

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_serve.py`` (not pinned: Serve needs both cores).
Prints the numbers and writes benchmarks/results/serve.json.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy/LightGBM/ORT load their thread pools

import asyncio
import hashlib
import json
import logging
import platform
import shutil
import socket
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import ray
import yaml
from harness import REPO, cpu_model
from ray import serve

from tradeplane.api.v1alpha1.modelversion import ModelVersionSpec, feature_signature_hash
from tradeplane.engine.models.gbm import GbmParams, fit_gbm
from tradeplane.engine.models.onnx_graph import classifier_to_onnx
from tradeplane.engine.models.onnx_scorer import OnnxScorer
from tradeplane.workloads.serve.app import deploy
from tradeplane.workloads.serve.client import ClientOptions, HandleTransport, HttpTransport, ServeClient
from tradeplane.workloads.serve.config import (
    build_family_apps,
    build_serve_config,
    model_app_name,
    model_deployment_name,
)

FAMILY = "bench"
WARMUP = 200
SEQ_CALLS = 2_000
IN_PROCESS_CALLS = 20_000
LOAD_SECONDS = 4.0
CONCURRENCY = (1, 4, 16, 32, 64)
BULK_ROWS = (32, 256)
BULK_CALLS = 300
N_ROWS = 4_096


def signature() -> list[str]:
    doc = yaml.safe_load((REPO / "examples/10-modelversion-stable.yaml").read_text())
    return list(doc["spec"]["featureSignature"]["names"])


def train_model(names: list[str], seed: int) -> bytes:
    """bench_decision.py's model: GbmParams defaults on synthetic rows (signal in a few columns, 2 % NaN)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(20_000, len(names)))
    x[rng.random(x.shape) < 0.02] = np.nan
    logit = 0.9 * np.nan_to_num(x[:, 3]) + 0.6 * np.nan_to_num(x[:, 5]) - 0.4 * np.nan_to_num(x[:, 0])
    y = (rng.random(len(x)) < 1 / (1 + np.exp(-logit))).astype(np.float64)
    booster = fit_gbm(x, y, GbmParams(seed=seed), feature_names=names)
    return bytes(classifier_to_onnx(booster.dump_model(), names).SerializeToString())


def spec(names: list[str], data: bytes) -> ModelVersionSpec:
    return ModelVersionSpec.model_validate(
        {
            "model": FAMILY,
            "artifact": {"uri": "local://v1.onnx", "sha256": hashlib.sha256(data).hexdigest()},
            "featureSignature": {"names": names, "hash": feature_signature_hash(names)},
            "serving": {"mode": "rayserve", "resources": {"cpu": "1", "memory": "512Mi"}},
            "rollout": {"strategy": "immediate"},
        }
    )


def pct(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1e3
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "max_ms": round(float(ms.max()), 3),
    }


def sequential(name: str, call: Callable[[int], object], n: int, out: dict[str, Any]) -> None:
    for i in range(WARMUP):
        call(i)
    lat = []
    for i in range(n):
        t0 = time.perf_counter()
        call(i)
        lat.append(time.perf_counter() - t0)
    out[name] = {**pct(lat), "calls": n, "per_s": round(n / sum(lat))}
    r = out[name]
    print(f"{name:26s} p50 {r['p50_ms']:8.3f} ms  p99 {r['p99_ms']:8.3f} ms  {r['per_s']:7d} /s")


async def closed_loop(handle: Any, rows: np.ndarray, concurrency: int, seconds: float) -> tuple[int, list[float]]:
    lat: list[float] = []
    stop = time.perf_counter() + seconds

    async def worker(k: int) -> None:
        i = k
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            await handle.predict.remote(rows[i % len(rows)])
            lat.append(time.perf_counter() - t0)
            i += concurrency

    began = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return len(lat), [*lat, time.perf_counter() - began]


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far, from /proc (Linux; the replica is another process)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14, 15)


def load(handle: Any, rows: np.ndarray, concurrency: int) -> dict[str, Any]:
    """Closed loop at ``concurrency``; also CPU seconds per request of the replica and of this caller."""
    asyncio.run(closed_loop(handle, rows, concurrency, 0.5))  # warm the handle's connections
    handle.reset_stats.remote().result(timeout_s=30)
    replica = int(handle.stats.remote().result(timeout_s=30)["pid"])
    me = os.getpid()
    cpu0 = _cpu_s(replica), _cpu_s(me)
    n, lat = asyncio.run(closed_loop(handle, rows, concurrency, LOAD_SECONDS))
    cpu1 = _cpu_s(replica), _cpu_s(me)
    wall = lat.pop()
    s = handle.stats.remote().result(timeout_s=30)
    return {
        "concurrency": concurrency,
        "requests_per_s": round(n / wall),
        **pct(lat),
        "mean_rows_per_batch": round(s["rows"] / max(s["batches"], 1), 2),
        "max_rows_per_batch": s["max_rows_per_batch"],
        "replica_cpu_ms_per_request": round(1e3 * (cpu1[0] - cpu0[0]) / max(n, 1), 3),
        "caller_cpu_ms_per_request": round(1e3 * (cpu1[1] - cpu0[1]) / max(n, 1), 3),
    }


def main() -> None:
    wall = time.perf_counter()
    names = signature()
    data = train_model(names, seed=1)
    reference = OnnxScorer(data, names)
    rng = np.random.default_rng(3)
    rows = rng.normal(size=(N_ROWS, len(names)))
    rows[rng.random(rows.shape) < 0.02] = np.nan
    feats = [dict(zip(names, map(float, r), strict=True)) for r in rows]

    out: dict[str, Any] = {
        "machine": f"{cpu_model()}, {os.cpu_count()} cpus, python {platform.python_version()}",
        "ray": ray.__version__,
        "model": f"LightGBM GbmParams() ({GbmParams().n_estimators} trees, {GbmParams().num_leaves} leaves), "
        f"{len(names)} features, ONNX float64, 1 thread",
        "serve": "1 model replica (1 CPU), router 0.25 CPU, batching 32 rows / 2 ms, access log off",
        "warmup": WARMUP,
        "load_seconds": LOAD_SECONDS,
    }
    single = [r.reshape(1, -1) for r in rows]
    sequential("onnx_in_process", lambda i: reference.predict(single[i % N_ROWS]), IN_PROCESS_CALLS, out)

    home = Path(tempfile.mkdtemp(prefix="tpbench-serve-"))
    ray_tmp = Path(tempfile.mkdtemp(prefix="tpray-", dir="/tmp"))
    (home / "v1.onnx").write_bytes(data)
    specs = {"v1": spec(names, data)}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])

    def config(batch: int) -> dict[str, Any]:
        apps = build_family_apps(FAMILY, specs, home=str(home))
        apps[1]["deployments"][0]["user_config"]["max_batch_size"] = batch
        return build_serve_config(apps, host="127.0.0.1", port=port)

    t0 = time.perf_counter()
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=256 * 1024 * 1024,
        _temp_dir=str(ray_tmp),
        logging_level=logging.WARNING,
    )
    out["ray_init_s"] = round(time.perf_counter() - t0, 1)
    try:
        t0 = time.perf_counter()
        deploy(config(32), timeout_s=300)
        out["deploy_s"] = round(time.perf_counter() - t0, 1)
        options = ClientOptions(timeout_s=5.0)
        by_handle = ServeClient(HandleTransport(FAMILY), options=options)
        by_http = ServeClient(HttpTransport(f"http://127.0.0.1:{port}/models/{FAMILY}"), options=options)
        np.testing.assert_allclose(by_handle.predict("v1", rows[:64]), reference.predict(rows[:64]), atol=1e-9)
        h_scorer, w_scorer = by_handle.scorer("v1", names), by_http.scorer("v1", names)

        sequential("handle_predict", lambda i: h_scorer.predict(single[i % N_ROWS]), SEQ_CALLS, out)
        sequential("handle_score", lambda i: by_handle.score("BTCUSDT", feats[i % N_ROWS]), SEQ_CALLS, out)
        sequential("http_predict", lambda i: w_scorer.predict(single[i % N_ROWS]), SEQ_CALLS // 2, out)
        sequential("http_score", lambda i: by_http.score("BTCUSDT", feats[i % N_ROWS]), SEQ_CALLS // 2, out)

        out["bulk"] = []
        for size in BULK_ROWS:
            chunks = [rows[i : i + size] for i in range(0, N_ROWS - size + 1, size)]
            name = f"handle_{size}_rows"
            sequential(name, lambda i, c=chunks: h_scorer.predict(c[i % len(c)]), BULK_CALLS, out)
            ref = f"onnx_in_process_{size}_rows"
            sequential(ref, lambda i, c=chunks: reference.predict(c[i % len(c)]), BULK_CALLS, out)
            out["bulk"].append(
                {
                    "rows_per_request": size,
                    "serve_rows_per_s": out[name]["per_s"] * size,
                    "in_process_rows_per_s": out[ref]["per_s"] * size,
                }
            )
            print(f"{size:4d} rows/request: Serve {out[name]['per_s'] * size:9d} rows/s, in-process "
                  f"{out[ref]['per_s'] * size:9d} rows/s")  # fmt: skip

        handle = serve.get_deployment_handle(model_deployment_name("v1"), app_name=model_app_name(FAMILY, "v1"))
        out["concurrency"] = []
        for c in CONCURRENCY:
            row = load(handle, rows, c)
            out["concurrency"].append(row)
            print(
                f"concurrency {c:3d}    {row['requests_per_s']:6d} req/s  p50 {row['p50_ms']:7.2f} ms  "
                f"p99 {row['p99_ms']:7.2f} ms  rows/batch {row['mean_rows_per_batch']:5.2f}  "
                f"cpu/request: replica {row['replica_cpu_ms_per_request']:.2f} ms, "
                f"caller {row['caller_cpu_ms_per_request']:.2f} ms"
            )
        deploy(config(1), timeout_s=120)  # batching off: a user_config change, the replica stays
        row = load(handle, rows, 32)
        out["concurrency_32_no_batching"] = row
        print(
            f"no batching, c=32   {row['requests_per_s']:6d} req/s  p50 {row['p50_ms']:7.2f} ms  "
            f"p99 {row['p99_ms']:7.2f} ms  rows/batch {row['mean_rows_per_batch']:5.2f}"
        )
        by_handle.close()
        by_http.close()
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(ray_tmp, ignore_errors=True)

    best = max(out["concurrency"], key=lambda r: r["requests_per_s"])
    out["summary"] = {
        "in_process_p50_us": round(out["onnx_in_process"]["p50_ms"] * 1e3, 1),
        "in_process_p99_us": round(out["onnx_in_process"]["p99_ms"] * 1e3, 1),
        "serve_handle_p50_ms": out["handle_predict"]["p50_ms"],
        "serve_handle_p99_ms": out["handle_predict"]["p99_ms"],
        "best_requests_per_s": best["requests_per_s"],
        "at_concurrency": best["concurrency"],
        "batching_speedup_at_32": round(
            statistics.fmean([r["requests_per_s"] for r in out["concurrency"] if r["concurrency"] == 32])
            / max(out["concurrency_32_no_batching"]["requests_per_s"], 1),
            2,
        ),
    }
    out["wall_s"] = round(time.perf_counter() - wall, 1)
    path = REPO / "benchmarks/results/serve.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"summary {out['summary']}\nwrote {path.relative_to(REPO)} ({out['wall_s']} s)")


if __name__ == "__main__":
    main()
