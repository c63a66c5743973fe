"""The flat-object fast path: bookTicker / trade / aggTrade (and depth diffs) read straight into columns.

These are flat objects of scalars (depth diffs add two level lists), and they are most of every capture.
For them ``parse_flat`` (numba) reads the line ``route`` rewrote directly into slot arrays: no Python
object per message. It accepts only a strict subset of JSON (plain ASCII strings without escapes, strict
JSON numbers, no nesting, no duplicate keys) and values that satisfy the Struct's types and bounds
exactly; anything else — unusual but maybe valid, or invalid — is left to msgspec, which then decodes it
or reports why it cannot. So the fast path decides nothing msgspec would decide differently (tests check
this differentially). Its field table is derived from the msgspec Structs themselves (:func:`_flat_spec`),
so the two cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import msgspec
import numpy as np
import numpy.typing as npt
from numba import njit

from . import messages as msg
from .columns import I64, Cols
from .scan import (
    BACKSLASH,
    COMMA,
    INT64_MAX,
    LBRACE,
    LBRACKET,
    MANT_MAX,
    POW10,
    QUOTE,
    RBRACE,
    RBRACKET,
    expect,
    intern_spans,
    matches,
    read_exponent,
    same_bytes,
    skip_ws,
    token_table,
)

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
        if c == QUOTE:
            return q
        if c == BACKSLASH or c < 32 or c >= 128:
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
    if q < end and (buf[q] == 101 or buf[q] == 69):  # 'e' / 'E'
        is_int = False
        q, shift, ok = read_exponent(buf, q + 1, end)
        if not ok:
            return -1, False, 0, 0.0, False
        scale += shift
    if digits > 18 or mant > MANT_MAX or scale > 22 or scale < -22:
        return q, is_int, 0, 0.0, False
    if mant == 0:
        value = 0.0
    elif scale >= 0:
        value = mant / POW10[scale]
    else:
        value = mant * POW10[-scale]
    if neg:
        return q, is_int, -mant, -value, True
    return q, is_int, mant, value, True


@njit(cache=True, inline="always")
def _strict_decimal(buf: np.ndarray, p: int, end: int) -> tuple[float, int]:
    """An exact decimal at p, bare or in a plain string: (value, end), or (0, −1) to decline."""
    if p < end and buf[p] == QUOTE:
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
    p = skip_ws(buf, p + 1, end)
    if p < end and buf[p] == RBRACKET:
        return p + 1, n
    while True:
        if p >= end or buf[p] != LBRACKET or n >= px.shape[0]:
            return -1, n
        v1, p = _strict_decimal(buf, skip_ws(buf, p + 1, end), end)
        if p >= 0:
            p = expect(buf, p, end, COMMA)
        if p < 0:
            return -1, n
        v2, p = _strict_decimal(buf, p, end)
        if p >= 0:
            p = expect(buf, p, end, RBRACKET)
        if p < 0:
            return -1, n
        px[n] = v1
        qty[n] = v2
        n += 1
        if p < end and buf[p] == COMMA:
            p = skip_ws(buf, p + 1, end)
            continue
        if p < end and buf[p] == RBRACKET:
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
        p = skip_ws(buf, starts[i], end)
        if p >= end or buf[p] != LBRACE:
            continue
        p = skip_ws(buf, p + 1, end)
        seen = np.int64(0)
        good = False
        if p < end and buf[p] == RBRACE:
            p += 1
            good = True
        while not good:
            # key
            if p >= end or buf[p] != QUOTE:
                break
            kq = _plain_string_end(buf, p, end)
            if kq < 0:
                break
            k0 = p + 1
            klen = kq - k0
            p = expect(buf, kq + 1, end, 58)  # ':'
            if p < 0:
                break
            f = -1
            if klen == 1:  # Binance's keys are mostly one letter: a table lookup
                f = key1[buf[k0]] if buf[k0] < 128 else -1
            for k in range(n_fields if klen != 1 else 0):
                a = key_off[k]
                if key_off[k + 1] - a == klen and same_bytes(buf, k0, key_tok, a, klen):
                    f = k
                    break
            # value
            if p >= end:
                break
            c = buf[p]
            if f >= 0 and kinds[f] == K_LEVELS:
                bit = np.int64(1) << f
                if seen & bit or c != LBRACKET:
                    break
                seen |= bit
                first = n_lv
                p, n_lv = _strict_levels(buf, p, end, lv_px, lv_qty, n_lv)
                if p < 0:
                    break
                lv_first[r, slots[f]] = first
                lv_count[r, slots[f]] = n_lv - first
                p = skip_ws(buf, p, end)
                if p < end and buf[p] == COMMA:
                    p = skip_ws(buf, p + 1, end)
                    continue
                if p < end and buf[p] == RBRACE:
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
            if c == QUOTE:
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
            elif c == 116 and matches(buf, p, end, _TRUE):
                vtype = _V_TRUE
                p += 4
            elif c == 102 and matches(buf, p, end, _FALSE):
                vtype = _V_FALSE
                p += 5
            elif c == 110 and matches(buf, p, end, _NULL):
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
                    if not same_bytes(buf, v0, lit_tok, a, v1 - v0):
                        break
            p = skip_ws(buf, p, end)
            if p < end and buf[p] == COMMA:
                p = skip_ws(buf, p + 1, end)
                continue
            if p < end and buf[p] == RBRACE:
                p += 1
                good = True
            break
        if good and skip_ws(buf, p, end) == end and (seen & required[0]) == required[0]:
            ok[r] = True
        else:
            n_lv = row_lv
    return ok, ints, floats, bools, sym_s, sym_e, lv_px[:n_lv], lv_qty[:n_lv], lv_first, lv_count


# --- the field table, derived from the Structs, and the columns it yields ----------------------------


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
            low = info.ge if info.ge is not None else -INT64_MAX - 1
            high = info.le if info.le is not None else INT64_MAX
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
    key_tok, key_off = token_table(tuple(keys))
    key1 = np.full(128, -1, dtype=np.int64)
    for k, key in enumerate(keys):
        if len(key) == 1 and key[0] < 128:
            key1[key[0]] = k
    lit_tok, lit_off = token_table(tuple(lits))
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
FLAT_SPECS: Final = {
    c: _flat_spec(msg.PAYLOAD_TYPES[c]) for c in (msg.DEPTH_UPDATE, msg.BOOK_TICKER, msg.TRADE, msg.AGG_TRADE)
}


def flat_cols(
    c: int, buf: npt.NDArray[np.uint8], starts: I64, ends: I64, lines: I64
) -> tuple[Cols | None, npt.NDArray[np.bool_]]:
    """Run the fast path over class-c lines; returns the columns of the lines it read and its ok mask."""
    spec = FLAT_SPECS[c]
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
    return Cols(lines, codes, names, f, (px, qty) if spec.level_slots else None), ok
