"""The njit matching kernel: exchange-time replay of L2 events interleaved with own-order commands.

Why one kernel per micro-batch with all state in arrays (hftbacktest's layout): the budget is ≥ 10M events/s
on one core, so nothing per event may touch Python. The Python edge (:mod:`.matching`) owns the arrays,
writes submissions into the order table and commands into the command queue between calls, and turns the
status codes returned here into drains, refills and exceptions. A call stops *before* a unit of work it
could not finish (output or latency samples short), so any stop point resumes to the same result.

Units of work, in exchange time (``exchange_ts``; ties: market data first, then commands in send order):
a whole depth/snapshot message (book kernel, then queue updates of resting orders at its symbol), a trade
(queue consumption, passive fills, stop triggers), a command (order arrival or cancel). BBO and other kinds
are ignored: the book comes from depth only, so it is exact at every message end.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numba import njit

from ..book import kernels as kn
from ..events import AGG_TRADE, DEPTH, KIND_MASK, LAST_IN_MSG, SNAPSHOT, TRADE
from ..events import BUY as EV_BUY
from ..events import SELL as EV_SELL
from .depth import level_qty, message_end, synced
from .latency import LAT_CONSTANT, LAT_SEQUENCE
from .orders import (
    BUY,
    CANCELED,
    EXPIRED,
    FILLED,
    FOK,
    IOC,
    LIMIT,
    MARKET,
    OPEN,
    PARTIALLY_FILLED,
    PENDING,
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
from .queue import on_cancel

# --- kernel scalar state ``ks`` ------------------------------------------------------------------------------
K_EV: Final = 0  #: next event (index into the exchange-ordered events)
K_CMD_HEAD: Final = 1  #: next command
K_CMD_N: Final = 2  #: commands queued
K_NF: Final = 3  #: fills written
K_NR: Final = 4  #: reports written
K_NACT: Final = 5  #: live orders at the exchange (``active[:n]``: resting limits and untriggered stops)
K_RESP_CUR: Final = 6  #: next response-latency sample (LAT_SEQUENCE)
K_EPOCH: Final = 7  #: book kernel call counter
K_STREAM: Final = 8  #: book events fed so far
K_CANCEL_MISS: Final = 9  #: cancels for orders the exchange did not hold (already done, or not yet arrived)
K_NOW: Final = 10  #: exchange time of the last unit processed
K_MARK: Final = 11  #: trade counter (marks orders already handled for the current trade)
K_NEED: Final = 12  #: outputs the unit the kernel stopped before may need (for the Python edge to size buffers)
N_KS: Final = 13

# --- commands (int64 rows: arrival ts, kind, slot, order id) ---------------------------------------------------
CMD_SUBMIT: Final = 1
CMD_CANCEL: Final = 2

# --- status codes -----------------------------------------------------------------------------------------------
OK: Final = 0  #: reached ``stop_ts`` or the end of the events
ERR_OUTPUT_FULL: Final = 1  #: fills or reports may not fit the next unit: drain (or grow) and call again
ERR_LATENCY_EXHAUSTED: Final = 2  #: sequence latency samples may not suffice: refill and call again
ERR_BOOK: Final = 3  #: the book kernel's scratch output overflowed (a bug)

_EPS: Final = 1e-12
_BIG: Final = np.iinfo(np.int64).max


@njit(cache=True)
def _resp(ks: np.ndarray, rmode: int, rvals: np.ndarray, rts: np.ndarray, t: int) -> int:
    if rmode == LAT_CONSTANT:
        return int(rvals[0])
    if rmode == LAT_SEQUENCE:
        c = ks[K_RESP_CUR]
        ks[K_RESP_CUR] = c + 1
        return int(rvals[c])
    k = int(np.searchsorted(rts, t, side="right")) - 1
    return int(rvals[max(k, 0)])


@njit(cache=True)
def _report(
    slot: int,
    t: int,
    ks: np.ndarray,
    orders: np.ndarray,
    reports: np.ndarray,
    report_ts: np.ndarray,
    rmode: int,
    rvals: np.ndarray,
    rts: np.ndarray,
) -> None:
    """Copy the order's row into the report log; the strategy learns of it at t + response latency."""
    nr = ks[K_NR]
    reports[nr] = orders[slot]
    report_ts[nr] = t + _resp(ks, rmode, rvals, rts, t)
    ks[K_NR] = nr + 1


@njit(cache=True)
def _deactivate(slot: int, ks: np.ndarray, active: np.ndarray) -> None:
    """Remove from the live list, keeping the others' order (fills stay in arrival order: deterministic)."""
    n = ks[K_NACT]
    for j in range(n):
        if active[j] == slot:
            for m in range(j, n - 1):
                active[m] = active[m + 1]
            ks[K_NACT] = n - 1
            return


@njit(cache=True)
def _finish(
    slot: int,
    status: int,
    reason: int,
    t: int,
    ks: np.ndarray,
    orders: np.ndarray,
    used: np.ndarray,
    active: np.ndarray,
    reports: np.ndarray,
    report_ts: np.ndarray,
    rmode: int,
    rvals: np.ndarray,
    rts: np.ndarray,
) -> None:
    o = orders[slot]
    o["status"] = status
    o["reason"] = reason
    o["update_ts"] = t
    used[slot] = 0
    _deactivate(slot, ks, active)
    _report(slot, t, ks, orders, reports, report_ts, rmode, rvals, rts)


@njit(cache=True)
def _oco(
    slot: int,
    t: int,
    ks: np.ndarray,
    orders: np.ndarray,
    used: np.ndarray,
    active: np.ndarray,
    reports: np.ndarray,
    report_ts: np.ndarray,
    rmode: int,
    rvals: np.ndarray,
    rts: np.ndarray,
) -> None:
    """A leg of an OCO pair got a fill: every other live order with its oco_id expires."""
    oid = orders[slot]["oco_id"]
    if oid == 0:
        return
    for j in range(orders.shape[0]):
        if j != slot and used[j] == 1 and orders[j]["oco_id"] == oid and orders[j]["symbol"] == orders[slot]["symbol"]:
            _finish(j, EXPIRED, REASON_OCO_SIBLING, t, ks, orders, used, active, reports, report_ts, rmode, rvals, rts)


@njit(cache=True)
def _allowed(o: np.void, pos: np.ndarray) -> float:
    """Most this order may still fill: its remainder, clipped for reduce-only to what reduces the position."""
    rem = o["qty"] - o["filled"]
    if o["flags"] & REDUCE_ONLY:
        p = pos[o["symbol"]]
        cap = -p if o["side"] == BUY else p
        if cap < rem:
            rem = cap
    return rem if rem > _EPS else 0.0


@njit(cache=True)
def _fill(
    slot: int,
    tick: int,
    q: float,
    maker: int,
    t: int,
    inv: np.ndarray,
    ks: np.ndarray,
    orders: np.ndarray,
    fills: np.ndarray,
    pos: np.ndarray,
    maker_bps: np.ndarray,
    taker_bps: np.ndarray,
    mid: np.ndarray,
    rmode: int,
    rvals: np.ndarray,
    rts: np.ndarray,
) -> None:
    o = orders[slot]
    s = o["symbol"]
    px = tick / inv[s]
    rem = o["qty"] - o["filled"]
    if q >= rem - _EPS:
        q = rem
    nf = ks[K_NF]
    f = fills[nf]
    f["order_id"] = o["order_id"]
    f["symbol"] = s
    f["side"] = o["side"]
    f["maker"] = maker
    f["px"] = px
    f["qty"] = q
    f["fee"] = px * q * (maker_bps[s] if maker == 1 else taker_bps[s]) / 1e4
    f["exch_ts"] = t
    f["local_ts"] = t + _resp(ks, rmode, rvals, rts, t)
    f["mid_at_send"] = mid[slot]
    ks[K_NF] = nf + 1
    done = o["filled"]
    o["avg_px"] = px if done == 0.0 else (o["avg_px"] * done + px * q) / (done + q)
    o["filled"] = o["qty"] if q == rem else done + q
    o["update_ts"] = t
    pos[s] += q if o["side"] == BUY else -q


@njit(cache=True)
def _walk(
    slot: int,
    limit: int,
    do_fill: bool,
    t: int,
    ks: np.ndarray,
    st: np.ndarray,
    bq: np.ndarray,
    aq: np.ndarray,
    inv: np.ndarray,
    width: int,
    orders: np.ndarray,
    fills: np.ndarray,
    pos: np.ndarray,
    maker_bps: np.ndarray,
    taker_bps: np.ndarray,
    mid: np.ndarray,
    rmode: int,
    rvals: np.ndarray,
    rts: np.ndarray,
    cap: float,
) -> float:
    """Take liquidity for ``slot`` level by level up to tick ``limit`` (inclusive) and ``cap`` units; with
    ``do_fill`` False only measure what is available (FOK). Fills are at each level's price. The replayed
    book is not depleted by own takes (no market impact)."""
    o = orders[slot]
    s = o["symbol"]
    base = s * width
    b0 = st[s, kn.ST_BASE]
    got = 0.0
    if o["side"] == BUY:
        n = st[s, kn.ST_NA]
        j = st[s, kn.ST_BA]
        seen = 0
        while seen < n and j < width and cap - got > _EPS:
            v = aq[base + j]
            if v != 0.0:
                seen += 1
                if b0 + j > limit:
                    break
                q = min(v, cap - got)
                if do_fill:
                    _fill(
                        slot, b0 + j, q, 0, t, inv, ks, orders, fills, pos, maker_bps, taker_bps, mid, rmode, rvals, rts
                    )
                got += q
            j += 1
    else:
        n = st[s, kn.ST_NB]
        j = st[s, kn.ST_BB]
        seen = 0
        while seen < n and j >= 0 and cap - got > _EPS:
            v = bq[base + j]
            if v != 0.0:
                seen += 1
                if b0 + j < limit:
                    break
                q = min(v, cap - got)
                if do_fill:
                    _fill(
                        slot, b0 + j, q, 0, t, inv, ks, orders, fills, pos, maker_bps, taker_bps, mid, rmode, rvals, rts
                    )
                got += q
            j -= 1
    return got


# Signature shorthand for the kernel's helpers: (ks, orders, used, active, reports, report_ts, rmode, rvals, rts)
# travel together; numba passes arrays by reference, so there is no copying.


@njit(cache=True)
def _close_taker(
    slot: int,
    t: int,
    ks: np.ndarray,
    orders: np.ndarray,
    used: np.ndarray,
    active: np.ndarray,
    reports: np.ndarray,
    report_ts: np.ndarray,
    rmode: int,
    rvals: np.ndarray,
    rts: np.ndarray,
) -> None:
    """After a take that must not rest (market, IOC, FOK, triggered stop): FILLED, or EXPIRED for the rest."""
    o = orders[slot]
    if o["qty"] - o["filled"] <= _EPS:
        _finish(slot, FILLED, 0, t, ks, orders, used, active, reports, report_ts, rmode, rvals, rts)
    else:
        _finish(slot, EXPIRED, REASON_NO_LIQUIDITY, t, ks, orders, used, active, reports, report_ts, rmode, rvals, rts)
    if o["filled"] > 0.0:
        _oco(slot, t, ks, orders, used, active, reports, report_ts, rmode, rvals, rts)


@njit(cache=True)
def _arrive(
    slot: int,
    t: int,
    ks: np.ndarray,
    st: np.ndarray,
    bq: np.ndarray,
    aq: np.ndarray,
    inv: np.ndarray,
    width: int,
    orders: np.ndarray,
    used: np.ndarray,
    active: np.ndarray,
    lvl: np.ndarray,
    traded: np.ndarray,
    mid: np.ndarray,
    fills: np.ndarray,
    reports: np.ndarray,
    report_ts: np.ndarray,
    pos: np.ndarray,
    maker_bps: np.ndarray,
    taker_bps: np.ndarray,
    rmode: int,
    rvals: np.ndarray,
    rts: np.ndarray,
) -> None:
    """An order reaches the matching engine at exchange time ``t`` and meets the book as it is then."""
    o = orders[slot]
    s = o["symbol"]
    o["update_ts"] = t
    typ = o["type"]
    if typ == STOP_MARKET:  # rests untriggered; reduce-only and book checks happen at the trigger
        o["status"] = OPEN
        active[ks[K_NACT]] = slot
        ks[K_NACT] += 1
        _report(slot, t, ks, orders, reports, report_ts, rmode, rvals, rts)
        return
    if not synced(st, s):
        _finish(
            slot, REJECTED, REASON_BOOK_NOT_SYNCED, t, ks, orders, used, active, reports, report_ts, rmode, rvals, rts
        )
        return
    cap = _allowed(o, pos)
    if cap <= 0.0:
        _finish(slot, REJECTED, REASON_REDUCE_ONLY, t, ks, orders, used, active, reports, report_ts, rmode, rvals, rts)
        return
    if cap < o["qty"] - o["filled"]:
        o["qty"] = o["filled"] + cap  # reduce-only clipped to the position
    buy = o["side"] == BUY
    limit = (_BIG if buy else -_BIG) if typ == MARKET else o["price_tick"]
    tif = o["tif"]
    if tif == FOK:
        got = _walk(
            slot,
            limit,
            False,
            t,
            ks,
            st,
            bq,
            aq,
            inv,
            width,
            orders,
            fills,
            pos,
            maker_bps,
            taker_bps,
            mid,
            rmode,
            rvals,
            rts,
            cap,
        )
        if got < cap - _EPS:
            _finish(
                slot,
                REJECTED,
                REASON_FOK_NOT_FILLABLE,
                t,
                ks,
                orders,
                used,
                active,
                reports,
                report_ts,
                rmode,
                rvals,
                rts,
            )
            return
    if typ == MARKET or tif in (FOK, IOC):
        _walk(
            slot,
            limit,
            True,
            t,
            ks,
            st,
            bq,
            aq,
            inv,
            width,
            orders,
            fills,
            pos,
            maker_bps,
            taker_bps,
            mid,
            rmode,
            rvals,
            rts,
            cap,
        )
        _close_taker(slot, t, ks, orders, used, active, reports, report_ts, rmode, rvals, rts)
        return
    # LIMIT, GTC or POST_ONLY
    if buy:
        crosses = st[s, kn.ST_NA] > 0 and limit >= st[s, kn.ST_BASE] + st[s, kn.ST_BA]
    else:
        crosses = st[s, kn.ST_NB] > 0 and limit <= st[s, kn.ST_BASE] + st[s, kn.ST_BB]
    if crosses:
        if tif == POST_ONLY:
            _finish(
                slot,
                REJECTED,
                REASON_POST_ONLY_WOULD_CROSS,
                t,
                ks,
                orders,
                used,
                active,
                reports,
                report_ts,
                rmode,
                rvals,
                rts,
            )
            return
        _walk(
            slot,
            limit,
            True,
            t,
            ks,
            st,
            bq,
            aq,
            inv,
            width,
            orders,
            fills,
            pos,
            maker_bps,
            taker_bps,
            mid,
            rmode,
            rvals,
            rts,
            cap,
        )
        if o["qty"] - o["filled"] <= _EPS:
            _close_taker(slot, t, ks, orders, used, active, reports, report_ts, rmode, rvals, rts)
            return
    # rest behind everything displayed at the price on the order's own side
    shown = level_qty(bq if buy else aq, st, s, o["price_tick"], width)
    o["queue_ahead"] = shown
    lvl[slot] = shown
    traded[slot] = 0.0
    o["status"] = PARTIALLY_FILLED if o["filled"] > 0.0 else OPEN
    active[ks[K_NACT]] = slot
    ks[K_NACT] += 1
    _report(slot, t, ks, orders, reports, report_ts, rmode, rvals, rts)
    if o["filled"] > 0.0:
        _oco(slot, t, ks, orders, used, active, reports, report_ts, rmode, rvals, rts)


@njit(cache=True)
def _cancel(
    order_id: int,
    t: int,
    ks: np.ndarray,
    orders: np.ndarray,
    used: np.ndarray,
    active: np.ndarray,
    reports: np.ndarray,
    report_ts: np.ndarray,
    rmode: int,
    rvals: np.ndarray,
    rts: np.ndarray,
) -> None:
    for j in range(ks[K_NACT]):
        slot = active[j]
        if orders[slot]["order_id"] == order_id:
            _finish(
                slot, CANCELED, REASON_USER_CANCEL, t, ks, orders, used, active, reports, report_ts, rmode, rvals, rts
            )
            return
    ks[K_CANCEL_MISS] += 1  # done already, or not arrived yet (a cancel can overtake its order): as on a venue


@njit(cache=True)
def _on_trade(
    ev: np.void,
    t: int,
    ks: np.ndarray,
    st: np.ndarray,
    bq: np.ndarray,
    aq: np.ndarray,
    inv: np.ndarray,
    width: int,
    orders: np.ndarray,
    used: np.ndarray,
    active: np.ndarray,
    traded: np.ndarray,
    mark: np.ndarray,
    mid: np.ndarray,
    fills: np.ndarray,
    reports: np.ndarray,
    report_ts: np.ndarray,
    pos: np.ndarray,
    maker_bps: np.ndarray,
    taker_bps: np.ndarray,
    rmode: int,
    rvals: np.ndarray,
    rts: np.ndarray,
) -> None:
    """A trade prints: it consumes queues at its price, fills own orders behind a consumed queue (sharing the
    excess among own orders at that price in arrival order), fills own orders it traded through, and
    triggers stops. Nothing happens while the book is unsynced."""
    s = ev["symbol"]
    if not synced(st, s):
        return
    k = ev["kind"]
    taker_buy = (k & EV_BUY) != 0
    taker_sell = (k & EV_SELL) != 0
    x = ev["px"] * inv[s]
    tick = int(np.floor(x + 0.5))
    qty = ev["qty"]
    ks[K_MARK] += 1
    m = ks[K_MARK]
    given = 0.0  # excess of this trade already handed to own orders at exactly its price
    j = 0
    while j < ks[K_NACT]:
        slot = active[j]
        j += 1
        if mark[slot] == m:
            continue
        mark[slot] = m
        o = orders[slot]
        if o["symbol"] != s:
            continue
        n_before = ks[K_NACT]
        buy = o["side"] == BUY
        if o["type"] == STOP_MARKET:
            if (buy and tick >= o["stop_tick"]) or (not buy and tick <= o["stop_tick"]):
                cap = _allowed(o, pos)
                if cap <= 0.0:
                    _finish(
                        slot,
                        EXPIRED,
                        REASON_REDUCE_ONLY,
                        t,
                        ks,
                        orders,
                        used,
                        active,
                        reports,
                        report_ts,
                        rmode,
                        rvals,
                        rts,
                    )
                else:
                    _walk(
                        slot,
                        _BIG if buy else -_BIG,
                        True,
                        t,
                        ks,
                        st,
                        bq,
                        aq,
                        inv,
                        width,
                        orders,
                        fills,
                        pos,
                        maker_bps,
                        taker_bps,
                        mid,
                        rmode,
                        rvals,
                        rts,
                        cap,
                    )
                    _close_taker(slot, t, ks, orders, used, active, reports, report_ts, rmode, rvals, rts)
        elif (buy and taker_sell and tick <= o["price_tick"]) or (not buy and taker_buy and tick >= o["price_tick"]):
            f = 0.0
            cap = _allowed(o, pos)
            if tick != o["price_tick"]:
                f = cap  # traded through: the order would have been hit first, fully
            else:
                traded[slot] += qty
                qa = o["queue_ahead"]
                if qty > qa:
                    f = min(qty - qa - given, cap)
                    qa = 0.0
                else:
                    qa -= qty
                o["queue_ahead"] = qa
            if f > _EPS:
                if tick == o["price_tick"]:
                    given += f
                was = o["status"]
                _fill(
                    slot,
                    o["price_tick"],
                    f,
                    1,
                    t,
                    inv,
                    ks,
                    orders,
                    fills,
                    pos,
                    maker_bps,
                    taker_bps,
                    mid,
                    rmode,
                    rvals,
                    rts,
                )
                if o["qty"] - o["filled"] <= _EPS:
                    _finish(slot, FILLED, 0, t, ks, orders, used, active, reports, report_ts, rmode, rvals, rts)
                elif was != PARTIALLY_FILLED:
                    o["status"] = PARTIALLY_FILLED
                    _report(slot, t, ks, orders, reports, report_ts, rmode, rvals, rts)
                _oco(slot, t, ks, orders, used, active, reports, report_ts, rmode, rvals, rts)
            elif cap <= 0.0 and o["qty"] - o["filled"] > _EPS:
                _finish(
                    slot,
                    EXPIRED,
                    REASON_REDUCE_ONLY,
                    t,
                    ks,
                    orders,
                    used,
                    active,
                    reports,
                    report_ts,
                    rmode,
                    rvals,
                    rts,
                )
        if ks[K_NACT] != n_before:
            j = 0  # the live list shifted: rescan, skipping orders this trade already saw


@njit(cache=True)
def _on_message(
    s: int,
    ks: np.ndarray,
    st: np.ndarray,
    bq: np.ndarray,
    aq: np.ndarray,
    width: int,
    orders: np.ndarray,
    active: np.ndarray,
    lvl: np.ndarray,
    traded: np.ndarray,
    qmodel: int,
    qparam: float,
) -> None:
    """A depth message settled: level changes at resting orders' prices that trades do not explain are
    cancellations, handed to the queue model. While unsynced the last level is forgotten; at the resync the
    queue is only clipped to what is displayed (never advanced by the unseen interval)."""
    ok = synced(st, s)
    for j in range(ks[K_NACT]):
        slot = active[j]
        o = orders[slot]
        if o["symbol"] != s or o["type"] != LIMIT:
            continue
        if not ok:
            lvl[slot] = -1.0
            continue
        new = level_qty(bq if o["side"] == BUY else aq, st, s, o["price_tick"], width)
        old = lvl[slot]
        if new == old:
            continue  # this level did not change: trades at it are not reflected yet, keep counting them
        qa = o["queue_ahead"]
        if old >= 0.0 and new < old:
            tr = traded[slot]
            cancel = max(0.0, old - new - tr)
            qa = on_cancel(qmodel, qparam, qa, max(old - tr, new), new, cancel)
        elif qa > new:
            qa = new
        o["queue_ahead"] = qa
        lvl[slot] = new
        traded[slot] = 0.0


@njit(cache=True)
def _room(ks: np.ndarray, fills: np.ndarray, reports: np.ndarray, rmode: int, rvals: np.ndarray, need: int) -> int:
    """OK if the next unit's worst case fits the outputs (and sequence latency samples), else the stop code."""
    ks[K_NEED] = need
    if ks[K_NF] + need > fills.shape[0] or ks[K_NR] + need > reports.shape[0]:
        return ERR_OUTPUT_FULL
    if rmode == LAT_SEQUENCE and ks[K_RESP_CUR] + 2 * need > rvals.shape[0]:
        return ERR_LATENCY_EXHAUSTED
    return OK


@njit(cache=True)
def run(
    events: np.ndarray,
    stop_ts: int,
    ks: np.ndarray,
    st: np.ndarray,
    counters: np.ndarray,
    batch_counters: np.ndarray,
    touched: np.ndarray,
    before: np.ndarray,
    bq: np.ndarray,
    aq: np.ndarray,
    inv: np.ndarray,
    width: int,
    buf_i: np.ndarray,
    buf_f: np.ndarray,
    buf_cap: int,
    tops: np.ndarray,
    t_index: np.ndarray,
    g: np.ndarray,
    r: np.ndarray,
    orders: np.ndarray,
    used: np.ndarray,
    active: np.ndarray,
    lvl: np.ndarray,
    traded: np.ndarray,
    mark: np.ndarray,
    mid: np.ndarray,
    cmds: np.ndarray,
    fills: np.ndarray,
    reports: np.ndarray,
    report_ts: np.ndarray,
    pos: np.ndarray,
    maker_bps: np.ndarray,
    taker_bps: np.ndarray,
    qmodel: int,
    qparam: float,
    rmode: int,
    rvals: np.ndarray,
    rts: np.ndarray,
) -> int:
    """Advance the exchange to ``stop_ts`` (inclusive): events with ``exchange_ts <= stop_ts`` and commands
    arriving by then, in time order (events first on ties). Returns ``OK`` or a stop code; the cursors in
    ``ks`` say where to resume."""
    n = events.shape[0]
    while True:
        i = ks[K_EV]
        ch = ks[K_CMD_HEAD]
        ev_ts = events[i]["exchange_ts"] if i < n else _BIG
        cmd_ts = cmds[ch, 0] if ch < ks[K_CMD_N] else _BIG
        if ev_ts <= cmd_ts:
            if i >= n or ev_ts > stop_ts:
                return OK
            k = events[i]["kind"]
            typ = k & KIND_MASK
            if typ in (DEPTH, SNAPSHOT):
                j = message_end(events, i)
                ks[K_EPOCH] += 1
                status, _, _, _ = kn.apply_batch(
                    events[i:j], ks[K_STREAM], st, counters, batch_counters, ks[K_EPOCH], touched, before, bq, aq,
                    inv, width, buf_i, buf_f, buf_cap, tops, t_index, g, r,
                )  # fmt: skip
                if status != kn.OK:
                    return ERR_BOOK
                ks[K_STREAM] += j - i
                ks[K_EV] = j
                ks[K_NOW] = ev_ts
                if ks[K_NACT] > 0 and (events[j - 1]["kind"] & LAST_IN_MSG) != 0:
                    _on_message(int(events[i]["symbol"]), ks, st, bq, aq, width, orders, active, lvl, traded, qmodel,
                                qparam)  # fmt: skip
                continue
            if typ in (TRADE, AGG_TRADE) and ks[K_NACT] > 0:
                s = events[i]["symbol"]
                need = ks[K_NACT] * (max(st[s, kn.ST_NA], st[s, kn.ST_NB]) + 3) + 4
                code = _room(ks, fills, reports, rmode, rvals, need)
                if code != OK:
                    return code
                _on_trade(events[i], ev_ts, ks, st, bq, aq, inv, width, orders, used, active, traded, mark, mid,
                          fills, reports, report_ts, pos, maker_bps, taker_bps, rmode, rvals, rts)  # fmt: skip
            ks[K_EV] = i + 1
            ks[K_NOW] = ev_ts
        else:
            if cmd_ts > stop_ts:
                return OK
            kind = cmds[ch, 1]
            slot = cmds[ch, 2]
            s = orders[slot]["symbol"] if kind == CMD_SUBMIT else 0
            need = max(st[s, kn.ST_NA], st[s, kn.ST_NB]) + 2 * ks[K_NACT] + 4
            code = _room(ks, fills, reports, rmode, rvals, need)
            if code != OK:
                return code
            if kind == CMD_SUBMIT:
                # the slot may have been reused after an OCO sibling expired this order before it arrived
                if orders[slot]["order_id"] == cmds[ch, 3] and orders[slot]["status"] == PENDING:
                    _arrive(slot, cmd_ts, ks, st, bq, aq, inv, width, orders, used, active, lvl, traded, mid, fills,
                            reports, report_ts, pos, maker_bps, taker_bps, rmode, rvals, rts)  # fmt: skip
            else:
                _cancel(cmds[ch, 3], cmd_ts, ks, orders, used, active, reports, report_ts, rmode, rvals, rts)
            ks[K_CMD_HEAD] = ch + 1
            ks[K_NOW] = cmd_ts
