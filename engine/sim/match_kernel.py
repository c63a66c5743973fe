"""The njit matching kernel: exchange-time replay of L2 events interleaved with own-order commands.

Why one kernel per micro-batch with all state in arrays (hftbacktest's layout): the budget is ≥ 10M events/s
on one core, so nothing per event may touch Python. The Python edge (:mod:`.matching`) owns the arrays,
sends orders and cancels through :mod:`.kernel_commands` between calls, and turns the status codes returned
here into grown buffers, refills and exceptions. A call stops *before* a unit of work it could not finish
(output or latency samples short, the chunk of exchange-ordered events used up), so any stop point resumes
to the same result. Each call ends by delivering what reached the strategy (:mod:`.kernel_deliver`).

Units of work, in exchange time (``exchange_ts``; ties: market data first, then commands in send order):
a whole depth/snapshot message (book kernel, one top-of-book row, then queue updates of resting orders at its
symbol), a trade (queue consumption, passive fills, stop triggers), a command (order arrival or cancel). BBO
and other kinds are ignored: the book comes from depth only, so it is exact at every message end. While no
own order is live, nothing reads the book between messages, so all messages up to the next command (or the
stop) are one unit: one book-kernel call instead of one per message, which pays for writing the tops.

The kernel is split by concern: :mod:`.kernel_state` (the state groups, scalar slots and status codes),
:mod:`.kernel_outputs` (fills, reports, room checks), :mod:`.kernel_orders` (arrival, cancel, OCO),
:mod:`.kernel_trades` (trades and queues), :mod:`.kernel_deliver` (what reaches the strategy),
:mod:`.kernel_commands` (sends) and :mod:`.kernel_setup` (exchange order, copies); this module is the event
loop, and re-exports what the edge uses.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..book import kernels as kn
from ..events import AGG_TRADE, DEPTH, KIND_MASK, LAST_IN_MSG, SNAPSHOT, TRADE
from .depth import message_end
from .kernel_deliver import deliver
from .kernel_orders import arrive, cancel
from .kernel_outputs import room
from .kernel_state import (
    BIG,
    CMD_CANCEL,
    CMD_SUBMIT,
    ERR_BAD_ORDER,
    ERR_BOOK,
    ERR_CMDS_FULL,
    ERR_LATENCY_EXHAUSTED,
    ERR_LOG_FULL,
    ERR_NEED_EVENTS,
    ERR_OUTPUT_FULL,
    ERR_TABLE_FULL,
    ERR_TOPS_LOG_FULL,
    K_CANCEL_MISS,
    K_CMD_HEAD,
    K_CMD_N,
    K_EPOCH,
    K_EV,
    K_FLOG,
    K_LOCAL,
    K_MORE,
    K_NACT,
    K_NEED,
    K_NEXT_OUT,
    K_NF,
    K_NOW,
    K_NR,
    K_NT,
    K_NUSED,
    K_RESP_CUR,
    K_RLOG,
    K_STREAM,
    K_TLOG,
    MAX_BATCH_MESSAGES,
    N_KS,
    OK,
    RECORDS_PER_MESSAGE,
    SLOT_DTYPE,
    Account,
    Book,
    BookIO,
    Delivery,
    Kernel,
    Latency,
    Matcher,
    OrderTable,
    Outputs,
    Queue,
    State,
    bind,
    pack,
    unpack,
)
from .kernel_trades import on_message, on_trade, reaches_an_order
from .orders import PENDING

__all__ = [
    "BIG",
    "CMD_CANCEL",
    "CMD_SUBMIT",
    "ERR_BAD_ORDER",
    "ERR_BOOK",
    "ERR_CMDS_FULL",
    "ERR_LATENCY_EXHAUSTED",
    "ERR_LOG_FULL",
    "ERR_NEED_EVENTS",
    "ERR_OUTPUT_FULL",
    "ERR_TABLE_FULL",
    "ERR_TOPS_LOG_FULL",
    "K_CANCEL_MISS",
    "K_CMD_HEAD",
    "K_CMD_N",
    "K_EV",
    "K_FLOG",
    "K_LOCAL",
    "K_MORE",
    "K_NEED",
    "K_NEXT_OUT",
    "K_NF",
    "K_NOW",
    "K_NR",
    "K_NT",
    "K_NUSED",
    "K_RESP_CUR",
    "K_RLOG",
    "K_TLOG",
    "MAX_BATCH_MESSAGES",
    "N_KS",
    "OK",
    "RECORDS_PER_MESSAGE",
    "SLOT_DTYPE",
    "Account",
    "Book",
    "BookIO",
    "Delivery",
    "Kernel",
    "Latency",
    "Matcher",
    "OrderTable",
    "Outputs",
    "Queue",
    "State",
    "bind",
    "pack",
    "step",
]


@njit(cache=True)
def _quiet_end(events: np.ndarray, i: int, limit: int, max_messages: int) -> int:
    """End of the events from ``i`` the book kernel may take in one call while no own order is live: all with
    ``exchange_ts <= limit`` (the next command or the stop; a message's events share one timestamp, so none is
    split), but at most ``max_messages`` book messages (each writes at most one top and
    ``RECORDS_PER_MESSAGE`` gap/resync records). Other kinds in between are skipped by the book kernel."""
    n = events.shape[0]
    started = 0
    prev_last = True  # the previous book event ended its message (or there was none)
    prev_key = (-1, -1, -1)
    j = i
    while j < n and events[j]["exchange_ts"] <= limit:
        e = events[j]
        typ = e["kind"] & KIND_MASK
        if typ in (DEPTH, SNAPSHOT):
            key = (typ, int(e["symbol"]), int(e["seq"]))
            if prev_last or key != prev_key:  # a new message starts here
                if started == max_messages:
                    return j
                started += 1
            prev_last = (e["kind"] & LAST_IN_MSG) != 0
            prev_key = key
        j += 1
    return j


@njit(cache=True, inline="always")
def _run(events: np.ndarray, stop_ts: int, cmds: np.ndarray, book: Book, io: BookIO, m: Matcher) -> int:
    """The event loop over a chunk of exchange-ordered ``events`` (cursor ``K_EV``), see :func:`step`."""
    ks, orders, active, st, inv = m.ks, m.table.orders, m.table.active, book.st, book.inv
    tops, t_index = io.tops, io.t_index
    n = events.shape[0]
    while True:
        i = ks[K_EV]
        if i >= n and ks[K_MORE]:  # before any command: the next events may come first
            return ERR_NEED_EVENTS
        ch = ks[K_CMD_HEAD]
        ev_ts = events[i]["exchange_ts"] if i < n else BIG
        cmd_ts = cmds[ch, 0] if ch < ks[K_CMD_N] else BIG
        if ev_ts <= cmd_ts:
            if i >= n or ev_ts > stop_ts:
                return OK
            typ = events[i]["kind"] & KIND_MASK
            if typ in (DEPTH, SNAPSHOT):
                # --- book messages through the book kernel, their top rows appended to the tops in flight ---
                nt = ks[K_NT]
                if nt >= tops.shape[0]:  # no room for a top
                    ks[K_NEED] = 0
                    return ERR_OUTPUT_FULL
                if ks[K_NACT] == 0:  # no live order: only the book moves, so up to the next command in one call
                    cap = min(tops.shape[0] - nt, io.g.shape[0] // RECORDS_PER_MESSAGE,
                              io.r.shape[0] // RECORDS_PER_MESSAGE)  # fmt: skip
                    j = _quiet_end(events, i, min(cmd_ts, stop_ts), cap)
                else:  # one message: resting orders see the level after each
                    j = message_end(events, i)
                ks[K_EPOCH] += 1
                status, n_top, _, _ = kn.apply_batch(
                    events[i:j], ks[K_STREAM], st, io.counters, io.batch_counters, ks[K_EPOCH], io.touched,
                    io.before, book.bq, book.aq, inv, book.width, io.buf_i, io.buf_f, io.buf_cap, tops[nt:],
                    t_index[nt:], io.g, io.r,
                )  # fmt: skip
                if status != kn.OK:
                    return ERR_BOOK
                ks[K_NT] = nt + n_top
                ks[K_STREAM] += j - i
                ks[K_EV] = j
                ks[K_NOW] = events[j - 1]["exchange_ts"]
                if ks[K_NACT] > 0 and (events[j - 1]["kind"] & LAST_IN_MSG) != 0:
                    on_message(ks, m.table, m.queue, book, int(events[i]["symbol"]))
                continue
            if (
                typ in (TRADE, AGG_TRADE)
                and ks[K_NACT] > 0
                and reaches_an_order(events[i], ks, orders, active, st, inv)
            ):
                s = events[i]["symbol"]
                # per live order: its walk if a stop triggers, its own reports and OCO siblings; plus siblings in flight
                need = ks[K_NACT] * (max(st[s, kn.ST_NA], st[s, kn.ST_NB]) + 3) + 4 + ks[K_NUSED] - ks[K_NACT]
                code = room(ks, m.out, m.resp, need)
                if code != OK:
                    return code
                on_trade(m, book, events[i], ev_ts)
                ks[K_EV] = i + 1
                ks[K_NOW] = ev_ts
                continue
            # --- a run of events that change nothing here (BBO, unreached trades): skip in a tight loop ---
            limit = min(cmd_ts, stop_ts)
            live = ks[K_NACT] > 0
            j = i + 1
            while j < n and events[j]["exchange_ts"] <= limit:
                typ = events[j]["kind"] & KIND_MASK
                if typ in (DEPTH, SNAPSHOT) or (live and typ in (TRADE, AGG_TRADE)):
                    break
                j += 1
            ks[K_EV] = j
            ks[K_NOW] = events[j - 1]["exchange_ts"]
        else:
            if cmd_ts > stop_ts:
                return OK
            kind = cmds[ch, 1]
            slot = cmds[ch, 2]
            s = orders[slot]["symbol"] if kind == CMD_SUBMIT else 0
            need = max(st[s, kn.ST_NA], st[s, kn.ST_NB]) + 2 * ks[K_NACT] + 4 + ks[K_NUSED] - ks[K_NACT]
            code = room(ks, m.out, m.resp, need)
            if code != OK:
                return code
            if kind == CMD_SUBMIT:
                # the slot may have been reused after an OCO sibling ended this order before it arrived
                if orders[slot]["order_id"] == cmds[ch, 3] and orders[slot]["status"] == PENDING:
                    arrive(m, book, slot, cmd_ts)
            else:
                cancel(m, cmds[ch, 3], cmd_ts)
            ks[K_CMD_HEAD] = ch + 1
            ks[K_NOW] = cmd_ts


@njit(cache=True)
def step(events: np.ndarray, stop_ts: int, deliver_ts: int, state: State) -> int:
    """Advance the exchange to ``stop_ts`` (inclusive): events with ``exchange_ts <= stop_ts`` and commands
    arriving by then, in time order (events first on ties); then deliver what reached the strategy by local
    time ``deliver_ts`` (:func:`.kernel_deliver.deliver`). ``events`` is the current chunk of the
    exchange-ordered events (``ERR_NEED_EVENTS`` asks for the next one). ``state`` is ``pack(Kernel(...))``.
    Returns ``OK`` or a stop code; the cursors in ``ks`` say where to resume (a call after a stop redoes
    nothing)."""
    k = unpack(state)
    code = _run(events, stop_ts, k.cmds, k.book, k.io, k.m)
    if code != OK:
        return code
    return deliver(k.m.ks, k.m.out, k.io, k.d, deliver_ts)
