"""The book on real Binance captures (../shared/data/binance/ws, see SOURCES.md), decoded by read_capture.

Contract checked here:
- After the REST snapshot inside each capture, the book agrees with the independent bookTicker stream at
  every update id where both exist: a bookTicker with id ``u`` is compared with the book state whose last
  applied diff ended at ``u`` (the top with ``seq == u``), whatever the arrival order of the two messages
  (they are separate streams and often share an exchange millisecond). A bookTicker whose ``u`` falls
  strictly inside a diff's ``[U, u]`` range shows an intermediate state the diff stream never exposes
  (spot diffs aggregate 100 ms; USD-M diffs batch matching-engine updates) and is not compared.
- Zero gaps on the unmodified captures; a capture without a snapshot stays unsynced and says why.
- A dropped diff and two swapped diffs are caught at the exact message, a resync is requested, tops go
  unsynced, and a snapshot consistent with the stream brings the book back in agreement with bookTicker.
- The book's full depth near the touch equals a plain dict replay of the same snapshot + diffs.

Inputs are decoded once per module; every test feeds them to fresh BookSets in micro-batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tradeplane.engine import events as evk
from tradeplane.engine.book import (
    GAP_CHAIN,
    RESYNC_GAP,
    RESYNC_NO_SNAPSHOT,
    BookBatch,
    BookSet,
    QualityMonitor,
)
from tradeplane.engine.replay import read_capture

BATCH = 4096
SYNCED_CAPTURES = {
    # capture: the fewest bookTicker quotes that must be checked (observed: 629, 564, 577)
    "usdm_btcusdt_20240808": 600,
    "spot_btcusdt_20240808": 540,
    "spot_ethusdt_20240808": 550,
}


@dataclass
class Capture:
    name: str
    events: np.ndarray
    symbols: evk.SymbolTable


_CACHE: dict[str, Capture] = {}


def capture(shared_dir: Path, name: str) -> Capture:
    if name not in _CACHE:
        symbols = evk.SymbolTable()
        result = read_capture(shared_dir / "data" / "binance" / "ws" / f"{name}.jsonl.gz", symbols)
        assert result.stats.malformed == 0
        _CACHE[name] = Capture(name, result.events, symbols)
    return _CACHE[name]


@dataclass
class Run:
    books: BookSet
    monitor: QualityMonitor
    batch: BookBatch  #: all micro-batches stitched together (event indices into the whole stream)


def run(ev: np.ndarray, symbols: evk.SymbolTable | None = None, batch: int = BATCH) -> Run:
    """Feed ``ev`` (a copy: the monitor flags events in place) in micro-batches through book + quality."""
    ev = ev.copy()
    books, monitor = BookSet(), QualityMonitor(symbols=symbols)
    parts = [(a, monitor.process(books, ev[a : a + batch])) for a in range(0, ev.shape[0], batch)]
    stitched = BookBatch(
        tops=np.concatenate([b.tops for _, b in parts]),
        top_event_index=np.concatenate([b.top_event_index + a for a, b in parts]),
        gaps=np.concatenate([b.gaps for _, b in parts]),
        resync_requests=np.concatenate([b.resync_requests for _, b in parts]),
        counters={k: sum(b.counters[k] for _, b in parts) for k in parts[0][1].counters},
    )
    for a, b in parts:  # event_index is relative to its batch; stream_index counts from the start
        here = b.gaps[b.gaps["event_index"] >= 0]
        assert np.array_equal(here["event_index"] + a, here["stream_index"])
    return Run(books, monitor, stitched)


def bbo_quotes(ev: np.ndarray, since: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(u, [bid px, bid qty, ask px, ask qty], event index) of each bookTicker from event ``since`` on."""
    kind = ev["kind"]
    ask = np.flatnonzero(((kind & evk.KIND_MASK) == evk.BBO) & ((kind & evk.ASK) != 0))
    ask = ask[ask >= since + 1]
    bid = ask - 1
    assert np.all((kind[bid] & evk.BID) != 0) and np.array_equal(ev["seq"][bid], ev["seq"][ask])
    quote = np.stack([ev["px"][bid], ev["qty"][bid], ev["px"][ask], ev["qty"][ask]], axis=1)
    return ev["seq"][ask], quote, ask


def check_bbo(ev: np.ndarray, batch: BookBatch, since: int = 0) -> tuple[int, int]:
    """(bookTickers compared, disagreements) under the rule in the module docstring."""
    tops = batch.tops[batch.tops["synced"] == 1]
    seq = tops["seq"]
    book = np.stack([tops["bid_px"][:, 0], tops["bid_qty"][:, 0], tops["ask_px"][:, 0], tops["ask_qty"][:, 0]], axis=1)
    order = np.argsort(seq, kind="stable")
    seq, book = seq[order], book[order]
    u, quote, _ = bbo_quotes(ev, since)
    pos = np.clip(np.searchsorted(seq, u), 0, max(len(seq) - 1, 0))
    hit = (seq[pos] == u) if len(seq) else np.zeros(len(u), bool)
    bad = hit & ~np.all(book[pos] == quote, axis=1)
    return int(hit.sum()), int(bad.sum())


def depth_messages(ev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first event index, last event index) of each DEPTH message, in stream order."""
    is_depth = (ev["kind"] & evk.KIND_MASK) == evk.DEPTH
    last = np.flatnonzero(is_depth & ((ev["kind"] & evk.LAST_IN_MSG) != 0))
    idx = np.flatnonzero(is_depth)
    first = idx[np.searchsorted(idx, np.concatenate([[-1], last[:-1]]), side="right")]
    return first, last


# --- the unmodified captures --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SYNCED_CAPTURES))
def test_book_agrees_with_book_ticker(shared_dir: Path, name: str) -> None:
    cap = capture(shared_dir, name)
    r = run(cap.events, cap.symbols)
    b = r.batch
    snap_last = int(np.flatnonzero((cap.events["kind"] & evk.KIND_MASK) == evk.SNAPSHOT)[-1])
    synced_from = int(np.searchsorted(b.top_event_index, snap_last))
    assert b.top_event_index[synced_from] == snap_last
    assert np.all(b.tops["synced"][:synced_from] == 0) and np.all(b.tops["synced"][synced_from:] == 1)
    assert b.gaps.shape == (0,), b.gaps
    assert b.resync_requests["reason"].tolist() == [RESYNC_NO_SNAPSHOT]  # the first diff, before the snapshot
    assert int(b.tops["crossed"].sum()) == 0
    checked, bad = check_bbo(cap.events, b, since=snap_last)
    print(f"{name}: {checked} bookTicker quotes checked against the book at the same update id, {bad} differ")
    assert bad == 0
    assert checked >= SYNCED_CAPTURES[name]
    report = r.monitor.report(r.books, 0)
    print(report.summary())
    assert report.state == "synced" and report.unsynced_reason is None and report.gaps == 0
    assert report.messages == b.counters["diff_messages"] and report.snapshots == 1


@pytest.mark.parametrize("name", ["spot_btcusdt_20240809", "spot_ethusdt_20240809"])
def test_capture_without_snapshot_stays_unsynced(shared_dir: Path, name: str) -> None:
    cap = capture(shared_dir, name)
    r = run(cap.events, cap.symbols)
    assert r.batch.tops.shape[0] == r.batch.counters["diff_messages"] > 3000
    assert np.all(r.batch.tops["synced"] == 0) and np.all(np.isnan(r.batch.tops["bid_px"]))
    assert r.batch.gaps.shape == (0,)
    report = r.monitor.report(r.books, 0)
    print(report.summary())
    assert report.unsynced_reason == "no snapshot received"
    assert "no snapshot" in report.summary()


@pytest.mark.parametrize("name", list(SYNCED_CAPTURES))
def test_full_depth_matches_a_dict_replay(shared_dir: Path, name: str) -> None:
    """Every level within 300 of the touch, at the end of the capture, against plain dicts."""
    cap = capture(shared_dir, name)
    ev = cap.events
    r = run(ev)
    kind = ev["kind"] & evk.KIND_MASK
    snap = np.flatnonzero(kind == evk.SNAPSHOT)
    lid = int(ev["seq"][snap[0]])
    futures = bool(np.any(ev["prev_seq"][kind == evk.DEPTH] >= 0))
    bids = {
        float(p): float(q)
        for p, q, k in zip(ev["px"][snap], ev["qty"][snap], ev["kind"][snap], strict=True)
        if k & evk.BID
    }
    asks = {
        float(p): float(q)
        for p, q, k in zip(ev["px"][snap], ev["qty"][snap], ev["kind"][snap], strict=True)
        if k & evk.ASK
    }
    depth = np.flatnonzero(kind == evk.DEPTH)
    t = lid if futures else lid + 1
    use = depth[ev["seq"][depth] >= t]  # stale diffs dropped; the rest chain (checked by the test above)
    for p, q, k in zip(ev["px"][use].tolist(), ev["qty"][use].tolist(), ev["kind"][use].tolist(), strict=True):
        side = bids if k & evk.BID else asks
        if q > 0:
            side[p] = q
        else:
            side.pop(p, None)
    lv = r.books.levels(0)
    ref_b = sorted(bids.items(), reverse=True)[:300]
    ref_a = sorted(asks.items())[:300]
    assert list(zip(lv.bid_px[:300].tolist(), lv.bid_qty[:300].tolist(), strict=True)) == ref_b
    assert list(zip(lv.ask_px[:300].tolist(), lv.ask_qty[:300].tolist(), strict=True)) == ref_a


# --- faults injected into a real stream ---------------------------------------------------------------------------


def resync_snapshot(ev: np.ndarray, upto_last_event: int) -> np.ndarray:
    """A REST snapshot consistent with the stream: the correct book after the diff message whose last event
    is ``upto_last_event`` (lastUpdateId = that diff's u), built by replaying the unmodified capture."""
    books = BookSet()
    books.apply(ev[: upto_last_event + 1])
    assert books.is_synced(0) and books.last_update_id(0) == ev["seq"][upto_last_event]
    return books.to_snapshot(0, int(ev["exchange_ts"][upto_last_event]), int(ev["ingest_ts"][upto_last_event]))


@pytest.mark.parametrize("name", ["spot_btcusdt_20240808", "usdm_btcusdt_20240808"])
@pytest.mark.parametrize("fault", ["drop", "swap"])
def test_injected_fault_is_caught_and_a_new_snapshot_resyncs(shared_dir: Path, name: str, fault: str) -> None:
    cap = capture(shared_dir, name)
    ev = cap.events
    first, last = depth_messages(ev)
    futures = bool(ev["prev_seq"][first[0]] >= 0)
    k = 1500  # well after the capture's own snapshot
    a0, a1, b0, b1 = first[k], last[k] + 1, first[k + 1], last[k + 1] + 1
    # Either way the next diff to arrive after message k-1 is message k+1, which does not chain to k-1.
    prev_u = int(ev["seq"][last[k - 1]])
    expected = prev_u if futures else prev_u + 1
    got = int(ev["prev_seq"][b0]) if futures else int(ev["first_seq"][b0])
    if fault == "drop":
        broken = np.concatenate([ev[:a0], ev[a1:]])
        gap_at = b0 - (a1 - a0)  # message k+1, shifted left by the dropped message
        shift = -(a1 - a0)
    else:
        broken = np.concatenate([ev[:a0], ev[b0:b1], ev[a1:b0], ev[a0:a1], ev[b1:]])
        gap_at = a0  # message k+1 now arrives first, where k was
        shift = 0
    # the fresh REST snapshot: the true book at the diff m = k + 40, inserted right after m arrives
    m = k + 40
    snap = resync_snapshot(ev, int(last[m]))
    at = int(last[m]) + 1 + shift
    stream = np.concatenate([broken[:at], snap, broken[at:]])

    r = run(stream, cap.symbols)
    b = r.batch
    assert b.gaps.shape == (1,), b.gaps
    g = b.gaps[0]
    assert (int(g["stream_index"]), int(g["reason"]), int(g["expected"]), int(g["got"])) == (
        gap_at,
        GAP_CHAIN,
        expected,
        got,
    )
    resync = b.resync_requests[b.resync_requests["reason"] == RESYNC_GAP]
    assert resync["stream_index"].tolist() == [gap_at]

    snap_last = at + snap.shape[0] - 1
    i_gap = int(np.searchsorted(b.top_event_index, gap_at))
    i_snap = int(np.searchsorted(b.top_event_index, snap_last))
    assert b.top_event_index[i_snap] == snap_last
    assert np.all(b.tops["synced"][i_gap:i_snap] == 0) and i_snap - i_gap >= 39
    assert np.all(b.tops["synced"][i_snap:] == 1)
    assert b.tops["seq"][i_snap] >= snap["seq"][0]
    checked, bad = check_bbo(stream, b, since=snap_last)
    print(f"{name} {fault}: gap at event {gap_at}; after the resync {checked} bookTicker quotes checked, {bad} differ")
    assert bad == 0 and checked >= 300
    report = r.monitor.report(r.books, 0)
    assert report.gaps == 1 and report.gap_records["stream_index"].tolist() == [gap_at]
    assert report.state == "synced" and report.resync_requests >= 2
