"""Binance market-data messages → EVENT_DTYPE arrays (and KLINE_DTYPE rows), a micro-batch at a time.

Why it is shaped like this: the budget is ≥ 500k messages/s on one core, and CPython spends ~30 ns per
attribute touched and ~100 ns per ``float(str)``, while a capture is mostly tiny flat messages
(bookTicker, trade). So no message is handled alone, and most never become Python objects:

1. The lines are joined into one writable buffer. ``route`` (numba) walks each line once: it parses the
   ``<ingest ns> `` prefix and recognises the layouts Binance actually sends (combined-stream envelope,
   bare payload with ``e``, REST snapshot, bare spot bookTicker) by their leading bytes. It rewrites the
   line *in place* so that only the payload object remains, with a class tag injected as its first key:
   ``1723… {"stream":"btcusdt@trade","data":{"e":"trade",…}}`` becomes ``   …   {"_c":3,"e":"trade",…} ``.
2. Flat classes (bookTicker, trade, aggTrade) go through ``parse_flat`` (numba), which reads the rewritten
   object straight into int/float/bool slot arrays. Its spec is derived from the msgspec Struct, and it
   accepts only a strict subset of JSON whose meaning is unambiguous; every other line is left to step 3.
3. msgspec decodes the remaining lines (depth diffs, snapshots, klines, marks, liquidations, and anything
   the fast path declined) with one ``decode_lines`` call into a tagged union of per-type Structs
   (:mod:`.messages`), validating types, required fields, the ``e`` literal and value ranges in C. Level
   lists stay ``msgspec.Raw`` and are parsed by one numba call per batch (``parse_level_lists``).
4. ``fill_levels`` / ``fill_rows`` (numba) write the events straight into their final, line-ordered
   positions.

Numbers are exact: every price and quantity equals ``float`` of its decimal string, bit for bit.

Anything unusual leaves the fast path without stopping the batch: a line the router cannot place is
probed by msgspec and routed (envelopes in any key order, for instance); if msgspec cannot decode the
batch as a whole it is bisected down to the bad messages; a message with a bad number is dropped alone.
Every such message is counted in :class:`DecodeStats` (unknown by type, malformed by cause) with its line
number: none is dropped silently and none stops the stream. ``fast_path=False`` (internal) runs every
line through msgspec; the tests check both paths give identical bytes and identical stats.

The event layout per kind is the table in :mod:`tradeplane.engine.events`; ``docs/data-contracts.md``
states the ordering and timestamp rules this module implements. Pure: bytes in, arrays out, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
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
    EVENT_DTYPE,
    KLINE_DTYPE,
    LAST_IN_MSG,
    LIQUIDATION,
    MARK,
    SELL,
    SNAPSHOT,
    TRADE,
    EventArray,
    SymbolTable,
)
from . import messages as msg

__all__ = [
    "EVENT_TYPES",
    "MAX_ERRORS",
    "SNAPSHOT_TYPE",
    "DecodeResult",
    "DecodeStats",
    "decode_capture_lines",
    "decode_payloads",
]

# =====================================================================================================
# numba kernels: byte routing, exact decimal parsing, event filling — one call per micro-batch
#
# Decimal parsing is exact: a value with at most 18 digits whose integer mantissa fits in 2**53 and whose
# decimal exponent is at most 22 is one IEEE division (or multiplication) of two exactly representable
# doubles, hence correctly rounded, hence bit-identical to ``float(s)`` (Clinger's fast path). Anything
# else is flagged NUM_SLOW and converted with ``float`` by the caller; Binance's fixed-point strings
# practically never need that.
# =====================================================================================================

# --- per-line routing status
LINE_OK: Final = 0
LINE_EMPTY: Final = 1  #: nothing but whitespace
LINE_NO_PREFIX: Final = 2  #: does not start with "<digits><space>"
LINE_BAD_PREFIX: Final = 3  #: the ingest timestamp overflows int64
LINE_NO_JSON: Final = 4  #: a prefix and nothing after it

# --- per-value parse status
NUM_OK: Final = 0
NUM_BAD: Final = 1  #: not a decimal number (or a JSON string holding one)
NUM_SLOW: Final = 2  #: a valid number outside the exact fast path; convert with float()
NUM_EMPTY: Final = 3  #: ``""``, or a zero-length value (an optional field the message did not carry)

#: Spaces the joiner puts before every line, so a class tag fits in front of any payload.
PAD: Final = 8

_INT64_MAX: Final = 9_223_372_036_854_775_807
_MANT_MAX: Final = 1 << 53
_POW10 = np.array([10.0**k for k in range(23)], dtype=np.float64)  # all exactly representable

_SPACE: Final = 32
_QUOTE: Final = 34
_COMMA: Final = 44
_LBRACKET: Final = 91
_BACKSLASH: Final = 92
_RBRACKET: Final = 93
_LBRACE: Final = 123
_RBRACE: Final = 125
_BANG: Final = 33
_AT: Final = 64
_SEP: Final = 0  #: separator between joined msgspec.Raw values: NUL never occurs in valid JSON text

_ENVELOPE = np.frombuffer(b'{"stream":"', dtype=np.uint8)
_DATA_KEY = np.frombuffer(b'","data":', dtype=np.uint8)
_EVENT_KEY = np.frombuffer(b'{"e":"', dtype=np.uint8)
_SNAPSHOT_KEY = np.frombuffer(b'{"lastUpdateId":', dtype=np.uint8)
_SPOT_TICKER_KEY = np.frombuffer(b'{"u":', dtype=np.uint8)  # a bare spot bookTicker: it has no "e"
_TAG = np.frombuffer(b'{"' + msg.TAG_FIELD.encode() + b'":', dtype=np.uint8)  # + one digit = PAD - 1 bytes
assert _TAG.shape[0] + 1 < PAD


def _token_table(tokens: tuple[bytes, ...]) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """Pack byte tokens into (concatenated bytes, offsets) for :func:`route`; token k → class k + 1."""
    offsets = np.zeros(len(tokens) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(t) for t in tokens])
    return np.frombuffer(b"".join(tokens), dtype=np.uint8), offsets


@njit(cache=True, inline="always")
def _is_ws(c: int) -> bool:
    return c == 32 or c == 9 or c == 10 or c == 13


@njit(cache=True, inline="always")
def _at(buf: np.ndarray, p: int, end: int, pat: np.ndarray) -> bool:
    """buf[p:end] starts with pat."""
    m = pat.shape[0]
    if end - p < m:
        return False
    for k in range(m):  # noqa: SIM110 (numba: no generator expressions)
        if buf[p + k] != pat[k]:
            return False
    return True


@njit(cache=True)
def _match_token(buf: np.ndarray, t0: int, t1: int, tok: np.ndarray, off: np.ndarray, prefix_ok: np.ndarray) -> int:
    """Class id (k + 1) of the token equal to buf[t0:t1] (or a prefix of it where prefix_ok[k]); 0 if none."""
    n = t1 - t0
    for k in range(off.shape[0] - 1):
        a = off[k]
        m = off[k + 1] - a
        if m > n or (m < n and not prefix_ok[k]):
            continue
        same = True
        for j in range(m):
            if buf[t0 + j] != tok[a + j]:
                same = False
                break
        if same:
            return k + 1
    return 0


@njit(cache=True)
def route(
    buf: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    has_prefix: bool,
    stream_tok: np.ndarray,
    stream_off: np.ndarray,
    stream_prefix_ok: np.ndarray,
    event_tok: np.ndarray,
    event_off: np.ndarray,
    snapshot_cls: int,
    ticker_cls: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Parse each line's prefix, route its JSON by the leading bytes, and rewrite routed lines in place.

    Each line buf[starts[i]:ends[i]] must be preceded by PAD bytes of padding (the joiner's). Returns per
    line: status (LINE_*), ingest ns, class id (0 = not routed: the caller's slow path decides) and the
    JSON's start/end (for a routed line: where the rewritten object starts). Three exact layouts are
    routed, and routing is only a hint that msgspec or the fast path then validates:

    - ``{"stream":"<name>","data":{...}}`` by the stream name's type token (``btcusdt@depth@0ms`` →
      ``depth``, ``!forceOrder@arr`` → ``forceOrder``); the payload is the data object;
    - ``{"e":"<event>", ...}`` by the event name; the payload is the whole object;
    - ``{"lastUpdateId": ...`` as a REST depth snapshot, ``{"u": ...`` as a bare spot bookTicker.

    A routed line becomes spaces + ``{"_c":<class>,`` + the payload's members + spaces: one JSON object
    per line, ready for ``decode_lines``. Lines with a bad status are blanked (decode_lines skips blank
    lines); unrouted lines are left as they are for the slow path.
    """
    n = starts.shape[0]
    status = np.zeros(n, dtype=np.uint8)
    ts = np.zeros(n, dtype=np.int64)
    cls = np.zeros(n, dtype=np.uint8)
    js = np.zeros(n, dtype=np.int64)
    je = np.zeros(n, dtype=np.int64)
    exact = np.zeros(event_off.shape[0] - 1, dtype=np.bool_)
    tag_len = _TAG.shape[0]
    for i in range(n):
        p = starts[i]
        e = ends[i]
        while e > p and _is_ws(buf[e - 1]):
            e -= 1
        while p < e and _is_ws(buf[p]):
            p += 1
        if p == e:
            status[i] = LINE_EMPTY
        elif has_prefix:
            v = 0
            nd = 0
            overflow = False
            while p < e and 48 <= buf[p] <= 57:
                d = buf[p] - 48
                if v > (_INT64_MAX - d) // 10:
                    overflow = True
                else:
                    v = v * 10 + d
                nd += 1
                p += 1
            if nd == 0 or (p < e and not (buf[p] == 32 or buf[p] == 9)):
                status[i] = LINE_NO_PREFIX
            elif p == e:
                status[i] = LINE_NO_JSON
            elif overflow:
                status[i] = LINE_BAD_PREFIX
            else:
                ts[i] = v
                while p < e and _is_ws(buf[p]):
                    p += 1
        if status[i] != LINE_OK:
            for k in range(starts[i], ends[i]):
                buf[k] = _SPACE
            continue
        js[i] = p
        je[i] = e
        c = 0
        d0 = 0
        close = -1
        if _at(buf, p, e, _ENVELOPE):
            q = p + _ENVELOPE.shape[0]
            ns = q
            while q < e and buf[q] != _QUOTE and buf[q] != _BACKSLASH:
                q += 1
            ne = q
            d0 = q + _DATA_KEY.shape[0]
            if (
                q < e
                and _at(buf, q, e, _DATA_KEY)
                and d0 < e - 1
                and buf[d0] == _LBRACE
                and buf[e - 1] == _RBRACE
                and ne > ns
            ):
                if buf[ns] == _BANG:
                    t0 = ns + 1
                else:
                    t0 = ns
                    while t0 < ne and buf[t0] != _AT:
                        t0 += 1
                    t0 += 1
                t1 = t0
                while t1 < ne and buf[t1] != _AT:
                    t1 += 1
                if t0 < ne:
                    c = _match_token(buf, t0, t1, stream_tok, stream_off, stream_prefix_ok)
                    close = e - 1
        elif _at(buf, p, e, _EVENT_KEY):
            t0 = p + _EVENT_KEY.shape[0]
            t1 = t0
            while t1 < e and buf[t1] != _QUOTE and buf[t1] != _BACKSLASH:
                t1 += 1
            if t1 < e and buf[t1] == _QUOTE:
                c = _match_token(buf, t0, t1, event_tok, event_off, exact)
                d0 = p
        elif _at(buf, p, e, _SNAPSHOT_KEY):
            c = snapshot_cls
            d0 = p
        elif _at(buf, p, e, _SPOT_TICKER_KEY):
            c = ticker_cls
            d0 = p
        if c == 0:
            continue
        cls[i] = c
        # Rewrite: [line start, d0 - tag) → spaces; '{"_c":' + digit right before the payload's '{',
        # which becomes ',' (or ' ' for an empty object); the envelope's closing '}' → space.
        q = d0 + 1
        while q < e and _is_ws(buf[q]):
            q += 1
        empty = q < e and buf[q] == _RBRACE
        w = d0 - tag_len - 1
        for k in range(starts[i], w):
            buf[k] = _SPACE
        for k in range(tag_len):
            buf[w + k] = _TAG[k]
        buf[w + tag_len] = 48 + c
        buf[d0] = _SPACE if empty else _COMMA
        if close >= 0:
            buf[close] = _SPACE
        js[i] = w
    return status, ts, cls, js, je


@njit(cache=True, inline="always")
def _number(buf: np.ndarray, p: int, end: int) -> tuple[float, int, int]:
    """Parse a decimal (``-?digits[.digits][e±digits]``) at buf[p:]; returns (value, NUM_*, end)."""
    neg = False
    if p < end and buf[p] == 45:  # '-'
        neg = True
        p += 1
    mant = 0
    digits = 0
    scale = 0  # value = mant * 10**-scale
    while p < end:
        d = int(buf[p]) - 48
        if d < 0 or d > 9:
            break
        mant = mant * 10 + d
        digits += 1
        p += 1
    if p < end and buf[p] == 46:  # '.'
        p += 1
        while p < end:
            d = int(buf[p]) - 48
            if d < 0 or d > 9:
                break
            mant = mant * 10 + d
            digits += 1
            scale += 1
            p += 1
    if digits == 0:
        return 0.0, NUM_BAD, p
    if p < end and (buf[p] == 101 or buf[p] == 69):  # 'e' / 'E'
        p += 1
        eneg = False
        if p < end and (buf[p] == 45 or buf[p] == 43):
            eneg = buf[p] == 45
            p += 1
        ed = 0
        ev = 0
        while p < end and 48 <= buf[p] <= 57:
            if ev < 100_000:
                ev = ev * 10 + (buf[p] - 48)
            ed += 1
            p += 1
        if ed == 0:
            return 0.0, NUM_BAD, p
        scale += ev if eneg else -ev
    if digits > 18 or mant > _MANT_MAX:  # the mantissa may have wrapped / is not exact as a double
        return 0.0, NUM_SLOW, p
    if mant == 0:
        value = 0.0
    elif 0 <= scale <= 22:
        value = mant / _POW10[scale]
    elif -22 <= scale < 0:
        value = mant * _POW10[-scale]
    else:
        return 0.0, NUM_SLOW, p
    return (-value if neg else value), NUM_OK, p


@njit(cache=True, inline="always")
def _value(buf: np.ndarray, p: int, end: int) -> tuple[float, int, int, int, int]:
    """A number or a JSON string holding one. Returns (value, status, after, text start, text end)."""
    if p < end and buf[p] == _QUOTE:
        p += 1
        if p < end and buf[p] == _QUOTE:
            return 0.0, NUM_EMPTY, p + 1, p, p
        v, st, q = _number(buf, p, end)
        if q >= end or buf[q] != _QUOTE:
            return 0.0, NUM_BAD, q, p, q
        return v, st, q + 1, p, q
    v, st, q = _number(buf, p, end)
    return v, st, q, p, q


@njit(cache=True)
def parse_values(buf: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Parse ``n`` values (JSON strings or numbers) separated by NUL. Returns values, NUM_* status, and
    each value's text span (for the caller's ``float`` fallback on SLOW values)."""
    vals = np.zeros(n, dtype=np.float64)
    status = np.full(n, NUM_BAD, dtype=np.uint8)
    ts = np.zeros(n, dtype=np.int64)
    te = np.zeros(n, dtype=np.int64)
    end = buf.shape[0]
    p = 0
    for k in range(n):
        if p > end:
            break
        if p == end or buf[p] == _SEP:
            status[k] = NUM_EMPTY
            ts[k] = p
            te[k] = p
            p += 1
            continue
        v, st, q, a, b = _value(buf, p, end)
        if q < end and buf[q] != _SEP:
            st = NUM_BAD
        while q < end and buf[q] != _SEP:
            q += 1
        vals[k] = v
        status[k] = st
        ts[k] = a
        te[k] = b
        p = q + 1
    return vals, status, ts, te


@njit(cache=True, inline="always")
def _skip_ws(buf: np.ndarray, p: int, end: int) -> int:
    while p < end and _is_ws(buf[p]):
        p += 1
    return p


@njit(cache=True)
def _push_slow(slow: np.ndarray, n_slow: int, lv: int, col: int, a: int, b: int) -> tuple[np.ndarray, int]:
    if n_slow == slow.shape[0]:
        grown = np.empty((2 * n_slow, 4), dtype=np.int64)
        grown[:n_slow] = slow[:n_slow]
        slow = grown
    slow[n_slow, 0] = lv
    slow[n_slow, 1] = col
    slow[n_slow, 2] = a
    slow[n_slow, 3] = b
    return slow, n_slow + 1


@njit(cache=True)
def parse_level_lists(
    buf: np.ndarray, n_lists: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Parse ``n_lists`` JSON level lists ``[[price, qty], ...]`` separated by NUL.

    Returns (px, qty, count per list, ok per list, slow, first level index per list); ``slow`` has one row
    (level index, 0 = px / 1 = qty, text start, text end) per SLOW value for the caller's ``float`` fix-up.
    A list that is not exactly an array of two-element [price, qty] arrays of decimals is ``ok = False``
    and contributes no levels. Empty strings are malformed here: a level always has both numbers.
    """
    end = buf.shape[0]
    cap = end // 5 + 2
    px = np.empty(cap, dtype=np.float64)
    qty = np.empty(cap, dtype=np.float64)
    counts = np.zeros(n_lists, dtype=np.int64)
    first = np.zeros(n_lists, dtype=np.int64)
    ok = np.zeros(n_lists, dtype=np.bool_)
    slow = np.empty((16, 4), dtype=np.int64)
    n_slow = 0
    lv = 0
    p = 0
    for i in range(n_lists):
        first[i] = lv
        start_lv = lv
        start_slow = n_slow
        good = False
        p = _skip_ws(buf, p, end)
        if p < end and buf[p] == _LBRACKET:
            p = _skip_ws(buf, p + 1, end)
            if p < end and buf[p] == _RBRACKET:
                p += 1
                good = True
            else:
                while True:
                    if p >= end or buf[p] != _LBRACKET:
                        break
                    p = _skip_ws(buf, p + 1, end)
                    v1, s1, p, a1, b1 = _value(buf, p, end)
                    if s1 == NUM_BAD or s1 == NUM_EMPTY:  # noqa: SIM109 (numba)
                        break
                    p = _skip_ws(buf, p, end)
                    if p >= end or buf[p] != _COMMA:
                        break
                    p = _skip_ws(buf, p + 1, end)
                    v2, s2, p, a2, b2 = _value(buf, p, end)
                    if s2 == NUM_BAD or s2 == NUM_EMPTY:  # noqa: SIM109 (numba)
                        break
                    p = _skip_ws(buf, p, end)
                    if p >= end or buf[p] != _RBRACKET:
                        break
                    p = _skip_ws(buf, p + 1, end)
                    if lv >= cap:
                        break
                    px[lv] = v1
                    qty[lv] = v2
                    if s1 == NUM_SLOW:
                        slow, n_slow = _push_slow(slow, n_slow, lv, 0, a1, b1)
                    if s2 == NUM_SLOW:
                        slow, n_slow = _push_slow(slow, n_slow, lv, 1, a2, b2)
                    lv += 1
                    if p < end and buf[p] == _COMMA:
                        p = _skip_ws(buf, p + 1, end)
                        continue
                    if p < end and buf[p] == _RBRACKET:
                        p += 1
                        good = True
                    break
        p = _skip_ws(buf, p, end)
        if good and (p == end or buf[p] == _SEP):
            ok[i] = True
            counts[i] = lv - start_lv
        else:
            lv = start_lv
            n_slow = start_slow
        while p < end and buf[p] != _SEP:
            p += 1
        p += 1
    return px[:lv], qty[:lv], counts, ok, slow[:n_slow], first


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


# --- the flat-object fast path -------------------------------------------------------------------------
# bookTicker / trade / aggTrade are flat objects of scalars, and they are most of every capture. For them
# `parse_flat` reads the rewritten line directly into slot arrays: no Python object per message. It accepts
# only a strict subset of JSON (plain ASCII strings without escapes, strict JSON numbers, no nesting, no
# duplicate keys) and values that satisfy the Struct's types and bounds exactly; anything else — unusual
# but maybe valid, or invalid — is left to msgspec, which then decodes it or reports why it cannot. So the
# fast path decides nothing msgspec would decide differently (tests check this differentially).

# value kinds of a flat field
K_SKIP: Final = 0  #: any scalar, ignored (the class tag)
K_INT: Final = 1  #: a JSON integer within [lo, hi]
K_FLOAT: Final = 2  #: a JSON number, or a string holding one (msgspec's strict=False coercion)
K_BOOL: Final = 3  #: true / false
K_SYM: Final = 4  #: a string: the symbol
K_LIT: Final = 5  #: a string equal to the field's literal
K_LEVELS: Final = 6  #: a level list [[price, qty], ...] of decimal strings or numbers

_V_FAIL, _V_STR, _V_NUM, _V_TRUE, _V_FALSE, _V_NULL = 0, 1, 2, 3, 4, 5
_TRUE = np.frombuffer(b"true", dtype=np.uint8)
_FALSE = np.frombuffer(b"false", dtype=np.uint8)
_NULL = np.frombuffer(b"null", dtype=np.uint8)


@njit(cache=True, inline="always")
def _plain_string_end(buf: np.ndarray, p: int, end: int) -> int:
    """p at an opening quote: index of the closing quote of a plain (no escape, printable ASCII) string,
    or −1. Escapes and non-ASCII are valid JSON, but they are msgspec's to judge."""
    q = p + 1
    while q < end:
        c = buf[q]
        if c == _QUOTE:
            return q
        if c == _BACKSLASH or c < 32 or c >= 128:
            return -1
        q += 1
    return -1


@njit(cache=True, inline="always")
def _strict_number(buf: np.ndarray, p: int, end: int) -> tuple[int, bool, int, float, bool]:
    """A strict JSON number at p. Returns (end or −1 if not one, is an integer, integer value, float
    value, exact); ``exact``: ≤ 18 digits and the float fast path applies (so both values are right)."""
    q = p
    neg = False
    if q < end and buf[q] == 45:
        neg = True
        q += 1
    if q >= end or not (48 <= buf[q] <= 57):
        return -1, False, 0, 0.0, False
    mant = 0
    digits = 0
    if buf[q] == 48:
        q += 1
        digits = 1
        if q < end and 48 <= buf[q] <= 57:
            return -1, False, 0, 0.0, False  # leading zero
    else:
        while q < end and 48 <= buf[q] <= 57:
            mant = mant * 10 + (int(buf[q]) - 48)
            digits += 1
            q += 1
    is_int = True
    scale = 0
    if q < end and buf[q] == 46:
        is_int = False
        q += 1
        fd = 0
        while q < end and 48 <= buf[q] <= 57:
            mant = mant * 10 + (int(buf[q]) - 48)
            digits += 1
            fd += 1
            q += 1
        if fd == 0:
            return -1, False, 0, 0.0, False
        scale = fd
    if q < end and (buf[q] == 101 or buf[q] == 69):
        is_int = False
        q += 1
        eneg = False
        if q < end and (buf[q] == 45 or buf[q] == 43):
            eneg = buf[q] == 45
            q += 1
        ed = 0
        ev = 0
        while q < end and 48 <= buf[q] <= 57:
            if ev < 100_000:
                ev = ev * 10 + (int(buf[q]) - 48)
            ed += 1
            q += 1
        if ed == 0:
            return -1, False, 0, 0.0, False
        scale += -ev if not eneg else ev
    if digits > 18 or mant > _MANT_MAX or scale > 22 or scale < -22:
        return q, is_int, 0, 0.0, False
    if mant == 0:
        value = 0.0
    elif scale >= 0:
        value = mant / _POW10[scale]
    else:
        value = mant * _POW10[-scale]
    if neg:
        return q, is_int, -mant, -value, True
    return q, is_int, mant, value, True


@njit(cache=True, inline="always")
def _strict_decimal(buf: np.ndarray, p: int, end: int) -> tuple[float, int]:
    """An exact decimal at p, bare or in a plain string: (value, end), or (0, −1) to decline."""
    if p < end and buf[p] == _QUOTE:
        q = _plain_string_end(buf, p, end)
        if q < 0:
            return 0.0, -1
        stop, _, _, value, exact = _strict_number(buf, p + 1, q)
        return (value, q + 1) if stop == q and exact else (0.0, -1)
    stop, _, _, value, exact = _strict_number(buf, p, end)
    return (value, stop) if stop >= 0 and exact else (0.0, -1)


@njit(cache=True)
def _strict_levels(buf: np.ndarray, p: int, end: int, px: np.ndarray, qty: np.ndarray, n: int) -> tuple[int, int]:
    """A level list ``[[price, qty], ...]`` at p (on its '['), appended to px/qty from n. Returns (end,
    new n), or (−1, n) to decline: anything but exact decimals in two-element arrays."""
    p = _skip_ws(buf, p + 1, end)
    if p < end and buf[p] == _RBRACKET:
        return p + 1, n
    while True:
        if p >= end or buf[p] != _LBRACKET or n >= px.shape[0]:
            return -1, n
        v1, p = _strict_decimal(buf, _skip_ws(buf, p + 1, end), end)
        if p < 0:
            return -1, n
        p = _skip_ws(buf, p, end)
        if p >= end or buf[p] != _COMMA:
            return -1, n
        v2, p = _strict_decimal(buf, _skip_ws(buf, p + 1, end), end)
        if p < 0:
            return -1, n
        p = _skip_ws(buf, p, end)
        if p >= end or buf[p] != _RBRACKET:
            return -1, n
        px[n] = v1
        qty[n] = v2
        n += 1
        p = _skip_ws(buf, p + 1, end)
        if p < end and buf[p] == _COMMA:
            p = _skip_ws(buf, p + 1, end)
            continue
        if p < end and buf[p] == _RBRACKET:
            return p + 1, n
        return -1, n


@njit(cache=True)
def parse_flat(
    buf: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    idx: np.ndarray,
    key_tok: np.ndarray,
    key_off: np.ndarray,
    key1: np.ndarray,
    kinds: np.ndarray,
    slots: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    lit_tok: np.ndarray,
    lit_off: np.ndarray,
    required: np.ndarray,
    int_defaults: np.ndarray,
    n_float: int,
    n_bool: int,
    n_levels: int,
) -> tuple[
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
]:
    """Read the flat object of each line idx[r] (buf[starts:ends], as rewritten by ``route``).

    Field k of the spec has key key_tok[key_off[k]:key_off[k+1]] (one-byte keys also in key1[byte] = k),
    a K_* kind, a slot in the int / float / bool output, bounds lo/hi (K_INT) and a literal (K_LIT).
    K_LEVELS fields (``n_levels`` of them) append their [price, qty] pairs to one pair of level arrays.
    Returns ok, ints, floats, bools, the symbol's span, and (level px, level qty, first level, level
    count per row and level field); a row with ok False was declined (its outputs are meaningless, its
    levels rolled back) and goes to msgspec, which decodes it or says why it cannot.
    """
    n = idx.shape[0]
    n_fields = kinds.shape[0]
    ok = np.zeros(n, dtype=np.bool_)
    ints = np.empty((n, int_defaults.shape[0]), dtype=np.int64)
    floats = np.zeros((n, n_float), dtype=np.float64)
    bools = np.zeros((n, n_bool), dtype=np.bool_)
    sym_s = np.zeros(n, dtype=np.int64)
    sym_e = np.zeros(n, dtype=np.int64)
    cap = 0
    if n_levels:
        for r in range(n):
            cap += (ends[idx[r]] - starts[idx[r]]) // 5 + 1
    lv_px = np.empty(cap, dtype=np.float64)
    lv_qty = np.empty(cap, dtype=np.float64)
    lv_first = np.zeros((n, n_levels), dtype=np.int64)
    lv_count = np.zeros((n, n_levels), dtype=np.int64)
    n_lv = 0
    for r in range(n):
        i = idx[r]
        end = ends[i]
        row_lv = n_lv
        for j in range(int_defaults.shape[0]):
            ints[r, j] = int_defaults[j]
        p = _skip_ws(buf, starts[i], end)
        if p >= end or buf[p] != _LBRACE:
            continue
        p = _skip_ws(buf, p + 1, end)
        seen = np.int64(0)
        good = False
        if p < end and buf[p] == _RBRACE:
            p += 1
            good = True
        while not good:
            # key
            if p >= end or buf[p] != _QUOTE:
                break
            kq = _plain_string_end(buf, p, end)
            if kq < 0:
                break
            k0 = p + 1
            klen = kq - k0
            p = _skip_ws(buf, kq + 1, end)
            if p >= end or buf[p] != 58:  # ':'
                break
            p = _skip_ws(buf, p + 1, end)
            f = -1
            if klen == 1:  # Binance's keys are mostly one letter: a table lookup
                f = key1[buf[k0]] if buf[k0] < 128 else -1
            for k in range(n_fields if klen != 1 else 0):
                a = key_off[k]
                if key_off[k + 1] - a != klen:
                    continue
                same = True
                for j in range(klen):
                    if buf[k0 + j] != key_tok[a + j]:
                        same = False
                        break
                if same:
                    f = k
                    break
            # value
            if p >= end:
                break
            c = buf[p]
            if f >= 0 and kinds[f] == K_LEVELS:
                bit = np.int64(1) << f
                if seen & bit or c != _LBRACKET:
                    break
                seen |= bit
                first = n_lv
                p, n_lv = _strict_levels(buf, p, end, lv_px, lv_qty, n_lv)
                if p < 0:
                    break
                lv_first[r, slots[f]] = first
                lv_count[r, slots[f]] = n_lv - first
                p = _skip_ws(buf, p, end)
                if p < end and buf[p] == _COMMA:
                    p = _skip_ws(buf, p + 1, end)
                    continue
                if p < end and buf[p] == _RBRACE:
                    p += 1
                    good = True
                break
            vtype = _V_FAIL
            v0 = p
            v1 = p
            is_int = False
            ival = 0
            fval = 0.0
            exact = False
            if c == _QUOTE:
                q = _plain_string_end(buf, p, end)
                if q >= 0:
                    vtype = _V_STR
                    v0 = p + 1
                    v1 = q
                    p = q + 1
            elif c == 45 or 48 <= c <= 57:
                q, is_int, ival, fval, exact = _strict_number(buf, p, end)
                if q >= 0:
                    vtype = _V_NUM
                    p = q
            elif c == 116 and _at(buf, p, end, _TRUE):
                vtype = _V_TRUE
                p += 4
            elif c == 102 and _at(buf, p, end, _FALSE):
                vtype = _V_FALSE
                p += 5
            elif c == 110 and _at(buf, p, end, _NULL):
                vtype = _V_NULL
                p += 4
            if vtype == _V_FAIL:
                break
            if f >= 0:
                bit = np.int64(1) << f
                if seen & bit:
                    break  # duplicate key
                seen |= bit
                kind = kinds[f]
                slot = slots[f]
                if kind == K_INT:
                    if vtype != _V_NUM or not is_int or not exact or ival < lo[f] or ival > hi[f]:
                        break
                    ints[r, slot] = ival
                elif kind == K_FLOAT:
                    if vtype == _V_STR:
                        q, is_int, ival, fval, exact = _strict_number(buf, v0, v1)
                        if q != v1:
                            break
                    elif vtype != _V_NUM:
                        break
                    if not exact:
                        break
                    # msgspec reads an integer literal as an int, then converts: "-0" is +0.0 there
                    floats[r, slot] = float(ival) if is_int else fval
                elif kind == K_BOOL:
                    if vtype == _V_TRUE:
                        bools[r, slot] = True
                    elif vtype == _V_FALSE:
                        bools[r, slot] = False
                    else:
                        break
                elif kind == K_SYM:
                    if vtype != _V_STR:
                        break
                    sym_s[r] = v0
                    sym_e[r] = v1
                elif kind == K_LIT:
                    a = lit_off[f]
                    if vtype != _V_STR or lit_off[f + 1] - a != v1 - v0:
                        break
                    same = True
                    for j in range(v1 - v0):
                        if buf[v0 + j] != lit_tok[a + j]:
                            same = False
                            break
                    if not same:
                        break
            p = _skip_ws(buf, p, end)
            if p < end and buf[p] == _COMMA:
                p = _skip_ws(buf, p + 1, end)
                continue
            if p < end and buf[p] == _RBRACE:
                p += 1
                good = True
            break
        if good and _skip_ws(buf, p, end) == end and (seen & required[0]) == required[0]:
            ok[r] = True
        else:
            n_lv = row_lv
    return ok, ints, floats, bools, sym_s, sym_e, lv_px[:n_lv], lv_qty[:n_lv], lv_first, lv_count


@njit(cache=True)
def intern_spans(buf: np.ndarray, s: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Batch-local codes for the byte strings buf[s[k]:e[k]]: equal bytes → equal code, codes numbered
    by first appearance. Returns (code per item, item index of each code's first appearance)."""
    n = s.shape[0]
    codes = np.empty(n, dtype=np.int64)
    firsts = np.empty(n, dtype=np.int64)
    cap = 16
    while cap < 2 * n:
        cap *= 2
    table = np.full(cap, -1, dtype=np.int64)
    n_codes = 0
    last = -1
    for k in range(n):
        a = s[k]
        length = e[k] - a
        if last >= 0:
            f = firsts[last]
            if e[f] - s[f] == length:
                same = True
                for j in range(length):
                    if buf[a + j] != buf[s[f] + j]:
                        same = False
                        break
                if same:
                    codes[k] = last
                    continue
        h = np.uint64(14695981039346656037)
        for j in range(length):
            h = (h ^ np.uint64(buf[a + j])) * np.uint64(1099511628211)
        slot = np.int64(h & np.uint64(cap - 1))
        while True:
            code = table[slot]
            if code < 0:
                code = n_codes
                table[slot] = code
                firsts[code] = k
                n_codes += 1
                break
            f = firsts[code]
            if e[f] - s[f] == length:
                same = True
                for j in range(length):
                    if buf[a + j] != buf[s[f] + j]:
                        same = False
                        break
                if same:
                    break
            slot = (slot + 1) & (cap - 1)
        codes[k] = code
        last = code
    return codes, firsts[:n_codes]


@njit(cache=True)
def gather(buf: np.ndarray, s: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate buf[s[k]:e[k]], each followed by a newline; also return each piece's start."""
    n = s.shape[0]
    total = n
    for k in range(n):
        total += e[k] - s[k]
    out = np.empty(total, dtype=np.uint8)
    at = np.empty(n, dtype=np.int64)
    o = 0
    for k in range(n):
        at[k] = o
        length = e[k] - s[k]
        out[o : o + length] = buf[s[k] : e[k]]
        o += length
        out[o] = 10
        o += 1
    return out, at


# =====================================================================================================
# Python layer: statistics, slow-path routing, per-type columns, assembly in line order
# =====================================================================================================

#: Stream-name type tokens, in class order (class id = position + 1). ``kline_`` matches as a prefix.
STREAM_TOKENS: Final = (b"depth", b"bookTicker", b"trade", b"aggTrade", b"kline_", b"markPrice", b"forceOrder")
#: ``e`` of each class, in class order; the names are also the keys of :attr:`DecodeStats.by_type`.
EVENT_TYPES: Final = ("depthUpdate", "bookTicker", "trade", "aggTrade", "kline", "markPriceUpdate", "forceOrder")
#: ``by_type`` key of REST depth snapshots (they carry no ``e``).
SNAPSHOT_TYPE: Final = "snapshot"
#: Cap on :attr:`DecodeStats.errors` (the counters are always exact).
MAX_ERRORS: Final = 100

_TYPE_NAMES: Final = ("", *EVENT_TYPES, SNAPSHOT_TYPE)  # by class id
assert len(_TYPE_NAMES) == len(msg.PAYLOAD_TYPES) and _TYPE_NAMES[msg.DEPTH_SNAPSHOT] == SNAPSHOT_TYPE
_CLASS_BY_EVENT: Final = {name: c for c, name in enumerate(EVENT_TYPES, start=1)}
_STREAM_TOK, _STREAM_OFF = _token_table(STREAM_TOKENS)
_STREAM_PREFIX_OK = np.array([t.endswith(b"_") for t in STREAM_TOKENS], dtype=np.bool_)
_EVENT_TOK, _EVENT_OFF = _token_table(tuple(t.encode() for t in EVENT_TYPES))
# strict=False: JSON strings holding numbers decode into float fields (see messages.py).
_BATCH_DECODER: Final = msgspec.json.Decoder(msg.Payload, strict=False)
_DECODERS: Final = tuple(msgspec.json.Decoder(t, strict=False) for t in msg.PAYLOAD_TYPES)
_PROBE: Final = msgspec.json.Decoder(msg.Probe)
_MS: Final = 1_000_000  # ns per ms
_LINE_REASONS: Final = {
    LINE_EMPTY: ("empty", "empty line"),
    LINE_NO_PREFIX: ("prefix", "line does not start with '<ingest ns> '"),
    LINE_BAD_PREFIX: ("prefix", "ingest timestamp does not fit int64"),
    LINE_NO_JSON: ("prefix", "no JSON after the ingest timestamp"),
}

I64 = npt.NDArray[np.int64]


@dataclass(slots=True)
class DecodeStats:
    """What happened to every input message; nothing is dropped without being counted here.

    Invariant: ``messages == decoded + sum(unknown.values()) + malformed``, where ``decoded`` is the sum
    of ``by_type``. ``errors`` keeps the first :data:`MAX_ERRORS` unknown or malformed messages as
    ``(line number, short reason)`` in line order; the counters are always exact.
    """

    messages: int = 0  #: input lines (or payloads) seen, good or bad
    events: int = 0  #: EVENT_DTYPE rows produced
    klines: int = 0  #: KLINE_DTYPE rows produced (closed bars only)
    by_type: dict[str, int] = field(default_factory=dict)  #: decoded messages per event type
    unknown: dict[str, int] = field(default_factory=dict)  #: well-formed messages of types not decoded
    malformed: int = 0  #: lines or messages that could not be decoded
    malformed_by: dict[str, int] = field(default_factory=dict)  #: malformed count per cause
    errors: list[tuple[int, str]] = field(default_factory=list)  #: first examples: (line, reason)

    @property
    def decoded(self) -> int:
        """Messages decoded into events or klines."""
        return sum(self.by_type.values())

    def merge(self, other: DecodeStats) -> DecodeStats:
        """Add ``other`` (a later batch) into this object in place and return it, so a stream of batch
        stats folds with ``functools.reduce(DecodeStats.merge, stats, DecodeStats())``."""
        self.messages += other.messages
        self.events += other.events
        self.klines += other.klines
        self.malformed += other.malformed
        for mine, theirs in (
            (self.by_type, other.by_type),
            (self.unknown, other.unknown),
            (self.malformed_by, other.malformed_by),
        ):
            for key, count in theirs.items():
                mine[key] = mine.get(key, 0) + count
        room = MAX_ERRORS - len(self.errors)
        if room > 0:
            self.errors.extend(other.errors[:room])
        return self


@dataclass(frozen=True, slots=True)
class DecodeResult:
    """Events (EVENT_DTYPE, in input line order), closed klines (KLINE_DTYPE) and the batch's stats."""

    events: EventArray
    klines: EventArray
    stats: DecodeStats

    @staticmethod
    def concat(results: Iterable[DecodeResult]) -> DecodeResult:
        """Join consecutive batches into one result (events and klines concatenated, stats merged)."""
        parts = list(results)
        stats = DecodeStats()
        for part in parts:
            stats.merge(part.stats)
        events = np.concatenate([p.events for p in parts]) if parts else np.empty(0, EVENT_DTYPE)
        klines = np.concatenate([p.klines for p in parts]) if parts else np.empty(0, KLINE_DTYPE)
        return DecodeResult(events, klines, stats)


@dataclass(slots=True)
class _Cols:
    """Per-message columns of one message class, whichever path decoded it (fast path, msgspec, or both
    merged): batch line index, symbol as a code into ``names``, and the fields by Binance name (numpy
    arrays; a list of ``msgspec.Raw`` for the funding rate). Level lists are parsed: ``levels`` holds
    all prices and quantities, and fields ``<list>_first`` / ``<list>_count`` index it per message."""

    lines: I64
    codes: I64
    names: list[str]
    f: dict[str, Any]
    levels: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None = None

    def take(self, keep: npt.NDArray[np.bool_]) -> _Cols:
        fields = {
            k: (v[keep] if isinstance(v, np.ndarray) else [x for x, ok in zip(v, keep, strict=True) if ok])
            for k, v in self.f.items()
        }
        return _Cols(self.lines[keep], self.codes[keep], self.names, fields, self.levels)

    @staticmethod
    def concat(parts: list[_Cols]) -> _Cols:
        if len(parts) == 1:
            return parts[0]
        index: dict[str, int] = {}
        codes = []
        for part in parts:
            remap = np.array([index.setdefault(name, len(index)) for name in part.names], dtype=np.int64)
            codes.append(remap[part.codes] if len(part.codes) else part.codes)
        shift = np.cumsum([0] + [len(p.levels[0]) if p.levels else 0 for p in parts[:-1]])
        fields: dict[str, Any] = {}
        for key, first in parts[0].f.items():
            if key.endswith("_first"):
                fields[key] = np.concatenate([p.f[key] + k for p, k in zip(parts, shift, strict=True)])
            elif isinstance(first, np.ndarray):
                fields[key] = np.concatenate([p.f[key] for p in parts])
            else:
                fields[key] = [x for p in parts for x in p.f[key]]
        levels = None
        if parts[0].levels is not None:
            px = np.concatenate([p.levels[0] for p in parts if p.levels is not None])
            qty = np.concatenate([p.levels[1] for p in parts if p.levels is not None])
            levels = (px, qty)
        return _Cols(np.concatenate([p.lines for p in parts]), np.concatenate(codes), list(index), fields, levels)


@dataclass(slots=True)
class _Plan:
    """One message class ready to write: batch line index and event count per message, and a writer
    that fills the events given each message's first position in the output."""

    lines: I64
    n_events: I64
    fill: Callable[[EventArray, I64], None]


class _Batch:
    """Per-call state: ingest times, the problems found so far, symbol interning in line order."""

    def __init__(self, symbols: SymbolTable, venue: str, ingest: I64, first_line: int) -> None:
        self.symbols = symbols
        self.venue = venue
        self.ingest = ingest
        self.first_line = first_line
        self.unknown: dict[str, int] = {}
        self.malformed_by: dict[str, int] = {}
        self.problems: list[tuple[int, str]] = []  # (batch line index, reason)
        self._first_seen: dict[str, int] = {}  # symbol name → first batch line index
        self._ids: dict[str, int] = {}

    def bad(self, line: int, cause: str, reason: str) -> None:
        self.malformed_by[cause] = self.malformed_by.get(cause, 0) + 1
        self.problems.append((line, reason))

    def unknown_type(self, line: int, key: str) -> None:
        self.unknown[key] = self.unknown.get(key, 0) + 1
        self.problems.append((line, f"unknown message type {key!r}"))

    def see_symbols(self, cols: _Cols) -> None:
        """Record where each symbol first appears, so ids are interned in input order: a replay in
        batches of any size, or a live feed, then assigns the same ids to the same names."""
        if not len(cols.lines):
            return
        never = np.iinfo(np.int64).max
        first = np.full(len(cols.names), never, dtype=np.int64)
        np.minimum.at(first, cols.codes, cols.lines)
        for name, line in zip(cols.names, first.tolist(), strict=True):
            if line != never and self._first_seen.get(name, line + 1) > line:
                self._first_seen[name] = line

    def intern_seen(self) -> None:
        for name in sorted(self._first_seen, key=self._first_seen.__getitem__):
            self._ids[name] = self.symbols.intern(self.venue, name)

    @property
    def seen(self) -> list[str]:
        return list(self._first_seen)

    def symbol_ids(self, cols: _Cols) -> npt.NDArray[np.uint32]:
        # names of dropped messages may linger in cols.names; no code refers to them
        table = np.array([self._ids.get(name, 0) for name in cols.names], dtype=np.uint32)
        return table[cols.codes] if len(table) else np.zeros(len(cols.codes), dtype=np.uint32)


# --- routing and decoding ----------------------------------------------------------------------------


def _stream_token(stream: str) -> str:
    """The type token of a combined-stream name, as the byte router reads it: ``btcusdt@depth@0ms`` →
    ``depth``, ``!forceOrder@arr`` → ``forceOrder``, ``btcusdt@kline_1m`` → ``kline_1m``."""
    if stream.startswith("!"):
        return stream[1:].split("@", 1)[0]
    parts = stream.split("@")
    return parts[1] if len(parts) > 1 else stream


def _class_of_token(token: str) -> int:
    raw = token.encode()
    for c, tok in enumerate(STREAM_TOKENS, start=1):
        if raw == tok or (tok.endswith(b"_") and raw.startswith(tok)):
            return c
    return 0


def _probe(batch: _Batch, line: int, text: bytes) -> tuple[int, bytes] | None:
    """Slow path for a line the byte router could not place: decode just enough to route it.

    Returns (class, payload JSON), or None after counting the line as unknown or malformed. Envelopes
    are recognised in any key order; bare payloads by ``e``, by the snapshot's ``lastUpdateId``, or by
    the spot bookTicker shape (``u`` with ``B``/``A``, no ``e``). Unknown types are keyed by the stream
    name's type token (``depth20``; ``markPrice[]`` for an array payload) or by ``e``.
    """
    try:
        probe = _PROBE.decode(text)
    except msgspec.ValidationError as exc:
        batch.bad(line, "schema", f"not a market-data object: {exc}")
        return None
    except msgspec.DecodeError as exc:
        batch.bad(line, "json", f"invalid JSON: {exc}")
        return None
    if probe.stream is not None:
        token = _stream_token(probe.stream)
        if not len(probe.data):
            batch.bad(line, "schema", f"stream {probe.stream!r}: envelope without data")
            return None
        payload = bytes(probe.data)
        c = _class_of_token(token)
        if c == 0 or not payload.startswith(b"{"):
            batch.unknown_type(line, token if c == 0 else f"{token}[]")
            return None
        return c, payload
    if probe.e is not None:
        c = _CLASS_BY_EVENT.get(probe.e, 0)
        if c == 0:
            batch.unknown_type(line, probe.e)
            return None
        return c, text
    if probe.last_update_id is not None:
        return msg.DEPTH_SNAPSHOT, text
    if probe.u is not None and len(probe.B) and len(probe.A):
        return msg.BOOK_TICKER, text
    batch.unknown_type(line, "(untyped)")
    return None


def _cause(exc: msgspec.ValidationError) -> str:
    """A number that msgspec could not read as a float is a bad number, not a schema problem."""
    text = str(exc)
    return "number" if text.startswith(("Expected `float`", "Number out of range")) else "schema"


def _decode_structs(
    batch: _Batch, buf: npt.NDArray[np.uint8], starts: I64, ends: I64, lines: I64, cls: npt.NDArray[np.uint8]
) -> tuple[list[Any], I64]:
    """Decode the rewritten lines ``lines`` with one msgspec ``decode_lines`` call over a compact copy;
    on failure bisect, so k bad messages cost O(k log n) extra decoding and no good neighbour is lost.
    Returns the Structs and their batch line indices (in input order)."""
    if not len(lines):
        return [], lines
    packed, at = gather(buf, starts[lines], ends[lines])
    stop = np.append(at[1:], len(packed))
    view = packed.data

    def run(lo: int, hi: int) -> list[Any]:
        if hi - lo == 1:  # one line: a plain decode also accepts a payload that holds a newline
            k = int(lines[lo])
            try:
                return [_BATCH_DECODER.decode(view[at[lo] : stop[lo]])]
            except msgspec.ValidationError as exc:
                batch.bad(k, _cause(exc), f"{_TYPE_NAMES[cls[k]]}: {exc}")
            except msgspec.DecodeError as exc:
                batch.bad(k, "json", f"invalid JSON: {exc}")
            return [None]
        try:
            objs = _BATCH_DECODER.decode_lines(view[at[lo] : stop[hi - 1]])
            if len(objs) == hi - lo:
                return objs
        except (msgspec.DecodeError, msgspec.ValidationError):
            pass
        mid = (lo + hi) // 2
        return run(lo, mid) + run(mid, hi)

    objs = run(0, len(lines))
    if len(objs) and any(o is None for o in objs):
        ok = np.fromiter((o is not None for o in objs), dtype=np.bool_, count=len(objs))
        return [o for o in objs if o is not None], lines[ok]
    return objs, lines


# --- columns -----------------------------------------------------------------------------------------


def _ints(values: list[int]) -> I64:
    return np.fromiter(values, dtype=np.int64, count=len(values))


def _floats(values: list[float]) -> npt.NDArray[np.float64]:
    return np.fromiter(values, dtype=np.float64, count=len(values))


def _bools(values: list[bool]) -> npt.NDArray[np.bool_]:
    return np.fromiter(values, dtype=np.bool_, count=len(values))


def _codes(names: list[str]) -> tuple[I64, list[str]]:
    """Symbol names → (code per message, distinct names in first-appearance order)."""
    if not names:
        return np.empty(0, dtype=np.int64), []
    if names.count(names[0]) == len(names):
        return np.zeros(len(names), dtype=np.int64), [names[0]]
    index: dict[str, int] = {}
    codes = np.fromiter((index.setdefault(n, len(index)) for n in names), dtype=np.int64, count=len(names))
    return codes, list(index)


def _struct_cols(batch: _Batch, c: int, objs: list[Any], lines: I64, snapshot_symbol: str) -> _Cols:
    """Columns of msgspec-decoded Structs of class ``c`` (the same keys as the fast path's columns).
    Level lists are parsed here; a message with a bad one is counted malformed and left out."""
    if c == msg.FORCE_ORDER:
        orders = [o.o for o in objs]
        codes, names = _codes([o.s for o in orders])
        f: dict[str, Any] = {
            "buy": _bools([o.S == "BUY" for o in orders]),
            "ap": _floats([o.ap for o in orders]),
            "z": _floats([o.z for o in orders]),
            "T": _ints([o.T for o in orders]),
            "E": _ints([o.E for o in objs]),
        }
        return _Cols(lines, codes, names, f)
    if c == msg.DEPTH_SNAPSHOT:
        codes, names = _codes([snapshot_symbol] * len(objs))
        f = {
            "lastUpdateId": _ints([o.last_update_id for o in objs]),
            "bids": [o.bids for o in objs],
            "asks": [o.asks for o in objs],
            "T": _ints([o.T for o in objs]),
            "E": _ints([o.E for o in objs]),
        }
        return _parse_level_fields(batch, c, _Cols(lines, codes, names, f), "bids", "asks")
    codes, names = _codes([o.s for o in objs])
    if c == msg.KLINE:
        bars = [o.k for o in objs]
        f = {"x": _bools([b.x for b in bars]), "t": _ints([b.t for b in bars]), "kT": _ints([b.T for b in bars])}
        f |= {key: _floats([getattr(b, key) for b in bars]) for key in ("o", "h", "l", "c", "v", "q", "V")}
        f["n"] = _ints([b.n for b in bars])
        return _Cols(lines, codes, names, f)
    f = {}
    for key, kind in _STRUCT_FIELDS[c].items():
        values = [getattr(o, key) for o in objs]
        f[key] = values if kind == "raw" else _floats(values) if kind == "float" else _ints(values)
        if kind == "bool":
            f[key] = _bools(values)
    cols = _Cols(lines, codes, names, f)
    return _parse_level_fields(batch, c, cols, "b", "a") if c == msg.DEPTH_UPDATE else cols


def _parse_level_fields(batch: _Batch, c: int, cols: _Cols, bids: str, asks: str) -> _Cols:
    """Raw level lists → ``levels`` + ``<list>_first`` / ``<list>_count`` (the fast path's layout), in
    one numba call; messages with a list that is not [[price, qty], ...] of finite decimals are counted
    malformed and dropped."""
    n = len(cols.lines)
    lists: list[msgspec.Raw] = [cols.f[bids][0]] * (2 * n) if n else []
    lists[0::2] = cols.f.pop(bids)
    lists[1::2] = cols.f.pop(asks)
    joined = b"\x00".join(lists)
    px, qty, counts, ok, slow, first_level = parse_level_lists(np.frombuffer(joined, dtype=np.uint8), 2 * n)
    for lv, col, start, end in slow.tolist():
        value = float(joined[start:end])
        (px if col == 0 else qty)[lv] = value
        if not np.isfinite(value):
            ok[np.searchsorted(first_level, lv, side="right") - 1] = False
    cols.f[f"{bids}_first"], cols.f[f"{bids}_count"] = first_level[0::2], counts[0::2]
    cols.f[f"{asks}_first"], cols.f[f"{asks}_count"] = first_level[1::2], counts[1::2]
    cols.levels = (px, qty)
    good = ok[0::2] & ok[1::2]
    if good.all():
        return cols
    for k in np.flatnonzero(~good).tolist():
        side = 2 * k + int(ok[2 * k])
        raw = bytes(lists[side])
        name = asks if side % 2 else bids
        batch.bad(int(cols.lines[k]), "number", f"{_TYPE_NAMES[c]}: bad level list in {name!r}: {raw[:40]!r}")
    return cols.take(good)


#: Flat columns per class for :func:`_struct_cols`: field → "int" | "float" | "bool" | "raw".
_STRUCT_FIELDS: Final[dict[int, dict[str, str]]] = {
    msg.DEPTH_UPDATE: {"u": "int", "U": "int", "pu": "int", "T": "int", "E": "int", "b": "raw", "a": "raw"},
    msg.BOOK_TICKER: {"u": "int", "b": "float", "B": "float", "a": "float", "A": "float", "T": "int", "E": "int"},
    msg.TRADE: {"t": "int", "p": "float", "q": "float", "m": "bool", "T": "int", "E": "int"},
    msg.AGG_TRADE: {
        "a": "int",
        "f": "int",
        "l": "int",
        "p": "float",
        "q": "float",
        "m": "bool",
        "T": "int",
        "E": "int",
    },
    msg.MARK_PRICE_UPDATE: {"p": "float", "r": "raw", "T": "int", "E": "int"},
}


@dataclass(frozen=True, slots=True)
class _FlatSpec:
    """The fast path's view of one flat Struct, derived from the Struct itself (so they cannot drift):
    per field its key, K_* kind, output slot, integer bounds and literal; plus the required mask."""

    arrays: tuple[Any, ...]  # parse_flat's spec arguments, in order
    int_slots: dict[str, int]
    float_slots: dict[str, int]
    bool_slots: dict[str, int]
    level_slots: dict[str, int]


def _flat_spec(struct: type[msgspec.Struct]) -> _FlatSpec:
    keys: list[bytes] = [msg.TAG_FIELD.encode()]
    kinds, slots, lo, hi, lits = [K_SKIP], [0], [0], [0], [b""]
    int_slots: dict[str, int] = {}
    float_slots: dict[str, int] = {}
    bool_slots: dict[str, int] = {}
    level_slots: dict[str, int] = {}
    int_defaults: list[int] = []
    required = 0
    for fld in msgspec.structs.fields(struct):
        info = msgspec.inspect.type_info(fld.type)
        if isinstance(info, msgspec.inspect.UnionType):  # Literal[...] | None: optional literal
            info = next(t for t in info.types if not isinstance(t, msgspec.inspect.NoneType))
        keys.append(fld.encode_name.encode())
        lit = b""
        if isinstance(info, msgspec.inspect.IntType):
            kind, slot = K_INT, len(int_slots)
            int_slots[fld.name] = slot
            int_defaults.append(0 if fld.required else int(fld.default))
            low = info.ge if info.ge is not None else -_INT64_MAX - 1
            high = info.le if info.le is not None else _INT64_MAX
        elif isinstance(info, msgspec.inspect.FloatType):
            kind, slot, low, high = K_FLOAT, len(float_slots), 0, 0
            float_slots[fld.name] = slot
        elif isinstance(info, msgspec.inspect.BoolType):
            kind, slot, low, high = K_BOOL, len(bool_slots), 0, 0
            bool_slots[fld.name] = slot
        elif isinstance(info, msgspec.inspect.StrType) and fld.name == "s":
            kind, slot, low, high = K_SYM, 0, 0, 0
        elif isinstance(info, msgspec.inspect.LiteralType) and len(info.values) == 1:
            kind, slot, low, high, lit = K_LIT, 0, 0, 0, str(info.values[0]).encode()
        elif isinstance(info, msgspec.inspect.RawType):  # a level list: the only raw field of these Structs
            kind, slot, low, high = K_LEVELS, len(level_slots), 0, 0
            level_slots[fld.name] = slot
        else:
            raise TypeError(f"{struct.__name__}.{fld.name}: {info} is not a flat field")
        if fld.required:
            required |= 1 << len(kinds)
        kinds.append(kind)
        slots.append(slot)
        lo.append(low)
        hi.append(high)
        lits.append(lit)
    key_tok, key_off = _token_table(tuple(keys))
    key1 = np.full(128, -1, dtype=np.int64)
    for k, key in enumerate(keys):
        if len(key) == 1 and key[0] < 128:
            key1[key[0]] = k
    lit_tok, lit_off = _token_table(tuple(lits))
    arrays = (
        key_tok,
        key_off,
        key1,
        np.array(kinds, dtype=np.int64),
        np.array(slots, dtype=np.int64),
        np.array(lo, dtype=np.int64),
        np.array(hi, dtype=np.int64),
        lit_tok,
        lit_off,
        np.array([required], dtype=np.int64),
        np.array(int_defaults, dtype=np.int64),
        len(float_slots),
        len(bool_slots),
        len(level_slots),
    )
    return _FlatSpec(arrays, int_slots, float_slots, bool_slots, level_slots)


#: Classes read by the fast path (flat objects of scalars, plus level lists for depth diffs).
_FLAT_SPECS: Final = {
    c: _flat_spec(msg.PAYLOAD_TYPES[c]) for c in (msg.DEPTH_UPDATE, msg.BOOK_TICKER, msg.TRADE, msg.AGG_TRADE)
}


def _flat_cols(
    c: int, buf: npt.NDArray[np.uint8], starts: I64, ends: I64, lines: I64
) -> tuple[_Cols | None, npt.NDArray[np.bool_]]:
    """Run the fast path over class-c lines; returns the columns of the lines it read and its ok mask."""
    spec = _FLAT_SPECS[c]
    ok, ints, floats, bools, sym_s, sym_e, px, qty, first, count = parse_flat(buf, starts, ends, lines, *spec.arrays)
    if not ok.any():
        return None, ok
    if not ok.all():
        rows = (lines, ints, floats, bools, sym_s, sym_e, first, count)
        lines, ints, floats, bools, sym_s, sym_e, first, count = (a[ok] for a in rows)
    codes, firsts = intern_spans(buf, sym_s, sym_e)
    names = [bytes(buf[sym_s[k] : sym_e[k]]).decode("ascii") for k in firsts.tolist()]
    f: dict[str, Any] = {key: ints[:, slot] for key, slot in spec.int_slots.items()}
    f |= {key: floats[:, slot] for key, slot in spec.float_slots.items()}
    f |= {key: bools[:, slot] for key, slot in spec.bool_slots.items()}
    for key, slot in spec.level_slots.items():
        f[f"{key}_first"], f[f"{key}_count"] = first[:, slot], count[:, slot]
    return _Cols(lines, codes, names, f, (px, qty) if spec.level_slots else None), ok


def _raw_numbers(raws: list[msgspec.Raw]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Parse a column of optional raw JSON numbers (``""`` or absent → NaN); returns values and a
    per-value ok mask. One kernel call per column; SLOW values go through ``float``."""
    joined = b"\x00".join(raws)
    vals, status, start, end = parse_values(np.frombuffer(joined, dtype=np.uint8), len(raws))
    for k in np.flatnonzero(status == NUM_SLOW).tolist():
        vals[k] = float(joined[start[k] : end[k]])
        status[k] = NUM_OK
    empty = status == NUM_EMPTY
    vals[empty] = np.nan
    return vals, ((status == NUM_OK) & np.isfinite(vals)) | empty


def _reject(batch: _Batch, c: int, cols: _Cols, checks: dict[str, npt.NDArray[np.bool_]]) -> _Cols:
    """Drop (and count as malformed) the messages whose value fails a check, e.g. a non-finite price
    (msgspec accepts "NaN" and "inf" strings into floats). ``checks`` maps a field to its ok mask."""
    good = np.logical_and.reduce(list(checks.values())) if checks else None
    if good is None or good.all():
        return cols
    for k in np.flatnonzero(~good).tolist():
        name = next(key for key, ok in checks.items() if not ok[k])
        value = cols.f[name][k]
        shown = bytes(value)[:40] if isinstance(value, msgspec.Raw) else value
        batch.bad(int(cols.lines[k]), "number", f"{_TYPE_NAMES[c]}: bad number in {name!r}: {shown!r}")
    return cols.take(good)


def _finite(cols: _Cols, *keys: str) -> dict[str, npt.NDArray[np.bool_]]:
    return {key: np.isfinite(cols.f[key]) for key in keys}


def _exchange_ts(primary: I64, secondary: I64 | None, ingest: I64) -> I64:
    """Venue time in ns: ``primary`` (ms) where sent, else ``secondary``, else the ingest time (spot
    bookTicker and spot snapshots carry no time at all)."""
    ms = primary if secondary is None else np.where(primary > 0, primary, secondary)
    return np.where(ms > 0, ms * _MS, ingest)


def _full(n: int, value: int, dtype: type[np.generic] = np.int64) -> Any:
    return np.full(n, value, dtype=dtype)


def _rows_plan(lines: I64, *columns: Any) -> _Plan:
    """One event per message, from per-message columns in EVENT_DTYPE field order."""
    cols = tuple(np.ascontiguousarray(c) for c in columns)
    return _Plan(lines, np.ones(len(lines), dtype=np.int64), lambda out, at: fill_rows(out, at, *cols))


def _bbo_plan(batch: _Batch, cols: _Cols) -> _Plan:
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

    return _Plan(cols.lines, _full(n, 2), fill)


def _trade_plan(batch: _Batch, cols: _Cols, *, agg: bool) -> _Plan:
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


def _mark_plan(batch: _Batch, cols: _Cols) -> _Plan:
    """markPriceUpdate → MARK: px = mark price, qty = funding rate (NaN when empty, as on COIN-M delivery
    contracts), seq = next funding time (ms). exchange_ts = E: this message's T is not a trade time."""
    rate, rate_ok = _raw_numbers(cols.f["r"])
    cols.f["rate"] = rate
    cols = _reject(batch, msg.MARK_PRICE_UPDATE, cols, {**_finite(cols, "p"), "r": rate_ok})
    f, n = cols.f, len(cols.lines)
    ingest = batch.ingest[cols.lines]
    exch = _exchange_ts(f["E"], None, ingest)
    kind, zero, prev = _full(n, MARK, np.uint32), _full(n, 0), _full(n, -1)
    return _rows_plan(cols.lines, kind, batch.symbol_ids(cols), exch, ingest, f["p"], f["rate"], f["T"], zero, prev)


def _liquidation_plan(batch: _Batch, cols: _Cols) -> _Plan:
    """forceOrder → LIQUIDATION: px = average fill price ``ap``, qty = filled quantity ``z``, flag = the
    liquidation order's side, exchange_ts = the order's trade time ``o.T``."""
    cols = _reject(batch, msg.FORCE_ORDER, cols, _finite(cols, "ap", "z"))
    f, n = cols.f, len(cols.lines)
    kind = np.where(f["buy"], LIQUIDATION | BUY, LIQUIDATION | SELL).astype(np.uint32)
    ingest = batch.ingest[cols.lines]
    exch = _exchange_ts(f["T"], f["E"], ingest)
    zero, prev = _full(n, 0), _full(n, -1)
    return _rows_plan(cols.lines, kind, batch.symbol_ids(cols), exch, ingest, f["ap"], f["z"], zero, zero, prev)


def _levels_plan(
    batch: _Batch, cols: _Cols, bids: str, asks: str, *, kind: int, seq: I64, first: I64, prev: I64
) -> _Plan:
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

    return _Plan(lines, np.maximum(n_bids + n_asks, 1), fill)


def _depth_plan(batch: _Batch, cols: _Cols) -> _Plan:
    """depthUpdate → DEPTH levels; seq = u, first_seq = U, prev_seq = pu (−1 on spot)."""
    f = cols.f
    return _levels_plan(batch, cols, "b", "a", kind=DEPTH, seq=f["u"], first=f["U"], prev=f["pu"])


def _snapshot_plan(batch: _Batch, cols: _Cols) -> _Plan:
    """REST snapshot → SNAPSHOT levels; seq = first_seq = lastUpdateId, prev_seq = −1. Spot snapshots
    carry no time, so their exchange_ts is the ingest time."""
    last_id = cols.f["lastUpdateId"]
    prev = _full(len(cols.lines), -1)
    return _levels_plan(batch, cols, "bids", "asks", kind=SNAPSHOT, seq=last_id, first=last_id, prev=prev)


def _kline_rows(batch: _Batch, cols: _Cols) -> tuple[I64, EventArray, int]:
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


# --- the batch ---------------------------------------------------------------------------------------


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
        _STREAM_TOK,
        _STREAM_OFF,
        _STREAM_PREFIX_OK,
        _EVENT_TOK,
        _EVENT_OFF,
        msg.DEPTH_SNAPSHOT,
        msg.BOOK_TICKER,
    )
    batch = _Batch(symbols, venue, ts if ingest is None else ingest, first_line)
    for k in np.flatnonzero(status != LINE_OK).tolist():
        cause, reason = _LINE_REASONS[int(status[k])]
        batch.bad(k, cause, reason)

    parts: dict[int, list[_Cols]] = {}
    routed = np.flatnonzero(cls)
    to_msgspec = routed
    if fast_path:
        done = np.zeros(n, dtype=np.bool_)
        routed_cls = cls[routed]
        for c in _FLAT_SPECS:
            lines = routed[routed_cls == c]
            if len(lines):
                cols, ok = _flat_cols(c, buf, js, je, lines)
                if cols is not None:
                    parts.setdefault(c, []).append(cols)
                    done[lines[ok]] = True
        to_msgspec = routed[~done[routed]]

    objs, decoded_lines = _decode_structs(batch, buf, js, je, to_msgspec, cls)
    by_class: dict[int, tuple[list[Any], I64]] = {}
    decoded_cls = cls[decoded_lines]
    for c in np.unique(decoded_cls).tolist():
        positions = np.flatnonzero(decoded_cls == c)
        picked = objs if len(positions) == len(objs) else [objs[k] for k in positions.tolist()]
        by_class[c] = (picked, decoded_lines[positions])

    # lines the byte router could not place: probe, then decode with the class's own Struct
    slow: dict[int, tuple[list[Any], list[int]]] = {}
    for k in np.flatnonzero((status == LINE_OK) & (cls == 0)).tolist():
        routed_slow = _probe(batch, k, bytes(blob[js[k] : je[k]]))
        if routed_slow is None:
            continue
        c, payload = routed_slow
        try:
            obj = _DECODERS[c].decode(payload)
        except msgspec.ValidationError as exc:
            batch.bad(k, _cause(exc), f"{_TYPE_NAMES[c]}: {exc}")
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
        parts.setdefault(c, []).append(_struct_cols(batch, c, c_objs, c_lines, ""))
    if snapshots is not None:  # a snapshot names no symbol: the caller's, or the batch's only one
        names = {name for c_parts in parts.values() for part in c_parts for name in part.names}
        name = snapshot_symbol if snapshot_symbol is not None else (names.pop() if len(names) == 1 else None)
        if name is None:
            for k in snapshots[1].tolist():
                batch.bad(k, "symbol", "depth snapshot names no symbol and the batch has no single symbol")
        else:
            parts[msg.DEPTH_SNAPSHOT] = [_struct_cols(batch, msg.DEPTH_SNAPSHOT, *snapshots, name)]
    merged = {c: _Cols.concat(c_parts) for c, c_parts in sorted(parts.items())}
    for cols in merged.values():
        batch.see_symbols(cols)
    batch.intern_seen()

    plans: list[_Plan] = []
    kline_parts: list[tuple[I64, EventArray]] = []
    by_type: dict[str, int] = {}
    for c, cols in merged.items():
        if c == msg.KLINE:
            k_lines, rows, rejected = _kline_rows(batch, cols)
            kline_parts.append((k_lines, rows))
            by_type[_TYPE_NAMES[c]] = len(cols.lines) - rejected
            continue
        plan = _PLANNERS[c](batch, cols)
        plans.append(plan)
        by_type[_TYPE_NAMES[c]] = len(plan.lines)

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


_PLANNERS: Final[dict[int, Callable[[_Batch, _Cols], _Plan]]] = {
    msg.DEPTH_UPDATE: _depth_plan,
    msg.BOOK_TICKER: _bbo_plan,
    msg.TRADE: lambda batch, cols: _trade_plan(batch, cols, agg=False),
    msg.AGG_TRADE: lambda batch, cols: _trade_plan(batch, cols, agg=True),
    msg.MARK_PRICE_UPDATE: _mark_plan,
    msg.FORCE_ORDER: _liquidation_plan,
    msg.DEPTH_SNAPSHOT: _snapshot_plan,
}


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
