"""The whole market-data pipeline on a real capture with an injected gap: the gap is caught at the exact
message, feature rows pause while the book is unsynced, and resume (flagged) after the new snapshot."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.unit.engine.test_book_real_data import capture, depth_messages, resync_snapshot
from tradeplane.engine.book import BookConfig, QualityConfig
from tradeplane.engine.features import FEAT_AFTER_SKIP
from tradeplane.engine.pipeline import MarketDataPipeline, PipelineConfig

LENIENT = QualityConfig(max_clock_offset_ns=2_000_000_000, max_latency_jitter_ns=2_000_000_000)


def test_features_pause_on_a_dropped_diff_and_resume_after_the_new_snapshot(shared_dir: Path) -> None:
    cap = capture(shared_dir, "usdm_btcusdt_20240808")
    ev = cap.events
    first, last = depth_messages(ev)
    k, m = 2000, 2040
    a0, a1 = first[k], last[k] + 1
    broken = np.concatenate([ev[:a0], ev[a1:]])
    snap = resync_snapshot(ev, int(last[m]))
    at = int(last[m]) + 1 - (a1 - a0)
    stream = np.concatenate([broken[:at], snap, broken[at:]])

    pipeline = MarketDataPipeline(PipelineConfig(book=BookConfig(levels=10), quality=LENIENT), cap.symbols)
    # Feed in micro-batches, as a live workload does.
    tops, rows_top, flags = [], [], []
    offset = 0
    for chunk in np.array_split(stream, 97):
        out = pipeline.process(chunk.copy())
        assert out.features is not None
        rows_top.append(out.features.book_top_index + offset)
        flags.append(out.features.book["flags"])
        tops.append(out.book.tops)
        offset += len(out.book.tops)
    all_tops = np.concatenate(tops)
    row_top = np.concatenate(rows_top)
    row_flags = np.concatenate(flags)
    synced = all_tops["synced"] == 1
    # Exactly the synced (non-crossed) tops produced rows: none from the unsynced stretch.
    assert np.array_equal(row_top, np.nonzero(synced & (all_tops["crossed"] == 0))[0])
    unsynced_after_start = np.nonzero(~synced)[0]
    unsynced_after_start = unsynced_after_start[unsynced_after_start > 10]  # skip the pre-snapshot start
    assert len(unsynced_after_start) >= 39  # the 40 messages until the fresh snapshot
    resume = unsynced_after_start[-1] + 1
    first_row_after = int(np.searchsorted(row_top, resume))
    assert row_top[first_row_after] == resume
    assert row_flags[first_row_after] & FEAT_AFTER_SKIP  # OFI/Δmicroprice are not computed across the hole
    (report,) = pipeline.reports()
    assert report.gaps == 1 and report.state == "synced"
