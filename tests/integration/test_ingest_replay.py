"""The ingest workload against the local Binance replay server (tests/fixtures/binance_replay.py), on the
in-process bus: real capture messages over a real websocket, REST snapshots, and faults.

Reference: :func:`tradeplane.engine.replay.read_capture` on the same slice of the capture file — the engine's
own decode of the recorder's lines, independent of the network path. For book checks, a fresh
:class:`BookSet` fed only what the ingest *published* must end exactly where one fed the reference ends: the
published stream alone (snapshots included) is enough to rebuild the book, also across a fault.

(a) clean replay (USD-M and spot) → the same rows in the same order; (b) connection cut mid-stream →
reconnect with backoff, outage and gap flagged, resync from a live snapshot, same final book; (c) a dropped
diff → gap at that message, resync, same final book; (d) malformed frames → counted by type, handed to
on_poison, nothing else changes; (e) rotation with a tiny max age → no diff lost or duplicated; plus refused
handshakes, a silent connection, a peer that stops answering pings, and two symbols on two connections run
through the synchronous ``run(stop_event)`` entry. With ``rebase_times`` the server stamps exchange times at
send time, as a live exchange does: the ingest lag is then real (0 ≤ ingest − exchange < 1 s) and the
events are otherwise the same.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry
from websockets.frames import Frame, Opcode

from tests.fixtures.binance_replay import Faults, ReplayServer, comparable, rebase_exchange_times, text_frame_header
from tradeplane.engine.book import BookConfig, BookSet
from tradeplane.engine.events import (
    DEGRADED,
    DEPTH,
    KIND_MASK,
    LAST_IN_MSG,
    MARK,
    OPEN_INTEREST,
    SNAPSHOT,
    TRADE,
    EventArray,
    SymbolTable,
)
from tradeplane.engine.replay import read_capture
from tradeplane.workloads.bus import InProcessBus
from tradeplane.workloads.bus.mdbatch import MdBatch, decode_md_batch
from tradeplane.workloads.ingest import IngestConfig, IngestSession

USDM = "usdm_btcusdt_20240808"
SPOT = "spot_btcusdt_20240808"
STREAMS = {USDM: ("depth@0ms", "bookTicker", "trade"), SPOT: ("depth@100ms", "bookTicker", "trade")}
VENUES = {USDM: "binance-usdm", SPOT: "binance-spot"}
TICKS = {USDM: 0.1, SPOT: 0.01}
TOP = 20  #: levels per side compared between books


def capture(shared_dir: Path, name: str) -> Path:
    return shared_dir / f"data/binance/ws/{name}.jsonl.gz"


def reference_events(shared_dir: Path, name: str, lines: int, tmp_path: Path) -> EventArray:
    """read_capture of the first ``lines`` lines (written to a file of the same name, so venue and snapshot
    symbol come from the name as for the original)."""
    part = tmp_path / f"{name}.jsonl.gz"
    with gzip.open(capture(shared_dir, name), "rb") as src, gzip.open(part, "wb") as dst:
        dst.writelines(itertools.islice(src, lines))
    result = read_capture(part, SymbolTable())
    assert result.stats.malformed == 0
    return result.events


@dataclass
class Run:
    session: IngestSession
    server: ReplayServer
    batches: list[MdBatch] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    poison: list[tuple[bytes, str]] = field(default_factory=list)
    seconds: float = 0.0

    def events(self) -> EventArray:
        assert self.batches, "nothing was published"
        by_symbol: dict[str, list[int]] = {}
        for b in self.batches:
            by_symbol.setdefault(b.symbol, []).append(b.seq)
        for symbol, seqs in by_symbol.items():
            assert all(a < b for a, b in itertools.pairwise(seqs)), f"{symbol}: seqs not strictly increasing"
        return np.concatenate([b.events for b in self.batches])

    def kinds(self, record: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["record"] == record]

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        return self.session.metrics.sample(name, labels)


def run_ingest(server: ReplayServer, name: str, *, timeout: float = 60.0, seed: int = 1, **overrides: Any) -> Run:
    """Run an ingest session against ``server`` until the replay is over and everything sent was read (or
    nothing more arrived for a moment), with no snapshot in flight; then stop it (shutdown flush)."""
    settings: dict[str, Any] = {"funding_poll_s": 0.0, "open_interest_poll_s": 0.0} | overrides
    config = IngestConfig(venue=VENUES[name], symbols=("BTCUSDT",), streams=STREAMS[name], ws_url=server.ws_url,
                          rest_url=server.base_url, snapshot_min_interval_s=0.0, **settings)  # fmt: skip
    bus = InProcessBus()
    session = IngestSession(config, bus, registry=CollectorRegistry(), rng=random.Random(seed),
                            on_poison=lambda raw, why: run.poison.append((raw, why)))  # fmt: skip
    run = Run(session, server)
    bus.subscribe("md.*", lambda r: run.batches.append(decode_md_batch(r.value)))
    bus.subscribe("audit.*", lambda r: run.records.append(orjson.loads(r.value)))

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(session.run_async(stop))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        seen, quiet_since = -1, loop.time()
        while True:
            await asyncio.sleep(0.02)
            if task.done():
                task.result()
                raise AssertionError("the session stopped by itself")
            stats = server.stats()
            received = sum(g.frames for g in session.groups)
            if received != seen:
                seen, quiet_since = received, loop.time()
            idle = not session.health()["snapshots_in_flight"]
            if stats.finished and idle and (received >= stats.sent or loop.time() - quiet_since > 0.5):
                break
            if loop.time() > deadline:
                raise TimeoutError(f"replay not done after {timeout} s: {stats}\n{session.health()}")
        stop.set()
        await asyncio.wait_for(task, 15)

    t0 = time.perf_counter()
    asyncio.run(main())
    run.seconds = time.perf_counter() - t0
    return run


def final_book(events: EventArray, tick: float) -> BookSet:
    """A BookSet fed ``events`` (one symbol, any id)."""
    ev = events.copy()
    ev["symbol"] = 0
    books = BookSet(BookConfig(levels=1, tick_sizes={0: tick}))
    books.apply(ev)
    return books


def assert_same_book(published: EventArray, reference: EventArray, tick: float) -> BookSet:
    """The book rebuilt from the published stream equals the reference book: same last update id, same best
    ``TOP`` levels per side (a REST snapshot holds 1000 levels, the reference all it ever saw)."""
    ours, ref = final_book(published, tick), final_book(reference, tick)
    assert ours.is_synced(0), ours.unsynced_reason(0)
    assert ours.last_update_id(0) == ref.last_update_id(0)
    a, b = ours.levels(0), ref.levels(0)
    for side in ("bid_px", "bid_qty", "ask_px", "ask_qty"):
        np.testing.assert_array_equal(getattr(a, side)[:TOP], getattr(b, side)[:TOP], err_msg=side)
    return ours


def split_snapshots(events: EventArray) -> tuple[EventArray, EventArray]:
    snap = (events["kind"] & KIND_MASK) == SNAPSHOT
    return comparable(events[~snap]), comparable(events[snap])


# --- (a) clean replay ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "lines"), [(USDM, 4000), (SPOT, 3000)])
def test_clean_replay_publishes_what_the_engine_decodes(
    shared_dir: Path, tmp_path: Path, name: str, lines: int
) -> None:
    reference = reference_events(shared_dir, name, lines, tmp_path)
    with ReplayServer([capture(shared_dir, name)], max_lines=lines) as server:
        polls: dict[str, Any] = {"funding_poll_s": 30.0, "open_interest_poll_s": 30.0} if name == USDM else {}
        run = run_ingest(server, name, **polls)
    assert {(b.venue, b.symbol) for b in run.batches} == {(VENUES[name], "BTCUSDT")}
    events = run.events()
    kind = events["kind"] & KIND_MASK
    polled = np.isin(kind, (MARK, OPEN_INTEREST))
    if name == USDM:  # one poll each at start, with the fixture's values
        mark, oi = events[kind == MARK], events[kind == OPEN_INTEREST]
        assert len(mark) == 1 and mark["qty"][0] == 0.0001 and len(oi) == 1 and oi["qty"][0] == 81234.567
    ours, ours_snap = split_snapshots(events[~polled])
    ref, ref_snap = split_snapshots(reference)
    assert len(ours) == len(ref) and ours.tobytes() == ref.tobytes()  # same rows, same order
    assert ours_snap.tobytes() == ref_snap.tobytes()  # the recorded snapshot, unchanged
    timed = events["exchange_ts"] != events["ingest_ts"]
    assert np.all(events["kind"][timed] & DEGRADED)  # 2024 exchange times, ingested now: flagged late
    assert run.session.pipeline.tick_sizes == {"BTCUSDT": TICKS[name]}  # from exchangeInfo
    ref_kind = reference["kind"] & KIND_MASK
    depth_messages = int(((ref_kind == DEPTH) & (reference["kind"] & LAST_IN_MSG != 0)).sum())
    assert run.metric("messages_total", {"stream": "btcusdt@depth"}) == depth_messages > 100
    assert run.metric("messages_total", {"stream": "btcusdt@trade"}) == int((ref_kind == TRADE).sum())
    assert run.metric("decode_errors_total", {"type": "json"}) == 0 and not run.poison
    assert run.metric("reconnects_total") == 0 and run.kinds("md_gap") == []
    assert run.session.pipeline.sync_state() == {"BTCUSDT": None}
    health = run.session.health()
    assert health["synced_symbols"] == ["BTCUSDT"] and health["publish_backlog"] == 0
    assert run.metric("ingest_lag_ms_count") > 0


# --- (b) the server cuts the connection mid-stream -----------------------------------------------------------


def test_cut_connection_reconnects_resyncs_and_flags_the_gap(shared_dir: Path, tmp_path: Path) -> None:
    lines = 12_000
    reference = reference_events(shared_dir, USDM, lines, tmp_path)
    faults = Faults(cut_after=(3000,), lose_after_cut=200)
    with ReplayServer([capture(shared_dir, USDM)], max_lines=lines, speed=25.0, faults=faults) as server:
        run = run_ingest(server, USDM)
        stats = server.stats()
    assert stats.cuts == 1 and stats.connections == 2 and stats.lost == 200
    assert run.metric("reconnects_total") == 1
    [outage] = run.kinds("ws_disconnect")
    assert outage["symbol"] == "BTCUSDT" and outage["until_ns"] > outage["ts"] and "cut_after" in outage["cause"]
    gaps = run.kinds("md_gap")
    assert len(gaps) == 1 and gaps[0]["reason"] == "chain"
    reasons = [r["reason"] for r in run.kinds("md_resync_request")]
    assert reasons[0] == "no_snapshot" and "gap" in reasons
    assert len(run.kinds("md_resynced")) == 2  # the initial sync and the resync
    # The one outage also trips the gap-ratio monitor (and on a loaded machine may fill the pre-snapshot buffer)
    # while the snapshot is on its way: further requests, answered by the same snapshot. The counter counts
    # flushes that asked, so it is 1 when they come in the gap's flush and more when they come later.
    later = reasons[reasons.index("gap") + 1 :]
    assert set(later) <= {"buffer_overflow", "gap_ratio"}, reasons
    assert 1 <= run.metric("resyncs_total", {"symbol": "BTCUSDT"}) <= 1 + len(later)
    assert [mode for _, _, mode in stats.snapshots] == ["recorded", "live"]
    events = run.events()
    assert int(((events["kind"] & KIND_MASK) == SNAPSHOT).sum()) > 1000  # both snapshots are in the stream
    rebuilt = assert_same_book(events, reference, TICKS[USDM])
    assert rebuilt.counters(0)["gaps"] == 1  # a consumer of the topic sees the break in the data, too
    assert run.session.pipeline.sync_state() == {"BTCUSDT": None}


# --- (c) a dropped message -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["drop", "reorder"])
def test_lost_or_reordered_diff_is_detected_resynced_and_flagged(shared_dir: Path, tmp_path: Path, fault: str) -> None:
    lines = 8000
    reference = reference_events(shared_dir, USDM, lines, tmp_path)
    timeline = ReplayServer([capture(shared_dir, USDM)], max_lines=lines).timeline
    depth = [i for i, m in enumerate(timeline) if "@depth" in m.stream]
    if fault == "drop":
        index = depth[200]
        faults = Faults(drop_indices=frozenset({index}))
    else:  # two consecutive diffs, adjacent in the timeline: the second one arrives first
        index = next(i for i in depth[200:] if "@depth" in timeline[i + 1].stream)
        faults = Faults(reorder_indices=frozenset({index}))
    first = orjson.loads(timeline[index].raw)["data"]
    with ReplayServer([capture(shared_dir, USDM)], max_lines=lines, speed=25.0, faults=faults) as server:
        run = run_ingest(server, USDM)
        stats = server.stats()
    assert (stats.dropped, stats.reordered) == ((1, 0) if fault == "drop" else (0, 1))
    [gap] = run.kinds("md_gap")
    # the chain breaks at the message after the missing one: it points (pu) at the missing one's u
    assert (gap["reason"], gap["expected"], gap["got"]) == ("chain", first["pu"], first["u"])
    assert "gap" in [r["reason"] for r in run.kinds("md_resync_request")]
    assert len(run.kinds("md_resynced")) == 2 and run.metric("reconnects_total") == 0
    assert_same_book(run.events(), reference, TICKS[USDM])


# --- (d) malformed frames ----------------------------------------------------------------------------------------

BAD = {
    100: [b'{"stream":"btcusdt@trade","data":{"e":"trade","E":17231612'],
    900: [b"not json at all", b'{"stream":"btcusdt@depth5","data":{"lastUpdateId":1,"bids":[],"asks":[]}}'],
    2500: [b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"T":1,"s":"BTCUSDT","t":1,"p":"x","q":"1","m":true}}'],
}


def test_malformed_frames_are_counted_by_type_and_the_stream_continues(shared_dir: Path, tmp_path: Path) -> None:
    lines = 3000
    reference = reference_events(shared_dir, USDM, lines, tmp_path)
    faults = Faults(inject=BAD)
    with ReplayServer([capture(shared_dir, USDM)], max_lines=lines, faults=faults) as server:
        run = run_ingest(server, USDM)
        assert server.stats().injected == 4  # frames
    injected = [raw for i in sorted(BAD) for raw in BAD[i]]
    assert [raw for raw, _ in run.poison] == injected
    assert run.metric("decode_errors_total", {"type": "json"}) == 2
    assert run.metric("decode_errors_total", {"type": "unknown"}) == 1
    assert run.metric("decode_errors_total", {"type": "number"}) == 1
    ours, ours_snap = split_snapshots(run.events())
    ref, ref_snap = split_snapshots(reference)
    assert ours.tobytes() == ref.tobytes() and ours_snap.tobytes() == ref_snap.tobytes()
    assert run.metric("reconnects_total") == 0 and run.kinds("md_gap") == []


# --- (e) rotation ----------------------------------------------------------------------------------------------------


def test_rotation_loses_and_duplicates_nothing(shared_dir: Path, tmp_path: Path) -> None:
    lines = 6000
    reference = reference_events(shared_dir, USDM, lines, tmp_path)
    with ReplayServer([capture(shared_dir, USDM)], max_lines=lines, speed=12.0) as server:
        run = run_ingest(server, USDM, max_connection_age_s=0.35, rotation_jitter_s=0.0, rotation_overlap_s=0.1)
        stats = server.stats()
    rotations = run.metric("ws_rotations_total")
    # one more connection when the session stopped in the middle of a rotation
    assert rotations >= 2 and rotations + 1 <= stats.connections <= rotations + 2
    assert run.metric("reconnects_total") == 0 and run.kinds("ws_disconnect") == []
    assert stats.sent > stats.timeline  # during each overlap the server sent everything twice ...
    assert run.session.pipeline.dedupe.dropped > 0  # ... and the duplicates were dropped
    ours, _ = split_snapshots(run.events())
    ref, _ = split_snapshots(reference)
    assert len(ours) == len(ref) and ours.tobytes() == ref.tobytes()  # nothing lost, nothing twice
    assert run.kinds("md_gap") == []


# --- connection-level faults ---------------------------------------------------------------------------------------


def test_refused_handshakes_are_retried_with_backoff(shared_dir: Path) -> None:
    with ReplayServer([capture(shared_dir, USDM)], max_lines=500, faults=Faults(refuse_connections=3)) as server:
        run = run_ingest(server, USDM, backoff_base_s=0.05, backoff_cap_s=0.2)
        stats = server.stats()
    assert stats.refused == 3 and stats.connections == 1
    assert run.metric("ws_connect_failures_total") == 3 and run.metric("reconnects_total") == 0
    assert run.session.pipeline.frames_in == stats.sent == stats.timeline


def test_a_silent_connection_is_dropped_and_replaced(shared_dir: Path) -> None:
    faults = Faults(delays={400: 1.0})  # the server stalls for 1 s before message 400
    with ReplayServer([capture(shared_dir, USDM)], max_lines=1500, faults=faults) as server:
        run = run_ingest(server, USDM, idle_timeout_s=0.6, backoff_base_s=0.05, backoff_cap_s=0.1)
        stats = server.stats()
    # the first connection is dropped 0.6 s into the stall; its replacement is up before the stream resumes
    assert run.metric("reconnects_total") == 1 and stats.connections == 2
    [outage] = run.kinds("ws_disconnect")
    assert "no frame for 0.6 s" in outage["cause"]
    assert run.kinds("md_gap") == []  # nothing was missed
    assert run.session.pipeline.frames_in == stats.timeline


def test_a_peer_that_stops_answering_pings_is_dropped(shared_dir: Path) -> None:
    faults = Faults(answer_pings=False)
    with ReplayServer([capture(shared_dir, USDM)], max_lines=600, speed=1.0, faults=faults) as server:
        run = run_ingest(server, USDM, ping_interval_s=0.2, ping_timeout_s=0.2, backoff_base_s=0.05,
                         backoff_cap_s=0.1, timeout=30.0)  # fmt: skip
    assert run.metric("reconnects_total") >= 1
    assert any("1011" in r["cause"] for r in run.kinds("ws_disconnect"))


# --- several symbols, several connections; the synchronous entry point ---------------------------------------------


def test_two_symbols_on_two_connections_publish_per_symbol(shared_dir: Path, tmp_path: Path) -> None:
    names = ["spot_btcusdt_20240808", "spot_ethusdt_20240808"]
    lines = 2500
    refs = {}
    for name in names:
        (tmp_path / name).mkdir()
        refs[name.split("_")[1].upper()] = reference_events(shared_dir, name, lines, tmp_path / name)
    paths = [capture(shared_dir, n) for n in names]
    with ReplayServer(paths, max_lines=lines, wait_for_connections=2) as server:
        config = IngestConfig(venue="binance-spot", symbols=("BTCUSDT", "ETHUSDT"), ws_url=server.ws_url,
                              rest_url=server.base_url, max_streams_per_connection=3)  # fmt: skip
        bus = InProcessBus()
        batches: list[MdBatch] = []
        bus.subscribe("md.*", lambda r: batches.append(decode_md_batch(r.value)))
        session = IngestSession(config, bus, registry=CollectorRegistry())
        assert [g.streams for g in session.groups] == [
            ("btcusdt@depth@100ms", "btcusdt@bookTicker", "btcusdt@trade"),
            ("ethusdt@depth@100ms", "ethusdt@bookTicker", "ethusdt@trade"),
        ]
        stop = threading.Event()
        worker = threading.Thread(target=session.run, args=(stop,))
        worker.start()
        server.wait_finished(30)
        deadline = time.monotonic() + 30
        while session.pipeline.frames_in < server.stats().sent or session.health()["snapshots_in_flight"]:
            assert time.monotonic() < deadline, session.health()
            time.sleep(0.02)
        health = session.health()  # from another thread, while running
        assert health["connected_streams"] == 6 and health["synced_symbols"] == ["BTCUSDT", "ETHUSDT"]
        assert health["ok"] and [c["connected"] for c in health["connections"]] == [True, True]
        stop.set()
        worker.join(15)
        assert not worker.is_alive()
    assert {b.symbol for b in batches} == {"BTCUSDT", "ETHUSDT"}
    assert len({b.seq for b in batches}) == len(batches)
    for symbol, reference in refs.items():
        mine = np.concatenate([b.events for b in batches if b.symbol == symbol])
        assert np.all(mine["symbol"] == session.pipeline.symbols.intern("binance-spot", symbol))
        ours, ours_snap = split_snapshots(mine)
        ref, ref_snap = split_snapshots(reference)
        assert ours.tobytes() == ref.tobytes(), symbol
        assert ours_snap.tobytes() == ref_snap.tobytes(), symbol


# --- exchange times rebased to the wall clock (live-exchange clocks for lag measurements) ----------------------


def test_rebasing_shifts_every_exchange_time_of_a_message_by_one_offset(shared_dir: Path) -> None:
    now_ns = 1_900_000_000_123_456_789
    now_ms = now_ns // 1_000_000
    for name in (USDM, SPOT):
        for msg in ReplayServer([capture(shared_dir, name)], max_lines=300).timeline:
            out = rebase_exchange_times(msg.raw, now_ns)
            before, after = orjson.loads(msg.raw)["data"], orjson.loads(out)["data"]
            if "E" not in before:  # spot bookTicker: no venue time, sent unchanged
                assert out is msg.raw
                continue
            assert after["E"] == now_ms
            if "T" in before:
                assert after["E"] - after["T"] == before["E"] - before["T"] >= 0  # T ≤ E kept
            assert {k: v for k, v in after.items() if k not in "ET"} == {
                k: v for k, v in before.items() if k not in "ET"
            }
            assert rebase_exchange_times(out, before["E"] * 1_000_000) == msg.raw  # every other byte kept
    samples = {  # nested times, a kline's start time ``t`` (a trade's ``t`` is an id), microseconds
        b'{"e":"kline","E":1000,"s":"X","k":{"t":900,"T":959,"f":7,"L":9,"x":false}}': b'{"e":"kline","E":5000,"s":"X","k":{"t":4900,"T":4959,"f":7,"L":9,"x":false}}',
        b'{"e":"forceOrder","E":1000,"o":{"s":"X","S":"SELL","ap":"1","z":"2","T":998}}': b'{"e":"forceOrder","E":5000,"o":{"s":"X","S":"SELL","ap":"1","z":"2","T":4998}}',
        b'{"e":"markPriceUpdate","E":1000,"s":"X","p":"1","r":"0.0001","T":2000}': b'{"e":"markPriceUpdate","E":5000,"s":"X","p":"1","r":"0.0001","T":6000}',
        b'{"e":"trade","E":1000,"T":999,"s":"X","t":12345,"p":"1","q":"1","m":true}': b'{"e":"trade","E":5000,"T":4999,"s":"X","t":12345,"p":"1","q":"1","m":true}',
        b'{"lastUpdateId":77,"E":1000,"T":990,"bids":[["1.0","2"]],"asks":[]}': b'{"lastUpdateId":77,"E":5000,"T":4990,"bids":[["1.0","2"]],"asks":[]}',
    }
    for raw, expected in samples.items():
        assert rebase_exchange_times(raw, 5000 * 1_000_000) == expected
    us = b'{"e":"trade","E":1723161256322000,"T":1723161256321500,"t":1}'
    assert rebase_exchange_times(us, now_ns) == b'{"e":"trade","E":%d,"T":%d,"t":1}' % (
        now_ns // 1000,
        now_ns // 1000 - 500,
    )


def test_rebased_replay_gives_live_exchange_times_and_the_same_events(shared_dir: Path, tmp_path: Path) -> None:
    lines = 3000
    reference = reference_events(shared_dir, USDM, lines, tmp_path)
    final_book(reference, TICKS[USDM])  # compile the book before the clock matters
    with ReplayServer([capture(shared_dir, USDM)], max_lines=lines, speed=10.0, rebase_times=True) as server:
        run = run_ingest(server, USDM, funding_poll_s=30.0, open_interest_poll_s=30.0)
    events = run.events()
    assert np.all(events["exchange_ts"] != events["ingest_ts"])  # USD-M: every message has a venue time
    lag = events["ingest_ts"] - events["exchange_ts"]
    assert lag.min() >= 0 and lag.max() < 1_000_000_000, (lag.min(), lag.max())  # websocket, snapshot and polls
    kind = events["kind"] & KIND_MASK
    polled = np.isin(kind, (MARK, OPEN_INTEREST))
    assert int(polled.sum()) == 2
    ours, ours_snap = split_snapshots(events[~polled])
    ref, ref_snap = split_snapshots(reference)
    shift = ours["exchange_ts"] - ref["exchange_ts"]
    assert np.all(shift > 0)  # 2024 times moved to now
    for a in (ours, ours_snap, ref, ref_snap):
        a["exchange_ts"] = 0
    assert len(ours) == len(ref) and ours.tobytes() == ref.tobytes()  # same prices, sizes, kinds, ids, order
    assert ours_snap.tobytes() == ref_snap.tobytes()
    assert run.kinds("md_gap") == [] and run.session.pipeline.sync_state() == {"BTCUSDT": None}


def test_hand_built_text_frames_equal_the_websockets_library_frames() -> None:
    """The fixture writes its coalesced frames itself (header + payload): the header must be the one the
    websockets library would put on an unmasked final text frame, at each of the three length encodings."""
    for size in (0, 1, 125, 126, 127, 65_535, 65_536, 70_000):
        payload = b"x" * size
        reference = Frame(Opcode.TEXT, payload).serialize(mask=False)
        assert text_frame_header(size) + payload == reference, size
