"""Market-data quality over the same micro-batches as the book: clock offset, latency, gap ratio, a report.

Why next to the book: the book knows when the chain broke, but not whether the feed is late or the host
clock is off, and a strategy must not trade on either. Three checks, all thresholds in :class:`QualityConfig`:

- **Clock offset.** ``ingest_ts − exchange_ts`` is offset + latency. Its EWMA per symbol estimates the host
  clock's offset from the venue (plus the mean latency). When ``|offset|`` exceeds ``max_clock_offset_ns``
  the host clock cannot be trusted, so every event of the symbol is DEGRADED; when one record's
  ``|latency − offset|`` exceeds ``max_latency_jitter_ns`` that record arrived abnormally late (or early).
  :meth:`QualityMonitor.mark` sets the DEGRADED flag on the events themselves, before the book runs, so the
  book's tops carry ``degraded=1`` for every message with a DEGRADED event.
- **Gap ratio.** Gaps per depth message in a rolling window (default one minute, in exchange time). Above
  ``max_gap_ratio`` the monitor asks for a resync even if the book is synced again: a feed that keeps
  breaking needs attention (and RiskBudget's feed-gap breaker reads the same ratio).
- **Report.** :class:`QualityReport` per symbol: messages, gaps and where they were, resyncs, crossed and
  degraded counts, the offset estimate, and why the book is not synced (e.g. "no snapshot received").

Usage per batch: ``monitor.mark(events)``, ``batch = books.apply(events)``, ``monitor.observe(events, batch)``
— or :meth:`QualityMonitor.process`, which does the three and merges the resync requests.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from numba import njit

from ..events import BBO, DEGRADED, DEPTH, EVENT_DTYPE, KIND_MASK, LAST_IN_MSG, SNAPSHOT, EventArray, SymbolTable
from . import kernels as kn
from .sync import GAP_DTYPE, RESYNC_DTYPE, BookBatch, BookSet

_MS: Final = 1_000_000


@dataclass(frozen=True)
class QualityConfig:
    """Quality thresholds. Times are int nanoseconds; ratios are fractions (0.002 = 0.2 %)."""

    max_clock_offset_ns: int = 100 * _MS  #: |EWMA(ingest − exchange)| above this: the symbol's events are DEGRADED
    max_latency_jitter_ns: int = 100 * _MS  #: |latency − offset| of one record above this: that record is DEGRADED
    offset_alpha: float = 0.01  #: EWMA weight of each new sample (≈ 100-sample memory)
    gap_window_ns: int = 60_000 * _MS  #: rolling window of the gap ratio
    gap_window_buckets: int = 60  #: window resolution (buckets of gap_window_ns / buckets)
    max_gap_ratio: float = 0.002  #: gaps / depth messages in the window above this → resync request
    max_recorded_gaps: int = 10_000  #: gap records kept for reports (all are counted)

    def __post_init__(self) -> None:
        for name in ("max_clock_offset_ns", "max_latency_jitter_ns", "gap_window_ns", "gap_window_buckets"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"QualityConfig.{name} must be an int > 0, got {value!r}")
        if self.gap_window_ns % self.gap_window_buckets:
            raise ValueError(
                f"QualityConfig.gap_window_ns ({self.gap_window_ns}) must be a multiple of "
                f"gap_window_buckets ({self.gap_window_buckets})"
            )
        if not 0.0 < self.offset_alpha <= 1.0:
            raise ValueError(f"QualityConfig.offset_alpha must be in (0, 1], got {self.offset_alpha!r}")
        if not self.max_gap_ratio >= 0.0:
            raise ValueError(f"QualityConfig.max_gap_ratio must be ≥ 0, got {self.max_gap_ratio!r}")
        if self.max_recorded_gaps < 0:
            raise ValueError(f"QualityConfig.max_recorded_gaps must be ≥ 0, got {self.max_recorded_gaps!r}")


@dataclass(frozen=True)
class QualityReport:
    """Data quality of one symbol since the monitor and book set started."""

    symbol: int
    name: str | None
    messages: int  #: depth diff messages
    snapshots: int  #: snapshot messages
    applied: int  #: diff messages applied to a valid book
    gaps: int  #: gap count (chain breaks, snapshot too old, truncated messages)
    gap_records: npt.NDArray[np.void]  #: GAP_DTYPE rows: where each gap was (up to max_recorded_gaps overall)
    resync_requests: int  #: by the book (no snapshot, gap, overflow, off tick) and by the gap ratio
    gap_ratio_resyncs: int  #: of which raised by the gap ratio
    crossed: int  #: tops with best bid ≥ best ask
    degraded_events: int
    degraded_tops: int
    offset_ns: float | None  #: EWMA of ingest − exchange (None: no timestamped event yet)
    gap_ratio: float  #: gaps / depth messages over the window ending at the last depth message
    max_gap_ratio: float
    state: str  #: wait_snapshot | wait_first_diff | synced
    unsynced_reason: str | None  #: None when synced

    def summary(self) -> str:
        """One line for logs and test output."""
        off = "n/a" if self.offset_ns is None else f"{self.offset_ns / 1e6:.1f} ms"
        why = "" if self.unsynced_reason is None else f" ({self.unsynced_reason})"
        return (
            f"{self.name or self.symbol}: {self.state}{why}; {self.messages} diffs, {self.snapshots} snapshots, "
            f"{self.gaps} gaps, {self.resync_requests} resync requests, {self.crossed} crossed, "
            f"{self.degraded_events} degraded events, offset {off}, gap ratio {self.gap_ratio:.4%} "
            f"(max {self.max_gap_ratio:.4%})"
        )


# --- kernels -----------------------------------------------------------------------------------------------------


@njit(cache=True)
def _mark(
    events: np.ndarray,
    ewma: np.ndarray,
    samples: np.ndarray,
    degraded: np.ndarray,
    alpha: float,
    max_offset: float,
    max_jitter: float,
) -> int:
    """EWMA offset per symbol and the DEGRADED flag, in place; returns the events flagged in this batch.

    One sample per message (at its LAST_IN_MSG event; single-event kinds carry no such flag), so a
    1000-level snapshot weighs as much as a trade. An event whose ``exchange_ts`` is 0 or equals its
    ``ingest_ts`` has no venue time (the decoder copies the ingest time into spot bookTicker and spot
    snapshots): it is not measured, but still DEGRADED while the symbol's offset is beyond the limit.
    """
    n_flagged = 0
    for i in range(events.shape[0]):
        ev = events[i]
        s = int(ev["symbol"])
        k = ev["kind"]
        e = ev["exchange_ts"]
        t = ev["ingest_ts"]
        bad = False
        if e > 0 and t > 0 and e != t:
            lat = float(t - e)
            if samples[s] == 0:  # the first measurement is the estimate (judged from the first event on)
                ewma[s] = lat
                samples[s] = 1
            dev = lat - ewma[s]
            bad = abs(dev) > max_jitter
            typ = k & KIND_MASK
            if (k & LAST_IN_MSG) != 0 or (typ != DEPTH and typ != SNAPSHOT and typ != BBO):
                ewma[s] += alpha * dev
                samples[s] += 1
        if samples[s] > 0 and abs(ewma[s]) > max_offset:
            bad = True
        if bad:
            ev["kind"] = k | DEGRADED
            degraded[s] += 1
            n_flagged += 1
    return n_flagged


@njit(cache=True)
def _bucket_add(cnt: np.ndarray, ids: np.ndarray, s: int, b: int, n_buckets: int) -> None:
    slot = b % n_buckets
    if ids[s, slot] != b:
        ids[s, slot] = b
        cnt[s, slot, 0] = 0
        cnt[s, slot, 1] = 0


@njit(cache=True)
def _ratio(cnt: np.ndarray, ids: np.ndarray, s: int, b: int, n_buckets: int) -> float:
    msgs = 0
    gaps = 0
    for slot in range(n_buckets):
        if b - n_buckets < ids[s, slot] <= b:
            msgs += cnt[s, slot, 0]
            gaps += cnt[s, slot, 1]
    return gaps / max(msgs, 1)


@njit(cache=True)
def _observe(
    events: np.ndarray,
    stream_base: int,
    gap_stream: np.ndarray,
    gap_symbol: np.ndarray,
    gap_ts: np.ndarray,
    cnt: np.ndarray,
    ids: np.ndarray,
    alarm: np.ndarray,
    ratio_now: np.ndarray,
    ratio_max: np.ndarray,
    bucket_ns: int,
    n_buckets: int,
    threshold: float,
    out: np.ndarray,
) -> int:
    """Rolling gap ratio per symbol; writes resync requests (R_* columns) when it crosses ``threshold``.

    Depth messages count at their LAST_IN_MSG event, gaps at the stream position of the offending message
    (sorted by it; gaps from earlier batches count at the start), both in exchange time (ingest time when
    an event has none). A symbol raises one request per excursion above the threshold.
    """
    n_out = 0
    p = 0
    n_gaps = gap_stream.shape[0]
    n = events.shape[0]
    for i in range(n + 1):
        while p < n_gaps and (i == n or gap_stream[p] <= stream_base + i):
            s = int(gap_symbol[p])
            t = gap_ts[p]
            if t <= 0 and i < n:
                t = events[i]["exchange_ts"] if events[i]["exchange_ts"] > 0 else events[i]["ingest_ts"]
            b = t // bucket_ns
            _bucket_add(cnt, ids, s, b, n_buckets)
            cnt[s, b % n_buckets, 1] += 1
            r = _ratio(cnt, ids, s, b, n_buckets)
            ratio_now[s] = r
            ratio_max[s] = max(ratio_max[s], r)
            if r > threshold and alarm[s] == 0 and n_out < out.shape[0]:
                alarm[s] = 1
                ev = min(i, n - 1)
                out[n_out, kn.R_SYMBOL] = s
                out[n_out, kn.R_EVENT] = ev
                out[n_out, kn.R_STREAM] = stream_base + ev
                out[n_out, kn.R_REASON] = kn.RESYNC_GAP_RATIO
                n_out += 1
            p += 1
        if i == n:
            break
        ev = events[i]
        k = ev["kind"]
        if (k & KIND_MASK) != DEPTH or (k & LAST_IN_MSG) == 0:
            continue
        s = int(ev["symbol"])
        t = ev["exchange_ts"] if ev["exchange_ts"] > 0 else ev["ingest_ts"]
        b = t // bucket_ns
        _bucket_add(cnt, ids, s, b, n_buckets)
        cnt[s, b % n_buckets, 0] += 1
        if alarm[s] != 0 or ratio_now[s] > 0.0:
            r = _ratio(cnt, ids, s, b, n_buckets)
            ratio_now[s] = r
            if r <= threshold:
                alarm[s] = 0
    return n_out


# --- the monitor -----------------------------------------------------------------------------------------------


class QualityMonitor:
    """Per-symbol quality state across micro-batches (see the module docstring for the checks)."""

    def __init__(self, config: QualityConfig | None = None, symbols: SymbolTable | None = None) -> None:
        self.config = config or QualityConfig()
        self.symbols = symbols  #: optional: names in reports
        self._n = 0
        self._stream = 0
        nb = self.config.gap_window_buckets
        self._ewma = np.zeros(0, np.float64)
        self._samples = np.zeros(0, np.int64)
        self._degraded = np.zeros(0, np.int64)
        self._cnt = np.zeros((0, nb, 2), np.int64)
        self._ids = np.zeros((0, nb), np.int64)
        self._alarm = np.zeros(0, np.int64)
        self._ratio = np.zeros(0, np.float64)
        self._ratio_max = np.zeros(0, np.float64)
        self._ratio_resyncs = np.zeros(0, np.int64)
        self._gap_chunks: list[npt.NDArray[np.void]] = []
        self._gaps_kept = 0

    def _grow(self, n: int) -> None:
        if n <= self._n:
            return
        add, nb = n - self._n, self.config.gap_window_buckets
        self._ewma = np.concatenate([self._ewma, np.zeros(add)])
        self._samples = np.concatenate([self._samples, np.zeros(add, np.int64)])
        self._degraded = np.concatenate([self._degraded, np.zeros(add, np.int64)])
        self._cnt = np.concatenate([self._cnt, np.zeros((add, nb, 2), np.int64)])
        self._ids = np.concatenate([self._ids, np.full((add, nb), np.iinfo(np.int64).min, np.int64)])
        self._alarm = np.concatenate([self._alarm, np.zeros(add, np.int64)])
        self._ratio = np.concatenate([self._ratio, np.zeros(add)])
        self._ratio_max = np.concatenate([self._ratio_max, np.zeros(add)])
        self._ratio_resyncs = np.concatenate([self._ratio_resyncs, np.zeros(add, np.int64)])
        self._n = n

    @staticmethod
    def _check_events(events: EventArray) -> None:
        if events.dtype != EVENT_DTYPE or events.ndim != 1:
            raise TypeError(f"events must be a 1-D EVENT_DTYPE array, got dtype={events.dtype} ndim={events.ndim}")

    def mark(self, events: EventArray) -> int:
        """Update the offset estimates and set DEGRADED on late/early records, in place. Call before the book
        sees the batch (so its tops carry the flag). Returns how many events were flagged."""
        self._check_events(events)
        if events.shape[0] == 0:
            return 0
        self._grow(int(events["symbol"].max()) + 1)
        c = self.config
        return int(
            _mark(
                events,
                self._ewma,
                self._samples,
                self._degraded,
                c.offset_alpha,
                float(c.max_clock_offset_ns),
                float(c.max_latency_jitter_ns),
            )
        )

    def observe(self, events: EventArray, batch: BookBatch) -> npt.NDArray[np.void]:
        """Count the batch's depth messages and gaps into the rolling window; returns RESYNC_DTYPE rows for
        symbols whose gap ratio went above ``max_gap_ratio``. Feed every batch, in order, after the book."""
        self._check_events(events)
        n_sym = int(events["symbol"].max()) + 1 if events.shape[0] else 0
        if batch.gaps.shape[0]:
            n_sym = max(n_sym, int(batch.gaps["symbol"].max()) + 1)
            self._keep_gaps(batch.gaps)
        self._grow(n_sym)
        gaps = np.sort(batch.gaps, order="stream_index") if batch.gaps.shape[0] > 1 else batch.gaps
        out = np.empty((gaps.shape[0], kn.N_R), np.int64)
        c = self.config
        n_out = _observe(
            events,
            self._stream,
            np.ascontiguousarray(gaps["stream_index"]),
            np.ascontiguousarray(gaps["symbol"]),
            np.ascontiguousarray(gaps["exchange_ts"]),
            self._cnt,
            self._ids,
            self._alarm,
            self._ratio,
            self._ratio_max,
            c.gap_window_ns // c.gap_window_buckets,
            c.gap_window_buckets,
            c.max_gap_ratio,
            out,
        )
        self._stream += events.shape[0]
        req = np.empty(n_out, RESYNC_DTYPE)
        req["symbol"] = out[:n_out, kn.R_SYMBOL]
        req["event_index"] = out[:n_out, kn.R_EVENT]
        req["stream_index"] = out[:n_out, kn.R_STREAM]
        req["reason"] = out[:n_out, kn.R_REASON]
        np.add.at(self._ratio_resyncs, req["symbol"].astype(np.intp), 1)
        return req

    def process(self, books: BookSet, events: EventArray) -> BookBatch:
        """mark → books.apply → observe, with the gap-ratio resync requests appended to the batch's."""
        self.mark(events)
        batch = books.apply(events)
        extra = self.observe(events, batch)
        if extra.shape[0] == 0:
            return batch
        merged = np.concatenate([batch.resync_requests, extra])
        merged = merged[np.argsort(merged["stream_index"], kind="stable")]
        return dataclasses.replace(batch, resync_requests=merged)

    def _keep_gaps(self, gaps: npt.NDArray[np.void]) -> None:
        room = self.config.max_recorded_gaps - self._gaps_kept
        if room > 0:
            kept = gaps[:room].copy()
            self._gap_chunks.append(kept)
            self._gaps_kept += kept.shape[0]

    def offset_ns(self, symbol: int) -> float | None:
        """EWMA of ingest − exchange for a symbol (None before its first timestamped event)."""
        if symbol >= self._n or self._samples[symbol] == 0:
            return None
        return float(self._ewma[symbol])

    def gap_ratio(self, symbol: int) -> float:
        """Gaps / depth messages over the window ending at the symbol's last depth message or gap."""
        return float(self._ratio[symbol]) if symbol < self._n else 0.0

    def gap_records(self, symbol: int | None = None) -> npt.NDArray[np.void]:
        """Recorded gaps (GAP_DTYPE), all symbols or one."""
        allg = np.concatenate(self._gap_chunks) if self._gap_chunks else np.empty(0, GAP_DTYPE)
        return allg if symbol is None else allg[allg["symbol"] == symbol]

    def report(self, books: BookSet, symbol: int) -> QualityReport:
        """The quality of one symbol: the book's counters and sync state plus this monitor's measurements."""
        c = books.counters(symbol)
        known = symbol < self._n
        name = self.symbols.name(symbol) if self.symbols is not None and symbol < len(self.symbols) else None
        ratio_resyncs = int(self._ratio_resyncs[symbol]) if known else 0
        return QualityReport(
            symbol=symbol,
            name=name,
            messages=c["diff_messages"],
            snapshots=c["snapshot_messages"],
            applied=c["applied"],
            gaps=c["gaps"],
            gap_records=self.gap_records(symbol),
            resync_requests=c["resync_requests"] + ratio_resyncs,
            gap_ratio_resyncs=ratio_resyncs,
            crossed=c["crossed"],
            degraded_events=int(self._degraded[symbol]) if known else 0,
            degraded_tops=c["degraded_tops"],
            offset_ns=self.offset_ns(symbol),
            gap_ratio=self.gap_ratio(symbol),
            max_gap_ratio=float(self._ratio_max[symbol]) if known else 0.0,
            state=books.state(symbol),
            unsynced_reason=books.unsynced_reason(symbol),
        )

    def reports(self, books: BookSet) -> list[QualityReport]:
        """One report per symbol the book set knows."""
        return [self.report(books, s) for s in range(books.n_symbols)]
