"""End-to-end lag of the cluster data plane in LIVE mode: exchange time → signal on Kafka, as OS processes.

Pipeline (all on this machine, loopback): the replay server (tests/fixtures/binance_replay.py) sends the real
USD-M BTCUSDT capture with exchange times rebased to the send time, as a live exchange stamps them →
``tradeplane workload ingest`` → Kafka (Tansu) ``md.*`` → ``tradeplane workload decide`` in live mode (the
demo desk with ``spec.mode: live``, models in-process; it decides on md as it arrives, no execute needed) →
``signals.*`` / ``intents.*`` → this program's consumer. Two lags per record, both ending at the wall time this
consumer receives it (one more Kafka hop than the decision itself):

* **exchange → signal**: from its ``exchange_ts`` — the newest *book top* the decision used, i.e. the depth
  update's transaction time ``T``. It includes how old that top was at the tick (depth updates come in bursts
  and pauses) and Binance's own ``E − T`` from the capture, which the rebase keeps;
* **ingest clock → signal** (``pipeline_*``): from its ``infer_ts`` — the decision tick, on the ingest's receive
  clock; a tick runs once data received past it arrives. This is ingest → Kafka → decide → Kafka.

The replay server runs in a forked process (sharing this one's GIL, its sends would show up as lag). Rates are
websocket messages/s of replay (the capture runs ~270 msg/s at speed 1, each message a few events; speed =
rate / that); the capture holds ~94k messages, so a rate runs for at most 94k / rate seconds.

Run from the repository root (a few minutes; trains the demo models first):

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_dataplane_lag.py [--seconds 20] [--rates 1000,5000,20000]
        [--repeat 3] [--tick-ms 10] [--ingest KEY=VALUE ...] [--decide KEY=VALUE ...]

Prints the numbers and writes benchmarks/results/dataplane_lag.json (live figures under ``rates``; the
previous paper-mode lock-step figures are kept under ``paper``); with ``--tick-ms N`` (the desk's decision tick
overridden: more signals per second, so the short 20k run gives a firmer p99) dataplane_lag_tickNms.json.
``--repeat N`` runs each rate N times, each on a fresh broker, and takes the percentiles over all their signals
(each run's own figures are kept under ``runs``): one 20k run holds ~230 signals at 10 ms ticks, so its p99 is
its 2nd–3rd largest value and moves by several ms from run to run. Every row also gives each process's CPU
use while the replay ran (``cpu_cores``, 1.0 = one full core; everything shares this machine's two).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import platform
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import numpy as np
import yaml
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fixtures.binance_replay import ReplayServer, load_capture  # noqa: E402
from tests.integration.test_ingest_workload import launch, stop  # noqa: E402
from tests.integration.test_live_decide import live_manifests  # noqa: E402
from tests.integration.test_workload_process import WorkloadProcess, http  # noqa: E402
from tests.services.kafka import KafkaBroker  # noqa: E402
from tradeplane.workloads.bus.kafka import KafkaBus  # noqa: E402
from tradeplane.workloads.bus.topics import intents_topic, md_topic, signals_topic  # noqa: E402
from tradeplane.workloads.codec import intent_from_proto, signal_from_proto  # noqa: E402
from tradeplane.workloads.local.demo import DemoConfig, demo_manifests, train_models  # noqa: E402
from tradeplane.workloads.local.manifests import load_desk  # noqa: E402

CAPTURE = REPO.parent / "shared" / "data" / "binance" / "ws" / "usdm_btcusdt_20240808.jsonl.gz"
CAPTURE_LINES = [200_000]  #: set by main from the capture
CONSUMER = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}


def _env(bootstrap: str, options: dict[str, Any]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEPLANE_")}
    env |= {"TRADEPLANE_KAFKA__BOOTSTRAP_SERVERS": bootstrap, "OMP_NUM_THREADS": "1"}
    for key, value in options.items():
        env[f"TRADEPLANE_WORKLOAD__OPTIONS__{key.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    return env


def with_tick(manifests: Path, tick_ms: int) -> None:
    """Set ``decision.tickMs`` of every Strategy in the manifests folder (in place)."""
    for f in manifests.glob("*.yaml"):
        docs = [d for d in yaml.safe_load_all(f.read_text()) if d]
        for d in docs:
            if d.get("kind") == "Strategy":
                d["spec"].setdefault("decision", {})["tickMs"] = tick_ms
        f.write_text(yaml.safe_dump_all(docs, sort_keys=False))


def capture_rate() -> tuple[float, int]:
    """Messages per second of the capture at speed 1, and how many messages it holds (up to 200k)."""
    _, msgs, _ = load_capture(CAPTURE, 200_000)
    ts = [m.recv_ns for m in msgs]
    return len(ts) / ((max(ts) - min(ts)) / 1e9), len(ts)


def _times(topic: str, value: bytes) -> tuple[int, int | None]:
    """(exchange_ts, infer_ts) of a signal — the newest book top the decision used, and the decision tick's
    time on the ingest receive clock — or (exchange_ts, None) of an intent (it carries no tick time)."""
    if topic.startswith("intents."):
        return int(intent_from_proto(value).exchange_ts), None
    m = signal_from_proto(value)
    return int(m.exchange_ts), int(m.infer_ts)


class _ReplayProcess:
    """The replay server in a process of its own: in this one it would share the GIL with the consumer that
    timestamps the signals, and its 20k sends per second would show up as lag."""

    def __init__(self, lines: int, speed: float) -> None:
        ctx = mp.get_context("fork")
        self._urls: Any = ctx.Queue()
        self._sent: Any = ctx.Queue()
        self.done = ctx.Event()
        self._proc = ctx.Process(target=self._serve, args=(lines, speed), daemon=True)
        self._proc.start()
        self.ws_url, self.base_url = self._urls.get(timeout=60)
        self.sent = 0
        self.pid = int(self._proc.pid or 0)

    def _serve(self, lines: int, speed: float) -> None:
        with ReplayServer([CAPTURE], max_lines=lines, speed=speed, rebase_times=True) as server:
            self._urls.put((server.ws_url, server.base_url))
            server.wait_finished(600)
            self._sent.put(server.stats().sent)
        self.done.set()

    def finish(self, timeout: float) -> int:
        self.done.wait(timeout)
        self.sent = int(self._sent.get(timeout=10)) if self.done.is_set() else 0
        self._proc.join(10)
        return self.sent


def _histogram(body: str, name: str) -> dict[str, Any]:
    """One of decide's lag histograms: its count, p50 and p99 interpolated linearly inside the bucket that holds
    them (the buckets are 2.5 ms wide up to 25 ms), and the cumulative counts."""
    buckets: list[tuple[float, float]] = []
    for fam in text_string_to_metric_families(body):
        if fam.name == name:
            buckets = [(float(s.labels["le"]), s.value) for s in fam.samples if s.name.endswith("_bucket")]
    total = buckets[-1][1] if buckets else 0.0

    def quantile(q: float) -> float | None:
        lo_le, lo_n = 0.0, 0.0
        for le, n in buckets:
            if total and n >= q * total:
                if math.isinf(le):
                    return lo_le * 1e3
                return (lo_le + (le - lo_le) * (q * total - lo_n) / max(n - lo_n, 1e-12)) * 1e3
            lo_le, lo_n = le, n
        return None

    return {"count": int(total), "p50_ms": quantile(0.5), "p99_ms": quantile(0.99),
            "buckets_ms": {f"{le * 1e3:g}": int(n) for le, n in buckets}}  # fmt: skip


def _decide_lag(port: int) -> dict[str, Any]:
    """decide's own histograms over the whole run (start included): ``tradeplane_decide_lag_seconds`` (wall at
    publish − the newest exchange time seen) and ``tradeplane_decide_tick_lag_seconds`` (wall at publish − the
    tick, on ingest's receive clock: ingest → Kafka → decide, without this program's extra hop)."""
    _, raw = http(port, "/metrics")
    body = raw.decode()
    return {"exchange": _histogram(body, "tradeplane_decide_lag_seconds"),
            "tick": _histogram(body, "tradeplane_decide_tick_lag_seconds")}  # fmt: skip


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far, all its threads (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_shares(pids: dict[str, int], before: dict[str, float], wall_s: float) -> dict[str, float]:
    """Each process's CPU use over ``wall_s`` as a share of one core (1.0 = a full core)."""
    out = {}
    for name, pid in pids.items():
        try:
            out[name] = round((cpu_seconds(pid) - before[name]) / wall_s, 3)
        except OSError:  # the process is gone
            continue
    return out


def one_rate(rate: float, native: float, seconds: float, home: Path, manifests: Path, work: Path, *,
             warmup_s: float = 5.0, ingest_options: dict[str, str] | None = None,
             decide_options: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    speed = rate / native
    lines = min(int(rate * seconds), CAPTURE_LINES[0])
    broker = KafkaBroker(work / f"broker-{int(rate)}")
    broker.start().wait_ready(30)
    started: list[WorkloadProcess] = []
    lags: list[tuple[int, float, float]] = []  # (exchange_ts, exchange lag ms, pipeline lag ms)
    counts = {"signals": 0, "intents": 0}
    try:
        bus = KafkaBus(broker.bootstrap_servers, client_id="bench-reader", consumer_config=CONSUMER,
                       fetch_wait_max_ms=1)  # fmt: skip
        names = list(load_desk([manifests]).strategies)
        topics = [signals_topic(n) for n in names] + [intents_topic(n) for n in names]
        # every topic exists before anyone subscribes (as in a cluster): a pattern subscription would otherwise
        # find a new topic only at its next metadata refresh (5 s), and the lag would be that, not the pipeline's
        bus.ensure_topics([*topics, md_topic("binance-usdm", "BTCUSDT")])
        # fetch_wait_ms 1: Tansu holds an empty fetch for the whole wait even when records arrive (Kafka answers
        # at once), so a small wait is what stands in for Kafka's behaviour here (docs/dataplane.md, Tansu caveats)
        opts = {"manifests": [str(manifests)], "account": "bench", "home": str(home), "fetch_wait_ms": 1}
        opts |= decide_options or {}  # as text, like ingest's: the settings parse them as they parse any env
        decide = WorkloadProcess(["decide", "--port", "0"], _env(broker.bootstrap_servers, opts), work)
        started.append(decide)
        port = int(decide.wait_log("http endpoints listening", timeout=120)["port"])
        decide.wait_log("live session started", timeout=120)
        # intents are rare (a few per run) and only counted: their consumer polls lazily, so that idle polling does
        # not load the broker the measured path runs through (every empty fetch is a request on Tansu)
        readers = [bus.consumer(t, max_queue=100_000, name=f"bench-{t}",
                                fetch_wait_max_ms=1 if t.startswith("signals.") else 20) for t in topics]  # fmt: skip
        for c in readers:
            c.wait_assigned(timeout=60)
        time.sleep(4.0)  # decide's md group join (~3 s on Tansu) is done too

        def drain(timeout: float) -> None:
            for i, c in enumerate(readers):  # waits on the signals only: the others are read as they are
                for r in c.fetch(10_000, timeout=timeout if i == 0 else 0.0):
                    now = time.time_ns()
                    ets, its = _times(r.topic, r.value)
                    if its is not None:  # a signal (intents are counted only)
                        lags.append((ets, (now - ets) / 1e6, (now - its) / 1e6))
                    counts["intents" if r.topic.startswith("intents.") else "signals"] += 1

        server = _ReplayProcess(lines, speed)
        as_server = cast(ReplayServer, server)  # launch reads its ws_url and base_url only
        ingest, _ = launch(started, work, _env(broker.bootstrap_servers, {}), broker, as_server, "ingest-bench",
                           **(ingest_options or {}))  # fmt: skip
        pids = {"replay": server.pid, "ingest": ingest.proc.pid, "decide": decide.proc.pid,
                "broker": broker.processes[0].pid, "bench": os.getpid()}  # fmt: skip
        cpu0, wall0 = {n: cpu_seconds(p) for n, p in pids.items()}, time.monotonic()
        deadline = time.monotonic() + seconds * 3 + 60
        while time.monotonic() < deadline and not server.done.is_set():
            drain(0.05)
        cpu = cpu_shares(pids, cpu0, time.monotonic() - wall0)
        end = time.monotonic() + 3
        while time.monotonic() < end:
            drain(0.05)
        sent = server.finish(10)
        stop(ingest)
        inside = _decide_lag(port)
        decide.proc.send_signal(signal.SIGTERM)
        assert decide.proc.wait(timeout=60) == 0, "".join(decide.lines[-20:])
        bus.close(timeout=5)
    finally:
        for p in started:
            p.stop()
        broker.stop()
    # the first warmup_s of exchange time are left out: ingest's start (subscribe, snapshot, sync) and the
    # first Kafka fetches, not the steady state
    t0 = min((t for t, _, _ in lags), default=0)
    warmup_s = min(warmup_s, lines / rate / 2)  # 20k msg/s replays the whole capture in ~5 s
    a = np.array([lag for t, lag, _ in lags if t >= t0 + warmup_s * 1e9])
    b = np.array([lag for t, _, lag in lags if t >= t0 + warmup_s * 1e9])
    return {"rate_msgs_s": rate, "speed": round(speed, 3), "lines": lines, "sent": sent, "warmup_s": warmup_s,
            "signals": counts["signals"], "intents": counts["intents"]} | lag_summary(a, b) | {
            "cpu_cores": cpu, "decide_lag": inside, "_lags": (a, b)}  # fmt: skip


def _pct(x: np.ndarray, q: float) -> float | None:
    return float(np.percentile(x, q)) if x.size else None


def lag_summary(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """Percentiles of the exchange → signal lags ``a`` and the ingest clock → signal lags ``b`` (ms)."""
    return {"records": int(a.size), "p50_ms": _pct(a, 50), "p99_ms": _pct(a, 99),
            "max_ms": float(a.max()) if a.size else None,
            "pipeline_p50_ms": _pct(b, 50), "pipeline_p90_ms": _pct(b, 90), "pipeline_p99_ms": _pct(b, 99),
            "pipeline_max_ms": float(b.max()) if b.size else None}  # fmt: skip


def pooled(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row for several runs of a rate: percentiles over every run's signals together (a 20k run lasts
    ~4.7 s, ~230 signals: one run's p99 is its 2nd–3rd largest value), each run's own figures under ``runs``."""
    pairs = [r.pop("_lags") for r in runs]
    a, b = np.concatenate([x for x, _ in pairs]), np.concatenate([y for _, y in pairs])
    first = runs[0]
    return {k: first[k] for k in ("rate_msgs_s", "speed", "lines")} | {
        "sent": sum(r["sent"] for r in runs), "signals": sum(r["signals"] for r in runs),
        "intents": sum(r["intents"] for r in runs), "warmup_s": first["warmup_s"], "repeats": len(runs),
    } | lag_summary(a, b) | {
        "cpu_cores": {k: round(float(np.mean([r["cpu_cores"].get(k, np.nan) for r in runs])), 3)
                      for k in first["cpu_cores"]},
        "decide_lag": first["decide_lag"] if len(runs) == 1 else None, "runs": runs if len(runs) > 1 else None,
    }  # fmt: skip


def _ms(x: float | None) -> str:
    return "—" if x is None else f"{x:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--rates", default="1000,5000,20000")
    ap.add_argument("--tick-ms", type=int, default=None,
                    help="override the desk's decision.tickMs (more signals per second: a firmer p99 at 20k, whose "
                         "run lasts only ~4.7 s)")  # fmt: skip
    ap.add_argument(
        "--ingest",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an ingest workload option (e.g. batch_max_ms=1, linger_ms=0); repeatable",
    )
    ap.add_argument("--decide", action="append", default=[], metavar="KEY=VALUE",
                    help="a decide workload option (e.g. fetch_wait_ms=3); repeatable")  # fmt: skip
    ap.add_argument("--repeat", type=int, default=1, help="runs per rate, each on a fresh broker; percentiles "
                    "over all of them (a firmer p99)")  # fmt: skip
    args = ap.parse_args()
    ingest_options = dict(kv.split("=", 1) for kv in args.ingest)
    decide_options = dict(kv.split("=", 1) for kv in args.decide)
    native, CAPTURE_LINES[0] = capture_rate()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cfg = DemoConfig(examples=REPO / "examples", home=work / "home", train_hours=1.0, trials=2, seed=3)
        manifests = live_manifests(demo_manifests(cfg, train_models(cfg, lambda _: None)))
        if args.tick_ms is not None:
            with_tick(manifests, args.tick_ms)
        rows = [pooled([one_rate(float(r), native, args.seconds, work / "home", manifests, work,
                                 ingest_options=ingest_options, decide_options=decide_options)
                        for _ in range(args.repeat)])
                for r in args.rates.split(",")]  # fmt: skip
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    name = "dataplane_lag.json" if args.tick_ms is None else f"dataplane_lag_tick{args.tick_ms}ms.json"
    path = REPO / "benchmarks" / "results" / name
    old = json.loads(path.read_text()) if path.exists() else {}
    paper = old.get("paper") or (
        {k: old[k] for k in ("hold_back_ms", "seconds", "rates") if k in old}
        | {"mode": "paper (execute's simulator drives decide in lock-step)"}
        if old.get("hold_back_ms")
        else None
    )
    out = {"machine": machine, "mode": "live", "capture_msgs_per_s": native, "seconds": args.seconds,
           "tick_ms": args.tick_ms or 100, "ingest_options": ingest_options, "decide_options": decide_options,
           "rates": rows, "paper": paper}  # fmt: skip
    for r in rows:
        tick = (r["decide_lag"] or {}).get("tick", {})
        print(
            f"{r['rate_msgs_s']:>8.0f} msg/s  speed {r['speed']:>6}  signals {r['signals']:>6}  "
            f"intents {r['intents']:>4}  exchange→signal p50 {r['p50_ms']:.1f} p99 {r['p99_ms']:.1f} max "
            f"{r['max_ms']:.1f} ms | ingest clock→signal p50 {r['pipeline_p50_ms']:.1f} "
            f"p99 {r['pipeline_p99_ms']:.1f} ms  "
            f"(decide at publish, tick→intent: p50 {_ms(tick.get('p50_ms'))} p99 {_ms(tick.get('p99_ms'))} ms)  "
            f"cores {r['cpu_cores']}"
        )
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
