"""Market data in and out of the store: rows of the market tables (``sql/runtime/002``-``004``) from the
engine's arrays, and the events back from the tables for a replay into the engine.

Why columnar: a day of one symbol is ~600k events; each table's columns are taken from an ``EVENT_DTYPE``
batch with one kind mask and a few numpy operations (a loop over the *symbols* of a batch, never over its
events), and go to :meth:`~.base.Store.insert` / a :class:`~.writer.TableWriter` as they are.

**Order.** Every event row carries ``ingest_ts`` and ``ingest_pos``, its position among the events of its
symbol received at that same nanosecond; ``(ingest_ts, ingest_pos)`` is the order the engine consumed them
(the receive clock is monotonic per stream, and exchange times are not: a trade's ``T`` can lag the depth
message before it). :func:`replay_events` returns events in that order. :class:`MarketRows` continues the
numbering across batches, so a message cut between two batches keeps distinct positions.

**Volume buckets.** :class:`MarketRows` assigns each trade its bucket at insert time (``trades.vbucket``:
floor of the symbol's quote volume before the trade over the bucket size) and the price change since the
symbol's previous trade (``dpx``), which the ``vbuckets`` view sums into VPIN and Kyle λ (see 004). The state
(quote volume so far, last price) lives in the object; :meth:`MarketRows.resume` reloads it from a store
after a restart so bucket numbers continue.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from tradeplane.engine.book import kernels as book_kernels
from tradeplane.engine.events import (
    AGG_TRADE,
    ASK,
    BBO,
    BID,
    BUY,
    DEPTH,
    EVENT_DTYPE,
    KIND_MASK,
    LAST_IN_MSG,
    LIQUIDATION,
    MARK,
    OPEN_INTEREST,
    SELL,
    SNAPSHOT,
    TRADE,
    EventArray,
    SymbolTable,
)

from .base import Store

EVENT_TABLES: Final = ("trades", "book_diffs", "mark_funding", "open_interest", "liquidations")
"""The tables of raw events, in the order :meth:`MarketRows.rows` returns them."""

_KINDS: Final[Mapping[str, tuple[int, ...]]] = {
    "trades": (TRADE, AGG_TRADE),
    "book_diffs": (DEPTH, SNAPSHOT, BBO),
    "mark_funding": (MARK,),
    "open_interest": (OPEN_INTEREST,),
    "liquidations": (LIQUIDATION,),
}

# table -> (px column, qty column, seq column, first_seq column, prev_seq column) as read back; a number is a
# constant of the data contract (docs/data-contracts.md, slots per kind) that the table does not store.
_SLOTS: Final[Mapping[str, tuple[str | float, str | float, str | int, str | int, str | int]]] = {
    "trades": ("price", "qty", "trade_id", "first_id", "last_id"),
    "book_diffs": ("price", "qty", "update_id", "first_update_id", "prev_update_id"),
    "mark_funding": ("mark_price", "funding_rate", "next_funding_ms", 0, -1),
    "open_interest": (0.0, "open_interest", 0, 0, -1),
    "liquidations": ("price", "qty", 0, 0, -1),
}

_NAME: Final = re.compile(r"[A-Za-z0-9_.:\-]{1,100}")

Columns = dict[str, npt.NDArray[Any]]


def _prefixed(module: Any, prefix: str) -> dict[int, str]:
    return {int(v): k[len(prefix) :].lower() for k, v in vars(module).items() if k.startswith(prefix)}


GAP_REASONS: Final = _prefixed(book_kernels, "GAP_")
RESYNC_REASONS: Final = _prefixed(book_kernels, "RESYNC_")


def _names(symbols: SymbolTable | Sequence[str]) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """(venue, symbol) object arrays indexed by symbol id, from ``venue:SYMBOL`` names."""
    names = symbols.to_list() if isinstance(symbols, SymbolTable) else list(symbols)
    venue = np.empty(len(names), dtype=object)
    symbol = np.empty(len(names), dtype=object)
    for i, name in enumerate(names):
        v, sep, s = name.partition(":")
        if not sep:
            raise ValueError(f"symbol {i} is named {name!r}, expected 'venue:SYMBOL'")
        venue[i], symbol[i] = v, s
    return venue, symbol


def _side(kind: npt.NDArray[np.uint32], plus: int, minus: int) -> npt.NDArray[np.int8]:
    side = np.zeros(kind.shape[0], np.int8)
    side[(kind & plus) != 0] = 1
    side[(kind & minus) != 0] = -1
    return side


def _check_events(events: EventArray) -> None:
    if events.dtype != EVENT_DTYPE or events.ndim != 1:
        raise TypeError(f"events must be a 1-D EVENT_DTYPE array, got dtype={events.dtype} ndim={events.ndim}")


class MarketRows:
    """Rows of the market event tables from ``EVENT_DTYPE`` batches, with the state that spans batches
    (ingest positions, volume buckets, last trade price; see the module docstring).

    ``symbols``: the run's :class:`SymbolTable` (or its ``venue:SYMBOL`` names by id). ``bucket_quote``: the
    volume-bucket size in quote currency per ``venue:SYMBOL`` name, or one size for every symbol; a symbol
    without a size gets ``vbucket = -1`` (not bucketed).
    """

    def __init__(
        self, symbols: SymbolTable | Sequence[str], *, bucket_quote: Mapping[str, float] | float | None = None
    ) -> None:
        self.symbols = symbols
        self.bucket_quote = bucket_quote
        self._last_ingest: dict[int, int] = {}
        self._next_pos: dict[int, int] = {}
        self._cum_quote: dict[int, float] = {}
        self._last_px: dict[int, float] = {}

    def _name(self, sid: int) -> str:
        if isinstance(self.symbols, SymbolTable):
            return self.symbols.name(sid)
        return self.symbols[sid]

    def bucket_size(self, sid: int) -> float:
        """The volume-bucket size of symbol ``sid`` (NaN when it is not bucketed)."""
        if self.bucket_quote is None:
            return float("nan")
        if isinstance(self.bucket_quote, int | float):
            size = float(self.bucket_quote)
        else:
            size = float(self.bucket_quote.get(self._name(sid), float("nan")))
        if size == size and not size > 0:
            raise ValueError(f"bucket size of {self._name(sid)} must be > 0, got {size}")
        return size

    def resume(self, store: Store) -> None:
        """Continue the volume buckets and price changes of the symbols stored in ``store`` (call once, before
        the first batch after a restart): the last bucket of each bucketed symbol gives its quote volume so
        far and its last trade price."""
        names = self.symbols.to_list() if isinstance(self.symbols, SymbolTable) else list(self.symbols)
        for sid, name in enumerate(names):
            size = self.bucket_size(sid)
            if size != size:
                continue
            venue, _, symbol = name.partition(":")
            _check_name(venue)
            _check_name(symbol)
            got = store.query(
                "SELECT bucket, quote_volume, close FROM vbuckets "
                f"WHERE venue = '{venue}' AND symbol = '{symbol}' AND bucket_quote = {size!r} "
                "ORDER BY bucket DESC LIMIT 1"
            )
            if len(got.get("bucket", ())):
                self._cum_quote[sid] = float(got["bucket"][0]) * size + float(got["quote_volume"][0])
                self._last_px[sid] = float(got["close"][0])

    def state(self) -> dict[str, dict[str, float | int]]:
        """What spans batches, by ``venue:SYMBOL`` name (JSON-ready): a consumer that saves it with its offsets
        (the sink's durable marks) continues buckets, price changes and ``ingest_pos`` exactly after a
        restart, with no query against a store that may be down at that moment."""
        return {
            "cum_quote": {self._name(sid): v for sid, v in self._cum_quote.items()},
            "last_px": {self._name(sid): v for sid, v in self._last_px.items()},
            "last_ingest": {self._name(sid): v for sid, v in self._last_ingest.items()},
            "next_pos": {self._name(sid): v for sid, v in self._next_pos.items()},
        }

    def restore(self, state: Mapping[str, Mapping[str, float | int]]) -> None:
        """Take a :meth:`state` back; names not in this symbol table are ignored (a symbol no longer traded)."""
        names = self.symbols.to_list() if isinstance(self.symbols, SymbolTable) else list(self.symbols)
        sid_of = {name: sid for sid, name in enumerate(names)}

        def by_sid(key: str) -> dict[int, float | int]:
            return {sid_of[n]: v for n, v in state.get(key, {}).items() if n in sid_of}

        self._cum_quote = {k: float(v) for k, v in by_sid("cum_quote").items()}
        self._last_px = {k: float(v) for k, v in by_sid("last_px").items()}
        self._last_ingest = {k: int(v) for k, v in by_sid("last_ingest").items()}
        self._next_pos = {k: int(v) for k, v in by_sid("next_pos").items()}

    def _positions(self, sym: npt.NDArray[np.uint32], ingest: npt.NDArray[np.int64]) -> npt.NDArray[np.uint32]:
        """``ingest_pos`` of each event: its rank among the events of its symbol with the same ``ingest_ts``
        (in batch order), continuing the previous batch's count at the same ``ingest_ts``."""
        pos = np.zeros(sym.shape[0], np.uint32)
        for sid in np.unique(sym).tolist():
            idx = np.flatnonzero(sym == sid)
            ing = ingest[idx]
            order = np.argsort(ing, kind="stable")
            s = ing[order]
            start = np.r_[True, s[1:] != s[:-1]]
            first = np.maximum.accumulate(np.where(start, np.arange(s.shape[0]), 0))
            rank = np.arange(s.shape[0]) - first
            if self._last_ingest.get(sid) == int(s[0]):
                rank[s == s[0]] += self._next_pos[sid]
            pos[idx[order]] = rank
            last = int(s[-1])
            self._next_pos[sid] = int(rank[-1]) + 1
            self._last_ingest[sid] = last
        return pos

    def rows(self, events: EventArray) -> dict[str, Columns]:
        """``{table: columns}`` for the tables of :data:`EVENT_TABLES` that have events in the batch."""
        _check_events(events)
        venue_of, symbol_of = _names(self.symbols)
        if events.shape[0] and int(events["symbol"].max()) >= venue_of.shape[0]:
            raise ValueError(f"symbol id {int(events['symbol'].max())} is not in the symbol table")
        pos = self._positions(events["symbol"], events["ingest_ts"])
        base = events["kind"] & KIND_MASK
        out: dict[str, Columns] = {}
        for table in EVENT_TABLES:
            mask = np.isin(base, _KINDS[table])
            if not mask.any():
                continue
            ev = events[mask]
            sid = ev["symbol"]
            cols: Columns = {
                "venue": venue_of[sid],
                "symbol": symbol_of[sid],
                "ts": ev["exchange_ts"].copy(),
                "exchange_ts": ev["exchange_ts"].copy(),
                "ingest_ts": ev["ingest_ts"].copy(),
                "ingest_pos": pos[mask],
                "kind": ev["kind"].copy(),
            }
            getattr(self, "_" + table)(ev, cols)
            out[table] = cols
        return out

    @staticmethod
    def _book_diffs(ev: EventArray, cols: Columns) -> None:
        cols["side"] = _side(ev["kind"], BID, ASK)
        cols["last_in_msg"] = ((ev["kind"] & LAST_IN_MSG) != 0).astype(np.uint8)
        cols["price"], cols["qty"] = ev["px"].copy(), ev["qty"].copy()
        cols["update_id"], cols["first_update_id"] = ev["seq"].copy(), ev["first_seq"].copy()
        cols["prev_update_id"] = ev["prev_seq"].copy()

    @staticmethod
    def _mark_funding(ev: EventArray, cols: Columns) -> None:
        cols["mark_price"], cols["funding_rate"] = ev["px"].copy(), ev["qty"].copy()
        cols["next_funding_ms"] = ev["seq"].copy()

    @staticmethod
    def _open_interest(ev: EventArray, cols: Columns) -> None:
        cols["open_interest"] = ev["qty"].copy()

    @staticmethod
    def _liquidations(ev: EventArray, cols: Columns) -> None:
        cols["price"], cols["qty"] = ev["px"].copy(), ev["qty"].copy()
        cols["side"] = _side(ev["kind"], BUY, SELL)

    def _trades(self, ev: EventArray, cols: Columns) -> None:
        px, qty = ev["px"].copy(), ev["qty"].copy()
        cols["trade_id"], cols["first_id"], cols["last_id"] = (
            ev["seq"].copy(),
            ev["first_seq"].copy(),
            ev["prev_seq"].copy(),
        )
        cols["price"], cols["qty"] = px, qty
        cols["side"] = _side(ev["kind"], BUY, SELL)
        n = ev.shape[0]
        dpx = np.full(n, np.nan)
        bucket = np.full(n, -1, np.int64)
        size_col = np.full(n, np.nan)
        sym = ev["symbol"]
        for sid in np.unique(sym).tolist():
            idx = np.flatnonzero(sym == sid)
            p = px[idx]
            prev = np.r_[self._last_px.get(sid, np.nan), p[:-1]]
            dpx[idx] = p - prev
            self._last_px[sid] = float(p[-1])
            size = self.bucket_size(sid)
            if size == size:
                quote = p * qty[idx]
                before = self._cum_quote.get(sid, 0.0) + np.cumsum(quote) - quote
                bucket[idx] = np.floor(before / size).astype(np.int64)
                size_col[idx] = size
                self._cum_quote[sid] = float(before[-1] + quote[-1])
        cols["dpx"], cols["vbucket"], cols["vbucket_quote"] = dpx, bucket, size_col


def market_rows(
    events: EventArray, symbols: SymbolTable | Sequence[str], *, bucket_quote: Mapping[str, float] | float | None = None
) -> dict[str, Columns]:
    """:meth:`MarketRows.rows` of one batch with fresh state (a whole capture, a test)."""
    return MarketRows(symbols, bucket_quote=bucket_quote).rows(events)


def _object_rows(matrix: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """A 2-D array as a 1-D object array of its rows (an ``Array(...)`` column)."""
    out = np.empty(matrix.shape[0], dtype=object)
    out[:] = list(matrix)
    return out


def book_top_rows(tops: npt.NDArray[np.void], symbols: SymbolTable | Sequence[str]) -> Columns:
    """``book_top`` rows of book tops (``book_top_dtype(levels)``, as ``BookSet.apply`` returns them)."""
    venue_of, symbol_of = _names(symbols)
    sid = tops["symbol"]
    return {
        "venue": venue_of[sid],
        "symbol": symbol_of[sid],
        "ts": tops["exchange_ts"].copy(),
        "exchange_ts": tops["exchange_ts"].copy(),
        "ingest_ts": tops["ingest_ts"].copy(),
        "seq": tops["seq"].copy(),
        "synced": tops["synced"].copy(),
        "crossed": tops["crossed"].copy(),
        "degraded": tops["degraded"].copy(),
        "bid_px": tops["bid_px"][:, 0].copy(),
        "bid_qty": tops["bid_qty"][:, 0].copy(),
        "ask_px": tops["ask_px"][:, 0].copy(),
        "ask_qty": tops["ask_qty"][:, 0].copy(),
        "bids_px": _object_rows(tops["bid_px"]),
        "bids_qty": _object_rows(tops["bid_qty"]),
        "asks_px": _object_rows(tops["ask_px"]),
        "asks_qty": _object_rows(tops["ask_qty"]),
    }


def kline_rows(klines: npt.NDArray[np.void], symbols: SymbolTable | Sequence[str]) -> Columns:
    """``klines`` rows of ``KLINE_DTYPE`` records."""
    venue_of, symbol_of = _names(symbols)
    sid = klines["symbol"]
    cols: Columns = {
        "venue": venue_of[sid],
        "symbol": symbol_of[sid],
        "interval_ns": klines["close_ts"] + 1_000_000 - klines["open_ts"],
        "ts": klines["open_ts"].copy(),
    }
    for name in ("open_ts", "close_ts", "open", "high", "low", "close", "volume", "quote_volume"):
        cols[name] = klines[name].copy()
    cols["taker_buy_volume"] = klines["taker_buy_volume"].copy()
    cols["trades"] = klines["trades"].copy()
    return cols


def feature_rows(
    rows: npt.NDArray[np.void],
    symbols: SymbolTable | Sequence[str],
    feature_set: str,
    *,
    keys: Sequence[str] = ("symbol", "flags", "exchange_ts", "ingest_ts", "seq", "start_ts", "end_ts"),
) -> Columns:
    """``features`` rows of a structured array of feature rows (``BOOK_FEATURE_DTYPE``,
    ``BAR_FEATURE_DTYPE``, ...): every field not in ``keys`` is a feature (as float64, in field order).
    ``ts`` is ``exchange_ts``, or ``end_ts`` for bar rows."""
    names = rows.dtype.names or ()
    features = [
        n for n in names if n not in keys and rows.dtype.fields is not None and rows.dtype.fields[n][0].shape == ()
    ]
    if not features:
        raise ValueError(f"feature set {feature_set!r}: no feature fields in {names}")
    venue_of, symbol_of = _names(symbols)
    sid = rows["symbol"]
    n = rows.shape[0]
    time_field = "exchange_ts" if "exchange_ts" in names else "end_ts"
    matrix = np.empty((n, len(features)))
    for j, name in enumerate(features):
        matrix[:, j] = rows[name]
    name_row = np.empty(n, dtype=object)
    name_row[:] = [features] * n
    return {
        "venue": venue_of[sid],
        "symbol": symbol_of[sid],
        "feature_set": np.full(n, feature_set, dtype=object),
        "ts": rows[time_field].astype(np.int64),
        "exchange_ts": rows[time_field].astype(np.int64),
        "ingest_ts": rows["ingest_ts"].astype(np.int64) if "ingest_ts" in names else np.zeros(n, np.int64),
        "flags": rows["flags"].astype(np.uint32) if "flags" in names else np.zeros(n, np.uint32),
        "feature_names": name_row,
        "feature_values": _object_rows(matrix),
    }


def quality_rows(
    events: EventArray,
    gaps: npt.NDArray[np.void],
    resyncs: npt.NDArray[np.void],
    symbols: SymbolTable | Sequence[str],
) -> Columns:
    """``data_quality`` rows of one book batch: its gaps and resync requests (``BookBatch.gaps``,
    ``BookBatch.resync_requests``; a resync takes the time of the event that triggered it, ``events``
    being the batch that was applied)."""
    venue_of, symbol_of = _names(symbols)
    ng, nr = gaps.shape[0], resyncs.shape[0]
    r_ts = (
        events["exchange_ts"][np.clip(resyncs["event_index"], 0, max(events.shape[0] - 1, 0))]
        if nr
        else np.zeros(0, np.int64)
    )
    sid = np.concatenate([gaps["symbol"], resyncs["symbol"]]).astype(np.int64)
    ts = np.concatenate([gaps["exchange_ts"], r_ts]).astype(np.int64)
    reasons = [GAP_REASONS.get(int(r), f"gap_{int(r)}") for r in gaps["reason"].tolist()]
    reasons += [RESYNC_REASONS.get(int(r), f"resync_{int(r)}") for r in resyncs["reason"].tolist()]
    reason = np.empty(ng + nr, dtype=object)
    reason[:] = reasons
    check = np.empty(ng + nr, dtype=object)
    check[:ng], check[ng:] = "gap", "resync"
    zeros = np.zeros(nr, np.int64)
    return {
        "venue": venue_of[sid],
        "symbol": symbol_of[sid],
        "ts": ts,
        "check_name": check,
        "reason": reason,
        "value": np.full(ng + nr, np.nan),
        "expected": np.concatenate([gaps["expected"], zeros]),
        "got": np.concatenate([gaps["got"], zeros]),
        "seq": np.concatenate([gaps["seq"], zeros]),
        "exchange_ts": ts.copy(),
        "detail": np.full(ng + nr, "", dtype=object),
    }


def _check_name(value: str) -> None:
    if not _NAME.fullmatch(value):
        raise ValueError(f"invalid venue or symbol name {value!r}")


def replay_events(
    store: Store,
    venue: str,
    symbol: str,
    start_ns: int,
    end_ns: int,
    *,
    symbol_id: int = 0,
    tables: Sequence[str] = EVENT_TABLES,
) -> EventArray:
    """The stored events of ``venue``/``symbol`` with ``start_ns <= exchange_ts < end_ns`` as one
    ``EVENT_DTYPE`` array in the order they were received (``ingest_ts``, ``ingest_pos``), every field as
    written (``symbol`` = ``symbol_id``). A row stored twice (a retried insert not yet merged away) comes
    back once. Feed it to the engine like a capture."""
    _check_name(venue)
    _check_name(symbol)
    unknown = [t for t in tables if t not in _SLOTS]
    if unknown:
        raise ValueError(f"not event tables: {unknown} (choose from {list(EVENT_TABLES)})")
    parts: list[EventArray] = []
    positions: list[npt.NDArray[np.int64]] = []
    for table in tables:
        exprs = [s if isinstance(s, str) else repr(s) for s in _SLOTS[table]]
        got = store.query(
            "SELECT kind, exchange_ts, ingest_ts, ingest_pos, "
            + ", ".join(f"{e} AS s{k}" for k, e in enumerate(exprs))
            + f" FROM {table} WHERE venue = '{venue}' AND symbol = '{symbol}'"
            f" AND ts >= fromUnixTimestamp64Nano(toInt64({int(start_ns)}))"
            f" AND ts < fromUnixTimestamp64Nano(toInt64({int(end_ns)}))"
        )
        n = len(got.get("kind", ()))
        if not n:
            continue
        part = np.zeros(n, EVENT_DTYPE)
        part["kind"] = got["kind"]
        part["symbol"] = symbol_id
        part["exchange_ts"] = got["exchange_ts"]
        part["ingest_ts"] = got["ingest_ts"]
        for k, field in enumerate(("px", "qty", "seq", "first_seq", "prev_seq")):
            part[field] = got[f"s{k}"]
        parts.append(part)
        positions.append(np.asarray(got["ingest_pos"], np.int64))
    if not parts:
        return np.zeros(0, EVENT_DTYPE)
    events = np.concatenate(parts)
    pos = np.concatenate(positions)
    order = np.lexsort((pos, events["ingest_ts"]))
    events, pos = events[order], pos[order]
    # (ingest_ts, ingest_pos) is unique per symbol across the tables: an equal neighbour is a stored duplicate
    keep = np.r_[True, (events["ingest_ts"][1:] != events["ingest_ts"][:-1]) | (pos[1:] != pos[:-1])]
    return np.ascontiguousarray(events if keep.all() else events[keep])


__all__ = [
    "EVENT_TABLES",
    "GAP_REASONS",
    "RESYNC_REASONS",
    "MarketRows",
    "book_top_rows",
    "feature_rows",
    "kline_rows",
    "market_rows",
    "quality_rows",
    "replay_events",
]
