"""A REST depth snapshot's exchange time, as ingest publishes it: live decide's book equals the backtester's.

Why it matters: the simulator (the backtester's book, and live decide's through ``MarketClock``) applies events
in exchange-time order. A futures snapshot carries the venue's ``T`` (when its ``lastUpdateId`` happened),
but it reaches us a REST round trip later (for 1000 levels, far more than the replay server's loopback ms),
and diffs keep arriving meanwhile. Placed at ``T``, the backtest's book turned synced at diffs received *before* the snapshot (a
look-ahead: the tops delivered then needed a document not received yet), while live decide, whose simulator
had already run past ``T`` when the snapshot came, applied it late: the two desks saw different tops for the
length of the round trip. Ingest therefore publishes a snapshot with the exchange time of the last diff of
its symbol received before it, so that exchange order puts it exactly where it was received in the diff
stream (any place syncs: diffs its ``lastUpdateId`` covers are dropped as stale, later ones were buffered).

Here, without sockets: the capture's first lines through ingest's pipeline with the clock the replay server
gives at 1× (each message's ``E`` = its send time, received 1 ms later); the snapshot, stamped at the request,
is received 150 ms later (a tick of the 100 ms decision clock falls in between). The published events go
through the backtester in one piece and through ``LiveFeed`` + ``MarketClock`` one md batch at a time, as live
decide feeds them: the desk receives the same tops, and no synced top before the snapshot was received.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from tests.fixtures.binance_replay import CaptureMessage, RecordedSnapshot, rebase_exchange_times
from tradeplane.engine.events import DEPTH, EVENT_DTYPE, KIND_MASK, LAST_IN_MSG, SNAPSHOT, EventArray
from tradeplane.engine.runtime.instruments import instrument_table
from tradeplane.engine.sim.runner import BacktestConfig, BacktestRun, Context, MarketBatch
from tradeplane.workloads.bus import InProcessBus
from tradeplane.workloads.bus.mdbatch import MdBatch, decode_md_batch, encode_md_batch
from tradeplane.workloads.ingest import IngestConfig, IngestPipeline
from tradeplane.workloads.live.market import LiveFeed, MarketClock

from .live_book_support import MS, T0, HandClock, usdm_capture

LINES = 1500
REST_MS = 150  #: from the snapshot's production to its receipt


@pytest.fixture(scope="module")
def usdm(shared_dir: Path) -> tuple[list[CaptureMessage], RecordedSnapshot]:
    return usdm_capture(shared_dir, LINES)


def _ingest(messages: list[CaptureMessage], snapshot: RecordedSnapshot) -> list[MdBatch]:
    """The md batches ingest publishes; the snapshot produced at its recorded position, received REST_MS later."""
    config = IngestConfig(venue="binance-usdm", symbols=("BTCUSDT",), streams=("depth@0ms", "bookTicker", "trade"))
    bus, batches = InProcessBus(), []
    bus.subscribe("md.*", lambda r: batches.append(decode_md_batch(r.value)))
    clock = HandClock()
    pipeline = IngestPipeline(config, bus, encode=encode_md_batch, clock_ns=clock)
    floors: dict[str, dict[bytes, int]] = {}
    cap0 = messages[0].recv_ns
    produced = T0 + (messages[snapshot.position].recv_ns - cap0)
    answer: bytes | None = rebase_exchange_times(snapshot.raw, produced)
    for i, m in enumerate(messages):
        sent = T0 + (m.recv_ns - cap0)
        if answer is not None and sent >= produced + REST_MS * MS:
            clock.now = produced + REST_MS * MS
            pipeline.add_snapshot("BTCUSDT", answer)
            answer = None
        clock.now = sent + MS
        pipeline.add_frame(rebase_exchange_times(m.raw, sent, floors.setdefault(m.stream, {})))
        if i % 10 == 9:
            pipeline.flush()
    pipeline.flush()
    assert answer is None and pipeline.books.is_synced(0)
    return batches


class _Tops:
    """An order-less desk that keeps the tops it receives."""

    def __init__(self) -> None:
        self.tops: list[npt.NDArray[np.void]] = []

    def on_batch(self, ctx: Context, batch: MarketBatch) -> None:
        self.tops.append(batch.tops.copy())


def _config() -> BacktestConfig:
    inst = instrument_table([("binance-usdm", "BTCUSDT")])
    return BacktestConfig(contracts={0: inst[0].contract(leverage=1.0)}, batch_ms=100.0, top_levels=5)


def test_a_snapshot_sits_where_it_was_received_in_its_diff_stream(
    usdm: tuple[list[CaptureMessage], RecordedSnapshot],
) -> None:
    events: EventArray = np.concatenate([b.events for b in _ingest(*usdm)])
    kind = events["kind"] & KIND_MASK
    snap = np.flatnonzero(kind == SNAPSHOT)
    diffs = np.flatnonzero((kind == DEPTH) & ((events["kind"] & LAST_IN_MSG) != 0))
    before, after = diffs[diffs < snap[0]], diffs[diffs > snap[-1]]
    assert before.shape[0] > 5 and after.shape[0] > 100
    ets = events["exchange_ts"]
    assert np.all(ets[snap] == ets[before[-1]])  # the last diff received before it
    assert ets[snap[0]] <= ets[after[0]]  # so exchange order keeps it before every diff received after it


def test_live_decide_receives_the_backtesters_tops_around_a_snapshot(
    usdm: tuple[list[CaptureMessage], RecordedSnapshot],
) -> None:
    batches = _ingest(*usdm)
    events = np.ascontiguousarray(np.concatenate([b.events for b in batches]), EVENT_DTYPE)
    received = int(events["ingest_ts"][np.flatnonzero((events["kind"] & KIND_MASK) == SNAPSHOT)[0]])

    backtest = _Tops()
    BacktestRun(events, backtest, _config()).finish()
    live = _Tops()
    feed = LiveFeed({("binance-usdm", "BTCUSDT"): 0}, max_wait_ns=50 * MS, clock=lambda: T0)
    clock = MarketClock(feed, _config(), live.on_batch)
    for b in batches:
        feed.add(b)
        clock.advance()
    assert clock.run is not None
    clock.run.finish()

    ref, got = np.concatenate(backtest.tops), np.concatenate(live.tops)
    assert ref.shape[0] > 100 and ref["synced"].any()
    assert not ref["synced"][ref["ingest_ts"] < received].any(), "the backtest's book synced before the snapshot"
    assert got.shape == ref.shape
    for name in ref.dtype.names or ():  # field by field: the rows' padding bytes are not data
        np.testing.assert_array_equal(got[name], ref[name], err_msg=name)


def _diff(symbol: str, t_ms: int, first: int, last: int, prev: int) -> bytes:
    data = (b'{"e":"depthUpdate","E":%d,"T":%d,"s":"%s","U":%d,"u":%d,"pu":%d,"b":[["100.0","1.000"]],"a":[]}'
            % (t_ms + 1, t_ms, symbol.encode(), first, last, prev))  # fmt: skip
    return b'{"stream":"%s@depth@0ms","data":%s}' % (symbol.lower().encode(), data)


def test_each_symbols_snapshot_takes_its_own_last_diff_across_flushes() -> None:
    config = IngestConfig(venue="binance-usdm", symbols=("BTCUSDT", "ETHUSDT"), streams=("depth@0ms",))
    bus, batches = InProcessBus(), []
    bus.subscribe("md.*", lambda r: batches.append(decode_md_batch(r.value)))
    clock = HandClock()
    pipeline = IngestPipeline(config, bus, encode=encode_md_batch, clock_ns=clock)
    t_ms = T0 // MS
    for at, frame in ((1, _diff("BTCUSDT", t_ms + 1, 10, 11, 9)), (2, _diff("ETHUSDT", t_ms + 2, 50, 51, 49)),
                      (3, _diff("ETHUSDT", t_ms + 3, 52, 53, 51))):  # fmt: skip
        clock.now = T0 + at * MS
        pipeline.add_frame(frame)
    pipeline.flush()  # BTCUSDT's last diff is in an earlier flush than its snapshot
    clock.now = T0 + 9 * MS
    pipeline.add_frame(_diff("ETHUSDT", t_ms + 8, 54, 55, 53))
    clock.now = T0 + 10 * MS
    pipeline.add_snapshot("BTCUSDT", b'{"lastUpdateId":11,"E":%d,"T":%d,"bids":[["100.0","2.0"]],"asks":[]}'
                          % (t_ms + 5, t_ms + 4))  # fmt: skip
    clock.now = T0 + 11 * MS
    pipeline.add_snapshot("ETHUSDT", b'{"lastUpdateId":55,"E":%d,"T":%d,"bids":[["100.0","2.0"]],"asks":[]}'
                          % (t_ms + 9, t_ms + 9))  # fmt: skip
    pipeline.flush()
    snaps = {b.symbol: b.events[(b.events["kind"] & KIND_MASK) == SNAPSHOT] for b in batches[-2:]}
    assert snaps["BTCUSDT"]["exchange_ts"].tolist() == [(t_ms + 1) * MS]
    assert snaps["ETHUSDT"]["exchange_ts"].tolist() == [(t_ms + 8) * MS]
