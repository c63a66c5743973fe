"""Queue-aware L2 matching with latency: the execution simulator's exchange side (``Simulator``).

Two clocks, as on a real venue (and hftbacktest's exchange/local split):

- **exchange time** (``event.exchange_ts``) drives matching: the book, trades, order arrivals and fills;
- **local time** (``event.ingest_ts``, when our process received an event) is what the strategy lives in.

A strategy at local time t has seen only events with ``ingest_ts <= t``: :meth:`Simulator.run_until`
returns exactly those, the book tops of the depth messages among them, and the fills and reports whose
``local_ts <= t``. An order it sends then (:meth:`Simulator.submit`, :meth:`Simulator.cancel`) reaches the
matching engine at ``t + entry latency`` and meets the book as it stood at that exchange time; each fill and
report reaches the strategy at its exchange time + response latency. Captures whose recorder clock ran behind
the venue must first go through :func:`~tradeplane.engine.sim.latency.align_local_clock` (otherwise the
strategy would see the future).

Why the strategy's book comes from the matcher (``Step.tops``, :meth:`Simulator.local_top`) and not from a
book of its own: the exchange-side book already settles after every message, so its top rows, each held back
until its ``ingest_ts``, are the book as the strategy could have seen it, for a few stores per message.

Matching semantics (docs in :mod:`.match_kernel`): market orders walk the book (remainder EXPIRED), limit
orders take what crosses then rest (GTC), POST_ONLY is rejected if it would cross, IOC takes and expires the
rest, FOK fills fully or is rejected, REDUCE_ONLY is clipped to the position from own fills (rejected if it
would increase it), STOP_MARKET turns market when a trade prints at or through ``stop_tick``. Orders sharing
an ``oco_id`` form an OCO list: the first fill of a leg expires the others, and cancelling a live leg cancels
them (Binance: cancelling one leg cancels the list), in flight or not (reason REASON_OCO_SIBLING). Resting
orders join the queue behind the displayed quantity; see :mod:`.queue`. Nothing fills or takes while a book is
unsynced (a pu-chain gap until the next snapshot).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Final, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt

from ..book import kernels as kn
from ..events import AGG_TRADE, EVENT_DTYPE, TRADE, EventArray, book_top_dtype
from . import kernel_commands as kc
from . import kernel_setup as ks_setup
from . import match_kernel as mk
from .depth import SimDepth
from .latency import ConstantLatency, LatencyModel
from .orders import FILL_DTYPE, GTC, LIMIT, ORDER_DTYPE
from .queue import QueueModel

Records = npt.NDArray[np.void]
I64 = npt.NDArray[np.int64]

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_T = TypeVar("_T", bound="DataclassInstance")
_NO_FILLS = np.zeros(0, FILL_DTYPE)
_NO_REPORTS = np.zeros(0, ORDER_DTYPE)
_NO_TS = np.zeros(0, np.int64)
_NO_IDS = np.zeros(0, np.int64)
_NO_EVENTS = np.zeros(0, EVENT_DTYPE)


class SimulatorError(RuntimeError):
    """The simulator cannot continue (a capacity that cannot grow, or misuse of the clocks)."""


class OrderTableFullError(SimulatorError):
    """More live orders than ``SimConfig.order_capacity``."""


@dataclass(frozen=True)
class SimConfig:
    """Per-symbol ticks and fees, and the preallocated capacities (the matching kernel never allocates).

    ``tick_sizes``: symbol id → price tick (orders are priced in integer ticks of it). Fees in basis points
    of notional, per symbol (negative maker = rebate). ``fill_capacity`` / ``report_capacity``: initial size
    of the buffers of fills and reports in flight (produced, not yet received; they grow if one unit of work
    could not fit); ``order_capacity`` is a hard limit on live orders.
    ``top_levels``: levels per side in each :attr:`Step.tops` row (``book_top_dtype(top_levels)``);
    ``top_capacity``: initial size of the buffer of tops not yet received (it grows).
    """

    tick_sizes: Mapping[int, float]
    maker_bps: Mapping[int, float] = field(default_factory=dict)
    taker_bps: Mapping[int, float] = field(default_factory=dict)
    order_capacity: int = 1024
    fill_capacity: int = 1 << 16
    report_capacity: int = 1 << 16
    window_ticks: int = 1 << 17
    top_levels: int = 5
    top_capacity: int = 1 << 14


@dataclass(frozen=True, slots=True)
class Step:
    """What the strategy may see after :meth:`Simulator.run_until`: new market data (``ingest_ts`` in the
    step), the book's top after each depth/snapshot message among it (``book_top_dtype(top_levels)`` rows as
    the matcher's book stood after the message: synced 0 and NaN levels while it waits for a snapshot),
    fills (FILL_DTYPE) and order reports (ORDER_DTYPE rows as of the status change; ``report_ts`` = when each
    reaches the strategy), all in local-time order (ties: exchange order)."""

    events: EventArray
    tops: Records
    fills: Records
    reports: Records
    report_ts: I64


def fast_constructor(cls: type[_T]) -> Callable[[Any, Any, Any, Any, Any], _T]:
    """A constructor for a frozen, slotted dataclass of five plain fields that sets the slots through their
    descriptors. Why: a frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``
    (0.6 µs for five), and a backtest builds a :class:`Step` and a ``MarketBatch`` on every wake-up; this
    takes 0.35 µs. Nothing else runs (no ``__post_init__``), so only for classes that have none."""
    s1, s2, s3, s4, s5 = (cls.__dict__[f.name].__set__ for f in fields(cls))
    new = object.__new__

    def make(a: Any, b: Any, c: Any, d: Any, e: Any) -> _T:
        obj = new(cls)
        s1(obj, a)
        s2(obj, b)
        s3(obj, c)
        s4(obj, d)
        s5(obj, e)
        return obj

    return make


_new_step = fast_constructor(Step)


def new_order(
    order_id: int,
    side: int,
    qty: float,
    *,
    type: int = LIMIT,  # the ORDER_DTYPE field name
    price_tick: int = 0,
    tif: int = GTC,
    flags: int = 0,
    stop_tick: int = 0,
    oco_id: int = 0,
    symbol: int = 0,
) -> Records:
    """One ORDER_DTYPE row ready for :meth:`Simulator.submit` (concatenate rows to submit several)."""
    o = np.zeros(1, ORDER_DTYPE)
    o["order_id"], o["symbol"], o["side"], o["type"], o["tif"] = order_id, symbol, side, type, tif
    o["flags"], o["price_tick"], o["stop_tick"], o["qty"], o["oco_id"] = flags, price_tick, stop_tick, qty, oco_id
    o["avg_px"] = np.nan
    return o


def exchange_order(events: EventArray) -> I64:
    """Permutation putting events in exchange-time order: stable, with trades before other kinds at the same
    timestamp (a trade and the depth update it causes share a transaction time; consuming the queue by the
    trade first keeps the depth decrease from being mistaken for a cancellation). Messages stay whole and in
    stream order because their events share one timestamp."""
    return _prepare(events).feed.order()


class _ExchangeFeed:
    """The events in exchange order, a chunk at a time (:func:`.kernel_setup.merge` resumes where it stopped):
    the matcher reads them once, front to back, so a chunk of a few MB stays hot in cache where a copy of
    the whole capture would be paged in, written and read back."""

    def __init__(self, events: EventArray, pos: I64, head: I64, end: I64, late: I64) -> None:
        self._events, self._pos, self._head, self._end, self._late = events, pos, head, end, late
        self.left = int(events.shape[0])  #: events not handed out yet

    def fill(self, buf: EventArray) -> EventArray:
        """The next events (at most ``buf``'s length), written into ``buf``; a view of it."""
        k = ks_setup.merge(self._events, self._pos, self._head, self._end, self._late, _NO_IDS, buf)
        self.left -= k
        return buf[:k]

    def order(self) -> I64:
        """The positions of all the events left, in exchange order."""
        out = np.empty(self.left, np.int64)
        self.left -= ks_setup.merge(self._events, self._pos, self._head, self._end, self._late, out, _NO_EVENTS)
        return out


class _Prepared(NamedTuple):
    """A capture as the simulator needs it (see :func:`_prepare`)."""

    feed: _ExchangeFeed  #: the events in exchange order
    early: bool  #: some event was received before it happened
    in_order: bool  #: the events are in receive order (captures are)
    ingest: I64  #: the events' ``ingest_ts``, contiguous


def _prepare(events: EventArray) -> _Prepared:
    """One pass over the records (:func:`.kernel_setup.scan`), then the exchange order: a merge of the per-kind
    streams when each is in exchange order (captures are), else a stable sort on the same key."""
    n = events.shape[0]
    kind, its = np.empty(n, np.uint8), np.empty(n, np.int64)
    early, in_order, mergeable = ks_setup.scan(events, kind, its)
    if mergeable:
        pos, head, end, late = ks_setup.streams(kind)
    else:  # one stream, in the order of a stable sort
        ets = events["exchange_ts"]
        not_trade = ~((kind == TRADE) | (kind == AGG_TRADE))
        if n and (int(ets.min()) < 0 or int(ets.max()) >= 1 << 62):
            pos = np.lexsort((not_trade, ets))
        else:  # one int64 key (ts, not_trade) and a stable sort: ~2× lexsort's speed
            pos = np.argsort(ets * 2 + not_trade, kind="stable")
        head, end, late = np.zeros(1, np.int64), np.full(1, n, np.int64), np.zeros(1, np.int64)
    return _Prepared(_ExchangeFeed(events, pos, head, end, late), bool(early), bool(in_order), its)


class Simulator:
    """The exchange side of a backtest over prepared EVENT_DTYPE arrays (one or several symbols).

    Usage: ``step = sim.run_until(t)`` (advance local time to t, see what arrived), then ``sim.submit(rows)``
    / ``sim.cancel(ids)`` at that local time; repeat. :meth:`run_to_end` drains the rest. All fills and
    reports ever produced are in :attr:`fills` / :attr:`reports` (exchange side, including those the strategy
    has not received yet); :meth:`local_top` is the touch as the strategy last saw it.

    Why each step's arrays are views: delivered fills, reports and tops are appended to logs inside the kernel
    (:mod:`.kernel_deliver`), and events are delivered in receive order, so a step is four slices of arrays
    that are never overwritten; a strategy may keep them.
    """

    def __init__(
        self,
        events: EventArray,
        config: SimConfig,
        *,
        entry_latency: LatencyModel | None = None,
        response_latency: LatencyModel | None = None,
        queue_model: QueueModel | None = None,
    ) -> None:
        if events.dtype != EVENT_DTYPE or events.ndim != 1:
            raise TypeError("events must be a 1-D EVENT_DTYPE array")
        prep = _prepare(events)
        if prep.early:
            raise ValueError("events received before they happened (ingest_ts < exchange_ts): align_local_clock first")
        self.config = config
        self.depth = SimDepth(config.tick_sizes, config.window_ticks)
        n_sym = self.depth.n_symbols
        self._events, self._feed = events, prep.feed
        self._chunk = np.empty(max(1, min(_CHUNK, events.shape[0])), EVENT_DTYPE)
        self._ex_chunk = self._feed.fill(self._chunk)  # the kernel's events: this chunk, then the next ones
        # in receive order already (as captures are): shared, not copied — the simulator never writes events
        if prep.in_order:
            self._local, local_ts = np.ascontiguousarray(events), prep.ingest
        else:
            self._local = _reordered(events, np.argsort(prep.ingest, kind="stable"))
            local_ts = np.ascontiguousarray(self._local["ingest_ts"])
        self.entry = entry_latency or ConstantLatency(0)
        self.response = response_latency or ConstantLatency(0)
        self.queue = queue_model or QueueModel.risk_averse()
        if config.top_levels < 1 or config.top_capacity < 1:
            raise ValueError("SimConfig.top_levels and top_capacity must be ≥ 1")
        cap, n_top = config.order_capacity, config.top_capacity
        self.orders = np.zeros(cap, ORDER_DTYPE)
        self.position = np.zeros(n_sym, np.float64)
        self._top_dtype = book_top_dtype(config.top_levels)
        d, (rmode, rvals, rts) = self.depth, self.response.kernel_view()
        # the kernel's state (see kernel_state for the groups); the edge replaces an array when it grows one
        slots = np.zeros(cap, mk.SLOT_DTYPE)
        slots["mid"] = np.nan
        self._k = mk.Kernel(
            cmds=np.zeros((64, 4), np.int64),
            book=mk.Book(d.st, d.bq, d.aq, d.inv, int(d.width)),
            io=mk.BookIO(
                d.counters,
                d.batch_counters,
                d.touched,
                d.before,
                d.buf_i,
                d.buf_f,
                int(d.buf_cap),
                g=np.zeros((mk.RECORDS_PER_MESSAGE * mk.MAX_BATCH_MESSAGES, kn.N_G), np.int64),
                r=np.zeros((mk.RECORDS_PER_MESSAGE * mk.MAX_BATCH_MESSAGES, kn.N_R), np.int64),
                tops=np.zeros(n_top, self._top_dtype),
                t_index=np.zeros(n_top, np.int64),
            ),
            m=mk.Matcher(
                ks=np.zeros(mk.N_KS, np.int64),
                table=mk.OrderTable(
                    self.orders, used=np.zeros(cap, np.uint8), slots=slots, active=np.zeros(cap, np.int64)
                ),
                out=mk.Outputs(
                    fills=np.zeros(config.fill_capacity, FILL_DTYPE),
                    reports=np.zeros(config.report_capacity, ORDER_DTYPE),
                    report_ts=np.zeros(config.report_capacity, np.int64),
                ),
                resp=mk.Latency(int(rmode), rvals, rts),
                acct=mk.Account(
                    pos=self.position,
                    maker_bps=np.array([config.maker_bps.get(s, 0.0) for s in range(n_sym)], np.float64),
                    taker_bps=np.array([config.taker_bps.get(s, 0.0) for s in range(n_sym)], np.float64),
                ),
                queue=mk.Queue(int(self.queue.model), float(self.queue.param)),
            ),
            d=mk.Delivery(
                local_ts=local_ts,
                fills=np.zeros(_LOG_START, FILL_DTYPE),
                reports=np.zeros(_LOG_START, ORDER_DTYPE),
                report_ts=np.zeros(_LOG_START, np.int64),
                tops=np.zeros(max(n_top, _LOG_START), self._top_dtype),
                touch=np.full((n_sym, 4), np.nan),
                marks=np.full((n_sym, 3), np.nan),
                span=np.zeros(8, np.int64),
            ),
        )
        self._ks = self._k.m.ks
        self._ks[mk.K_NEXT_OUT] = mk.BIG
        self._ks[mk.K_MORE] = self._feed.left > 0
        self._set_kernel(self._k)
        self._no_tops = np.zeros(0, self._top_dtype)
        # entry latency: a constant goes to the kernel as is; other models draw per send, in send order
        self._entry_const = (
            np.array([self.entry.latency_ns], np.int64) if isinstance(self.entry, ConstantLatency) else None
        )
        self.now = int(local_ts[0]) - 1 if local_ts.shape[0] else 0  #: local time; nothing seen yet
        self.late_events = 0  #: events :meth:`extend` received after the exchange time they belong to

    # --- commands (at the current local time) -----------------------------------------------------------------

    def submit(self, orders: Records) -> None:
        """Send orders at local time :attr:`now`; each reaches the exchange after an entry-latency draw."""
        orders = np.atleast_1d(np.asarray(orders))
        if orders.dtype != ORDER_DTYPE:
            raise TypeError("orders must be ORDER_DTYPE rows (see new_order)")
        if orders.shape[0]:
            self._send(np.array(orders, order="C"), _NO_IDS)

    def cancel(self, order_ids: npt.ArrayLike) -> None:
        """Request cancels at local time :attr:`now` (a cancel that finds nothing live is counted, not raised)."""
        ids = np.array(np.atleast_1d(np.asarray(order_ids, np.int64)), order="C")
        if ids.shape[0]:
            self._send(_NO_REPORTS, ids)

    def _send(self, rows: Records, ids: I64) -> None:
        """Orders then cancels at :attr:`now`, in one kernel call (entry latencies drawn in that order).
        ``rows``: C-contiguous, writable rows with ORDER_DTYPE's order fields (ORDER_DTYPE or ``SEND_DTYPE``);
        ``ids``: C-contiguous, writable int64 — the types the bound kernel was compiled for."""
        if self._entry_const is not None:
            lat_rows = lat_ids = self._entry_const
        else:
            lat_rows, lat_ids = _NO_IDS, _NO_IDS
            if rows.shape[0]:
                lat_rows = np.array(self.entry.draw(np.full(rows.shape[0], self.now, np.int64)), np.int64)
            if ids.shape[0]:
                lat_ids = np.array(self.entry.draw(np.full(ids.shape[0], self.now, np.int64)), np.int64)
        while True:
            k = self._k
            args = (rows, ids, lat_rows, lat_ids, int(self.now), self._args)
            send = self._send_entries.get(rows.dtype)
            if send is None:
                send = self._send_entries[rows.dtype] = mk.bind(kc.send, *args)
            code = send(*args)
            if code == mk.OK:
                return
            if code == mk.ERR_CMDS_FULL:  # grow the queue (pending commands move to the front)
                ks, need = self._ks, int(self._ks[mk.K_NEED])
                cmds = np.zeros((2 * need, 4), np.int64)
                live = k.cmds[ks[mk.K_CMD_HEAD] : ks[mk.K_CMD_N]]
                cmds[: live.shape[0]] = live
                ks[mk.K_CMD_HEAD], ks[mk.K_CMD_N] = 0, live.shape[0]
                self._set_kernel(k._replace(cmds=cmds))
            elif code == mk.ERR_BAD_ORDER:
                raise ValueError("orders need qty > 0 and a configured symbol")
            elif code == mk.ERR_TABLE_FULL:
                n, free = self.orders.shape[0], int(self._ks[mk.K_NEED])
                raise OrderTableFullError(f"{rows.shape[0]} new orders but only {free} free of {n} slots")
            else:
                raise SimulatorError(f"send stopped with status {code}")

    def extend(self, events: EventArray) -> None:
        """Append events received after those given so far (paper trading on a live feed).

        ``events`` continue the receive order (``ingest_ts`` ≥ the last one's). The exchange side merges them
        with what it has not processed yet, in the same order as if all events had been given at once
        (exchange time, trades first, then receive position). Events that happened before the exchange time
        already processed arrive too late to be placed in order; they are processed next and counted in
        :attr:`late_events` — a caller that holds local time back by more than the feed's latency sees none.
        """
        if events.dtype != EVENT_DTYPE or events.ndim != 1:
            raise TypeError("events must be a 1-D EVENT_DTYPE array")
        n = events.shape[0]
        if n == 0:
            return
        its = np.ascontiguousarray(events["ingest_ts"])
        if bool(np.any(its < events["exchange_ts"])):
            raise ValueError("events received before they happened (ingest_ts < exchange_ts): align the clock first")
        ks, k = self._ks, self._k
        if bool(np.any(np.diff(its) < 0)) or (k.d.local_ts.shape[0] and int(its[0]) < int(k.d.local_ts[-1])):
            raise ValueError("extend: events must continue the receive order (ingest_ts non-decreasing)")
        self.late_events += int(np.count_nonzero(events["exchange_ts"] < ks[mk.K_NOW]))
        # receive side: what the strategy has not received yet, then the new events
        e = int(ks[mk.K_LOCAL])
        self._local = np.concatenate([self._local[e:], events])
        local_ts = np.concatenate([k.d.local_ts[e:], its])
        ks[mk.K_LOCAL] = 0
        # exchange side: the chunk's unread rest, the feed's rest (both in exchange order), then the new events
        rest = [self._ex_chunk[int(ks[mk.K_EV]) :].copy()]
        if self._feed.left:
            left = np.empty(self._feed.left, EVENT_DTYPE)
            rest.append(self._feed.fill(left))
        pending = np.concatenate([*rest, events])
        self._feed = _prepare(pending).feed
        if self._chunk.shape[0] < _CHUNK and self._chunk.shape[0] < pending.shape[0]:
            self._chunk = np.empty(min(_CHUNK, pending.shape[0]), EVENT_DTYPE)
        self._ex_chunk = self._feed.fill(self._chunk)
        ks[mk.K_EV], ks[mk.K_MORE] = 0, self._feed.left > 0
        self._set_kernel(k._replace(d=k.d._replace(local_ts=local_ts)))

    # --- time ------------------------------------------------------------------------------------------------

    def run_until(self, local_ts: int) -> Step:
        """Advance to local time ``local_ts``: the exchange processes everything up to exchange time
        ``local_ts`` (no report from later can arrive by then, and no later command can arrive earlier), and
        the step holds what the strategy has received by then."""
        t = int(local_ts)
        if t < self.now:
            raise SimulatorError(f"time goes forward only: {local_ts} < now {self.now}")
        if self._step_entry(self._ex_chunk, t, t, self._args) != mk.OK:
            self._advance(t, t)
        self.now = t
        return self._step()

    def run_to_end(self) -> Step:
        """Process all remaining data and deliver every outstanding report."""
        self._advance(mk.BIG, mk.BIG)
        if self._k.d.local_ts.shape[0]:
            self.now = max(self.now, int(self._k.d.local_ts[-1]))
        return self._step()

    def _step(self) -> Step:
        """The last delivery as views into the logs (``Delivery.span``)."""
        e0, e1, t0, t1, f0, f1, r0, r1 = self._span.tolist()
        d = self._k.d
        return _new_step(
            self._local[e0:e1],
            d.tops[t0:t1] if t1 > t0 else self._no_tops,
            d.fills[f0:f1] if f1 > f0 else _NO_FILLS,
            d.reports[r0:r1] if r1 > r0 else _NO_REPORTS,
            d.report_ts[r0:r1] if r1 > r0 else _NO_TS,
        )

    def _set_kernel(self, k: mk.Kernel) -> None:
        """Swap in a kernel bundle with a replaced (grown or refilled) array."""
        self._k, self._args = k, mk.pack(k)
        self._span, self._touch, self._marks = k.d.span, k.d.touch, k.d.marks
        self._step_entry = mk.bind(mk.step, self._ex_chunk, 0, 0, self._args)
        self._send_entries: dict[np.dtype[np.void], Any] = {}  # rows dtype → bound ``kernel_commands.send``

    def _advance(self, stop: int, deliver: int) -> None:
        """Run the kernel to ``stop`` and deliver to ``deliver``, growing or refilling what it stops for."""
        ks = self._ks
        while True:
            code = self._step_entry(self._ex_chunk, stop, deliver, self._args)
            if code == mk.OK:
                return
            need = int(ks[mk.K_NEED])
            k, m = self._k, self._k.m
            if code == mk.ERR_NEED_EVENTS:
                self._ex_chunk = self._feed.fill(self._chunk)
                ks[mk.K_EV], ks[mk.K_MORE] = 0, self._feed.left > 0
            elif code == mk.ERR_OUTPUT_FULL:  # grow what one unit might not fit in (keeping what is in flight)
                out, io = m.out, k.io
                n_f, n_r = int(ks[mk.K_NF]), int(ks[mk.K_NR])
                if n_f + need > out.fills.shape[0]:
                    out = out._replace(fills=_grown(out.fills, n_f, 2 * (n_f + need)))
                if n_r + need > out.reports.shape[0]:
                    size = 2 * (n_r + need)
                    out = out._replace(
                        reports=_grown(out.reports, n_r, size), report_ts=_grown(out.report_ts, n_r, size)
                    )
                n_top = int(ks[mk.K_NT])
                if n_top >= io.tops.shape[0]:  # tops in flight stay until delivered: grow
                    io = io._replace(tops=_grown(io.tops, n_top, 2 * n_top), t_index=np.zeros(2 * n_top, np.int64))
                if out is not m.out or io is not k.io:
                    self._set_kernel(k._replace(io=io, m=m._replace(out=out)))
            elif code == mk.ERR_LOG_FULL:  # the delivered logs only grow: a bigger copy (old steps keep theirs)
                d = k.d
                n_f, n_r = int(ks[mk.K_FLOG]), int(ks[mk.K_RLOG])
                if n_f + int(ks[mk.K_NF]) > d.fills.shape[0]:
                    d = d._replace(fills=_grown(d.fills, n_f, 2 * (n_f + int(ks[mk.K_NF]))))
                if n_r + int(ks[mk.K_NR]) > d.reports.shape[0]:
                    size = 2 * (n_r + int(ks[mk.K_NR]))
                    d = d._replace(reports=_grown(d.reports, n_r, size), report_ts=_grown(d.report_ts, n_r, size))
                self._set_kernel(k._replace(d=d))
            elif code == mk.ERR_TOPS_LOG_FULL:  # handed-out tops are not needed here: a fresh buffer
                size = max(k.d.tops.shape[0], 2 * need)
                self._set_kernel(k._replace(d=k.d._replace(tops=np.zeros(size, self._top_dtype))))
                ks[mk.K_TLOG] = 0
            elif code == mk.ERR_LATENCY_EXHAUSTED:
                parts = [m.resp.vals[ks[mk.K_RESP_CUR] :]]
                while sum(p.shape[0] for p in parts) < 2 * need:
                    parts.append(self.response.next_block())
                self._set_kernel(k._replace(m=m._replace(resp=m.resp._replace(vals=np.concatenate(parts)))))
                ks[mk.K_RESP_CUR] = 0
            else:
                raise SimulatorError(f"matching kernel stopped with status {code}")

    def local_top(self, symbol: int) -> tuple[float, float, float, float]:
        """(bid px, bid qty, ask px, ask qty) of the last top of ``symbol`` delivered to the strategy: the
        touch as it could have seen it at :attr:`now`. NaN before the first top, while the book is unsynced,
        and for an empty side."""
        touch = self._touch
        if not 0 <= symbol < touch.shape[0]:
            raise ValueError(f"symbol {symbol} is not configured (tick_sizes has {touch.shape[0]} ids)")
        bp, bq, ap, aq = touch[symbol].tolist()
        return bp, bq, ap, aq

    # --- inspection ------------------------------------------------------------------------------------------

    def _in_flight(self) -> tuple[Records, Records, I64]:
        """Fills, reports and their arrival times produced but not delivered, each in arrival order."""
        ks, out = self._ks, self._k.m.out
        f = out.fills[: ks[mk.K_NF]]
        f = f[np.argsort(f["local_ts"], kind="stable")]
        rt = out.report_ts[: ks[mk.K_NR]]
        order = np.argsort(rt, kind="stable")
        return f, out.reports[: ks[mk.K_NR]][order], rt[order]

    @property
    def fills(self) -> Records:
        """Every fill so far: delivered ones in local-time order, then those still in flight."""
        d = self._k.d
        return _joined([d.fills[: self._ks[mk.K_FLOG]], self._in_flight()[0]], FILL_DTYPE)

    @property
    def reports(self) -> Records:
        """Every order report so far (ORDER_DTYPE rows as of each status change), delivered ones first."""
        d = self._k.d
        return _joined([d.reports[: self._ks[mk.K_RLOG]], self._in_flight()[1]], ORDER_DTYPE)

    @property
    def report_ts(self) -> I64:
        """When each row of :attr:`reports` reaches (or reached) the strategy (local ns)."""
        d = self._k.d
        return np.concatenate([d.report_ts[: self._ks[mk.K_RLOG]], self._in_flight()[2]])

    @property
    def _ex(self) -> EventArray:
        """The constructor's events in exchange order (a copy, for inspection: the kernel reads them a chunk at
        a time; events added by :meth:`extend` are not included)."""
        return _reordered(self._events, exchange_order(self._events))

    @property
    def exchange_ts(self) -> int:
        """Exchange time of the last unit of work the matcher processed."""
        return int(self._ks[mk.K_NOW])

    def next_activity(self) -> int | None:
        """The earliest local time something of ours happens without new market data: a pending command
        reaching the exchange, or a fill or report reaching the strategy (None when nothing is in flight).
        Runners wake there so executors react at the latency, not at their next scheduled wake-up."""
        ks = self._ks
        head, n, out = ks[mk.K_CMD_HEAD], ks[mk.K_CMD_N], ks[mk.K_NEXT_OUT]
        t = min(int(self._k.cmds[head, 0]), int(out)) if head < n else int(out)
        return None if t == mk.BIG else t

    @property
    def cancel_misses(self) -> int:
        return int(self._ks[mk.K_CANCEL_MISS])

    def live_orders(self) -> Records:
        """Orders sent and not finished (PENDING, OPEN, PARTIALLY_FILLED) as the exchange sees them now."""
        live: Records = self.orders[self._k.m.table.used == 1].copy()
        return live


#: Initial length of the delivered logs (they double as needed).
_LOG_START = 1024
#: Exchange-ordered events per chunk (2 MB: stays in cache between the merge that writes it and the matcher).
_CHUNK = 1 << 15

#: The order fields a strategy sets (what :meth:`Simulator.submit` keeps of an ORDER_DTYPE row), packed: rows a
#: runner builds from Python values in one ``np.array`` call and hands to ``Simulator._send``.
SEND_DTYPE: Final = np.dtype(
    [("order_id", "i8"), ("symbol", "u4"), ("side", "i1"), ("type", "i1"), ("tif", "i1"), ("flags", "i1"),
     ("price_tick", "i8"), ("stop_tick", "i8"), ("qty", "f8"), ("oco_id", "i8")]
)  # fmt: skip


def _grown(a: npt.NDArray[Any], n: int, size: int) -> npt.NDArray[Any]:
    """A zeroed array of ``size`` rows holding ``a[:n]``."""
    out = np.zeros((size, *a.shape[1:]), a.dtype)
    out[:n] = a[:n]
    return out


def _joined(parts: list[Records], dtype: np.dtype[np.void]) -> Records:
    """Records concatenated as raw bytes (numpy's record-wise concatenate promotes fields part by part and may
    leave padding bytes undefined), so that logs, whose padding the kernels keep zero, hash the same."""
    raw = np.concatenate([np.ascontiguousarray(p).view(np.dtype((np.void, dtype.itemsize))) for p in parts])
    out: Records = raw.view(dtype)
    return out


def _reordered(events: EventArray, order: I64) -> EventArray:
    """``events[order]`` as a new contiguous array, whole records at a time (numpy's ``take`` and fancy
    indexing of structured arrays measured 3× and 15× slower)."""
    out: EventArray = np.empty(order.shape[0], EVENT_DTYPE)
    ks_setup.gather(events, order, out)
    return out


def fills_per_order(fills: Records) -> Mapping[int, float]:
    """Total filled quantity by order id (a convenience for reports and tests)."""
    out: dict[int, float] = {}
    for oid, q in zip(fills["order_id"].tolist(), fills["qty"].tolist(), strict=True):
        out[oid] = out.get(oid, 0.0) + q
    return out
