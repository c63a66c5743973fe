"""Binance market-data messages → EVENT_DTYPE arrays (and KLINE_DTYPE rows), a micro-batch at a time.

Why it is shaped like this: the budget is ≥ 500k messages/s on one core, and CPython spends ~30 ns per
attribute touched and ~100 ns per ``float(str)``, while a capture is mostly tiny flat messages
(bookTicker, trade). So no message is handled alone, and most never become Python objects:

1. The lines are joined into one writable buffer. ``route`` (numba, :mod:`.scan`) walks each line once:
   it parses the ``<ingest ns> `` prefix and recognises the layouts Binance actually sends (combined-stream
   envelope, bare payload with ``e``, REST snapshot, bare spot bookTicker) by their leading bytes. It
   rewrites the line *in place* so that only the payload object remains, with a class tag injected as its
   first key: ``1723… {"stream":"btcusdt@trade","data":{"e":"trade",…}}`` becomes
   ``   …   {"_c":3,"e":"trade",…} ``.
2. Flat classes (bookTicker, trade, aggTrade) go through ``parse_flat`` (numba, :mod:`.flat`), which reads
   the rewritten object straight into int/float/bool slot arrays. Its spec is derived from the msgspec
   Struct, and it accepts only a strict subset of JSON whose meaning is unambiguous; every other line is
   left to step 3.
3. msgspec (:mod:`.fallback`) decodes the remaining lines (depth diffs, snapshots, klines, marks,
   liquidations, and anything the fast path declined) with one ``decode_lines`` call into a tagged union
   of per-type Structs (:mod:`.messages`), validating types, required fields, the ``e`` literal and value
   ranges in C. Level lists stay ``msgspec.Raw`` and are parsed by one numba call per batch
   (``parse_level_lists``).
4. Both paths yield the same per-class columns (:mod:`.columns`); per-class plans (:mod:`.plans`) size the
   output, and ``fill_levels`` / ``fill_rows`` (numba) write the events straight into their final,
   line-ordered positions.

Numbers are exact: every price and quantity equals ``float`` of its decimal string, bit for bit.

Anything unusual leaves the fast path without stopping the batch: a line the router cannot place is
probed by msgspec and routed (envelopes in any key order, for instance); if msgspec cannot decode the
batch as a whole it is bisected down to the bad messages; a message with a bad number is dropped alone.
Every such message is counted in :class:`DecodeStats` (:mod:`.stats`; unknown by type, malformed by
cause) with its line number: none is dropped silently and none stops the stream. ``fast_path=False``
(internal) runs every line through msgspec; the tests check both paths give identical bytes and
identical stats.

This module holds the public entry points and the orchestration of one batch. The event layout per kind
is the table in :mod:`tradeplane.engine.events`; ``docs/data-contracts.md`` states the ordering and
timestamp rules this package implements. Pure: bytes in, arrays out, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import msgspec
import numpy as np
import numpy.typing as npt

from ..events import EVENT_DTYPE, KLINE_DTYPE, EventArray, SymbolTable
from . import messages as msg
from .columns import I64, Batch, Cols, struct_cols
from .columns import raw_numbers as _raw_numbers  # noqa: F401 (the tests reach it here)
from .fallback import DECODERS, decode_structs, error_cause, probe_line
from .flat import FLAT_SPECS, flat_cols
from .plans import PLANNERS, Plan, kline_rows
from .routing import (
    EVENT_OFF,
    EVENT_TOK,
    EVENT_TYPES,
    SNAPSHOT_TYPE,
    STREAM_OFF,
    STREAM_PREFIX_OK,
    STREAM_TOK,
    TYPE_NAMES,
)
from .scan import LINE_BAD_PREFIX, LINE_EMPTY, LINE_NO_JSON, LINE_NO_PREFIX, LINE_OK, PAD, route
from .stats import MAX_ERRORS, DecodeResult, DecodeStats

__all__ = [
    "EVENT_TYPES",
    "MAX_ERRORS",
    "SNAPSHOT_TYPE",
    "DecodeResult",
    "DecodeStats",
    "decode_capture_lines",
    "decode_payloads",
]

_LINE_REASONS: Final = {
    LINE_EMPTY: ("empty", "empty line"),
    LINE_NO_PREFIX: ("prefix", "line does not start with '<ingest ns> '"),
    LINE_BAD_PREFIX: ("prefix", "ingest timestamp does not fit int64"),
    LINE_NO_JSON: ("prefix", "no JSON after the ingest timestamp"),
}


def _decode(
    blob: bytearray,
    starts: I64,
    ends: I64,
    ingest: I64 | None,
    symbols: SymbolTable,
    venue: str,
    first_line: int,
    snapshot_symbol: str | None,
    *,
    fast_path: bool = True,
) -> DecodeResult:
    """Shared body of the public entry points: route + rewrite, decode, build plans, fill in line order.

    ``blob`` is consumed (rewritten in place); item k sits at [starts[k], ends[k]) behind PAD bytes.
    ``fast_path=False`` sends every routed line through msgspec (the reference the tests compare with).
    """
    buf = np.frombuffer(blob, dtype=np.uint8)
    n = len(starts)
    status, ts, cls, js, je = route(
        buf,
        starts,
        ends,
        ingest is None,
        STREAM_TOK,
        STREAM_OFF,
        STREAM_PREFIX_OK,
        EVENT_TOK,
        EVENT_OFF,
        msg.DEPTH_SNAPSHOT,
        msg.BOOK_TICKER,
    )
    batch = Batch(symbols, venue, ts if ingest is None else ingest, first_line)
    for k in np.flatnonzero(status != LINE_OK).tolist():
        cause, reason = _LINE_REASONS[int(status[k])]
        batch.bad(k, cause, reason)

    parts: dict[int, list[Cols]] = {}
    routed = np.flatnonzero(cls)
    to_msgspec = routed
    if fast_path:
        done = np.zeros(n, dtype=np.bool_)
        routed_cls = cls[routed]
        for c in FLAT_SPECS:
            lines = routed[routed_cls == c]
            if len(lines):
                cols, ok = flat_cols(c, buf, js, je, lines)
                if cols is not None:
                    parts.setdefault(c, []).append(cols)
                    done[lines[ok]] = True
        to_msgspec = routed[~done[routed]]

    objs, decoded_lines = decode_structs(batch, buf, js, je, to_msgspec, cls)
    by_class: dict[int, tuple[list[Any], I64]] = {}
    decoded_cls = cls[decoded_lines]
    for c in np.unique(decoded_cls).tolist():
        positions = np.flatnonzero(decoded_cls == c)
        picked = objs if len(positions) == len(objs) else [objs[k] for k in positions.tolist()]
        by_class[c] = (picked, decoded_lines[positions])

    # lines the byte router could not place: probe, then decode with the class's own Struct
    slow: dict[int, tuple[list[Any], list[int]]] = {}
    for k in np.flatnonzero((status == LINE_OK) & (cls == 0)).tolist():
        routed_slow = probe_line(batch, k, bytes(blob[js[k] : je[k]]))
        if routed_slow is None:
            continue
        c, payload = routed_slow
        try:
            obj = DECODERS[c].decode(payload)
        except msgspec.ValidationError as exc:
            batch.bad(k, error_cause(exc), f"{TYPE_NAMES[c]}: {exc}")
            continue
        except msgspec.DecodeError as exc:
            batch.bad(k, "json", f"invalid JSON: {exc}")
            continue
        slow.setdefault(c, ([], []))[0].append(obj)
        slow[c][1].append(k)
    for c, (more, more_lines) in slow.items():
        c_objs, c_lines = by_class.get(c, ([], np.empty(0, dtype=np.int64)))
        by_class[c] = (c_objs + more, np.concatenate([c_lines, np.asarray(more_lines, dtype=np.int64)]))

    snapshots = by_class.pop(msg.DEPTH_SNAPSHOT, None)
    for c, (c_objs, c_lines) in by_class.items():
        parts.setdefault(c, []).append(struct_cols(batch, c, c_objs, c_lines, ""))
    if snapshots is not None:  # a snapshot names no symbol: the caller's, or the batch's only one
        names = {name for c_parts in parts.values() for part in c_parts for name in part.names}
        name = snapshot_symbol if snapshot_symbol is not None else (names.pop() if len(names) == 1 else None)
        if name is None:
            for k in snapshots[1].tolist():
                batch.bad(k, "symbol", "depth snapshot names no symbol and the batch has no single symbol")
        else:
            parts[msg.DEPTH_SNAPSHOT] = [struct_cols(batch, msg.DEPTH_SNAPSHOT, *snapshots, name)]
    merged = {c: Cols.concat(c_parts) for c, c_parts in sorted(parts.items())}
    for cols in merged.values():
        batch.see_symbols(cols)
    batch.intern_seen()

    plans: list[Plan] = []
    kline_parts: list[tuple[I64, EventArray]] = []
    by_type: dict[str, int] = {}
    for c, cols in merged.items():
        if c == msg.KLINE:
            k_lines, rows, rejected = kline_rows(batch, cols)
            kline_parts.append((k_lines, rows))
            by_type[TYPE_NAMES[c]] = len(cols.lines) - rejected
            continue
        plan = PLANNERS[c](batch, cols)
        plans.append(plan)
        by_type[TYPE_NAMES[c]] = len(plan.lines)

    per_line = np.zeros(n, dtype=np.int64)
    for plan in plans:
        per_line[plan.lines] = plan.n_events
    start = np.cumsum(per_line) - per_line
    events = np.empty(int(per_line.sum()), dtype=EVENT_DTYPE)
    for plan in plans:
        plan.fill(events, start[plan.lines])

    if kline_parts:
        k_lines = np.concatenate([p[0] for p in kline_parts])
        klines = np.concatenate([p[1] for p in kline_parts])[np.argsort(k_lines, kind="stable")]
    else:
        klines = np.empty(0, dtype=KLINE_DTYPE)
    problems = sorted(batch.problems)[:MAX_ERRORS]
    stats = DecodeStats(
        messages=n,
        events=len(events),
        klines=len(klines),
        by_type={name: count for name, count in by_type.items() if count},
        unknown=dict(batch.unknown),
        malformed=sum(batch.malformed_by.values()),
        malformed_by=dict(batch.malformed_by),
        errors=[(first_line + k, reason) for k, reason in problems],
    )
    return DecodeResult(events, klines, stats)


# =====================================================================================================
# Public entry points
# =====================================================================================================


def _joined(items: Sequence[bytes]) -> tuple[bytearray, I64, I64]:
    """One writable buffer for the kernels: every item behind a newline and PAD spaces (room for the
    class tag). Item lengths, not a newline search, define the boundaries, so an item that holds a
    newline stays one item."""
    n = len(items)
    sep = b"\n" + b" " * PAD
    lengths = np.fromiter(map(len, items), dtype=np.int64, count=n)
    starts = np.cumsum(lengths + len(sep)) - lengths
    blob = bytearray(sep).join([b"", *items])
    return blob, starts, starts + lengths


def decode_capture_lines(
    lines: Sequence[bytes],
    symbols: SymbolTable,
    venue: str,
    *,
    first_line: int = 1,
    snapshot_symbol: str | None = None,
) -> DecodeResult:
    """Decode capture lines ``b"<ingest ns> <json>"`` (a trailing newline is fine) into events.

    ``venue`` is the SymbolTable venue (``binance-spot``, ``binance-usdm``, ``binance-coinm``).
    ``first_line`` is the 1-based number of ``lines[0]`` in its file, for error reports.
    ``snapshot_symbol`` names the symbol of REST depth snapshots (they carry none); when None, a snapshot
    takes the batch's symbol if the batch has exactly one, and is counted malformed otherwise.
    Events come out in line order, one line's events contiguous.
    """
    blob, starts, ends = _joined(lines)
    return _decode(blob, starts, ends, None, symbols, venue, first_line, snapshot_symbol)


def decode_payloads(
    payloads: Sequence[bytes],
    ingest_ts: npt.NDArray[np.int64],
    symbols: SymbolTable,
    venue: str,
    *,
    snapshot_symbol: str | None = None,
) -> DecodeResult:
    """Decode raw websocket frames (no prefix) received at ``ingest_ts`` (ns, one per frame): live ingest.

    Error line numbers are 1-based positions in ``payloads``.
    """
    ingest = np.asarray(ingest_ts, dtype=np.int64)
    if ingest.shape != (len(payloads),):
        raise ValueError(f"ingest_ts has shape {ingest.shape}, expected ({len(payloads)},): one per payload")
    blob, starts, ends = _joined(payloads)
    return _decode(blob, starts, ends, ingest, symbols, venue, 1, snapshot_symbol)
