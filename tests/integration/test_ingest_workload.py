"""`tradeplane workload ingest` as a real OS process: the replay server in, the real (Tansu) broker out.

The process is the installed console script, configured only by ``TRADEPLANE_*`` env variables the way the
operator configures it. It listens on ``--port 0`` (the port comes from its first log line). What it
publishes is read back from ``md.<venue>.<symbol>`` with a plain consumer on assigned partitions and must
equal the engine's own decode of the same capture slice (:func:`read_capture`), as in the in-process
replay tests. The md topic of a venue and symbol is shared by every test of the session's broker, so a test
keeps only the batches whose ``seq`` (the wall clock at publish, in ns) is newer than its own start.

Checked: readiness once synced and the failing dependency named when the exchange goes away; SIGTERM →
exit 0 with nothing lost (every record the process published is consumed, every frame it read is in them,
and the stream is exactly a prefix of the capture when it is stopped mid-stream); a broker that is down
at start fails readiness (``kafka``), not liveness, and no websocket is opened; bad options → exit 3
naming the env variable.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.binance_replay import ReplayServer, comparable
from tests.integration.test_ingest_replay import STREAMS, USDM, VENUES, capture, reference_events, split_snapshots
from tests.integration.test_workload_process import CLI, WorkloadProcess, http
from tests.services import KafkaBroker
from tradeplane.engine.events import KIND_MASK, SNAPSHOT, EventArray
from tradeplane.workloads.bus.mdbatch import MdBatch, decode_md_batch
from tradeplane.workloads.bus.topics import md_topic
from tradeplane.workloads.ingest import IngestConfig, message_mask
from tradeplane.workloads.ingest.main import CONFIG_KEYS, IngestOptions

VENUE = VENUES[USDM]
SYMBOL = "BTCUSDT"
TOPIC = md_topic(VENUE, SYMBOL)
WAIT_S = 30.0


def uid() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRADEPLANE_")}
    return clean | {"TRADEPLANE_SECRETS_DIR": str(tmp_path / "no-secrets"), "TRADEPLANE_HOME": str(tmp_path),
                    "OMP_NUM_THREADS": "1"}  # fmt: skip


@pytest.fixture
def started() -> Iterator[list[WorkloadProcess]]:
    procs: list[WorkloadProcess] = []
    yield procs
    for p in procs:
        p.stop()


def launch(
    started: list[WorkloadProcess], tmp_path: Path, env: dict[str, str], broker: KafkaBroker, server: ReplayServer,
    name: str, **options: str,
) -> tuple[WorkloadProcess, int]:  # fmt: skip
    """Start the ingest process against ``server`` and ``broker``; returns it and its HTTP port."""
    opts = {"venue": VENUE, "symbols": SYMBOL, "streams": ",".join(STREAMS[USDM]), "ws_url": server.ws_url,
            "rest_url": server.base_url, "name": name, "funding_poll_s": "0", "open_interest_poll_s": "0",
            "snapshot_min_interval_s": "0", "backoff_base_s": "0.1", "backoff_cap_s": "0.5"} | options  # fmt: skip
    full = env | {"TRADEPLANE_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap_servers,
                  "TRADEPLANE_WORKLOAD__SHUTDOWN_DEADLINE_S": "10"}  # fmt: skip
    full |= {f"TRADEPLANE_WORKLOAD__OPTIONS__{k.upper()}": v for k, v in opts.items()}
    proc = WorkloadProcess(["ingest", "--port", "0"], full, tmp_path)
    started.append(proc)
    port = int(proc.wait_log("http endpoints listening")["port"])
    return proc, port


def until(what: str, probe: Callable[[], Any], timeout: float = WAIT_S) -> Any:
    """Poll ``probe`` until it returns something truthy; AssertionError naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def readyz(port: int) -> tuple[int, dict[str, Any]]:
    status, body = http(port, "/readyz")
    tree: dict[str, Any] = json.loads(body)
    return status, tree


def ready(port: int) -> dict[str, Any] | None:
    """The /readyz tree once it answers 200 with the ingest's checks registered (the shell answers 200 with
    an empty tree while setup is still running)."""
    status, tree = readyz(port)
    return tree if status == 200 and tree["checks"] else None


def frames_decoded(port: int) -> int:
    """Websocket messages the process decoded so far (``messages_total`` without snapshots)."""
    text = http(port, "/metrics")[1].decode()
    return int(sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                   if s.name == "messages_total" and not s.labels.get("stream", "").endswith("@snapshot")))  # fmt: skip


def read_records(bootstrap: str, topic: str, expected: int, keep: Callable[[bytes], bool]) -> list[bytes]:
    """Values of ``topic`` from the beginning (plain consumer, assigned partitions) that ``keep`` accepts:
    waits until ``expected`` were found, then 0.5 s more to catch extras."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{uid()}", "enable.auto.commit": False})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        got: list[bytes] = []
        deadline, settle_until = time.monotonic() + WAIT_S, None
        while time.monotonic() < deadline and (settle_until is None or time.monotonic() < settle_until):
            for m in c.consume(500, 0.1):
                value = m.value()
                if m.error() is None and value is not None and keep(value):
                    got.append(value)
            if len(got) >= expected and settle_until is None:
                settle_until = time.monotonic() + 0.5
        return got
    finally:
        c.close()


def read_md(bootstrap: str, since_ns: int, expected: int) -> list[MdBatch]:
    """This test's md batches (seq ≥ its start), in topic order."""
    batches = [decode_md_batch(v) for v in read_records(bootstrap, TOPIC, expected, lambda v: True)]
    return [b for b in batches if b.seq >= since_ns]


def events_of(batches: list[MdBatch]) -> EventArray:
    seqs = [b.seq for b in batches]
    assert seqs == sorted(set(seqs)), "seqs not strictly increasing in topic order"
    assert {(b.venue, b.symbol) for b in batches} == {(VENUE, SYMBOL)}
    return np.concatenate([b.events for b in batches])


def stop(proc: WorkloadProcess) -> tuple[dict[str, Any], dict[str, Any]]:
    """SIGTERM → exit 0 within the deadline; returns the ``ingest flushed`` and ``workload stopped`` lines."""
    sent = time.monotonic()
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.proc.wait(timeout=15) == 0, "".join(proc.lines[-20:])
    assert time.monotonic() - sent < 10.0
    records = proc.records()
    flushed = next(r for r in records if r["msg"] == "ingest flushed")
    stopped = next(r for r in records if r["msg"] == "workload stopped")
    assert stopped["hooks"] == {"stop ingest session": "ok", "flush publisher": "ok", "close event loop": "ok",
                                "close kafka": "ok"}  # fmt: skip
    return flushed, stopped


def test_options_cover_every_ingest_config_field() -> None:
    """A field added to IngestConfig must be settable from the workload options."""
    assert {f.name for f in fields(IngestConfig)} <= set(IngestOptions.model_fields)
    assert {f.name for f in fields(IngestConfig)} == CONFIG_KEYS


def test_ingest_process_publishes_the_replay_and_stops_cleanly(
    shared_dir: Path, tmp_path: Path, env: dict[str, str], started: list[WorkloadProcess], kafka_broker: KafkaBroker
) -> None:
    lines = 3000
    reference = reference_events(shared_dir, USDM, lines, tmp_path)
    name = f"ingest-t{uid()}"
    since = time.time_ns()
    with ReplayServer([capture(shared_dir, USDM)], max_lines=lines, speed=10.0) as server:
        proc, port = launch(started, tmp_path, env, kafka_broker, server, name)
        tree = until("/readyz ok", lambda: ready(port))
        checks = tree["checks"]
        assert {k: v["status"] for k, v in checks.items()} == {"kafka": "ok", "exchange": "ok", "publisher": "ok"}
        assert checks["exchange"]["details"]["synced_symbols"] == [SYMBOL]
        assert checks["publisher"]["depends_on"] == ["kafka"]
        server.wait_finished(WAIT_S)
        until("every frame decoded", lambda: frames_decoded(port) == server.stats().sent)
        assert http(port, "/healthz")[0] == 200
    # the exchange is gone: readiness names it; Kafka and the publisher are still fine
    _, tree = until("/readyz naming the exchange", lambda: (r := readyz(port))[0] == 503 and r)
    assert tree["failing"] == ["exchange"] and tree["blocked"] == []
    assert "connections down" in tree["checks"]["exchange"]["reason"]
    assert http(port, "/healthz")[0] == 200  # liveness does not depend on the exchange

    flushed, _ = stop(proc)
    published = flushed["topics"]
    assert flushed["delivered"] == sum(published.values()) and flushed["delivery_errors"] == 0
    batches = read_md(kafka_broker.bootstrap_servers, since, published[TOPIC])
    assert len(batches) == published[TOPIC] == flushed["md_batches"]
    events = events_of(batches)
    ours, ours_snap = split_snapshots(events)
    ref, ref_snap = split_snapshots(reference)
    assert len(ours) == len(ref) and ours.tobytes() == ref.tobytes()  # same rows, same order
    assert ours_snap.tobytes() == ref_snap.tobytes()  # the recorded snapshot
    quality_topic = f"audit.{name}"
    quality = [orjson.loads(v) for v in read_records(kafka_broker.bootstrap_servers, quality_topic,
                                                     published[quality_topic], lambda v: True)]  # fmt: skip
    assert len(quality) == published[quality_topic] == flushed["quality_records"]
    kinds = [q["record"] for q in quality]
    assert kinds[:2] == ["md_resync_request", "md_resynced"] and "md_gap" not in kinds
    assert "ws_disconnect" in kinds  # the replay server went away before the stop


def test_sigterm_mid_stream_loses_nothing(
    shared_dir: Path, tmp_path: Path, env: dict[str, str], started: list[WorkloadProcess], kafka_broker: KafkaBroker
) -> None:
    lines = 12_000
    reference = reference_events(shared_dir, USDM, lines, tmp_path)
    since = time.time_ns()
    with ReplayServer([capture(shared_dir, USDM)], max_lines=lines, speed=8.0) as server:  # ~6 s of replay
        proc, port = launch(started, tmp_path, env, kafka_broker, server, f"ingest-t{uid()}")
        until("/readyz ok", lambda: ready(port))
        until("frames flowing", lambda: frames_decoded(port) > 1500)
        flushed, _ = stop(proc)
        assert not server.stats().finished  # stopped while the exchange was still sending
    published = flushed["topics"][TOPIC]
    assert flushed["delivered"] == sum(flushed["topics"].values())
    batches = read_md(kafka_broker.bootstrap_servers, since, published)
    assert len(batches) == published == flushed["md_batches"]  # every accepted batch reached the broker
    events = events_of(batches)
    not_snap = (events["kind"] & KIND_MASK) != SNAPSHOT
    assert int(message_mask(events[not_snap]).sum()) == flushed["frames"]  # every frame read is in them
    ours, _ = split_snapshots(events)
    ref = comparable(reference[(reference["kind"] & KIND_MASK) != SNAPSHOT])
    assert 0 < len(ours) < len(ref)
    assert ours.tobytes() == ref[: len(ours)].tobytes()  # exactly the capture up to the stop: no hole


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        pytest.param({"SYMBOLS": "BTCUSDT", "BATCH_MAX_MS": "soon"},
                     "workload.options.batch_max_ms (TRADEPLANE_WORKLOAD__OPTIONS__BATCH_MAX_MS)", id="type"),
        pytest.param({"SYMBOLS": "BTCUSDT", "STREAMS": "depth@100ms,kline_1m"},
                     "workload.options.streams (TRADEPLANE_WORKLOAD__OPTIONS__STREAMS): 'kline_1m'", id="config"),
        pytest.param({}, "workload.options.symbols (TRADEPLANE_WORKLOAD__OPTIONS__SYMBOLS): Field required",
                     id="missing"),
    ],
)  # fmt: skip
def test_bad_options_exit_3_naming_the_env_variable(
    tmp_path: Path, env: dict[str, str], extra: dict[str, str], message: str
) -> None:
    options = {"TRADEPLANE_WORKLOAD__OPTIONS__VENUE": VENUE} | {
        f"TRADEPLANE_WORKLOAD__OPTIONS__{k}": v for k, v in extra.items()
    }
    result = subprocess.run([str(CLI), "workload", "ingest", "--port", "0"], env=env | options, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 3 and message in result.stderr, result.stderr


def test_kafka_down_at_start_fails_readiness_not_liveness(
    shared_dir: Path, tmp_path: Path, env: dict[str, str], started: list[WorkloadProcess]
) -> None:
    down = KafkaBroker.attach("127.0.0.1:9")  # nothing listens on the discard port
    with ReplayServer([capture(shared_dir, USDM)], max_lines=100) as server:
        proc, port = launch(started, tmp_path, env, down, server, f"ingest-t{uid()}", topic_timeout_s="0.5")
        _, tree = until(
            "/readyz naming kafka", lambda: (r := readyz(port))[0] == 503 and "kafka" in r[1]["failing"] and r
        )
        assert tree["checks"]["kafka"]["reason"].startswith("cannot create topics: ")
        assert tree["blocked"] == ["publisher"]
        assert tree["checks"]["exchange"]["reason"] == "ingest session not running"
        assert http(port, "/healthz")[0] == 200
        assert server.stats().connections == 0  # nothing is read before it could be published
        flushed, _ = stop(proc)
    assert flushed["md_batches"] == 0 and flushed["frames"] == 0
