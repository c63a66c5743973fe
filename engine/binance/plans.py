"""Per-class event plans: how many events each message yields and the numba writer that fills them.

A plan (:class:`Plan`) is built from a class's columns (:mod:`.columns`) after dropping messages with a
bad value; :func:`.decode._decode` sizes the output from all plans, then each writes its events straight
into their final, line-ordered positions (``fill_levels`` / ``fill_rows``). Closed klines become
KLINE_DTYPE rows instead (:func:`kline_rows`). The layout per kind is the table in
:mod:`tradeplane.engine.events`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import msgspec
import numpy as np
import numpy.typing as npt
from numba import njit

from ..events import (
    AGG_TRADE,
    ASK,
    BBO,
    BID,
    BUY,
    DEPTH,
    KLINE_DTYPE,
    LAST_IN_MSG,
    LIQUIDATION,
    MARK,
    SELL,
    SNAPSHOT,
    TRADE,
    EventArray,
)
from . import messages as msg
from .columns import I64, Batch, Cols, raw_numbers
from .routing import TYPE_NAMES

_MS: Final = 1_000_000  # ns per ms


@njit(cache=True)
def fill_levels(
    out: np.ndarray,
    at: np.ndarray,
    kind: int,
    symbol: np.ndarray,
    exchange_ts: np.ndarray,
    ingest_ts: np.ndarray,
    seq: np.ndarray,
    first_seq: np.ndarray,
    prev_seq: np.ndarray,
    bid_first: np.ndarray,
    n_bids: np.ndarray,
    ask_first: np.ndarray,
    n_asks: np.ndarray,
    px: np.ndarray,
    qty: np.ndarray,
) -> None:
    """Write one event per level (bids, then asks) for each message m from out[at[m]] on; a message with
    no levels gets one NaN event without a side flag. The last event of every message gets LAST_IN_MSG."""
    for m in range(at.shape[0]):
        o = at[m]
        if n_bids[m] + n_asks[m] == 0:
            r = out[o]
            r.kind = kind | LAST_IN_MSG
            r.symbol = symbol[m]
            r.exchange_ts = exchange_ts[m]
            r.ingest_ts = ingest_ts[m]
            r.px = np.nan
            r.qty = np.nan
            r.seq = seq[m]
            r.first_seq = first_seq[m]
            r.prev_seq = prev_seq[m]
            continue
        for side in range(2):
            f = bid_first[m] if side == 0 else ask_first[m]
            cnt = n_bids[m] if side == 0 else n_asks[m]
            flag = kind | (BID if side == 0 else ASK)
            for j in range(cnt):
                r = out[o]
                r.kind = flag
                r.symbol = symbol[m]
                r.exchange_ts = exchange_ts[m]
                r.ingest_ts = ingest_ts[m]
                r.px = px[f + j]
                r.qty = qty[f + j]
                r.seq = seq[m]
                r.first_seq = first_seq[m]
                r.prev_seq = prev_seq[m]
                o += 1
        last = out[o - 1]
        last.kind = last.kind | LAST_IN_MSG


@njit(cache=True)
def fill_rows(
    out: np.ndarray,
    at: np.ndarray,
    kind: np.ndarray,
    symbol: np.ndarray,
    exchange_ts: np.ndarray,
    ingest_ts: np.ndarray,
    px: np.ndarray,
    qty: np.ndarray,
    seq: np.ndarray,
    first_seq: np.ndarray,
    prev_seq: np.ndarray,
) -> None:
    """Write event m at out[at[m]] from per-message columns."""
    for m in range(at.shape[0]):
        r = out[at[m]]
        r.kind = kind[m]
        r.symbol = symbol[m]
        r.exchange_ts = exchange_ts[m]
        r.ingest_ts = ingest_ts[m]
        r.px = px[m]
        r.qty = qty[m]
        r.seq = seq[m]
        r.first_seq = first_seq[m]
        r.prev_seq = prev_seq[m]


@dataclass(slots=True)
class Plan:
    """One message class ready to write: batch line index and event count per message, and a writer
    that fills the events given each message's first position in the output."""

    lines: I64
    n_events: I64
    fill: Callable[[EventArray, I64], None]


def _reject(batch: Batch, c: int, cols: Cols, checks: dict[str, npt.NDArray[np.bool_]]) -> Cols:
    """Drop (and count as malformed) the messages whose value fails a check, e.g. a non-finite price
    (msgspec accepts "NaN" and "inf" strings into floats). ``checks`` maps a field to its ok mask."""
    good = np.logical_and.reduce(list(checks.values())) if checks else None
    if good is None or good.all():
        return cols
    for k in np.flatnonzero(~good).tolist():
        name = next(key for key, ok in checks.items() if not ok[k])
        value = cols.f[name][k]
        shown = bytes(value)[:40] if isinstance(value, msgspec.Raw) else value
        batch.bad(int(cols.lines[k]), "number", f"{TYPE_NAMES[c]}: bad number in {name!r}: {shown!r}")
    return cols.take(good)


def _finite(cols: Cols, *keys: str) -> dict[str, npt.NDArray[np.bool_]]:
    return {key: np.isfinite(cols.f[key]) for key in keys}


def _exchange_ts(primary: I64, secondary: I64 | None, ingest: I64) -> I64:
    """Venue time in ns: ``primary`` (ms) where sent, else ``secondary``, else the ingest time (spot
    bookTicker and spot snapshots carry no time at all)."""
    ms = primary if secondary is None else np.where(primary > 0, primary, secondary)
    return np.where(ms > 0, ms * _MS, ingest)


def _full(n: int, value: int, dtype: type[np.generic] = np.int64) -> Any:
    return np.full(n, value, dtype=dtype)


def _rows_plan(lines: I64, *columns: Any) -> Plan:
    """One event per message, from per-message columns in EVENT_DTYPE field order."""
    cols = tuple(np.ascontiguousarray(c) for c in columns)
    return Plan(lines, np.ones(len(lines), dtype=np.int64), lambda out, at: fill_rows(out, at, *cols))


def _bbo_plan(batch: Batch, cols: Cols) -> Plan:
    """bookTicker → a BID then an ASK event (LAST_IN_MSG on the ASK); seq = first_seq = u."""
    cols = _reject(batch, msg.BOOK_TICKER, cols, _finite(cols, "b", "B", "a", "A"))
    f, n = cols.f, len(cols.lines)
    ingest = batch.ingest[cols.lines]
    exch = _exchange_ts(f["T"], f["E"], ingest)
    sym = batch.symbol_ids(cols)
    u = np.ascontiguousarray(f["u"])
    bid_kind, ask_kind = _full(n, BBO | BID, np.uint32), _full(n, BBO | ASK | LAST_IN_MSG, np.uint32)
    bpx, bqty, apx, aqty = (np.ascontiguousarray(f[k]) for k in ("b", "B", "a", "A"))
    prev = _full(n, -1)

    def fill(out: EventArray, at: I64) -> None:
        fill_rows(out, at, bid_kind, sym, exch, ingest, bpx, bqty, u, u, prev)
        fill_rows(out, at + 1, ask_kind, sym, exch, ingest, apx, aqty, u, u, prev)

    return Plan(cols.lines, _full(n, 2), fill)


def _trade_plan(batch: Batch, cols: Cols, *, agg: bool) -> Plan:
    """trade / aggTrade → one event; BUY when the buyer is not the maker (the taker bought), else SELL.
    seq = trade id (aggregate id); first_seq / prev_seq = first / last trade id (both = t for trade)."""
    cols = _reject(batch, msg.AGG_TRADE if agg else msg.TRADE, cols, _finite(cols, "p", "q"))
    f = cols.f
    base = AGG_TRADE if agg else TRADE
    kind = np.where(f["m"], base | SELL, base | BUY).astype(np.uint32)
    seq, first, last = (f["a"], f["f"], f["l"]) if agg else (f["t"], f["t"], f["t"])
    ingest = batch.ingest[cols.lines]
    exch = _exchange_ts(f["T"], f["E"], ingest)
    return _rows_plan(cols.lines, kind, batch.symbol_ids(cols), exch, ingest, f["p"], f["q"], seq, first, last)


def _mark_plan(batch: Batch, cols: Cols) -> Plan:
    """markPriceUpdate → MARK: px = mark price, qty = funding rate (NaN when empty, as on COIN-M delivery
    contracts), seq = next funding time (ms). exchange_ts = E: this message's T is not a trade time."""
    rate, rate_ok = raw_numbers(cols.f["r"])
    cols.f["rate"] = rate
    cols = _reject(batch, msg.MARK_PRICE_UPDATE, cols, {**_finite(cols, "p"), "r": rate_ok})
    f, n = cols.f, len(cols.lines)
    ingest = batch.ingest[cols.lines]
    exch = _exchange_ts(f["E"], None, ingest)
    kind, zero, prev = _full(n, MARK, np.uint32), _full(n, 0), _full(n, -1)
    return _rows_plan(cols.lines, kind, batch.symbol_ids(cols), exch, ingest, f["p"], f["rate"], f["T"], zero, prev)


def _liquidation_plan(batch: Batch, cols: Cols) -> Plan:
    """forceOrder → LIQUIDATION: px = average fill price ``ap``, qty = filled quantity ``z``, flag = the
    liquidation order's side, exchange_ts = the order's trade time ``o.T``."""
    cols = _reject(batch, msg.FORCE_ORDER, cols, _finite(cols, "ap", "z"))
    f, n = cols.f, len(cols.lines)
    kind = np.where(f["buy"], LIQUIDATION | BUY, LIQUIDATION | SELL).astype(np.uint32)
    ingest = batch.ingest[cols.lines]
    exch = _exchange_ts(f["T"], f["E"], ingest)
    zero, prev = _full(n, 0), _full(n, -1)
    return _rows_plan(cols.lines, kind, batch.symbol_ids(cols), exch, ingest, f["ap"], f["z"], zero, zero, prev)


def _levels_plan(batch: Batch, cols: Cols, bids: str, asks: str, *, kind: int, seq: I64, first: I64, prev: I64) -> Plan:
    """Depth diff or snapshot → one event per level, bids then asks, LAST_IN_MSG on the message's last
    event; a message without levels still yields one NaN event so the book can chain its ids."""
    assert cols.levels is not None
    px, qty = cols.levels
    f = cols.f
    lines, sym = cols.lines, batch.symbol_ids(cols)
    ingest = batch.ingest[lines]
    exch = _exchange_ts(f["T"], f["E"], ingest)
    bid_first, n_bids, ask_first, n_asks = (
        np.ascontiguousarray(f[key]) for key in (f"{bids}_first", f"{bids}_count", f"{asks}_first", f"{asks}_count")
    )
    seq, first, prev = np.ascontiguousarray(seq), np.ascontiguousarray(first), np.ascontiguousarray(prev)

    def fill(out: EventArray, at: I64) -> None:
        fill_levels(out, at, kind, sym, exch, ingest, seq, first, prev, bid_first, n_bids, ask_first, n_asks, px, qty)

    return Plan(lines, np.maximum(n_bids + n_asks, 1), fill)


def _depth_plan(batch: Batch, cols: Cols) -> Plan:
    """depthUpdate → DEPTH levels; seq = u, first_seq = U, prev_seq = pu (−1 on spot)."""
    f = cols.f
    return _levels_plan(batch, cols, "b", "a", kind=DEPTH, seq=f["u"], first=f["U"], prev=f["pu"])


def _snapshot_plan(batch: Batch, cols: Cols) -> Plan:
    """REST snapshot → SNAPSHOT levels; seq = first_seq = lastUpdateId, prev_seq = −1. Spot snapshots
    carry no time, so their exchange_ts is the ingest time."""
    last_id = cols.f["lastUpdateId"]
    prev = _full(len(cols.lines), -1)
    return _levels_plan(batch, cols, "bids", "asks", kind=SNAPSHOT, seq=last_id, first=last_id, prev=prev)


def kline_rows(batch: Batch, cols: Cols) -> tuple[I64, EventArray, int]:
    """Closed klines (``k.x``) → KLINE rows; open (still updating) bars are counted but yield no row.
    Returns the rows' line indices, the rows, and how many closed bars were rejected for bad numbers."""
    closed = cols.take(cols.f["x"])
    n_closed = len(closed.lines)
    closed = _reject(batch, msg.KLINE, closed, _finite(closed, "o", "h", "l", "c", "v"))
    f = closed.f
    rows = np.empty(len(closed.lines), dtype=KLINE_DTYPE)
    rows["symbol"] = batch.symbol_ids(closed)
    rows["open_ts"] = f["t"] * _MS
    rows["close_ts"] = f["kT"] * _MS
    for key, column in (("o", "open"), ("h", "high"), ("l", "low"), ("c", "close"), ("v", "volume")):
        rows[column] = f[key]
    rows["quote_volume"] = f["q"]
    rows["taker_buy_volume"] = f["V"]
    rows["trades"] = f["n"]
    return closed.lines, rows, n_closed - len(closed.lines)


PLANNERS: Final[dict[int, Callable[[Batch, Cols], Plan]]] = {
    msg.DEPTH_UPDATE: _depth_plan,
    msg.BOOK_TICKER: _bbo_plan,
    msg.TRADE: lambda batch, cols: _trade_plan(batch, cols, agg=False),
    msg.AGG_TRADE: lambda batch, cols: _trade_plan(batch, cols, agg=True),
    msg.MARK_PRICE_UPDATE: _mark_plan,
    msg.FORCE_ORDER: _liquidation_plan,
    msg.DEPTH_SNAPSHOT: _snapshot_plan,
}
