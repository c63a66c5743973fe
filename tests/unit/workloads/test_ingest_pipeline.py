"""The ingest's synchronous core, fed real capture frames directly (no sockets):

- published micro-batches equal the engine's decode of the same capture lines (the independent reference),
  snapshot included at its arrival position, with strictly increasing per-symbol seqs;
- poison frames are counted by cause, handed to ``on_poison`` with their raw bytes and reason, and the good
  frames around them are published unchanged — also when there are more than the decoder lists;
- a lost depth diff becomes a gap record (expected/got ids) and a resync request, and the flush asks for a
  snapshot;
- during a rotation overlap, frames delivered by both connections are published once;
- a bus that refuses records (backpressure) loses nothing and keeps the order;
- funding and open-interest polls become MARK / OPEN_INTEREST events.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry

from tests.fixtures.binance_replay import CaptureMessage, RecordedSnapshot, comparable, load_capture
from tradeplane.engine.binance import MAX_ERRORS, decode_capture_lines
from tradeplane.engine.events import (
    DEGRADED,
    DEPTH,
    EVENT_DTYPE,
    KIND_MASK,
    MARK,
    OPEN_INTEREST,
    SNAPSHOT,
    EventArray,
    SymbolTable,
)
from tradeplane.workloads.bus import InProcessBus, Record
from tradeplane.workloads.bus.mdbatch import decode_md_batch, encode_md_batch
from tradeplane.workloads.ingest import (
    IngestConfig,
    IngestMetrics,
    IngestPipeline,
    mark_price_payloads,
    next_seq,
    open_interest_events,
)

LINES = 1200


@pytest.fixture(scope="module")
def usdm(shared_dir: Path) -> tuple[Path, list[CaptureMessage], RecordedSnapshot]:
    path = shared_dir / "data/binance/ws/usdm_btcusdt_20240808.jsonl.gz"
    _, messages, snapshot = load_capture(path, LINES)
    assert snapshot is not None
    return path, messages, snapshot


@pytest.fixture(scope="module")
def reference(usdm: tuple[Path, list[CaptureMessage], RecordedSnapshot]) -> EventArray:
    """The engine's decode of the same capture lines (file order, snapshot at its line)."""
    _, messages, snapshot = usdm
    lines = [b"%d %s" % (m.recv_ns, m.raw) for m in messages]
    lines.insert(snapshot.position, b"%d %s" % (snapshot.recv_ns, snapshot.raw))
    result = decode_capture_lines(lines, SymbolTable(), "binance-usdm", snapshot_symbol="BTCUSDT")
    assert result.stats.malformed == 0
    return result.events


class Harness:
    """A pipeline on an in-process bus that records every md batch and quality record it publishes."""

    def __init__(self, **config: Any) -> None:
        self.config = IngestConfig(
            venue="binance-usdm", symbols=("BTCUSDT",), streams=("depth@0ms", "bookTicker", "trade"), **config
        )
        self.bus = InProcessBus()
        self.batches: list[Any] = []
        self.records: list[dict[str, Any]] = []
        self.poison: list[tuple[bytes, str]] = []
        self.bus.subscribe("md.*", lambda r: self.batches.append(decode_md_batch(r.value)))
        self.bus.subscribe("audit.*", self._record)
        self.metrics = IngestMetrics(CollectorRegistry())
        self.pipeline = IngestPipeline(self.config, self.bus, encode=encode_md_batch, metrics=self.metrics,
                                       on_poison=lambda raw, why: self.poison.append((raw, why)))  # fmt: skip

    def _record(self, record: Record) -> None:
        self.records.append(orjson.loads(record.value))

    def feed(self, messages: list[CaptureMessage], snapshot: RecordedSnapshot | None, every: int = 100) -> None:
        for i, m in enumerate(messages):
            if snapshot is not None and i == snapshot.position:
                self.pipeline.add_snapshot("BTCUSDT", snapshot.raw)
            self.pipeline.add_frame(m.raw, conn=1)
            if (i + 1) % every == 0:
                self.pipeline.flush()
        self.pipeline.flush()

    def events(self) -> EventArray:
        for b in self.batches:
            assert (b.venue, b.symbol) == ("binance-usdm", "BTCUSDT")
        seqs = [b.seq for b in self.batches]
        assert seqs == sorted(set(seqs)), "md batch seqs must be strictly increasing"
        return np.concatenate([b.events for b in self.batches]) if self.batches else np.empty(0, EVENT_DTYPE)

    def kinds(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["record"] == kind]


def test_published_batches_equal_the_engines_decode(
    usdm: tuple[Path, list[CaptureMessage], RecordedSnapshot], reference: EventArray
) -> None:
    _, messages, snapshot = usdm
    h = Harness()
    h.feed(messages, snapshot)
    got = h.events()
    assert comparable(got).tobytes() == comparable(reference).tobytes()
    # the monitor flags the recorder-era exchange times as late (ingest is "now"): the quality flag is set
    timed = got["exchange_ts"] != got["ingest_ts"]
    assert np.all(got["kind"][timed] & DEGRADED)
    # counted: one message per capture line
    depth = sum("@depth" in m.stream for m in messages)
    assert h.metrics.sample("messages_total", {"stream": "btcusdt@depth"}) == depth
    assert h.metrics.sample("messages_total", {"stream": "btcusdt@snapshot"}) == 1
    assert h.metrics.sample("snapshots_total", {"symbol": "BTCUSDT"}) == 1
    assert h.metrics.sample("ingest_lag_ms_count") == len(messages) + 1  # the futures snapshot has E/T
    assert h.metrics.sample("decode_errors_total", {"type": "json"}) == 0
    # the initial sync: one request (no snapshot yet), one completed resync, no gap
    assert [r["reason"] for r in h.kinds("md_resync_request")] == ["no_snapshot"]
    assert len(h.kinds("md_resynced")) == 1 and h.kinds("md_gap") == []
    assert h.pipeline.sync_state() == {"BTCUSDT": None}
    assert h.metrics.sample("resyncs_total", {"symbol": "BTCUSDT"}) == 0  # the initial sync is not a resync


def test_mark_degraded_can_be_turned_off(usdm: tuple[Path, list[CaptureMessage], RecordedSnapshot]) -> None:
    _, messages, snapshot = usdm
    h = Harness(mark_degraded=False)
    h.feed(messages[:300], snapshot)
    assert not np.any(h.events()["kind"] & DEGRADED)


POISON: list[tuple[bytes, str]] = [
    (b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161256322', "json"),
    (b"<html>502 Bad Gateway</html>", "json"),
    (b'{"stream":"btcusdt@depth20@100ms","data":{"lastUpdateId":1,"bids":[],"asks":[]}}', "unknown"),
    (
        b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161256322,"T":1723161256322,"s":"BTCUSDT",'
        b'"t":5266583935,"p":"61,800.30","q":"0.006","X":"MARKET","m":false}}',
        "number",
    ),
    (b'{"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT"}}', "schema"),
    (b"", "empty"),
]


def test_poison_frames_are_counted_by_type_and_the_stream_continues(
    usdm: tuple[Path, list[CaptureMessage], RecordedSnapshot], reference: EventArray
) -> None:
    _, messages, snapshot = usdm
    h = Harness()
    poisoned: list[CaptureMessage] = []
    for i, m in enumerate(messages):
        if i in (5, 300, 301, 700, 701, 1100):
            raw = POISON[[5, 300, 301, 700, 701, 1100].index(i)][0]
            poisoned.append(CaptureMessage(m.recv_ns, "bad", "BTCUSDT", raw))
        poisoned.append(m)
    shifted = RecordedSnapshot(snapshot.symbol, snapshot.raw, snapshot.last_update_id, snapshot.position + 1, 0)
    h.feed(poisoned, shifted)
    assert comparable(h.events()).tobytes() == comparable(reference).tobytes()  # nothing else lost or changed
    assert [raw for raw, _ in h.poison] == [raw for raw, _ in POISON]
    reasons = [why for _, why in h.poison]
    assert "invalid JSON" in reasons[0] and "depth20" in reasons[2] and "$.p" in reasons[3]
    for cause in ("json", "unknown", "number", "schema", "empty"):
        expected = sum(c == cause for _, c in POISON)
        assert h.metrics.sample("decode_errors_total", {"type": cause}) == expected, cause
    assert h.pipeline.poison_out == len(POISON)


def test_every_poison_frame_is_handed_over_beyond_the_decoders_error_list(
    usdm: tuple[Path, list[CaptureMessage], RecordedSnapshot],
) -> None:
    _, messages, _ = usdm
    h = Harness()
    bad = [b'{"stream":"btcusdt@trade","data":{"e":"trade"' + str(i).encode() for i in range(2 * MAX_ERRORS + 50)]
    for i, raw in enumerate(bad):
        h.pipeline.add_frame(raw, conn=1)
        h.pipeline.add_frame(messages[i].raw, conn=1)
    h.pipeline.flush()
    assert [raw for raw, _ in h.poison] == bad
    assert h.metrics.sample("decode_errors_total", {"type": "json"}) == len(bad)
    assert len(h.events()) > 0


def test_a_lost_diff_is_a_gap_record_and_a_resync_request(
    usdm: tuple[Path, list[CaptureMessage], RecordedSnapshot],
) -> None:
    _, messages, snapshot = usdm
    depth = [i for i, m in enumerate(messages) if "@depth" in m.stream]
    lost = depth[30]  # well after the initial sync
    h = Harness()
    h.feed(messages[:lost], snapshot)
    assert h.pipeline.sync_state() == {"BTCUSDT": None}
    for m in messages[lost + 1 :]:
        h.pipeline.add_frame(m.raw, conn=1)
    result = h.pipeline.flush()
    assert result.resync == ["BTCUSDT"] and result.gaps == 1
    dropped = orjson.loads(messages[lost].raw)["data"]
    [gap] = h.kinds("md_gap")
    assert gap["reason"] == "chain" and gap["symbol"] == "BTCUSDT" and gap["venue"] == "binance-usdm"
    assert gap["expected"] == dropped["pu"]  # the u of the last applied diff
    assert gap["got"] == dropped["u"]  # the next diff's pu points at the lost one
    assert gap["md_seq"] == result.md_seqs["BTCUSDT"]  # the batch that holds the offending diff
    # the book asks (gap), and so does the quality monitor: one gap in ~80 diffs is above the 0.2 % ratio
    assert [r["reason"] for r in h.kinds("md_resync_request")] == ["no_snapshot", "gap", "gap_ratio"]
    assert h.metrics.sample("resyncs_total", {"symbol": "BTCUSDT"}) == 1  # one snapshot for both
    assert h.pipeline.sync_state()["BTCUSDT"] is not None
    assert h.metrics.sample("ws_gap_ratio", {"symbol": "BTCUSDT"}) > 0


def test_overlap_duplicates_are_published_once(
    usdm: tuple[Path, list[CaptureMessage], RecordedSnapshot], reference: EventArray
) -> None:
    _, messages, snapshot = usdm
    h = Harness()
    h.feed(messages[:400], snapshot)
    h.pipeline.begin_overlap()
    # connection 2 subscribes after the overlap began (its first message is 403), the two interleave (either
    # may be ahead), connection 1 leaves after 819
    old, new = list(range(400, 820)), list(range(403, 900))
    arrivals = sorted([(i + 0.5, 1, i) for i in old] + [(i + 0.25 * (i % 3), 2, i) for i in new])
    for n, (_, conn, i) in enumerate(arrivals):
        h.pipeline.add_frame(messages[i].raw, conn=conn)
        if n % 97 == 0:
            h.pipeline.flush()
    h.pipeline.end_overlap()
    h.pipeline.flush()
    assert not h.pipeline.dedupe_active
    for m in messages[900:]:
        h.pipeline.add_frame(m.raw, conn=2)
    h.pipeline.flush()
    assert comparable(h.events()).tobytes() == comparable(reference).tobytes()
    assert h.pipeline.dedupe.dropped > 0 and h.kinds("md_gap") == []


def test_seq_is_strictly_increasing_and_ahead_of_a_previous_process() -> None:
    assert next_seq(5, 3) == 6 and next_seq(5, 100) == 100
    clock = iter([1000, 1000, 1000, 5000, 4000])
    h = Harness()
    h.pipeline.publisher.clock_ns = lambda: next(clock)
    one = np.zeros(1, EVENT_DTYPE)
    seqs = [h.pipeline.publisher.publish_events(one)["BTCUSDT"] for _ in range(5)]
    assert seqs == [1000, 1001, 1002, 5000, 5001]
    # a restarted process starts from the wall clock, which has moved past the old seqs
    restarted = Harness()
    restarted.pipeline.publisher.clock_ns = lambda: 6000
    assert restarted.pipeline.publisher.publish_events(one)["BTCUSDT"] == 6000


def test_backpressure_keeps_every_batch_in_order(usdm: tuple[Path, list[CaptureMessage], RecordedSnapshot]) -> None:
    _, messages, snapshot = usdm
    h = Harness()
    slow = h.bus.consumer("md.*", max_queue=3, name="slow")
    received = []
    for i, m in enumerate(messages[:600]):
        if i == snapshot.position:
            h.pipeline.add_snapshot("BTCUSDT", snapshot.raw)
        h.pipeline.add_frame(m.raw, conn=1)
        if (i + 1) % 50 == 0:
            h.pipeline.flush()
        if (i + 1) % 200 == 0:  # the consumer wakes up now and then
            received += slow.poll(2)
    assert h.pipeline.publisher.backlog > 0
    while h.pipeline.publisher.backlog:
        received += slow.poll(3)
        h.pipeline.publisher.drain()
    received += slow.poll(100)
    decoded = [decode_md_batch(r.value) for r in received]
    assert [b.seq for b in decoded] == sorted({b.seq for b in decoded})
    assert len(decoded) == h.pipeline.publisher.batches == len(h.batches)
    assert np.concatenate([b.events for b in decoded]).tobytes() == h.events().tobytes()


def test_funding_and_open_interest_polls_become_events() -> None:
    premium = [
        {"symbol": "BTCUSDT", "markPrice": "61800.10000000", "indexPrice": "61790.5", "estimatedSettlePrice": "61795",
         "lastFundingRate": "0.00010000", "interestRate": "0.00010000", "nextFundingTime": 1723190400000,
         "time": 1723161256000},
        {"symbol": "ETHUSDT", "markPrice": "2600", "lastFundingRate": "0.0001", "nextFundingTime": 1, "time": 1},
    ]  # fmt: skip
    h = Harness()
    for payload in mark_price_payloads(premium, ["BTCUSDT"]):
        h.pipeline.add_payload(payload)
    oi = open_interest_events([{"openInterest": "81234.567", "symbol": "BTCUSDT", "time": 1723161257000}],
                              h.pipeline.symbols, "binance-usdm", h.pipeline.stamp())  # fmt: skip
    h.pipeline.add_events(oi)
    h.pipeline.flush()
    mark, interest = h.events()
    assert mark["kind"] & KIND_MASK == MARK and interest["kind"] & KIND_MASK == OPEN_INTEREST
    assert (mark["px"], mark["qty"], mark["seq"]) == (61800.1, 0.0001, 1723190400000)
    assert mark["exchange_ts"] == 1723161256000 * 1_000_000
    assert (interest["qty"], interest["exchange_ts"], interest["prev_seq"]) == (81234.567, 1723161257 * 10**9, -1)
    assert h.metrics.sample("messages_total", {"stream": "btcusdt@markPrice"}) == 1
    assert not any(e["kind"] & KIND_MASK in (DEPTH, SNAPSHOT) for e in h.events())


def test_overlaps_of_several_groups_nest() -> None:
    h = Harness()
    h.pipeline.begin_overlap()
    h.pipeline.begin_overlap()  # a second connection group starts rotating
    h.pipeline.end_overlap()
    h.pipeline.flush()
    assert h.pipeline.dedupe_active  # the second group still has two connections
    h.pipeline.end_overlap()
    assert h.pipeline.dedupe_active  # frames of the closed connection may still be buffered
    h.pipeline.flush()
    assert not h.pipeline.dedupe_active
