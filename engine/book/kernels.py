"""Numba kernels of the L2 book: tick-indexed levels, Binance snapshot + diff sync, top-of-book emission.

Why one kernel call per micro-batch: the book is the first consumer of every depth event, and the budget
(book + features ≥ 5M events/s on one core) leaves no room for per-event Python. Everything the kernels
need across batches lives in a few plain numpy arrays owned by :class:`~tradeplane.engine.book.sync.BookSet`
(per-symbol int64 state rows, the level windows, a pre-snapshot buffer), so a batch boundary can fall
anywhere, even inside a message, and the result is the same as one big batch.

Storage: per symbol, one window of ``width`` integer price ticks starting at tick ``ST_BASE``, with a
quantity array per side (0 = no level) and the index of each side's best level. Why tick-indexed and not
sorted arrays: Binance diffs touch levels all through the book (on the USD-M capture the median change is
~220 levels from the touch), so a sorted array pays a shift of hundreds of elements per insert or delete;
here every change is O(1) and only deleting the best level scans (to the next level, usually a few ticks).
Ticks also make level identity exact: no float equality. Prices come back as ``tick / inv_tick``, which
for a decimal tick (``inv_tick`` an integer power of ten) is the correctly rounded decimal — the same double
the decoder parsed from the exchange's string.

The window follows the market: after each message it is re-centred when the mid has drifted a quarter of
the width from the centre, and at once if a level arrives beyond the window on the touch side (a bid above
it or an ask below it). Levels beyond the window on the deep side are dropped and counted: like the REST
snapshot's 1000-level cut-off, the book is exact only within the range it holds.

Kernels never raise: they return status codes (``OK`` / ``ERR_*``) and the Python edge raises.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numba import njit

from ..events import ASK, BID, DEGRADED, DEPTH, KIND_MASK, LAST_IN_MSG, SNAPSHOT

# --- per-symbol sync state -------------------------------------------------------------------------------------
WAIT_SNAPSHOT: Final = 0  #: no valid book: diffs are buffered until a REST snapshot arrives
WAIT_FIRST_DIFF: Final = 1  #: snapshot applied (book valid at lastUpdateId); waiting for the first applicable diff
SYNCED: Final = 2  #: diffs chain; every applied message leaves an exact book

# --- why a book is not synced (``ST_REASON``) ------------------------------------------------------------------
REASON_NONE: Final = 0
REASON_NO_SNAPSHOT: Final = 1  #: no snapshot received yet
REASON_GAP: Final = 2  #: a diff did not chain to the previous one
REASON_SNAPSHOT_TOO_OLD: Final = 3  #: the first diff after the snapshot starts after lastUpdateId(+1)
REASON_TRUNCATED: Final = 4  #: a message ended without LAST_IN_MSG (decoder or transport fault)
REASON_OFF_TICK: Final = 5  #: a price was not on the symbol's tick grid (tick configured or inferred too coarse)

# --- gap kinds (``reason`` column of gap records) --------------------------------------------------------------
GAP_CHAIN: Final = 1  #: futures pu != previous u, or spot U != previous u + 1
GAP_SNAPSHOT_TOO_OLD: Final = 2  #: first diff after a snapshot has U > lastUpdateId (futures) / lastUpdateId+1 (spot)
GAP_TRUNCATED: Final = 3  #: a new message started before the previous one's LAST_IN_MSG

# --- resync request reasons -----------------------------------------------------------------------------------
RESYNC_NO_SNAPSHOT: Final = 1  #: first diff of a symbol that has no book yet
RESYNC_GAP: Final = 2  #: the book broke (see the gap record)
RESYNC_BUFFER_OVERFLOW: Final = 3  #: the pre-snapshot buffer filled; the pending snapshot would be too old
RESYNC_OFF_TICK: Final = 4  #: a price off the tick grid; the tick was refined (if inferred) and the book dropped
RESYNC_GAP_RATIO: Final = 5  #: quality monitor: gap ratio over the window above threshold

# --- per-symbol state columns (int64 matrix ``st[symbol, column]``) -------------------------------------------
ST_STATE: Final = 0
ST_LID: Final = 1  #: lastUpdateId of the snapshot in use
ST_LAST_U: Final = 2  #: u of the last applied diff (== LID right after a snapshot)
ST_IN_MSG: Final = 3  #: 1 while a message's events are being consumed (messages may span batches)
ST_ACTION: Final = 4  #: what to do with the current message's events (``A_*``)
ST_MSG_SEQ: Final = 5
ST_MSG_KIND: Final = 6
ST_MSG_DEGRADED: Final = 7  #: any event of the current message carried DEGRADED
ST_MSG_STREAM: Final = 8  #: stream index of the current message's first event
ST_BUF_LEN: Final = 9  #: buffered events
ST_REASON: Final = 10
ST_RESYNC_PENDING: Final = 11  #: a resync request is outstanding (cleared by the next snapshot)
ST_MSG_BUF_START: Final = 12  #: buffer length when the current message started (rollback point)
ST_BASE: Final = 13  #: tick at window index 0
ST_BB: Final = 14  #: window index of the best bid (−1: no bids)
ST_BA: Final = 15  #: window index of the best ask (width: no asks)
ST_NB: Final = 16  #: bid levels held
ST_NA: Final = 17  #: ask levels held
ST_DECIMALS: Final = 18  #: decimals of the inferred tick (−1: not inferred yet)
ST_TICK_FIXED: Final = 19  #: 1 when the tick size came from configuration (never re-inferred)
ST_EPOCH: Final = 20  #: the last batch (numbered by the caller) that touched the symbol
N_ST: Final = 21

# --- actions for the events of the current message -------------------------------------------------------------
A_NONE: Final = 0
A_APPLY: Final = 1  #: apply levels, then the book is synced at this message's u
A_STALE: Final = 2  #: drop (u older than the book)
A_BUFFER: Final = 3  #: copy into the pre-snapshot buffer
A_DISCARD: Final = 4  #: drop the rest of a message (buffer overflow, off-tick price)
A_SNAPSHOT: Final = 5  #: book cleared at the first event; levels applied; sync logic at the last event
A_REPLACE: Final = 6  #: snapshot at exactly the synced book's u: replace levels, stay synced
A_IGNORE: Final = 7  #: snapshot older than the synced book: ignore

# --- per-symbol counters (int64 matrix ``counters[symbol, column]``) ------------------------------------------
C_DIFF_MESSAGES: Final = 0
C_SNAPSHOT_MESSAGES: Final = 1
C_APPLIED: Final = 2
C_BUFFERED: Final = 3
C_STALE: Final = 4
C_GAPS: Final = 5
C_RESYNC_REQUESTS: Final = 6
C_SNAPSHOTS_APPLIED: Final = 7
C_SNAPSHOTS_IGNORED: Final = 8
C_CROSSED: Final = 9
C_OVERFLOWS: Final = 10
C_LEVELS_DROPPED: Final = 11
C_RECENTERS: Final = 12
C_MALFORMED: Final = 13
C_OFF_TICK: Final = 14
C_TOPS: Final = 15
C_UNSYNCED_TOPS: Final = 16
C_DEGRADED_TOPS: Final = 17
N_COUNTERS: Final = 18

#: Counter names in column order (the Python edge turns rows into dicts with these keys).
COUNTER_NAMES: Final = (
    "diff_messages",  # diff messages started
    "snapshot_messages",  # snapshot messages started
    "applied",  # diff messages applied to a valid book (live or replayed from the buffer)
    "buffered",  # diff messages buffered while waiting for a snapshot
    "stale",  # diff messages dropped as older than the book
    "gaps",  # gap records emitted
    "resync_requests",  # resync requests emitted
    "snapshots_applied",
    "snapshots_ignored",  # snapshots older than a synced book
    "crossed",  # tops emitted with best bid >= best ask
    "overflows",  # pre-snapshot buffer overflows
    "levels_dropped",  # levels beyond the window's deep side (never stored)
    "recenters",  # window moves
    "malformed",  # messages that ended without LAST_IN_MSG
    "off_tick",  # prices off the tick grid
    "tops",
    "unsynced_tops",
    "degraded_tops",
)
assert len(COUNTER_NAMES) == N_COUNTERS

# --- gap / resync output columns (int64 matrices, turned into structured arrays by the caller) --------------
G_EVENT, G_STREAM, G_SYMBOL, G_REASON, G_EXPECTED, G_GOT, G_SEQ, G_ETS, N_G = 0, 1, 2, 3, 4, 5, 6, 7, 8
R_SYMBOL, R_EVENT, R_STREAM, R_REASON, N_R = 0, 1, 2, 3, 4

# --- buffer columns (int64 part; the float part is px, qty) -------------------------------------------------
B_KIND, B_SEQ, B_FIRST, B_PREV, B_STREAM, B_ETS, N_B = 0, 1, 2, 3, 4, 5, 6

# --- diff decisions ---------------------------------------------------------------------------------------------
D_APPLY: Final = 1
D_STALE: Final = 2
D_GAP_CHAIN: Final = 3
D_GAP_TOO_OLD: Final = 4

# --- status codes -----------------------------------------------------------------------------------------------
OK: Final = 0
ERR_TOPS_FULL: Final = 1
ERR_GAPS_FULL: Final = 2
ERR_RESYNC_FULL: Final = 3

#: Most decimals a tick is inferred with (Binance prices have at most 8).
MAX_DECIMALS: Final = 8


@njit(cache=True)
def prescan(events: np.ndarray) -> tuple[int, int]:
    """(book messages ending in this batch, highest symbol id of a book event, −1 if none).

    Sizes the outputs exactly before any state changes, so ``apply_batch`` never runs out of room.
    """
    n_last = 0
    max_sym = -1
    for i in range(events.shape[0]):
        k = events[i]["kind"]
        t = k & KIND_MASK
        if t in (DEPTH, SNAPSHOT):
            if k & LAST_IN_MSG:
                n_last += 1
            s = int(events[i]["symbol"])
            if s > max_sym:
                max_sym = s
    return n_last, max_sym


@njit(cache=True)
def decimals(px: float) -> int:
    """Fewest decimals that write ``px`` exactly (up to MAX_DECIMALS): the finest tick it implies."""
    scale = 1.0
    for k in range(MAX_DECIMALS + 1):
        x = px * scale
        if abs(x - np.floor(x + 0.5)) <= 1e-6 + abs(x) * 1e-15:
            return k
        scale *= 10.0
    return MAX_DECIMALS


@njit(cache=True, inline="always")
def diff_decision(state: int, lid: int, last_u: int, u: int, first: int, pu: int) -> tuple[int, int, int]:
    """Binance's rules for one diff message given the book's state → (``D_*``, expected id, got id).

    Futures (``pu >= 0``) chain by ``pu == previous u``; spot by ``U == previous u + 1``. After a snapshot the
    first applicable diff is the one with ``U <= t <= u`` where ``t = lastUpdateId`` (futures) or
    ``lastUpdateId + 1`` (spot); diffs with ``u < t`` are stale. A futures diff whose ``pu`` equals
    lastUpdateId also qualifies: it continues exactly from the snapshot's state (a snapshot taken on a
    message boundary), which the ``U <= t`` form alone would reject. Once synced, a diff with
    ``u <= previous u`` is a duplicate and dropped; a break in the order shows up as a chain gap.
    """
    fut = pu >= 0
    if state == SYNCED:
        if u <= last_u:
            return D_STALE, 0, 0
        if fut:
            if pu == last_u:
                return D_APPLY, 0, 0
            return D_GAP_CHAIN, last_u, pu
        if first == last_u + 1:
            return D_APPLY, 0, 0
        return D_GAP_CHAIN, last_u + 1, first
    t = lid if fut else lid + 1
    if u < t:
        return D_STALE, 0, 0
    if first <= t or (fut and pu == lid):
        return D_APPLY, 0, 0
    return D_GAP_TOO_OLD, t, first


# --- the level window ------------------------------------------------------------------------------------------


@njit(cache=True)
def clear_book(bq: np.ndarray, aq: np.ndarray, st: np.ndarray, s: int, width: int) -> None:
    """Remove every level (touches memory only if the book held any)."""
    base = s * width
    if st[s, ST_NB] > 0:
        bq[base : base + width] = 0.0
    if st[s, ST_NA] > 0:
        aq[base : base + width] = 0.0
    st[s, ST_NB] = 0
    st[s, ST_NA] = 0
    st[s, ST_BB] = -1
    st[s, ST_BA] = width


@njit(cache=True)
def shift_side(q: np.ndarray, base: int, shift: int, width: int) -> int:
    """Move one side's quantities by ``shift`` slots (new index = old − shift); returns levels that fell out."""
    dropped = 0
    if shift >= width or shift <= -width:
        for k in range(width):
            if q[base + k] != 0.0:
                dropped += 1
                q[base + k] = 0.0
    elif shift > 0:
        for k in range(shift):
            if q[base + k] != 0.0:
                dropped += 1
        for k in range(width - shift):
            q[base + k] = q[base + k + shift]
        q[base + width - shift : base + width] = 0.0
    elif shift < 0:
        for k in range(width + shift, width):
            if q[base + k] != 0.0:
                dropped += 1
        for k in range(width - 1, -shift - 1, -1):
            q[base + k] = q[base + k + shift]
        q[base : base - shift] = 0.0
    return dropped


@njit(cache=True)
def recenter(
    bq: np.ndarray, aq: np.ndarray, st: np.ndarray, counters: np.ndarray, s: int, center: int, width: int
) -> None:
    """Move the window so tick ``center`` sits in its middle; levels that fall out are dropped and counted."""
    shift = center - width // 2 - st[s, ST_BASE]
    if shift == 0:
        return
    counters[s, C_RECENTERS] += 1
    base = s * width
    db = shift_side(bq, base, shift, width)
    da = shift_side(aq, base, shift, width)
    counters[s, C_LEVELS_DROPPED] += db + da
    st[s, ST_BASE] += shift
    nb = st[s, ST_NB] - db
    na = st[s, ST_NA] - da
    st[s, ST_NB] = nb
    st[s, ST_NA] = na
    # Bests move with the window; rescan a side whose best fell out (rare: the window moved past the touch).
    bb = st[s, ST_BB] - shift
    if nb == 0:
        bb = -1
    elif not (0 <= bb < width and bq[base + bb] != 0.0):
        bb = width - 1
        while bq[base + bb] == 0.0:
            bb -= 1
    st[s, ST_BB] = bb
    ba = st[s, ST_BA] - shift
    if na == 0:
        ba = width
    elif not (0 <= ba < width and aq[base + ba] != 0.0):
        ba = 0
        while aq[base + ba] == 0.0:
            ba += 1
    st[s, ST_BA] = ba


@njit(cache=True)
def maybe_recenter(bq: np.ndarray, aq: np.ndarray, st: np.ndarray, counters: np.ndarray, s: int, width: int) -> None:
    """After a message: keep the mid within the middle half of the window (so no message can leave it)."""
    nb = st[s, ST_NB]
    na = st[s, ST_NA]
    if nb > 0 and na > 0:
        mid = (st[s, ST_BB] + st[s, ST_BA]) // 2
    elif nb > 0:
        mid = st[s, ST_BB]
    elif na > 0:
        mid = st[s, ST_BA]
    else:
        return
    if mid < width // 4 or mid > width - width // 4:
        recenter(bq, aq, st, counters, s, st[s, ST_BASE] + mid, width)


@njit(cache=True, inline="always")
def set_level(
    bq: np.ndarray,
    aq: np.ndarray,
    st: np.ndarray,
    counters: np.ndarray,
    s: int,
    side: int,
    tick: int,
    q: float,
    width: int,
) -> None:
    """Set one level to ``q`` (``q <= 0`` deletes; deleting a missing level is normal on Binance: a no-op)."""
    if q > 0.0 and st[s, ST_NB] + st[s, ST_NA] == 0:
        st[s, ST_BASE] = tick - width // 2  # an empty book: centre the window on its first level
        st[s, ST_BB] = -1
        st[s, ST_BA] = width
    idx = tick - st[s, ST_BASE]
    base = s * width
    if side == 0:
        if idx >= width:  # above the window: this bid is the new touch, never drop it
            if not q > 0.0:
                return
            recenter(bq, aq, st, counters, s, tick, width)
            idx = tick - st[s, ST_BASE]
        elif idx < 0:  # below the window: deep book
            if q > 0.0:
                counters[s, C_LEVELS_DROPPED] += 1
            return
        old = bq[base + idx]
        if q > 0.0:
            bq[base + idx] = q
            if old == 0.0:
                st[s, ST_NB] += 1
                if idx > st[s, ST_BB]:
                    st[s, ST_BB] = idx
        elif old != 0.0:
            bq[base + idx] = 0.0
            n = st[s, ST_NB] - 1
            st[s, ST_NB] = n
            if idx == st[s, ST_BB]:
                j = -1
                if n > 0:
                    j = idx - 1
                    while bq[base + j] == 0.0:
                        j -= 1
                st[s, ST_BB] = j
    else:
        if idx < 0:  # below the window: this ask is the new touch
            if not q > 0.0:
                return
            recenter(bq, aq, st, counters, s, tick, width)
            idx = tick - st[s, ST_BASE]
        elif idx >= width:
            if q > 0.0:
                counters[s, C_LEVELS_DROPPED] += 1
            return
        old = aq[base + idx]
        if q > 0.0:
            aq[base + idx] = q
            if old == 0.0:
                st[s, ST_NA] += 1
                if idx < st[s, ST_BA]:
                    st[s, ST_BA] = idx
        elif old != 0.0:
            aq[base + idx] = 0.0
            n = st[s, ST_NA] - 1
            st[s, ST_NA] = n
            if idx == st[s, ST_BA]:
                j = width
                if n > 0:
                    j = idx + 1
                    while aq[base + j] == 0.0:
                        j += 1
                st[s, ST_BA] = j


@njit(cache=True, inline="always")
def apply_level(
    kind: int,
    px: float,
    q: float,
    bq: np.ndarray,
    aq: np.ndarray,
    st: np.ndarray,
    counters: np.ndarray,
    s: int,
    inv_tick: float,
    width: int,
) -> bool:
    """One DEPTH/SNAPSHOT level onto the book; False if its price is off the tick grid (nothing applied).

    Events without a side or with a NaN price are no-ops (an empty message's placeholder).
    """
    if kind & BID:
        side = 0
    elif kind & ASK:
        side = 1
    else:
        return True
    if not (px == px and q == q):
        return True
    x = px * inv_tick
    tick = np.floor(x + 0.5)
    if abs(x - tick) > 1e-6 + abs(x) * 1e-15:
        return False
    set_level(bq, aq, st, counters, s, side, int(tick), q, width)
    return True


@njit(cache=True, inline="always")
def is_crossed(st: np.ndarray, s: int) -> bool:
    """Best bid >= best ask (both sides non-empty)."""
    return bool(st[s, ST_NB] > 0 and st[s, ST_NA] > 0 and st[s, ST_BB] >= st[s, ST_BA])


@njit(cache=True)
def write_levels(
    q: np.ndarray,
    base: int,
    start: int,
    step: int,
    n_side: int,
    base_tick: int,
    inv_tick: float,
    out_px: np.ndarray,
    out_qty: np.ndarray,
) -> None:
    """One side's best levels into a top row (scan from the best away from the touch; NaN beyond depth)."""
    levels = out_px.shape[0]
    k = 0
    j = start
    while k < levels and k < n_side:
        v = q[base + j]
        if v != 0.0:
            out_px[k] = (base_tick + j) / inv_tick
            out_qty[k] = v
            k += 1
        j += step
    while k < levels:
        out_px[k] = np.nan
        out_qty[k] = np.nan
        k += 1


@njit(cache=True)
def infer_tick(
    s: int,
    start: int,
    u: int,
    events: np.ndarray,
    st: np.ndarray,
    inv_ticks: np.ndarray,
    buf_f: np.ndarray,
    buf_cap: int,
) -> None:
    """Tick of a symbol without a configured one: the finest decimal any price of its first snapshot (the
    part in this batch: ~2000 levels) or of its buffered diffs needs, never coarser than a previous guess.

    A sample of thousands of levels all ending in 0 is implausible; if it happens, the first finer price is
    off the grid, which refines the tick and resyncs (see ``REASON_OFF_TICK``) instead of merging levels.
    """
    k = max(st[s, ST_DECIMALS], 0)
    for i in range(start, events.shape[0]):
        e = events[i]
        if e["symbol"] != s:
            continue
        kind = e["kind"]
        if (kind & KIND_MASK) != SNAPSHOT or e["seq"] != u:
            break
        p = e["px"]
        if p == p:
            k = max(k, decimals(p))
        if kind & LAST_IN_MSG:
            break
    b0 = s * buf_cap
    for j in range(st[s, ST_BUF_LEN]):
        v = buf_f[b0 + j, 0]
        if v == v:
            k = max(k, decimals(v))
    st[s, ST_DECIMALS] = k
    inv_ticks[s] = 10.0**k


@njit(cache=True)
def refine_tick(s: int, px: float, st: np.ndarray, inv_ticks: np.ndarray) -> None:
    """An off-grid price: an inferred tick becomes fine enough for it (a configured tick stays)."""
    if st[s, ST_TICK_FIXED] == 0:
        k = max(st[s, ST_DECIMALS], decimals(px))
        st[s, ST_DECIMALS] = k
        inv_ticks[s] = 10.0**k


# --- records -------------------------------------------------------------------------------------------------


@njit(cache=True)
def add_gap(
    g: np.ndarray,
    ng: int,
    event_index: int,
    stream: int,
    s: int,
    reason: int,
    expected: int,
    got: int,
    seq: int,
    ets: int,
) -> int:
    """Append a gap record; returns the new count, or −1 when the output is full."""
    if ng < 0 or ng >= g.shape[0]:
        return -1
    g[ng, G_EVENT] = event_index
    g[ng, G_STREAM] = stream
    g[ng, G_SYMBOL] = s
    g[ng, G_REASON] = reason
    g[ng, G_EXPECTED] = expected
    g[ng, G_GOT] = got
    g[ng, G_SEQ] = seq
    g[ng, G_ETS] = ets
    return ng + 1


@njit(cache=True)
def add_resync(
    r: np.ndarray, nr: int, st: np.ndarray, counters: np.ndarray, s: int, event_index: int, stream: int, reason: int
) -> int:
    """Append a resync request and mark it pending; returns the new count, or −1 when the output is full."""
    if nr < 0 or nr >= r.shape[0]:
        return -1
    r[nr, R_SYMBOL] = s
    r[nr, R_EVENT] = event_index
    r[nr, R_STREAM] = stream
    r[nr, R_REASON] = reason
    st[s, ST_RESYNC_PENDING] = 1
    counters[s, C_RESYNC_REQUESTS] += 1
    return nr + 1


@njit(cache=True)
def unsync(bq: np.ndarray, aq: np.ndarray, st: np.ndarray, s: int, reason: int, width: int, keep_buffer: bool) -> None:
    """The book can no longer be trusted: empty it and wait for a snapshot (buffering diffs from now on)."""
    st[s, ST_STATE] = WAIT_SNAPSHOT
    st[s, ST_REASON] = reason
    if not keep_buffer:
        st[s, ST_BUF_LEN] = 0
    clear_book(bq, aq, st, s, width)


# --- replay of the pre-snapshot buffer ---------------------------------------------------------------------------


@njit(cache=True)
def compact_buffer(buf_i: np.ndarray, buf_f: np.ndarray, b0: int, j: int, n: int) -> None:
    """Keep buffered events ``j..n`` of a symbol, moved to the front (they may still serve a later snapshot)."""
    for k in range(n - j):
        for c in range(N_B):
            buf_i[b0 + k, c] = buf_i[b0 + j + k, c]
        buf_f[b0 + k, 0] = buf_f[b0 + j + k, 0]
        buf_f[b0 + k, 1] = buf_f[b0 + j + k, 1]


@njit(cache=True)
def replay_buffer(
    s: int,
    snapshot_event: int,
    stream_base: int,
    st: np.ndarray,
    counters: np.ndarray,
    bq: np.ndarray,
    aq: np.ndarray,
    inv_ticks: np.ndarray,
    width: int,
    buf_i: np.ndarray,
    buf_f: np.ndarray,
    buf_cap: int,
    g: np.ndarray,
    ng: int,
    r: np.ndarray,
    nr: int,
) -> tuple[int, int]:
    """Run the buffered diffs through the post-snapshot rules, message by message (no tops: the snapshot's
    top shows the result). On a gap the book unsyncs again and the buffer keeps the messages from the
    offending one on, so a later snapshot can still use them. Returns (ng, nr); −1 when an output is full.
    """
    n = st[s, ST_BUF_LEN]
    b0 = s * buf_cap
    j = 0
    while j < n:
        e = j
        while e < n - 1 and (buf_i[b0 + e, B_KIND] & LAST_IN_MSG) == 0:
            e += 1
        u = buf_i[b0 + j, B_SEQ]
        code, expected, got = diff_decision(
            st[s, ST_STATE], st[s, ST_LID], st[s, ST_LAST_U], u, buf_i[b0 + j, B_FIRST], buf_i[b0 + j, B_PREV]
        )
        if code == D_APPLY:
            for k in range(j, e + 1):
                px = buf_f[b0 + k, 0]
                kb = buf_i[b0 + k, B_KIND]
                if not apply_level(kb, px, buf_f[b0 + k, 1], bq, aq, st, counters, s, inv_ticks[s], width):
                    counters[s, C_OFF_TICK] += 1
                    refine_tick(s, px, st, inv_ticks)
                    unsync(bq, aq, st, s, REASON_OFF_TICK, width, True)
                    compact_buffer(buf_i, buf_f, b0, j, n)
                    st[s, ST_BUF_LEN] = n - j
                    ev = snapshot_event
                    return ng, add_resync(r, nr, st, counters, s, ev, stream_base + ev, RESYNC_OFF_TICK)
            st[s, ST_LAST_U] = u
            st[s, ST_STATE] = SYNCED
            counters[s, C_APPLIED] += 1
        elif code == D_STALE:
            counters[s, C_STALE] += 1
        else:
            stream = buf_i[b0 + j, B_STREAM]
            ev = stream - stream_base if stream >= stream_base else -1
            gap_reason = GAP_CHAIN if code == D_GAP_CHAIN else GAP_SNAPSHOT_TOO_OLD
            ng = add_gap(g, ng, ev, stream, s, gap_reason, expected, got, u, buf_i[b0 + j, B_ETS])
            counters[s, C_GAPS] += 1
            unsync(bq, aq, st, s, REASON_GAP if code == D_GAP_CHAIN else REASON_SNAPSHOT_TOO_OLD, width, True)
            nr = add_resync(r, nr, st, counters, s, snapshot_event, stream_base + snapshot_event, RESYNC_GAP)
            compact_buffer(buf_i, buf_f, b0, j, n)
            st[s, ST_BUF_LEN] = n - j
            return ng, nr
        j = e + 1
    st[s, ST_BUF_LEN] = 0
    return ng, nr


# --- the batch kernel ------------------------------------------------------------------------------------------


@njit(cache=True)
def apply_batch(
    events: np.ndarray,
    stream_base: int,
    st: np.ndarray,
    counters: np.ndarray,
    batch_counters: np.ndarray,
    epoch: int,
    touched: np.ndarray,
    before: np.ndarray,
    bq: np.ndarray,
    aq: np.ndarray,
    inv_ticks: np.ndarray,
    width: int,
    buf_i: np.ndarray,
    buf_f: np.ndarray,
    buf_cap: int,
    tops: np.ndarray,
    t_index: np.ndarray,
    g: np.ndarray,
    r: np.ndarray,
) -> tuple[int, int, int, int]:
    """Apply one micro-batch of events to the books → (status, tops, gaps, resync requests written).

    Only DEPTH and SNAPSHOT events are read; everything else passes through untouched. Each message is
    judged on its first event (its ids are on every event), its levels are applied as they come, and at its
    LAST_IN_MSG event the book's state is settled and one top is written — so a message is applied whole
    before anything reads the book. ``stream_base`` is the stream position of ``kind[0]`` (events fed to the
    book set before this batch), which locates gaps across batches. ``batch_counters`` receives what this batch
    added to the counters (over all symbols); ``epoch`` (a new number per call), ``touched`` and ``before``
    are scratch space for that, so the cost is per symbol touched, not per symbol known.
    """
    nt = 0
    ng = 0
    nr = 0
    n_touched = 0
    for i in range(events.shape[0]):
        ev = events[i]
        k = ev["kind"]
        typ = k & KIND_MASK
        if typ != DEPTH and typ != SNAPSHOT:
            continue
        s = int(ev["symbol"])
        u = ev["seq"]
        if st[s, ST_EPOCH] != epoch:
            st[s, ST_EPOCH] = epoch
            touched[n_touched] = s
            n_touched += 1
            before[s, :] = counters[s, :]
        if st[s, ST_IN_MSG] == 1 and (st[s, ST_MSG_SEQ] != u or st[s, ST_MSG_KIND] != typ):
            # The previous message never got its LAST_IN_MSG, so part of it is missing.
            counters[s, C_MALFORMED] += 1
            prev_action = st[s, ST_ACTION]
            if prev_action == A_BUFFER:
                # Drop the partial message; the sync rules catch the hole it leaves when the buffer is replayed.
                st[s, ST_BUF_LEN] = st[s, ST_MSG_BUF_START]
            elif prev_action == A_SNAPSHOT and st[s, ST_STATE] == WAIT_SNAPSHOT:
                clear_book(bq, aq, st, s, width)  # a partial snapshot over no book: keep waiting and the buffer
            elif prev_action in (A_APPLY, A_SNAPSHOT, A_REPLACE):
                # A valid book received part of a message: what it looks like now is unknowable.
                ng = add_gap(g, ng, i, stream_base + i, s, GAP_TRUNCATED, st[s, ST_MSG_SEQ], u, u, ev["exchange_ts"])
                counters[s, C_GAPS] += 1
                unsync(bq, aq, st, s, REASON_TRUNCATED, width, False)
                nr = add_resync(r, nr, st, counters, s, i, stream_base + i, RESYNC_GAP)
            st[s, ST_IN_MSG] = 0
        if st[s, ST_IN_MSG] == 0:
            # --- first event of a message: decide what to do with all of it -----------------------------------
            st[s, ST_IN_MSG] = 1
            st[s, ST_MSG_SEQ] = u
            st[s, ST_MSG_KIND] = typ
            st[s, ST_MSG_DEGRADED] = 0
            st[s, ST_MSG_STREAM] = stream_base + i
            state = st[s, ST_STATE]
            if typ == SNAPSHOT:
                counters[s, C_SNAPSHOT_MESSAGES] += 1
                action = A_SNAPSHOT
                if state == SYNCED:
                    if u < st[s, ST_LAST_U]:
                        action = A_IGNORE
                    elif u == st[s, ST_LAST_U]:
                        action = A_REPLACE
                elif state == WAIT_FIRST_DIFF and u < st[s, ST_LID]:
                    action = A_IGNORE
                if action == A_IGNORE:
                    counters[s, C_SNAPSHOTS_IGNORED] += 1
                else:
                    if st[s, ST_TICK_FIXED] == 0 and (st[s, ST_DECIMALS] < 0 or state == WAIT_SNAPSHOT):
                        infer_tick(s, i, u, events, st, inv_ticks, buf_f, buf_cap)
                    clear_book(bq, aq, st, s, width)
            else:
                counters[s, C_DIFF_MESSAGES] += 1
                if state == WAIT_SNAPSHOT:
                    action = A_BUFFER
                    if st[s, ST_RESYNC_PENDING] == 0:
                        why = RESYNC_NO_SNAPSHOT if st[s, ST_REASON] == REASON_NO_SNAPSHOT else RESYNC_GAP
                        nr = add_resync(r, nr, st, counters, s, i, stream_base + i, why)
                else:
                    code, expected, got = diff_decision(
                        state, st[s, ST_LID], st[s, ST_LAST_U], u, ev["first_seq"], ev["prev_seq"]
                    )
                    if code == D_APPLY:
                        action = A_APPLY
                    elif code == D_STALE:
                        action = A_STALE
                        counters[s, C_STALE] += 1
                    else:
                        gap_reason = GAP_CHAIN if code == D_GAP_CHAIN else GAP_SNAPSHOT_TOO_OLD
                        ng = add_gap(g, ng, i, stream_base + i, s, gap_reason, expected, got, u, ev["exchange_ts"])
                        counters[s, C_GAPS] += 1
                        why = REASON_GAP if code == D_GAP_CHAIN else REASON_SNAPSHOT_TOO_OLD
                        unsync(bq, aq, st, s, why, width, False)
                        nr = add_resync(r, nr, st, counters, s, i, stream_base + i, RESYNC_GAP)
                        action = A_BUFFER
                if action == A_BUFFER:
                    counters[s, C_BUFFERED] += 1
                    st[s, ST_MSG_BUF_START] = st[s, ST_BUF_LEN]
            st[s, ST_ACTION] = action
        # --- every event of the message -----------------------------------------------------------------------
        action = st[s, ST_ACTION]
        if k & DEGRADED:
            st[s, ST_MSG_DEGRADED] = 1
        if action in (A_APPLY, A_SNAPSHOT, A_REPLACE):
            if not apply_level(k, ev["px"], ev["qty"], bq, aq, st, counters, s, inv_ticks[s], width):
                counters[s, C_OFF_TICK] += 1
                refine_tick(s, ev["px"], st, inv_ticks)
                if action == A_SNAPSHOT and st[s, ST_STATE] == WAIT_SNAPSHOT:
                    unsync(bq, aq, st, s, REASON_OFF_TICK, width, True)  # keep the buffer for the next snapshot
                else:
                    unsync(bq, aq, st, s, REASON_OFF_TICK, width, False)
                nr = add_resync(r, nr, st, counters, s, i, stream_base + i, RESYNC_OFF_TICK)
                action = A_DISCARD
                st[s, ST_ACTION] = A_DISCARD
        elif action == A_BUFFER:
            n = st[s, ST_BUF_LEN]
            if n >= buf_cap:
                # Older diffs are lost: restart buffering with the next message and ask for a fresh snapshot.
                counters[s, C_OVERFLOWS] += 1
                st[s, ST_BUF_LEN] = 0
                st[s, ST_ACTION] = A_DISCARD
                action = A_DISCARD
                nr = add_resync(r, nr, st, counters, s, i, stream_base + i, RESYNC_BUFFER_OVERFLOW)
            else:
                b = s * buf_cap + n
                buf_i[b, B_KIND] = k
                buf_i[b, B_SEQ] = u
                buf_i[b, B_FIRST] = ev["first_seq"]
                buf_i[b, B_PREV] = ev["prev_seq"]
                buf_i[b, B_STREAM] = st[s, ST_MSG_STREAM]
                buf_i[b, B_ETS] = ev["exchange_ts"]
                buf_f[b, 0] = ev["px"]
                buf_f[b, 1] = ev["qty"]
                st[s, ST_BUF_LEN] = n + 1
        if (k & LAST_IN_MSG) == 0:
            continue
        # --- last event: settle the state, emit the message's top -------------------------------------------------
        st[s, ST_IN_MSG] = 0
        if action == A_APPLY:
            st[s, ST_LAST_U] = u
            st[s, ST_STATE] = SYNCED
            counters[s, C_APPLIED] += 1
        elif action == A_SNAPSHOT:
            st[s, ST_LID] = u
            st[s, ST_LAST_U] = u
            st[s, ST_STATE] = WAIT_FIRST_DIFF
            st[s, ST_REASON] = REASON_NONE
            st[s, ST_RESYNC_PENDING] = 0
            counters[s, C_SNAPSHOTS_APPLIED] += 1
            ng, nr = replay_buffer(
                s, i, stream_base, st, counters, bq, aq, inv_ticks, width, buf_i, buf_f, buf_cap, g, ng, r, nr
            )
        elif action == A_REPLACE:
            st[s, ST_LID] = u
            counters[s, C_SNAPSHOTS_APPLIED] += 1
        elif action in (A_STALE, A_IGNORE):
            continue
        if ng < 0:
            return ERR_GAPS_FULL, nt, ng, nr
        if nr < 0:
            return ERR_RESYNC_FULL, nt, ng, nr
        if nt >= t_index.shape[0]:
            return ERR_TOPS_FULL, nt, ng, nr
        synced = st[s, ST_STATE] != WAIT_SNAPSHOT
        if synced:
            maybe_recenter(bq, aq, st, counters, s, width)
        crossed = synced and is_crossed(st, s)
        degraded = st[s, ST_MSG_DEGRADED] != 0
        top = tops[nt]
        top["symbol"] = s
        top["synced"] = 1 if synced else 0
        top["crossed"] = 1 if crossed else 0
        top["degraded"] = 1 if degraded else 0
        top["exchange_ts"] = ev["exchange_ts"]
        top["ingest_ts"] = ev["ingest_ts"]
        top["seq"] = st[s, ST_LAST_U] if synced else u
        t_index[nt] = i
        if synced:
            base = s * width
            base_tick = st[s, ST_BASE]
            inv = inv_ticks[s]
            write_levels(bq, base, st[s, ST_BB], -1, st[s, ST_NB], base_tick, inv, top["bid_px"], top["bid_qty"])
            write_levels(aq, base, st[s, ST_BA], 1, st[s, ST_NA], base_tick, inv, top["ask_px"], top["ask_qty"])
        else:
            top["bid_px"][:] = np.nan
            top["bid_qty"][:] = np.nan
            top["ask_px"][:] = np.nan
            top["ask_qty"][:] = np.nan
            counters[s, C_UNSYNCED_TOPS] += 1
        if crossed:
            counters[s, C_CROSSED] += 1
        if degraded:
            counters[s, C_DEGRADED_TOPS] += 1
        counters[s, C_TOPS] += 1
        nt += 1
    batch_counters[:] = 0
    for j in range(n_touched):
        s = touched[j]
        for c in range(N_COUNTERS):
            batch_counters[c] += counters[s, c] - before[s, c]
    if ng < 0:
        return ERR_GAPS_FULL, nt, ng, nr
    if nr < 0:
        return ERR_RESYNC_FULL, nt, ng, nr
    return OK, nt, ng, nr
