"""Live decide's book (the simulator's, in exchange-time order) on ingest's stream from the rebased replay.

The defect this guards (docs/dataplane.md, "Live mode: decide"): on ingest's stream from the replay server with
``rebase_times=True`` the simulator's book never synced. The cause was not the REST snapshot's place: the
rebase moved each message's ``E`` to its send time and kept ``E − T``, so at ``speed`` > 1 (the capture's gaps
shrink, ``E − T`` does not) a diff's ``T`` — its exchange time — could fall before the previous diff's. The
exchange-time order then swapped two diffs, their ``pu`` chain broke, and the book waited for a snapshot that
never came (ingest's own book, in receive order, saw no gap and asked for none). Both real captures have no
such step in any stream.

Here, without sockets: the capture's first lines rebased as the server sends them at 8× (send time = the
capture's receive time compressed), fed to ingest's pipeline with a clock 1 ms behind each send, the REST
snapshot served (rebased) at its recorded position; the published events then go through an order-less
``BacktestRun`` (the backtester) and through ``LiveFeed`` + ``MarketClock`` one md batch at a time (live
decide). Both books sync, with no gap, to ingest's own book's last update id.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.binance_replay import CaptureMessage, RecordedSnapshot, rebase_exchange_times
from tradeplane.engine.book import kernels as kn
from tradeplane.engine.events import DEPTH, EVENT_DTYPE, KIND_MASK, LAST_IN_MSG, EventArray
from tradeplane.engine.runtime.instruments import instrument_table
from tradeplane.engine.sim.runner import BacktestConfig, BacktestRun, Context, MarketBatch
from tradeplane.workloads.bus import InProcessBus
from tradeplane.workloads.bus.mdbatch import MdBatch, decode_md_batch, encode_md_batch
from tradeplane.workloads.ingest import IngestConfig, IngestPipeline
from tradeplane.workloads.live.market import LiveFeed, MarketClock

from .live_book_support import MS, T0, HandClock, usdm_capture

LINES = 6000
SPEED = 8.0


@pytest.fixture(scope="module")
def usdm(shared_dir: Path) -> tuple[list[CaptureMessage], RecordedSnapshot]:
    return usdm_capture(shared_dir, LINES)


def _ingest(messages: list[CaptureMessage], snapshot: RecordedSnapshot) -> tuple[list[MdBatch], int]:
    """The md batches ingest publishes from the rebased replay, and its own book's last update id."""
    config = IngestConfig(venue="binance-usdm", symbols=("BTCUSDT",), streams=("depth@0ms", "bookTicker", "trade"))
    bus, batches = InProcessBus(), []
    bus.subscribe("md.*", lambda r: batches.append(decode_md_batch(r.value)))
    clock = HandClock()
    pipeline = IngestPipeline(config, bus, encode=encode_md_batch, clock_ns=clock)
    floors: dict[str, dict[bytes, int]] = {}  # the server's state: one per stream
    cap0 = messages[0].recv_ns
    for i, m in enumerate(messages):
        sent = T0 + round((m.recv_ns - cap0) / SPEED)
        if i == snapshot.position:  # the REST answer, stamped at the request (futures: E, T moved with it)
            clock.now = sent + MS
            pipeline.add_snapshot("BTCUSDT", rebase_exchange_times(snapshot.raw, sent))
        clock.now = sent + MS
        pipeline.add_frame(rebase_exchange_times(m.raw, sent, floors.setdefault(m.stream, {})))
        if i % 50 == 49:
            pipeline.flush()
    pipeline.flush()
    assert pipeline.books.is_synced(0)
    return batches, pipeline.books.last_update_id(0)


class _Nothing:
    def on_batch(self, ctx: Context, batch: MarketBatch) -> None:
        pass


def _config() -> BacktestConfig:
    inst = instrument_table([("binance-usdm", "BTCUSDT")])
    return BacktestConfig(contracts={0: inst[0].contract(leverage=1.0)}, batch_ms=100.0, top_levels=5)


def _assert_synced(run: BacktestRun, last_update_id: int) -> None:
    depth = run.sim.depth
    counters = dict(zip(kn.COUNTER_NAMES, depth.counters[0].tolist(), strict=True))
    assert depth.is_synced(0), counters
    assert counters["gaps"] == 0 and counters["snapshots_applied"] == 1, counters
    assert int(depth.st[0, kn.ST_LAST_U]) == last_update_id


def test_the_rebased_stream_keeps_each_streams_exchange_times_in_order(
    usdm: tuple[list[CaptureMessage], RecordedSnapshot],
) -> None:
    batches, _ = _ingest(*usdm)
    events: EventArray = np.concatenate([b.events for b in batches])
    diffs = events[((events["kind"] & KIND_MASK) == DEPTH) & ((events["kind"] & LAST_IN_MSG) != 0)]
    assert diffs.shape[0] > 400 and np.all(np.diff(diffs["seq"]) > 0)
    for kind in np.unique(events["kind"] & KIND_MASK).tolist():
        ets = events["exchange_ts"][(events["kind"] & KIND_MASK) == kind]
        assert np.all(np.diff(ets) >= 0), f"kind {kind}: exchange time goes backwards"


def test_the_simulators_book_syncs_on_ingests_rebased_stream(
    usdm: tuple[list[CaptureMessage], RecordedSnapshot],
) -> None:
    batches, last_update_id = _ingest(*usdm)
    events = np.ascontiguousarray(np.concatenate([b.events for b in batches]), EVENT_DTYPE)
    backtest = BacktestRun(events, _Nothing(), _config())  # the backtester / local runner over the stored events
    backtest.finish()
    _assert_synced(backtest, last_update_id)

    feed = LiveFeed({("binance-usdm", "BTCUSDT"): 0}, max_wait_ns=50 * MS, clock=lambda: T0)
    clock = MarketClock(feed, _config(), lambda ctx, batch: None)  # live decide: one md batch at a time
    for b in batches:
        feed.add(b)
        clock.advance()
    assert clock.run is not None
    clock.run.finish()
    _assert_synced(clock.run, last_update_id)
