"""Data-quality checks over book micro-batches: clock offset and latency flags, the rolling gap ratio, reports.

Inputs: synthetic spot streams (snapshot + chained diffs every 100 ms of exchange time) with chosen
latencies and chosen chain breaks. Observed: DEGRADED flags on events and tops, resync requests raised by
the gap ratio, and the QualityReport. The book itself is tested in test_book.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.unit.engine.test_book import SNAP_ASKS, SNAP_BIDS, cat, snapshot, spot_diff
from tradeplane.engine import events as evk
from tradeplane.engine.book import (
    RESYNC_GAP,
    RESYNC_GAP_RATIO,
    BookConfig,
    BookSet,
    QualityConfig,
    QualityMonitor,
)

T0 = 1_723_161_256_000_000_000
MS = 1_000_000


def spot_stream(n_msgs: int, gaps_at: frozenset[int] = frozenset(), latency_ns: int = 5 * MS) -> np.ndarray:
    """Snapshot, then ``n_msgs`` diffs 100 ms apart; at each index in ``gaps_at`` the diff skips an id (a
    chain break) and a fresh snapshot follows at once, so the book resyncs and the stream continues."""
    parts = [snapshot(10, SNAP_BIDS, SNAP_ASKS, ts=T0)]
    u = 10
    for k in range(n_msgs):
        ts = T0 + (k + 1) * 100 * MS
        first = u + (2 if k in gaps_at else 1)
        u = first
        parts.append(spot_diff(u, first, bids=[(100.0, 1.0 + k % 5)], ts=ts))
        if k in gaps_at:
            parts.append(snapshot(u, SNAP_BIDS, SNAP_ASKS, ts=ts))
    ev = cat(*parts)
    ev["ingest_ts"] = ev["exchange_ts"] + latency_ns
    return ev


def run(ev: np.ndarray, config: QualityConfig | None = None, batch: int = 1000) -> tuple[BookSet, QualityMonitor, list]:
    books = BookSet(BookConfig(levels=3, tick_sizes={0: 0.01}))
    monitor = QualityMonitor(config)
    batches = [monitor.process(books, ev[a : a + batch]) for a in range(0, ev.shape[0], batch)]
    return books, monitor, batches


class TestOffsetAndLatency:
    def test_steady_feed_is_not_degraded_and_offset_is_estimated(self) -> None:
        ev = spot_stream(200, latency_ns=7 * MS)
        _, monitor, batches = run(ev)
        assert not np.any(ev["kind"] & evk.DEGRADED)
        assert monitor.offset_ns(0) == pytest.approx(7 * MS)
        assert all(int(b.tops["degraded"].sum()) == 0 for b in batches)

    def test_one_late_record_is_flagged_and_its_top_too(self) -> None:
        ev = spot_stream(200, latency_ns=7 * MS)
        late = int(np.nonzero((ev["kind"] & evk.KIND_MASK) == evk.DEPTH)[0][150])
        ev["ingest_ts"][late] += 250 * MS
        books, monitor, batches = run(ev)
        flagged = np.nonzero(ev["kind"] & evk.DEGRADED)[0]
        assert flagged.tolist() == [late]
        tops = np.concatenate([b.tops for b in batches])
        assert int(tops["degraded"].sum()) == 1
        assert monitor.report(books, 0).degraded_events == 1

    def test_clock_offset_beyond_limit_degrades_everything(self) -> None:
        # The real captures: the recorder's clock ran ~1.27 s behind Binance's.
        ev = spot_stream(50, latency_ns=-1_270 * MS)
        books, monitor, batches = run(ev)
        assert np.all(ev["kind"] & evk.DEGRADED)
        assert monitor.offset_ns(0) == pytest.approx(-1_270 * MS)
        assert all(np.all(b.tops["degraded"] == 1) for b in batches)
        rep = monitor.report(books, 0)
        assert rep.degraded_events == ev.shape[0] and rep.degraded_tops == rep.applied + rep.snapshots

    def test_limits_are_configurable(self) -> None:
        ev = spot_stream(50, latency_ns=-1_270 * MS)
        run(ev, QualityConfig(max_clock_offset_ns=2_000 * MS))
        assert not np.any(ev["kind"] & evk.DEGRADED)

    @pytest.mark.parametrize("how", ["zero", "copied-ingest"])
    def test_events_without_exchange_time_are_not_measured(self, how: str) -> None:
        # Spot bookTicker and spot snapshots carry no event time: the decoder copies the ingest time.
        ev = spot_stream(20)
        ev["exchange_ts"] = 0 if how == "zero" else ev["ingest_ts"]
        _, monitor, _ = run(ev)
        assert monitor.offset_ns(0) is None and not np.any(ev["kind"] & evk.DEGRADED)

    def test_one_sample_per_message(self) -> None:
        # A 5-level snapshot at 50 ms latency, then one-level diffs at 7 ms: with alpha = 1 the estimate is
        # the last message's latency whatever the level counts.
        ev = spot_stream(3, latency_ns=7 * MS)
        ev["ingest_ts"][:5] = ev["exchange_ts"][:5] + 50 * MS
        _, monitor, _ = run(ev, QualityConfig(offset_alpha=1.0))
        assert monitor.offset_ns(0) == 7 * MS


class TestGapRatio:
    def test_one_gap_per_minute_is_below_the_default_threshold(self) -> None:
        # ~600 depth messages per minute: one gap is 0.17 % < 0.2 %.
        books, monitor, batches = run(spot_stream(1200, frozenset({700})))
        reasons = np.concatenate([b.resync_requests["reason"] for b in batches]).tolist()
        assert reasons == [RESYNC_GAP]  # the book's own request, nothing from the ratio
        assert 0.0015 < monitor.report(books, 0).max_gap_ratio < 0.002

    def test_two_gaps_in_a_minute_raise_one_request_per_excursion(self) -> None:
        ev = spot_stream(2400, frozenset({700, 710, 1500, 1505}))
        books, monitor, batches = run(ev)
        req = np.concatenate([b.resync_requests for b in batches])
        ratio = req[req["reason"] == RESYNC_GAP_RATIO]
        assert ratio.shape[0] == 2  # at the second gap of each pair; the ratio fell back in between
        gap_pos = [int(g["stream_index"]) for g in monitor.gap_records(0)]
        assert [int(s) for s in ratio["stream_index"]] == [gap_pos[1], gap_pos[3]]
        rep = monitor.report(books, 0)
        assert rep.gaps == 4 and rep.gap_ratio_resyncs == 2 and rep.resync_requests == 4 + 2
        assert rep.state == "synced" and rep.unsynced_reason is None

    def test_threshold_is_configurable(self) -> None:
        _, _, batches = run(spot_stream(1200, frozenset({700})), QualityConfig(max_gap_ratio=0.001))
        reasons = np.concatenate([b.resync_requests["reason"] for b in batches]).tolist()
        assert reasons == [RESYNC_GAP, RESYNC_GAP_RATIO]

    def test_same_requests_whatever_the_batch_size(self) -> None:
        ev = spot_stream(2400, frozenset({700, 710, 1500, 1505}))
        got = []
        for size in (97, 1000, ev.shape[0]):
            _, _, batches = run(ev.copy(), batch=size)
            starts = range(0, ev.shape[0], size)
            req = np.concatenate([b.resync_requests for b in batches])
            got.append(req[["symbol", "stream_index", "reason"]].tolist())
            assert len(list(starts)) == len(batches)
        assert got[0] == got[1] == got[2]


class TestReport:
    def test_report_of_a_capture_without_snapshot(self) -> None:
        ev = cat(*(spot_diff(11 + k, 11 + k, bids=[(100.0, 1.0)], ts=T0 + k * 100 * MS) for k in range(30)))
        books, monitor, batches = run(ev)
        assert all(np.all(b.tops["synced"] == 0) for b in batches)
        rep = monitor.report(books, 0)
        assert rep.unsynced_reason == "no snapshot received" and rep.state == "wait_snapshot"
        assert rep.messages == 30 and rep.snapshots == 0 and rep.applied == 0 and rep.gaps == 0
        assert "no snapshot received" in rep.summary()

    def test_report_counts(self) -> None:
        ev = cat(
            spot_stream(100, frozenset({40})),
            spot_diff(200, 200, bids=[(100.04, 1.0)], ts=T0 + 20_000 * MS),  # a second gap, left unsynced
        )
        ev["ingest_ts"] = ev["exchange_ts"] + 5 * MS
        books, monitor, _ = run(ev)
        rep = monitor.report(books, 0)
        assert rep.messages == 101 and rep.snapshots == 2 and rep.gaps == 2
        assert rep.gap_records["reason"].tolist() == [1, 1]
        assert rep.offset_ns == pytest.approx(5 * MS)
        assert rep.unsynced_reason is not None and rep.unsynced_reason.startswith("sequence gap")
        assert [r.symbol for r in monitor.reports(books)] == [0]


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="max_clock_offset_ns"):
        QualityConfig(max_clock_offset_ns=0)
    with pytest.raises(ValueError, match="multiple"):
        QualityConfig(gap_window_ns=1_000, gap_window_buckets=7)
    with pytest.raises(ValueError, match="offset_alpha"):
        QualityConfig(offset_alpha=0.0)
    with pytest.raises(TypeError, match="EVENT_DTYPE"):
        QualityMonitor().mark(np.zeros(2))
