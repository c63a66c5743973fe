"""Own orders and cancels leaving the strategy: into the order table and the arrival-ordered command queue.

Why a kernel for what happens once per send: a quoting strategy cancels and re-posts on most wake-ups, and the
numpy version (validate, find free slots, copy the rows field by field, draw, concatenate and re-sort the
queue) cost ~30 µs per send. Here it is one call: checks first (nothing changes when one fails), then the
rows go field by field into the table (so padding bytes stay zero and logs hash the same), and each command
is inserted after the queued commands arriving no later (a stable sort by arrival: send order on ties).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..book import kernels as kn
from .kernel_state import (
    CMD_CANCEL,
    CMD_SUBMIT,
    ERR_BAD_ORDER,
    ERR_CMDS_FULL,
    ERR_TABLE_FULL,
    K_CMD_HEAD,
    K_CMD_N,
    K_NEED,
    K_NUSED,
    OK,
    State,
    unpack,
)
from .orders import PENDING


@njit(cache=True)
def mid(st: np.ndarray, inv: np.ndarray, s: int) -> float:
    """Mid price of symbol ``s`` (NaN unless the book is synced with both sides), as ``SimDepth.mid``."""
    if st[s, kn.ST_STATE] == kn.WAIT_SNAPSHOT or st[s, kn.ST_NB] <= 0 or st[s, kn.ST_NA] <= 0:
        return np.nan
    base = st[s, kn.ST_BASE]
    return float((base + st[s, kn.ST_BB] + base + st[s, kn.ST_BA]) / 2.0 / inv[s])


@njit(cache=True)
def _insert(cmds: np.ndarray, ks: np.ndarray, ts: int, kind: int, slot: int, order_id: int) -> None:
    """Queue one command after every pending one arriving at or before ``ts`` (room was checked)."""
    head, n = ks[K_CMD_HEAD], ks[K_CMD_N]
    j = n
    while j > head and cmds[j - 1, 0] > ts:
        cmds[j, 0], cmds[j, 1], cmds[j, 2], cmds[j, 3] = cmds[j - 1, 0], cmds[j - 1, 1], cmds[j - 1, 2], cmds[j - 1, 3]
        j -= 1
    cmds[j, 0], cmds[j, 1], cmds[j, 2], cmds[j, 3] = ts, kind, slot, order_id
    ks[K_CMD_N] = n + 1


@njit(cache=True)
def send(rows: np.ndarray, ids: np.ndarray, lat_rows: np.ndarray, lat_ids: np.ndarray, now: int, state: State) -> int:
    """Send ``rows`` (any record type with ORDER_DTYPE's order fields) then cancel ``ids`` at local time ``now``.
    ``lat_rows`` / ``lat_ids``: entry latency per row / id, or one value for all. Returns OK, or a code before
    changing anything: ERR_BAD_ORDER, ERR_TABLE_FULL (free slots in ``K_NEED``), ERR_CMDS_FULL (rows needed)."""
    s = unpack(state)
    cmds, ks, st, inv = s.cmds, s.m.ks, s.book.st, s.book.inv
    orders, used, slots = s.m.table.orders, s.m.table.used, s.m.table.slots
    k, c = rows.shape[0], ids.shape[0]
    for i in range(k):
        if rows[i]["qty"] <= 0 or rows[i]["symbol"] >= st.shape[0]:
            return ERR_BAD_ORDER
    free = 0
    if k:
        for j in range(used.shape[0]):
            free += used[j] == 0
        if free < k:
            ks[K_NEED] = free
            return ERR_TABLE_FULL
    head, n = ks[K_CMD_HEAD], ks[K_CMD_N]
    if n + k + c > cmds.shape[0]:
        if n - head + k + c > cmds.shape[0]:
            ks[K_NEED] = n - head + k + c
            return ERR_CMDS_FULL
        cmds[: n - head] = cmds[head:n]  # the queue moves to the front
        ks[K_CMD_HEAD], ks[K_CMD_N] = 0, n - head
    slot = 0
    for i in range(k):
        while used[slot] != 0:
            slot += 1
        r = rows[i]
        o = orders[slot]
        sym = r["symbol"]
        o["order_id"] = r["order_id"]
        o["symbol"] = sym
        o["side"] = r["side"]
        o["type"] = r["type"]
        o["tif"] = r["tif"]
        o["flags"] = r["flags"]
        o["status"] = PENDING
        o["reason"] = 0
        o["price_tick"] = r["price_tick"]
        o["stop_tick"] = r["stop_tick"]
        o["qty"] = r["qty"]
        o["filled"] = 0.0
        o["avg_px"] = np.nan
        o["queue_ahead"] = 0.0
        o["oco_id"] = r["oco_id"]
        o["local_ts"] = now
        arrive = now + lat_rows[i if lat_rows.shape[0] > 1 else 0]
        o["exch_ts"] = arrive
        o["update_ts"] = 0
        used[slot] = 1
        slots[slot]["mid"] = mid(st, inv, sym)
        _insert(cmds, ks, arrive, CMD_SUBMIT, slot, r["order_id"])
    ks[K_NUSED] += k
    for i in range(c):
        _insert(cmds, ks, now + lat_ids[i if lat_ids.shape[0] > 1 else 0], CMD_CANCEL, 0, ids[i])
    return OK
