"""numba byte-level kernels of the decoder: one call per micro-batch, no Python object per message.

- ``route`` parses each capture line's ingest prefix, recognises the payload's layout and class by its
  leading bytes, and rewrites the line in place into one tagged JSON object (see :mod:`.decode`);
- ``parse_values`` / ``parse_level_lists`` read columns of raw JSON numbers and ``[[price, qty], ...]``
  level lists that msgspec left as ``msgspec.Raw``;
- ``intern_spans`` gives equal byte strings equal batch-local codes (symbols), ``gather`` packs lines
  into one compact buffer for ``decode_lines``;
- small inline primitives (whitespace, byte comparison) shared with the flat fast path (:mod:`.flat`).
  numba's on-disk cache of a kernel is keyed on its own file only: after editing a primitive here,
  delete the ``*.nbi`` / ``*.nbc`` caches, or ``parse_flat`` keeps the old code.

Decimal parsing is exact: a value with at most 18 digits whose integer mantissa fits in 2**53 and whose
decimal exponent is at most 22 is one IEEE division (or multiplication) of two exactly representable
doubles, hence correctly rounded, hence bit-identical to ``float(s)`` (Clinger's fast path). Anything
else is flagged NUM_SLOW and converted with ``float`` by the caller; Binance's fixed-point strings
practically never need that.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt
from numba import njit

from . import messages as msg

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

INT64_MAX: Final = 9_223_372_036_854_775_807
MANT_MAX: Final = 1 << 53
POW10 = np.array([10.0**k for k in range(23)], dtype=np.float64)  # all exactly representable

_SPACE: Final = 32
QUOTE: Final = 34
COMMA: Final = 44
LBRACKET: Final = 91
BACKSLASH: Final = 92
RBRACKET: Final = 93
LBRACE: Final = 123
RBRACE: Final = 125
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


# --- inline primitives (also used by the flat fast path) ---------------------------------------------


@njit(cache=True, inline="always")
def _is_ws(c: int) -> bool:
    return c == 32 or c == 9 or c == 10 or c == 13


@njit(cache=True, inline="always")
def skip_ws(buf: np.ndarray, p: int, end: int) -> int:
    while p < end and _is_ws(buf[p]):
        p += 1
    return p


@njit(cache=True, inline="always")
def expect(buf: np.ndarray, p: int, end: int, c: int) -> int:
    """Whitespace, the byte ``c``, whitespace, from p: the position after them, or −1 if ``c`` is not there."""
    p = skip_ws(buf, p, end)
    if p >= end or buf[p] != c:
        return -1
    return skip_ws(buf, p + 1, end)


@njit(cache=True, inline="always")
def same_bytes(a: np.ndarray, i: int, b: np.ndarray, j: int, n: int) -> bool:
    """a[i:i + n] == b[j:j + n] (both ranges in bounds)."""
    for k in range(n):  # noqa: SIM110 (numba: no generator expressions)
        if a[i + k] != b[j + k]:
            return False
    return True


@njit(cache=True, inline="always")
def matches(buf: np.ndarray, p: int, end: int, pat: np.ndarray) -> bool:
    """buf[p:end] starts with pat."""
    m = pat.shape[0]
    return end - p >= m and same_bytes(buf, p, pat, 0, m)


@njit(cache=True, inline="always")
def read_exponent(buf: np.ndarray, p: int, end: int) -> tuple[int, int, bool]:
    """An exponent's optional sign and digits from p (just after the 'e'): (position after, the change
    to a decimal scale, i.e. minus the exponent, ok); ok is False without a digit. The magnitude saturates
    below 10**6: far outside any exact range."""
    eneg = False
    if p < end and (buf[p] == 45 or buf[p] == 43):  # '-' / '+'
        eneg = buf[p] == 45
        p += 1
    ed = 0
    ev = 0
    while p < end and 48 <= buf[p] <= 57:
        if ev < 100_000:
            ev = ev * 10 + (int(buf[p]) - 48)
        ed += 1
        p += 1
    return p, (ev if eneg else -ev), ed > 0


# --- routing -----------------------------------------------------------------------------------------


def token_table(tokens: tuple[bytes, ...]) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """Pack byte tokens into (concatenated bytes, offsets) for :func:`route`; token k → class k + 1."""
    offsets = np.zeros(len(tokens) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(t) for t in tokens])
    return np.frombuffer(b"".join(tokens), dtype=np.uint8), offsets


@njit(cache=True)
def _match_token(buf: np.ndarray, t0: int, t1: int, tok: np.ndarray, off: np.ndarray, prefix_ok: np.ndarray) -> int:
    """Class id (k + 1) of the token equal to buf[t0:t1] (or a prefix of it where prefix_ok[k]); 0 if none."""
    n = t1 - t0
    for k in range(off.shape[0] - 1):
        a = off[k]
        m = off[k + 1] - a
        if m > n or (m < n and not prefix_ok[k]):
            continue
        if same_bytes(buf, t0, tok, a, m):
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
                if v > (INT64_MAX - d) // 10:
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
        if matches(buf, p, e, _ENVELOPE):
            q = p + _ENVELOPE.shape[0]
            ns = q
            while q < e and buf[q] != QUOTE and buf[q] != BACKSLASH:
                q += 1
            ne = q
            d0 = q + _DATA_KEY.shape[0]
            if (
                q < e
                and matches(buf, q, e, _DATA_KEY)
                and d0 < e - 1
                and buf[d0] == LBRACE
                and buf[e - 1] == RBRACE
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
        elif matches(buf, p, e, _EVENT_KEY):
            t0 = p + _EVENT_KEY.shape[0]
            t1 = t0
            while t1 < e and buf[t1] != QUOTE and buf[t1] != BACKSLASH:
                t1 += 1
            if t1 < e and buf[t1] == QUOTE:
                c = _match_token(buf, t0, t1, event_tok, event_off, exact)
                d0 = p
        elif matches(buf, p, e, _SNAPSHOT_KEY):
            c = snapshot_cls
            d0 = p
        elif matches(buf, p, e, _SPOT_TICKER_KEY):
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
        empty = q < e and buf[q] == RBRACE
        w = d0 - tag_len - 1
        for k in range(starts[i], w):
            buf[k] = _SPACE
        for k in range(tag_len):
            buf[w + k] = _TAG[k]
        buf[w + tag_len] = 48 + c
        buf[d0] = _SPACE if empty else COMMA
        if close >= 0:
            buf[close] = _SPACE
        js[i] = w
    return status, ts, cls, js, je


# --- numbers and level lists (the msgspec path's raw columns) ----------------------------------------


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
        p, shift, ok = read_exponent(buf, p + 1, end)
        if not ok:
            return 0.0, NUM_BAD, p
        scale += shift
    if digits > 18 or mant > MANT_MAX:  # the mantissa may have wrapped / is not exact as a double
        return 0.0, NUM_SLOW, p
    if mant == 0:
        value = 0.0
    elif 0 <= scale <= 22:
        value = mant / POW10[scale]
    elif -22 <= scale < 0:
        value = mant * POW10[-scale]
    else:
        return 0.0, NUM_SLOW, p
    return (-value if neg else value), NUM_OK, p


@njit(cache=True, inline="always")
def _value(buf: np.ndarray, p: int, end: int) -> tuple[float, int, int, int, int]:
    """A number or a JSON string holding one. Returns (value, status, after, text start, text end)."""
    if p < end and buf[p] == QUOTE:
        p += 1
        if p < end and buf[p] == QUOTE:
            return 0.0, NUM_EMPTY, p + 1, p, p
        v, st, q = _number(buf, p, end)
        if q >= end or buf[q] != QUOTE:
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
        p = skip_ws(buf, p, end)
        if p < end and buf[p] == LBRACKET:
            p = skip_ws(buf, p + 1, end)
            if p < end and buf[p] == RBRACKET:
                p += 1
                good = True
            else:
                while True:
                    if p >= end or buf[p] != LBRACKET:
                        break
                    v1, s1, p, a1, b1 = _value(buf, skip_ws(buf, p + 1, end), end)
                    q = expect(buf, p, end, COMMA)
                    if s1 == NUM_BAD or s1 == NUM_EMPTY or q < 0:  # noqa: SIM109 (numba)
                        break
                    v2, s2, p, a2, b2 = _value(buf, q, end)
                    q = expect(buf, p, end, RBRACKET)
                    if s2 == NUM_BAD or s2 == NUM_EMPTY or q < 0:  # noqa: SIM109 (numba)
                        break
                    p = q
                    if lv >= cap:
                        break
                    px[lv] = v1
                    qty[lv] = v2
                    if s1 == NUM_SLOW:
                        slow, n_slow = _push_slow(slow, n_slow, lv, 0, a1, b1)
                    if s2 == NUM_SLOW:
                        slow, n_slow = _push_slow(slow, n_slow, lv, 1, a2, b2)
                    lv += 1
                    if p < end and buf[p] == COMMA:
                        p = skip_ws(buf, p + 1, end)
                        continue
                    if p < end and buf[p] == RBRACKET:
                        p += 1
                        good = True
                    break
        p = skip_ws(buf, p, end)
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


# --- symbols and packing -----------------------------------------------------------------------------


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
            if e[f] - s[f] == length and same_bytes(buf, a, buf, s[f], length):
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
            if e[f] - s[f] == length and same_bytes(buf, a, buf, s[f], length):
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
