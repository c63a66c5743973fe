"""Market data meets resting own orders: trades consume queues, fill and trigger; depth changes move queues.

Why trades and depth are handled apart: L2 shows only each level's total. A trade at an order's price
consumes the queue in front of it exactly (price-time priority), while a depth decrease that the trades
since the last observation do not explain is a cancellation somewhere in the level, whose effect on the
queue is a model (:mod:`.queue`). So trades are applied as they print, and the level is re-read when a
depth message has settled (``traded`` keeps the trades seen at the price in between).

Why :func:`reaches_an_order` before :func:`on_trade`: most trades touch no own order, and these two run per
trade; the test takes only the arrays it reads, so the full handler (and the order side passed to it) is
only paid for trades that do something.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..events import BUY as EV_BUY
from ..events import SELL as EV_SELL
from .depth import level_qty, synced
from .kernel_orders import allowed, close_taker, end_siblings, finish, walk
from .kernel_outputs import fill, report
from .kernel_state import BIG, EPS, K_MARK, K_NACT, Book, Matcher, OrderTable, Queue
from .orders import BUY, EXPIRED, FILLED, LIMIT, PARTIALLY_FILLED, REASON_REDUCE_ONLY, STOP_MARKET
from .queue import on_cancel


@njit(cache=True, inline="always")
def _trade_tick(ev: np.void, inv: np.ndarray) -> int:
    return int(np.floor(ev["px"] * inv[ev["symbol"]] + 0.5))


@njit(cache=True, inline="always")
def _reaches(o: np.void, tick: int, taker_buy: bool, taker_sell: bool) -> bool:
    """A trade at ``tick`` triggers this stop, or printed at or through this limit on its side."""
    buy = o["side"] == BUY
    if o["type"] == STOP_MARKET:
        return (buy and tick >= o["stop_tick"]) or (not buy and tick <= o["stop_tick"])
    return (buy and taker_sell and tick <= o["price_tick"]) or (not buy and taker_buy and tick >= o["price_tick"])


@njit(cache=True)
def reaches_an_order(ev: np.void, ks: np.ndarray, orders: np.ndarray, active: np.ndarray, st: np.ndarray,
                     inv: np.ndarray) -> bool:  # fmt: skip
    """Whether :func:`on_trade` would do anything for this trade (the book is synced and a live order of its
    symbol is reached); when not, skipping it changes nothing. (Per trade: takes just the arrays it reads.)"""
    s = ev["symbol"]
    if not synced(st, s):
        return False
    taker_buy = (ev["kind"] & EV_BUY) != 0
    taker_sell = (ev["kind"] & EV_SELL) != 0
    tick = _trade_tick(ev, inv)
    for j in range(ks[K_NACT]):
        o = orders[active[j]]
        if o["symbol"] == s and _reaches(o, tick, taker_buy, taker_sell):
            return True
    return False


@njit(cache=True)
def on_trade(m: Matcher, book: Book, ev: np.void, t: int) -> None:
    """A trade prints: it consumes queues at its price, fills own orders behind a consumed queue (sharing the
    excess among own orders at that price in arrival order), fills own orders it traded through, and
    triggers stops. Nothing happens while the book is unsynced."""
    ks, orders, active, slots = m.ks, m.table.orders, m.table.active, m.table.slots
    s = ev["symbol"]
    if not synced(book.st, s):
        return
    taker_buy = (ev["kind"] & EV_BUY) != 0
    taker_sell = (ev["kind"] & EV_SELL) != 0
    tick = _trade_tick(ev, book.inv)
    qty = ev["qty"]
    ks[K_MARK] += 1
    mk = ks[K_MARK]
    given = 0.0  # excess of this trade already handed to own orders at exactly its price
    j = 0
    while j < ks[K_NACT]:
        slot = active[j]
        j += 1
        sl = slots[slot]
        if sl["mark"] == mk:
            continue
        sl["mark"] = mk
        o = orders[slot]
        if o["symbol"] != s or not _reaches(o, tick, taker_buy, taker_sell):
            continue
        n_before = ks[K_NACT]
        if o["type"] == STOP_MARKET:  # triggered
            cap = allowed(o, m.acct.pos)
            if cap <= 0.0:
                finish(m, slot, EXPIRED, REASON_REDUCE_ONLY, t)
            else:
                walk(m, book, slot, BIG if o["side"] == BUY else -BIG, True, t, cap)
                close_taker(m, slot, t)
        else:  # a limit the trade printed at or through
            f = 0.0
            cap = allowed(o, m.acct.pos)
            if tick != o["price_tick"]:
                f = cap  # traded through: the order would have been hit first, fully
            else:
                sl["traded"] += qty
                qa = o["queue_ahead"]
                if qty > qa:
                    f = min(qty - qa - given, cap)
                    qa = 0.0
                else:
                    qa -= qty
                o["queue_ahead"] = qa
            if f > EPS:
                if tick == o["price_tick"]:
                    given += f
                was = o["status"]
                fill(m, book.inv, slot, o["price_tick"], f, 1, t)
                if o["qty"] - o["filled"] <= EPS:
                    finish(m, slot, FILLED, 0, t)
                elif was != PARTIALLY_FILLED:
                    o["status"] = PARTIALLY_FILLED
                    report(m, slot, t)
                end_siblings(m, slot, EXPIRED, t)
            elif cap <= 0.0 and o["qty"] - o["filled"] > EPS:
                finish(m, slot, EXPIRED, REASON_REDUCE_ONLY, t)
        if ks[K_NACT] != n_before:
            j = 0  # the live list shifted: rescan, skipping orders this trade already saw


@njit(cache=True)
def on_message(ks: np.ndarray, table: OrderTable, queue: Queue, book: Book, s: int) -> None:
    """A depth message settled: level changes at resting orders' prices that trades do not explain are
    cancellations, handed to the queue model. While unsynced the last level is forgotten; at the resync the
    queue is only clipped to what is displayed (never advanced by the unseen interval). (Per message: takes
    only the groups it reads.)"""
    st, width = book.st, book.width
    orders, active, slots = table.orders, table.active, table.slots
    ok = synced(st, s)
    for j in range(ks[K_NACT]):
        slot = active[j]
        o = orders[slot]
        if o["symbol"] != s or o["type"] != LIMIT:
            continue
        sl = slots[slot]
        if not ok:
            sl["lvl"] = -1.0
            continue
        new = level_qty(book.bq if o["side"] == BUY else book.aq, st, s, o["price_tick"], width)
        old = sl["lvl"]
        if new == old:
            continue  # this level did not change: trades at it are not reflected yet, keep counting them
        qa = o["queue_ahead"]
        if old >= 0.0 and new < old:
            tr = sl["traded"]
            cancel = max(0.0, old - new - tr)
            qa = on_cancel(queue.model, queue.param, qa, max(old - tr, new), new, cancel)
        elif qa > new:
            qa = new
        o["queue_ahead"] = qa
        sl["lvl"] = new
        sl["traded"] = 0.0
