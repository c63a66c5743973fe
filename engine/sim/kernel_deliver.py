"""Delivery: what reaches the strategy by local time t, moved from the in-flight buffers to the delivered logs.

Why in the kernel, in the same call as matching: a strategy that wakes every 100 ms makes ~3.5k calls per
hour of data, and each step used to cost a dozen numpy calls (concatenate, argsort, searchsorted, copies of
records field by field) — ~40 µs, more than the matching itself. Here a step is a few loops over the handful
of rows in flight, and the edge gets back eight indices (``Delivery.span``) to slice views from.

Order: each kind of output is delivered by arrival time, ties in the order produced (a stable sort), which is
what sorting all in-flight rows by arrival time and taking those due gives. Events are delivered in receive
order (the capture's order); tops, fills and reports by their own ``ingest_ts`` / ``local_ts`` / report time.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .kernel_state import (
    BIG,
    ERR_LOG_FULL,
    ERR_TOPS_LOG_FULL,
    K_FLOG,
    K_LOCAL,
    K_NEED,
    K_NEXT_OUT,
    K_NF,
    K_NR,
    K_NT,
    K_RLOG,
    K_TLOG,
    OK,
    BookIO,
    Delivery,
    Outputs,
)


@njit(cache=True)
def due_order(times: np.ndarray, n: int, t: int) -> np.ndarray:
    """Positions in ``times[:n]`` with time ≤ ``t``, by time, ties in position order."""
    k = 0
    for i in range(n):
        if times[i] <= t:
            k += 1
    if k == 0:
        return np.empty(0, np.int64)
    idx = np.empty(k, np.int64)
    k = 0
    ordered = True
    for i in range(n):
        if times[i] <= t:
            if k and times[i] < times[idx[k - 1]]:
                ordered = False  # response or feed latency jitter: a later row arrives earlier
            idx[k] = i
            k += 1
    if not ordered:
        idx = idx[np.argsort(times[idx], kind="mergesort")]
    return idx


@njit(cache=True)
def keep_rest(rows: np.ndarray, times: np.ndarray, n: int, t: int) -> int:
    """Move the rows of ``rows[:n]`` not yet due (time > ``t``) to the front, in order; returns how many."""
    w = 0
    for i in range(n):
        if times[i] > t:
            if w != i:
                rows[w] = rows[i]
            w += 1
    return w


@njit(cache=True)
def room(ks: np.ndarray, out: Outputs, io: BookIO, d: Delivery) -> int:
    """OK if the logs can take everything in flight (so a delivery never stops half-way), else the code for
    the edge, with the rows needed in ``K_NEED``."""
    if ks[K_FLOG] + ks[K_NF] > d.fills.shape[0]:
        ks[K_NEED] = ks[K_FLOG] + ks[K_NF]
        return ERR_LOG_FULL
    if ks[K_RLOG] + ks[K_NR] > d.reports.shape[0]:
        ks[K_NEED] = ks[K_RLOG] + ks[K_NR]
        return ERR_LOG_FULL
    if ks[K_TLOG] + ks[K_NT] > d.tops.shape[0]:
        ks[K_NEED] = ks[K_NT]
        return ERR_TOPS_LOG_FULL
    return OK


@njit(cache=True, inline="always")
def deliver(ks: np.ndarray, out: Outputs, io: BookIO, d: Delivery, t: int) -> int:
    """Hand the strategy everything that reached it by local time ``t``: append to the logs, record the spans
    in ``d.span``, update its touch and marks. Returns OK, or a log-full code before changing anything."""
    code = room(ks, out, io, d)
    if code != OK:
        return code
    span = d.span
    # events: the receive-ordered cursor
    e = ks[K_LOCAL]
    span[0] = e
    n_local = d.local_ts.shape[0]
    while e < n_local and d.local_ts[e] <= t:
        e += 1
    ks[K_LOCAL] = e
    span[1] = e
    # tops, and the touch and marks they move
    nt = ks[K_NT]
    base = ks[K_TLOG]
    span[2] = span[3] = base
    if nt:
        times = io.tops["ingest_ts"]
        idx = due_order(times, nt, t)
        k = idx.shape[0]
        if k:
            for j in range(k):
                row = io.tops[idx[j]]
                d.tops[base + j] = row
                s = row["symbol"]
                d.touch[s, 0] = row["bid_px"][0]
                d.touch[s, 1] = row["bid_qty"][0]
                d.touch[s, 2] = row["ask_px"][0]
                d.touch[s, 3] = row["ask_qty"][0]
            ks[K_NT] = keep_rest(io.tops, times, nt, t)
            ks[K_TLOG] = base + k
            span[3] = base + k
            for s in range(d.touch.shape[0]):
                bid, ask = d.touch[s, 0], d.touch[s, 2]
                if np.isfinite(bid) and np.isfinite(ask):
                    d.marks[s, 0] = bid
                    d.marks[s, 1] = ask
                    d.marks[s, 2] = 0.5 * (bid + ask)
    # fills
    nf = ks[K_NF]
    base = ks[K_FLOG]
    span[4] = span[5] = base
    nxt = BIG
    if nf:
        times = out.fills["local_ts"]
        idx = due_order(times, nf, t)
        k = idx.shape[0]
        for j in range(k):
            d.fills[base + j] = out.fills[idx[j]]
        nf = keep_rest(out.fills, times, nf, t)
        ks[K_NF] = nf
        ks[K_FLOG] = base + k
        span[5] = base + k
        for i in range(nf):
            nxt = min(nxt, times[i])
    # reports
    nr = ks[K_NR]
    base = ks[K_RLOG]
    span[6] = span[7] = base
    if nr:
        times = out.report_ts
        idx = due_order(times, nr, t)
        k = idx.shape[0]
        for j in range(k):
            d.reports[base + j] = out.reports[idx[j]]
            d.report_ts[base + j] = times[idx[j]]
        keep_rest(out.reports, times, nr, t)
        nr = keep_rest(times, times, nr, t)
        ks[K_NR] = nr
        ks[K_RLOG] = base + k
        span[7] = base + k
        for i in range(nr):
            nxt = min(nxt, times[i])
    ks[K_NEXT_OUT] = nxt
    return OK
