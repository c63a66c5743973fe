"""Preparing a capture for the matcher: the exchange-time order, the clock checks, and record copies.

Why kernels for what looks like one-off numpy calls: on a day of BTCUSDT (599k events) the setup cost more
than the replay itself. ``np.argsort(kind="stable")`` of the interleaved streams took 6 ms, and numpy moves
structured records field by field (``take`` 7 ms, ``copy`` 17 ms for 38 MB) where a loop copying whole
records takes 2.5 ms.

Why a merge: a capture is in receive order, and each kind of event (depth diffs, snapshot levels, trades,
book tickers) arrives from its own stream in exchange order; only the interleaving of the streams differs
between receive and exchange time. So the exchange order is a k-way merge of the per-kind sequences, linear
and mostly long runs from one stream, and equal to the stable sort it replaces (same key, ties by position).
When some kind's sequence is out of exchange order (several symbols' streams merged by receive time, say),
:func:`scan` says so and the caller falls back to the stable sort (one "stream" in that order).

Why the merge runs a chunk at a time (:func:`merge` resumes where it stopped): the simulator consumes the
exchange-ordered events in one pass, so it keeps a chunk of a few MB (hot in cache) instead of a 38 MB copy
of the day, whose fresh pages alone cost ~4 ms to fault in and zero.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..events import AGG_TRADE, KIND_MASK, TRADE

_N_KINDS = KIND_MASK + 1


@njit(cache=True, inline="always")
def _before(ts: int, late: int, pos: int, ts2: int, late2: int, pos2: int) -> bool:
    """Whether event (ts, late, pos) comes before (ts2, late2, pos2) in exchange order."""
    if ts != ts2:
        return ts < ts2
    if late != late2:
        return late < late2
    return pos < pos2


@njit(cache=True)
def scan(events: np.ndarray, kind: np.ndarray, its: np.ndarray) -> tuple[bool, bool, bool]:
    """One pass over the records (each pass over a day costs ~2 ms of memory traffic): their kinds and receive
    times into the compact arrays ``kind`` and ``its``, and (some event was received before it happened, the
    events are in receive order, each kind's events are in exchange-time order)."""
    early = False
    in_order = True
    kinds_in_order = True
    prev = np.iinfo(np.int64).min
    last = np.full(_N_KINDS, np.iinfo(np.int64).min, np.int64)
    for i in range(events.shape[0]):
        e = events[i]
        k = e["kind"] & KIND_MASK
        te = e["exchange_ts"]
        ti = e["ingest_ts"]
        kind[i] = k
        its[i] = ti
        early |= ti < te
        in_order &= ti >= prev
        kinds_in_order &= te >= last[k]
        prev = ti
        last[k] = te
    return early, in_order, kinds_in_order


@njit(cache=True)
def streams(kind: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The per-kind sequences to merge: ``pos`` (each kind's positions in order, one kind after another: a
    stable counting sort) and, per kind present, its ``[head, end)`` in ``pos`` and its ``late`` rank (0 for
    trades: they go first at a shared timestamp)."""
    n = kind.shape[0]
    count = np.zeros(_N_KINDS, np.int64)
    for i in range(n):
        count[kind[i]] += 1
    kinds = np.flatnonzero(count)
    m = kinds.shape[0]
    head, end, late = np.zeros(m, np.int64), np.zeros(m, np.int64), np.ones(m, np.int64)
    at = np.zeros(_N_KINDS, np.int64)
    acc = 0
    for s in range(m):
        k = kinds[s]
        head[s], at[k] = acc, acc
        acc += count[k]
        end[s] = acc
        if k in (TRADE, AGG_TRADE):
            late[s] = 0
    pos = np.empty(n, np.int64)
    for i in range(n):
        k = kind[i]
        pos[at[k]] = i
        at[k] += 1
    return pos, head, end, late


@njit(cache=True)
def merge(events: np.ndarray, pos: np.ndarray, head: np.ndarray, end: np.ndarray, late: np.ndarray,
          order: np.ndarray, out: np.ndarray) -> int:  # fmt: skip
    """The next events in exchange order: a merge of the sequences ``pos[head[s]:end[s]]`` (each in exchange
    order, see :func:`streams`) by time, ``late`` rank, then position (the stable sort's ties). Writes their
    positions into ``order`` and/or the records into ``out`` (the other may be empty) until it is full or
    all are out; returns how many, and advances ``head`` so that the next call goes on from there."""
    cap = out.shape[0] if out.shape[0] else order.shape[0]
    keep_order, keep_rows = order.shape[0] > 0, out.shape[0] > 0
    n = pos.shape[0]
    j = 0
    while j < cap:
        # the stream with the smallest head (time, lateness, position), and the smallest head of the others
        best = -1
        b_ts, b_late, b_pos = 0, 0, 0
        o_ts, o_late, o_pos = np.iinfo(np.int64).max, 1, n
        for s in range(head.shape[0]):
            if head[s] == end[s]:
                continue
            p = pos[head[s]]
            ts = events[p]["exchange_ts"]
            if best < 0 or _before(ts, late[s], p, b_ts, b_late, b_pos):
                if best >= 0:
                    o_ts, o_late, o_pos = b_ts, b_late, b_pos
                best, b_ts, b_late, b_pos = s, ts, late[s], p
            elif _before(ts, late[s], p, o_ts, o_late, o_pos):
                o_ts, o_late, o_pos = ts, late[s], p
        if best < 0:
            break
        # take from that stream while it stays ahead of the others
        h, stop, lb = head[best], end[best], late[best]
        while h < stop and j < cap:
            p = pos[h]
            if not _before(events[p]["exchange_ts"], lb, p, o_ts, o_late, o_pos):
                break
            if keep_order:
                order[j] = p
            if keep_rows:
                out[j] = events[p]
            j += 1
            h += 1
        head[best] = h
    return j


@njit(cache=True)
def gather(events: np.ndarray, order: np.ndarray, out: np.ndarray) -> None:
    """``out[j] = events[order[j]]``, whole records at a time."""
    for j in range(order.shape[0]):
        out[j] = events[order[j]]


@njit(cache=True)
def min_feed_latency(events: np.ndarray) -> int:
    """Smallest ``ingest_ts − exchange_ts`` (the events must not be empty)."""
    lo = events[0]["ingest_ts"] - events[0]["exchange_ts"]
    for i in range(1, events.shape[0]):
        d = events[i]["ingest_ts"] - events[i]["exchange_ts"]
        if d < lo:
            lo = d
    return int(lo)


@njit(cache=True)
def copy_shifted(events: np.ndarray, shift: int, out: np.ndarray) -> None:
    """``out`` = ``events`` with ``shift`` added to every ``ingest_ts``."""
    for i in range(events.shape[0]):
        out[i] = events[i]
        out[i]["ingest_ts"] += shift
