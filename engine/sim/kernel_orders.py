"""Own orders at the matching engine: arrival (take what crosses, then rest or end), cancels, terminal states,
and OCO groups.

Semantics per order type are in :mod:`.matching` and docs/backtest.md. Why the live list ``active`` keeps
arrival order on removal (a shift, not a swap with the last): passive fills at one price are shared in time
priority by scanning it, so the order of fills stays deterministic and matches the venue's.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..book import kernels as kn
from .depth import level_qty, synced
from .kernel_outputs import fill, report
from .kernel_state import BIG, EPS, K_CANCEL_MISS, K_NACT, K_NUSED, Book, Matcher
from .orders import (
    BUY,
    CANCELED,
    EXPIRED,
    FILLED,
    FOK,
    IOC,
    MARKET,
    OPEN,
    PARTIALLY_FILLED,
    POST_ONLY,
    REASON_BOOK_NOT_SYNCED,
    REASON_FOK_NOT_FILLABLE,
    REASON_NO_LIQUIDITY,
    REASON_OCO_SIBLING,
    REASON_POST_ONLY_WOULD_CROSS,
    REASON_REDUCE_ONLY,
    REASON_USER_CANCEL,
    REDUCE_ONLY,
    REJECTED,
    STOP_MARKET,
)


@njit(cache=True)
def allowed(o: np.void, pos: np.ndarray) -> float:
    """Most this order may still fill: its remainder, clipped for reduce-only to what reduces the position."""
    rem = o["qty"] - o["filled"]
    if o["flags"] & REDUCE_ONLY:
        p = pos[o["symbol"]]
        cap = -p if o["side"] == BUY else p
        if cap < rem:
            rem = cap
    return rem if rem > EPS else 0.0


@njit(cache=True)
def activate(m: Matcher, slot: int) -> None:
    """Append to the live list (the order now rests or waits for its trigger)."""
    n = m.ks[K_NACT]
    m.table.active[n] = slot
    m.ks[K_NACT] = n + 1


@njit(cache=True)
def deactivate(ks: np.ndarray, active: np.ndarray, slot: int) -> None:
    """Remove from the live list, keeping the others' order (fills stay in arrival order: deterministic)."""
    n = ks[K_NACT]
    for j in range(n):
        if active[j] == slot:
            for i in range(j, n - 1):
                active[i] = active[i + 1]
            ks[K_NACT] = n - 1
            return


@njit(cache=True)
def finish(m: Matcher, slot: int, status: int, reason: int, t: int) -> None:
    """A terminal status: free the slot, leave the live list, report."""
    o = m.table.orders[slot]
    o["status"] = status
    o["reason"] = reason
    o["update_ts"] = t
    m.table.used[slot] = 0
    m.ks[K_NUSED] -= 1
    deactivate(m.ks, m.table.active, slot)
    report(m, slot, t)


@njit(cache=True)
def end_siblings(m: Matcher, slot: int, status: int, t: int) -> None:
    """The order in ``slot`` ended its OCO group (a fill, or a user cancel): every other unfinished order with its
    ``oco_id`` ends with ``status`` (EXPIRED after a fill, CANCELED after a cancel) and REASON_OCO_SIBLING,
    including one still in flight (its arrival is then skipped)."""
    orders, used = m.table.orders, m.table.used
    oid = orders[slot]["oco_id"]
    if oid == 0:
        return
    s = orders[slot]["symbol"]
    for j in range(orders.shape[0]):
        if j != slot and used[j] == 1 and orders[j]["oco_id"] == oid and orders[j]["symbol"] == s:
            finish(m, j, status, REASON_OCO_SIBLING, t)


@njit(cache=True)
def walk(m: Matcher, book: Book, slot: int, limit: int, do_fill: bool, t: int, cap: float) -> float:
    """Take liquidity for ``slot`` level by level up to tick ``limit`` (inclusive) and ``cap`` units; with
    ``do_fill`` False only measure what is available (FOK). Fills are at each level's price. The replayed
    book is not depleted by own takes (no market impact)."""
    st, width = book.st, book.width
    o = m.table.orders[slot]
    s = o["symbol"]
    base = s * width
    b0 = st[s, kn.ST_BASE]
    got = 0.0
    if o["side"] == BUY:
        aq = book.aq
        n = st[s, kn.ST_NA]
        j = st[s, kn.ST_BA]
        seen = 0
        while seen < n and j < width and cap - got > EPS:
            v = aq[base + j]
            if v != 0.0:
                seen += 1
                if b0 + j > limit:
                    break
                q = min(v, cap - got)
                if do_fill:
                    fill(m, book.inv, slot, b0 + j, q, 0, t)
                got += q
            j += 1
    else:
        bq = book.bq
        n = st[s, kn.ST_NB]
        j = st[s, kn.ST_BB]
        seen = 0
        while seen < n and j >= 0 and cap - got > EPS:
            v = bq[base + j]
            if v != 0.0:
                seen += 1
                if b0 + j < limit:
                    break
                q = min(v, cap - got)
                if do_fill:
                    fill(m, book.inv, slot, b0 + j, q, 0, t)
                got += q
            j -= 1
    return got


@njit(cache=True)
def close_taker(m: Matcher, slot: int, t: int) -> None:
    """After a take that must not rest (market, IOC, FOK, triggered stop): FILLED, or EXPIRED for the rest."""
    o = m.table.orders[slot]
    if o["qty"] - o["filled"] <= EPS:
        finish(m, slot, FILLED, 0, t)
    else:
        finish(m, slot, EXPIRED, REASON_NO_LIQUIDITY, t)
    if o["filled"] > 0.0:
        end_siblings(m, slot, EXPIRED, t)


@njit(cache=True)
def arrive(m: Matcher, book: Book, slot: int, t: int) -> None:
    """An order reaches the matching engine at exchange time ``t`` and meets the book as it is then."""
    st = book.st
    o = m.table.orders[slot]
    s = o["symbol"]
    o["update_ts"] = t
    typ = o["type"]
    if typ == STOP_MARKET:  # rests untriggered; reduce-only and book checks happen at the trigger
        o["status"] = OPEN
        activate(m, slot)
        report(m, slot, t)
        return
    if not synced(st, s):
        finish(m, slot, REJECTED, REASON_BOOK_NOT_SYNCED, t)
        return
    cap = allowed(o, m.acct.pos)
    if cap <= 0.0:
        finish(m, slot, REJECTED, REASON_REDUCE_ONLY, t)
        return
    if cap < o["qty"] - o["filled"]:
        o["qty"] = o["filled"] + cap  # reduce-only clipped to the position
    buy = o["side"] == BUY
    limit = (BIG if buy else -BIG) if typ == MARKET else o["price_tick"]
    tif = o["tif"]
    if tif == FOK and walk(m, book, slot, limit, False, t, cap) < cap - EPS:
        finish(m, slot, REJECTED, REASON_FOK_NOT_FILLABLE, t)
        return
    if typ == MARKET or tif in (FOK, IOC):
        walk(m, book, slot, limit, True, t, cap)
        close_taker(m, slot, t)
        return
    # LIMIT, GTC or POST_ONLY
    if buy:
        crosses = st[s, kn.ST_NA] > 0 and limit >= st[s, kn.ST_BASE] + st[s, kn.ST_BA]
    else:
        crosses = st[s, kn.ST_NB] > 0 and limit <= st[s, kn.ST_BASE] + st[s, kn.ST_BB]
    if crosses:
        if tif == POST_ONLY:
            finish(m, slot, REJECTED, REASON_POST_ONLY_WOULD_CROSS, t)
            return
        walk(m, book, slot, limit, True, t, cap)
        if o["qty"] - o["filled"] <= EPS:
            close_taker(m, slot, t)
            return
    # rest behind everything displayed at the price on the order's own side
    shown = level_qty(book.bq if buy else book.aq, st, s, o["price_tick"], book.width)
    o["queue_ahead"] = shown
    sl = m.table.slots[slot]
    sl["lvl"] = shown
    sl["traded"] = 0.0
    o["status"] = PARTIALLY_FILLED if o["filled"] > 0.0 else OPEN
    activate(m, slot)
    report(m, slot, t)
    if o["filled"] > 0.0:
        end_siblings(m, slot, EXPIRED, t)


@njit(cache=True)
def cancel(m: Matcher, order_id: int, t: int) -> None:
    """A cancel reaches the exchange: the live order ends CANCELED, and with it the rest of its OCO group (as on
    Binance, where cancelling one leg cancels the whole order list). A cancel that finds nothing live is
    only counted: the order is done already, or not arrived yet (a cancel can overtake its order)."""
    orders, active = m.table.orders, m.table.active
    for j in range(m.ks[K_NACT]):
        slot = active[j]
        if orders[slot]["order_id"] == order_id:
            finish(m, slot, CANCELED, REASON_USER_CANCEL, t)
            end_siblings(m, slot, CANCELED, t)
            return
    m.ks[K_CANCEL_MISS] += 1
