"""The synchronous core of the ingest: raw frames in, published micro-batches and quality records out.

Why apart from the asyncio session: everything here is a pure function of the frames it is given (plus the
clock), so it is tested by feeding frames directly, without sockets. The session only collects frames,
snapshots and polls, and calls :meth:`IngestPipeline.flush` when a batch is due.

One flush:

1. The buffered websocket frames are decoded with one ``decode_payloads`` call (the engine's vectorised
   decoder: no per-message Python here); REST snapshots with one call each (they name no symbol); polled
   open interest arrives as ready events. Everything is merged by ``ingest_ts``, which is unique and
   increasing per frame (:meth:`IngestPipeline.stamp`), so the merged order is the arrival order.
2. Frames the decoder could not use are counted by cause in ``decode_errors_total`` and handed to
   ``on_poison(raw, reason)`` (the dead-letter route); the rest of the batch goes on.
3. During a rotation overlap, messages both connections delivered are dropped (:mod:`.dedupe`).
4. The engine's :class:`~tradeplane.engine.book.QualityMonitor` marks late or early events DEGRADED, the
   :class:`~tradeplane.engine.book.BookSet` applies the batch and reports gaps and resync requests. The
   ingest keeps its own books only for this: knowing when the chain broke and when a snapshot is needed.
5. The events are published per symbol (:mod:`.publisher`), REST snapshots included, so every consumer
   can rebuild the book from the topic alone; then one quality record per gap, resync request, completed
   resync and lost connection. The flush returns the symbols that need a REST snapshot.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from ...engine.binance import DecodeStats, decode_payloads
from ...engine.book import (
    GAP_CHAIN,
    GAP_SNAPSHOT_TOO_OLD,
    GAP_TRUNCATED,
    RESYNC_BUFFER_OVERFLOW,
    RESYNC_GAP,
    RESYNC_GAP_RATIO,
    RESYNC_NO_SNAPSHOT,
    RESYNC_OFF_TICK,
    BookConfig,
    BookSet,
    QualityMonitor,
)
from ...engine.events import (
    AGG_TRADE,
    BBO,
    DEPTH,
    EVENT_DTYPE,
    KIND_MASK,
    LAST_IN_MSG,
    LIQUIDATION,
    MARK,
    OPEN_INTEREST,
    SNAPSHOT,
    TRADE,
    EventArray,
    SymbolTable,
)
from ..bus.base import Bus
from .config import IngestConfig
from .dedupe import OverlapDedupe
from .metrics import IngestMetrics
from .publisher import MdEncoder, Publisher, QualityEncoder, orjson_bytes

log = logging.getLogger(__name__)

PoisonHandler = Callable[[bytes, str], None]
"""``on_poison(raw, reason)``: a frame the decoder could not use (malformed or of an unknown type)."""

#: Version of the quality records' layout (the ``schema_version`` key).
QUALITY_SCHEMA_VERSION: Final = 1
#: Stream type per event kind, for ``messages_total{stream}`` (``btcusdt@depth``).
STREAM_OF_KIND: Final = {
    DEPTH: "depth",
    SNAPSHOT: "snapshot",
    BBO: "bookTicker",
    TRADE: "trade",
    AGG_TRADE: "aggTrade",
    MARK: "markPrice",
    LIQUIDATION: "forceOrder",
    OPEN_INTEREST: "openInterest",
}
GAP_REASONS: Final = {GAP_CHAIN: "chain", GAP_SNAPSHOT_TOO_OLD: "snapshot_too_old", GAP_TRUNCATED: "truncated"}
RESYNC_REASONS: Final = {
    RESYNC_NO_SNAPSHOT: "no_snapshot",
    RESYNC_GAP: "gap",
    RESYNC_BUFFER_OVERFLOW: "buffer_overflow",
    RESYNC_OFF_TICK: "off_tick",
    RESYNC_GAP_RATIO: "gap_ratio",
}
_SINGLE_EVENT_KINDS: Final = (TRADE, AGG_TRADE, MARK, LIQUIDATION, OPEN_INTEREST)
_NO_EVENTS: Final = np.empty(0, EVENT_DTYPE)


@dataclass
class FlushResult:
    """What one flush did."""

    frames: int = 0  #: websocket frames decoded
    events: int = 0  #: events published
    poison: int = 0  #: frames handed to on_poison
    duplicates: int = 0  #: events dropped as rotation-overlap duplicates
    gaps: int = 0
    resync: list[str] = field(default_factory=list)  #: symbols that need a REST snapshot now
    md_seqs: dict[str, int] = field(default_factory=dict)  #: symbol → seq of the batch published


def message_mask(events: EventArray) -> npt.NDArray[np.bool_]:
    """One True per exchange message: the LAST_IN_MSG event of book messages, every single-event kind."""
    kind = events["kind"]
    return np.asarray(((kind & LAST_IN_MSG) != 0) | np.isin(kind & KIND_MASK, _SINGLE_EVENT_KINDS), np.bool_)


class IngestPipeline:
    """Frames, snapshots and polls of one venue → decoded, checked, published (see the module docstring)."""

    def __init__(
        self,
        config: IngestConfig,
        bus: Bus,
        *,
        encode: MdEncoder,
        encode_quality: QualityEncoder = orjson_bytes,
        metrics: IngestMetrics | None = None,
        on_poison: PoisonHandler | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.config = config
        self.venue = config.venue
        self.symbols = SymbolTable()
        for name in config.symbols:  # ids in config order, whatever arrives first
            self.symbols.intern(self.venue, name)
        self.metrics = metrics if metrics is not None else IngestMetrics()
        self.publisher = Publisher(bus, self.venue, self.symbols, encode=encode, encode_quality=encode_quality,
                                   clock_ns=clock_ns)  # fmt: skip
        self.on_poison = on_poison
        self.clock_ns = clock_ns
        self.tick_sizes: dict[str, float] = {}
        self.books, self.monitor = self._new_books()
        self.dedupe = OverlapDedupe()
        self.dedupe_active = False
        self._overlaps = 0
        self._dedupe_stop_after_flush = False
        self._payloads: list[bytes] = []
        self._ts: list[int] = []
        self._conn: list[int] = []
        self._snapshots: list[tuple[str, bytes, int]] = []
        self._extra: list[EventArray] = []
        self._last_ts = 0
        self._last_diff_ets: dict[int, int] = {}  #: symbol id → exchange time of its last depth diff published
        self._stream_children: dict[int, Any] = {}
        self.decode_stats = DecodeStats()  #: every decode of this pipeline, merged
        self.frames_in = 0
        self.events_out = 0
        self.poison_out = 0
        self.last_frame_ns: int | None = None

    # --- books -----------------------------------------------------------------------------------------------

    def _new_books(self) -> tuple[BookSet, QualityMonitor]:
        ids = {self.symbols.intern(self.venue, s): t for s, t in self.tick_sizes.items()}
        config = BookConfig(levels=1, buffer_events=self.config.book_buffer_events, tick_sizes=ids)
        return BookSet(config, len(self.symbols)), QualityMonitor(self.config.quality, self.symbols)

    def set_tick_sizes(self, ticks: Mapping[str, float]) -> bool:
        """Use exchangeInfo's ticks; when they differ from the books' ticks, rebuild the books (every symbol
        then resyncs from a fresh snapshot). Returns True when the books were rebuilt."""
        fresh = {s: float(t) for s, t in ticks.items() if s in self.config.symbols}
        if fresh == self.tick_sizes:
            return False
        self.tick_sizes = fresh
        self.books, self.monitor = self._new_books()
        return True

    # --- input -----------------------------------------------------------------------------------------------

    def stamp(self) -> int:
        """An ingest timestamp (ns): the wall clock, nudged to stay strictly increasing per frame, so that
        ``ingest_ts`` identifies a frame within the process and orders all inputs by arrival."""
        ts = self.clock_ns()
        if ts <= self._last_ts:
            ts = self._last_ts + 1
        self._last_ts = ts
        return ts

    def add_frame(self, payload: bytes, conn: int = 0) -> int:
        """Buffer one websocket frame from connection ``conn`` (≥ 0); returns the frames buffered."""
        ts = self.stamp()
        self._payloads.append(payload)
        self._ts.append(ts)
        self._conn.append(conn)
        self.last_frame_ns = ts
        return len(self._payloads)

    def add_payload(self, payload: bytes) -> None:
        """A websocket-shaped message that came from REST (polled funding): decoded, never de-duplicated."""
        self.add_frame(payload, -1)

    def add_snapshot(self, symbol: str, body: bytes) -> None:
        """A REST depth snapshot of ``symbol`` (raw JSON), received now."""
        self._snapshots.append((symbol, body, self.stamp()))

    def add_events(self, events: EventArray) -> None:
        """Events built elsewhere (polled open interest); their ``ingest_ts`` should come from :meth:`stamp`."""
        if events.shape[0]:
            self._extra.append(events)

    @property
    def buffered(self) -> int:
        """Inputs waiting for the next flush."""
        return len(self._payloads) + len(self._snapshots) + len(self._extra)

    # --- rotation overlap ------------------------------------------------------------------------------------

    def begin_overlap(self) -> None:
        """Two connections carry the same streams from now on: de-duplicate until :meth:`end_overlap`
        (overlaps of several connection groups nest: de-duplication lasts until the last one ends)."""
        if not self.dedupe_active:
            self.dedupe.reset()
        self.dedupe_active = True
        self._overlaps += 1
        self._dedupe_stop_after_flush = False

    def end_overlap(self) -> None:
        """The old connection is closed; frames it delivered may still be buffered, so de-duplication stops
        after the next flush (once no other overlap is open)."""
        self._overlaps = max(0, self._overlaps - 1)
        if self._overlaps == 0:
            self._dedupe_stop_after_flush = True

    # --- the flush -------------------------------------------------------------------------------------------

    def flush(self) -> FlushResult:
        """Decode, check and publish everything buffered (see the module docstring)."""
        result = FlushResult()
        self.publisher.drain()
        parts: list[EventArray] = []
        if self._payloads:
            payloads, ts_list, conn_list = self._payloads, self._ts, self._conn
            self._payloads, self._ts, self._conn = [], [], []
            ts = np.asarray(ts_list, dtype=np.int64)
            decoded = decode_payloads(payloads, ts, self.symbols, self.venue)
            result.frames = len(payloads)
            self.frames_in += len(payloads)
            result.poison = self._account(decoded.stats, payloads, ts)
            events = decoded.events
            if self.dedupe_active and events.shape[0]:
                frame = np.searchsorted(ts, events["ingest_ts"])
                keep = self.dedupe.keep(events, np.asarray(conn_list, np.int64)[frame])
                if not keep.all():
                    result.duplicates = int(events.shape[0] - keep.sum())
                    events = events[keep]
            parts.append(events)
        if self.dedupe_active and self._dedupe_stop_after_flush:
            self.dedupe_active = False
            self._dedupe_stop_after_flush = False
        snapshot_ids: list[int] = []
        for symbol, body, ts_one in self._snapshots:
            decoded = decode_payloads([body], np.array([ts_one], np.int64), self.symbols, self.venue,
                                      snapshot_symbol=symbol)  # fmt: skip
            result.poison += self._account(decoded.stats, [body], np.array([ts_one], np.int64))
            if decoded.events.shape[0]:
                parts.append(decoded.events)
                snapshot_ids.append(self.symbols.intern(self.venue, symbol))
                self.metrics.snapshots.labels(symbol).inc()
        self._snapshots = []
        parts.extend(self._extra)
        self._extra = []
        events = self._merge(parts)
        if events.shape[0] == 0:
            return result

        applied_before = {
            s: self.books.counters(s)["snapshots_applied"] if s < self.books.n_symbols else 0 for s in snapshot_ids
        }
        if self.config.mark_degraded:
            self.monitor.mark(events)
        batch = self.books.apply(events)
        ratio_requests = self.monitor.observe(events, batch)
        self._observe_metrics(events)

        self._place_snapshots(events, bool(snapshot_ids))
        result.md_seqs = self.publisher.publish_events(events)
        result.events = int(events.shape[0])
        self.events_out += result.events
        self.metrics.md_batches.inc(len(result.md_seqs))
        result.gaps = int(batch.gaps.shape[0])
        requests = batch.resync_requests
        if ratio_requests.shape[0]:
            requests = np.concatenate([requests, ratio_requests])
        self._quality_records(batch.gaps, requests, result.md_seqs)
        for sid, before in applied_before.items():
            if self.books.counters(sid)["snapshots_applied"] > before:
                name = self.publisher.symbol_name(sid)
                mine = (events["symbol"] == sid) & ((events["kind"] & KIND_MASK) == SNAPSHOT)
                lid = self.books.last_update_id(sid)
                ets = int(events["exchange_ts"][mine][-1])
                self._record("md_resynced", name, ets, last_update_id=lid, md_seq=result.md_seqs.get(name))
        if requests.shape[0]:
            result.resync = [self.publisher.symbol_name(int(s)) for s in np.unique(requests["symbol"]).tolist()]
        return result

    def _place_snapshots(self, events: EventArray, snapshots: bool) -> None:
        """Give each REST snapshot the exchange time of the last depth diff of its symbol received before it
        (in this flush or an earlier one), in place; then remember each symbol's last diff time.

        Why: every consumer's simulator (the backtester's and live decide's book) applies events in
        exchange-time order, and the venue's time of a snapshot (futures: ``T`` of its ``lastUpdateId``; spot:
        none, so the receive time) is a REST round trip away from where it was received in the diff stream.
        Placed at ``T``, a backtest's book synced at diffs received before the document was (a look-ahead),
        while live decide, already past ``T`` when it arrived, applied it later: the desks saw different
        tops. Placed at the last diff received before it, exchange order equals receive order for the book
        (later diffs have later times; ties keep receive order), as in ingest's own book, and sync is the
        same: diffs its ``lastUpdateId`` covers are stale after it, later ones were buffered before it. A
        snapshot before any diff of its symbol keeps its own time. Quality marks and lag metrics have
        already used the venue's time.
        """
        kind = events["kind"] & KIND_MASK
        depth = kind == DEPTH
        sym, ets = events["symbol"], events["exchange_ts"]
        if snapshots:  # rare: a REST snapshot or two in this flush (each one has its own ingest_ts)
            snap = np.flatnonzero(kind == SNAPSHOT)
            its = events["ingest_ts"][snap]
            for one in np.unique(its).tolist():
                rows = snap[its == one]
                first, sid = int(rows[0]), int(sym[rows[0]])
                prior = np.flatnonzero(depth[:first] & (sym[:first] == sid))
                last = int(ets[prior[-1]]) if prior.shape[0] else self._last_diff_ets.get(sid)
                if last is not None:
                    ets[rows] = last
        if len(self.config.symbols) == 1:  # the common case: the last diff, found from the end
            back = int(depth[::-1].argmax())
            if depth[-1 - back]:
                self._last_diff_ets[int(sym[-1 - back])] = int(ets[-1 - back])
            return
        at = np.flatnonzero(depth)
        ids, last_at = np.unique(sym[at][::-1], return_index=True)
        for sid, e in zip(ids.tolist(), ets[at[::-1][last_at]].tolist(), strict=True):
            self._last_diff_ets[sid] = e

    @staticmethod
    def _merge(parts: Sequence[EventArray]) -> EventArray:
        parts = [p for p in parts if p.shape[0]]
        if not parts:
            return _NO_EVENTS
        if len(parts) == 1:
            return parts[0]
        events = np.concatenate(parts)
        return events[np.argsort(events["ingest_ts"], kind="stable")]

    def _account(self, stats: DecodeStats, payloads: Sequence[bytes], ts: npt.NDArray[np.int64]) -> int:
        """Count decode errors by cause; hand every bad frame to on_poison. Returns the frames handed over."""
        self.decode_stats.merge(stats)
        bad = stats.malformed + sum(stats.unknown.values())
        if bad == 0:
            return 0
        for cause, count in stats.malformed_by.items():
            self.metrics.decode_errors.labels(cause).inc(count)
        unknown = sum(stats.unknown.values())
        if unknown:
            self.metrics.decode_errors.labels("unknown").inc(unknown)
        errors = list(stats.errors)
        # the decoder lists at most MAX_ERRORS examples per call: decode the rest again to name every frame
        while len(errors) < bad:
            start = errors[-1][0] if errors else 0
            if start >= len(payloads):
                break
            more = decode_payloads(payloads[start:], ts[start:], self.symbols, self.venue).stats.errors
            if not more:
                break
            errors.extend((start + line, reason) for line, reason in more)
        for line, reason in errors:
            raw = bytes(payloads[line - 1])
            log.warning("poison frame: %s", reason)
            if self.on_poison is not None:
                self.on_poison(raw, reason)
        self.poison_out += len(errors)
        return len(errors)

    def _observe_metrics(self, events: EventArray) -> None:
        msg = message_mask(events)
        ets, its = events["exchange_ts"], events["ingest_ts"]
        timed = msg & (ets > 0) & (ets != its)
        if timed.any():
            self.metrics.lag_ms.observe_many((its[timed] - ets[timed]).astype(np.float64) / 1e6)
        cells = events["symbol"][msg].astype(np.int64) * 256 + (events["kind"][msg] & KIND_MASK)
        ids, counts = np.unique(cells, return_counts=True)
        for cell, count in zip(ids.tolist(), counts.tolist(), strict=True):
            child = self._stream_children.get(cell)
            if child is None:
                symbol = self.publisher.symbol_name(cell // 256).lower()
                label = f"{symbol}@{STREAM_OF_KIND.get(cell % 256, str(cell % 256))}"
                child = self._stream_children[cell] = self.metrics.messages.labels(label)
            child.inc(count)
        depth = (events["kind"] & KIND_MASK) == DEPTH
        if depth.any():
            for sid in np.unique(events["symbol"][depth]).tolist():
                self.metrics.gap_ratio.labels(self.publisher.symbol_name(sid)).set(self.monitor.gap_ratio(sid))

    # --- quality records --------------------------------------------------------------------------------------

    def _record(self, kind: str, symbol: str, ts: int, **fields: Any) -> None:
        record: dict[str, Any] = {
            "schema_version": QUALITY_SCHEMA_VERSION,
            "record": kind,
            "strategy": self.config.name,  # the audit table's keys: these records ride the audit family
            "signal_id": "",
            "venue": self.venue,
            "symbol": symbol,
            "ts": int(ts),
        }
        record.update(fields)
        self.publisher.publish_record(self.config.quality_topic, record)
        self.metrics.quality_records.labels(kind).inc()

    def _quality_records(
        self, gaps: npt.NDArray[np.void], requests: npt.NDArray[np.void], md_seqs: Mapping[str, int]
    ) -> None:
        for g in gaps.tolist():  # rare: one row per broken chain
            _, _, sid, reason, expected, got, seq, ets = g
            name = self.publisher.symbol_name(int(sid))
            self._record("md_gap", name, ets, reason=GAP_REASONS.get(int(reason), str(reason)),
                         expected=int(expected), got=int(got), seq=int(seq), md_seq=md_seqs.get(name))  # fmt: skip
        now = self.clock_ns()
        resyncing: set[str] = set()
        for r in requests.tolist():
            sid, _, _, reason = r
            name = self.publisher.symbol_name(int(sid))
            why = RESYNC_REASONS.get(int(reason), str(reason))
            if int(reason) != RESYNC_NO_SNAPSHOT:
                resyncing.add(name)
            self._record("md_resync_request", name, now, reason=why, md_seq=md_seqs.get(name))
        for name in resyncing:  # one snapshot per symbol and flush, however many reasons asked for it
            self.metrics.resyncs.labels(name).inc()

    def record_disconnect(self, streams: Sequence[str], *, since_ns: int, until_ns: int, cause: str) -> None:
        """One ``ws_disconnect`` record per symbol of a connection that was lost: market data of those
        streams between the two times (ns) is missing (trades and book tickers carry no sequence to tell)."""
        for symbol in dict.fromkeys(s.split("@", 1)[0].upper() for s in streams):
            self._record("ws_disconnect", symbol, since_ns, until_ns=int(until_ns), cause=cause,
                         streams=[s for s in streams if s.split("@", 1)[0].upper() == symbol])  # fmt: skip

    # --- state for health ------------------------------------------------------------------------------------

    def sync_state(self) -> dict[str, str | None]:
        """Symbol → None when its book is synced, else the reason it is not."""
        return {name: self.books.unsynced_reason(self.symbols.intern(self.venue, name)) for name in self.config.symbols}
