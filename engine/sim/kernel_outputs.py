"""What the matching kernel writes for the strategy: fills and order reports, each stamped with the local time
it arrives at (exchange time + a response-latency draw), and the room check that keeps writes in bounds.

Why a room check before each unit of work and not a check per write: the kernel never allocates and never
stops inside a unit (a trade or an order arrival half-applied could not be resumed), so it stops *before* a
unit whose worst case might not fit, and the Python edge drains or grows the buffers (``K_NEED``) and calls
again. Outputs are written without bounds checks, so each unit's worst-case bound must hold.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .kernel_state import (
    EPS,
    ERR_LATENCY_EXHAUSTED,
    ERR_OUTPUT_FULL,
    K_NEED,
    K_NF,
    K_NR,
    K_RESP_CUR,
    OK,
    Latency,
    Matcher,
    Outputs,
)
from .latency import LAT_CONSTANT, LAT_SEQUENCE
from .orders import BUY


@njit(cache=True)
def response_latency(ks: np.ndarray, lat: Latency, t: int) -> int:
    """One response-latency draw (ns) for an output produced at exchange time ``t``."""
    if lat.mode == LAT_CONSTANT:
        return int(lat.vals[0])
    if lat.mode == LAT_SEQUENCE:
        c = ks[K_RESP_CUR]
        ks[K_RESP_CUR] = c + 1
        return int(lat.vals[c])
    i = int(np.searchsorted(lat.ts, t, side="right")) - 1
    return int(lat.vals[max(i, 0)])


@njit(cache=True)
def report(m: Matcher, slot: int, t: int) -> None:
    """Copy the order's row into the report log; the strategy learns of it at t + response latency."""
    nr = m.ks[K_NR]
    m.out.reports[nr] = m.table.orders[slot]
    m.out.report_ts[nr] = t + response_latency(m.ks, m.resp, t)
    m.ks[K_NR] = nr + 1


@njit(cache=True)
def fill(m: Matcher, inv: np.ndarray, slot: int, tick: int, q: float, maker: int, t: int) -> None:
    """Fill ``q`` of the order in ``slot`` at ``tick`` (``inv``: 1 / tick per symbol; the remainder if ``q`` is
    within EPS of it): write the fill, update the order's filled quantity and average price, and the position."""
    o = m.table.orders[slot]
    s = o["symbol"]
    px = tick / inv[s]
    rem = o["qty"] - o["filled"]
    if q >= rem - EPS:
        q = rem
    nf = m.ks[K_NF]
    f = m.out.fills[nf]
    f["order_id"] = o["order_id"]
    f["symbol"] = s
    f["side"] = o["side"]
    f["maker"] = maker
    f["px"] = px
    f["qty"] = q
    f["fee"] = px * q * (m.acct.maker_bps[s] if maker == 1 else m.acct.taker_bps[s]) / 1e4
    f["exch_ts"] = t
    f["local_ts"] = t + response_latency(m.ks, m.resp, t)
    f["mid_at_send"] = m.table.slots[slot]["mid"]
    m.ks[K_NF] = nf + 1
    done = o["filled"]
    o["avg_px"] = px if done == 0.0 else (o["avg_px"] * done + px * q) / (done + q)
    o["filled"] = o["qty"] if q == rem else done + q
    o["update_ts"] = t
    m.acct.pos[s] += q if o["side"] == BUY else -q


@njit(cache=True)
def room(ks: np.ndarray, out: Outputs, lat: Latency, need: int) -> int:
    """OK if ``need`` more fills and reports fit (and as many pairs of sequence latency samples), else the
    stop code; ``need`` is left in ``K_NEED`` for the edge. (Per trade: takes only what it reads.)"""
    ks[K_NEED] = need
    if ks[K_NF] + need > out.fills.shape[0] or ks[K_NR] + need > out.reports.shape[0]:
        return ERR_OUTPUT_FULL
    if lat.mode == LAT_SEQUENCE and ks[K_RESP_CUR] + 2 * need > lat.vals.shape[0]:
        return ERR_LATENCY_EXHAUSTED
    return OK
