"""Queue-aware L2 matching with latency: the execution simulator's exchange side (``Simulator``).

Two clocks, as on a real venue (and hftbacktest's exchange/local split):

- **exchange time** (``event.exchange_ts``) drives matching: the book, trades, order arrivals and fills;
- **local time** (``event.ingest_ts``, when our process received an event) is what the strategy lives in.

A strategy at local time t has seen only events with ``ingest_ts <= t`` (:meth:`Simulator.run_until`
returns exactly those, plus the fills and reports whose ``local_ts <= t``). An order it sends then
(:meth:`Simulator.submit`, :meth:`Simulator.cancel`) reaches the matching engine at ``t + entry latency``
and meets the book as it stood at that exchange time; each fill and report reaches the strategy at its
exchange time + response latency. Captures whose recorder clock ran behind the venue must first go through
:func:`~tradeplane.engine.sim.latency.align_local_clock` (otherwise the strategy would see the future).

Matching semantics (docs in :mod:`.match_kernel`): market orders walk the book (remainder EXPIRED), limit
orders take what crosses then rest (GTC), POST_ONLY is rejected if it would cross, IOC takes and expires the
rest, FOK fills fully or is rejected, REDUCE_ONLY is clipped to the position from own fills (rejected if it
would increase it), STOP_MARKET turns market when a trade prints at or through ``stop_tick``, and the first
fill of an OCO leg expires its sibling. Resting orders join the queue behind the displayed quantity; see
:mod:`.queue`. Nothing fills or takes while a book is unsynced (a pu-chain gap until the next snapshot).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ..events import AGG_TRADE, EVENT_DTYPE, KIND_MASK, TRADE, EventArray
from . import match_kernel as mk
from .depth import SimDepth
from .latency import ConstantLatency, LatencyModel
from .orders import FILL_DTYPE, GTC, LIMIT, ORDER_DTYPE, PENDING
from .queue import QueueModel

Records = npt.NDArray[np.void]
I64 = npt.NDArray[np.int64]

_NO_FILLS = np.zeros(0, FILL_DTYPE)
_NO_REPORTS = np.zeros(0, ORDER_DTYPE)
_NO_TS = np.zeros(0, np.int64)


class SimulatorError(RuntimeError):
    """The simulator cannot continue (a capacity that cannot grow, or misuse of the clocks)."""


class OrderTableFullError(SimulatorError):
    """More live orders than ``SimConfig.order_capacity``."""


@dataclass(frozen=True)
class SimConfig:
    """Per-symbol ticks and fees, and the preallocated capacities (the kernel never allocates).

    ``tick_sizes``: symbol id → price tick (orders are priced in integer ticks of it). Fees in basis points
    of notional, per symbol (negative maker = rebate). Fill/report buffers are drained after every call and
    grow if one unit of work could not fit; ``order_capacity`` is a hard limit on live orders.
    """

    tick_sizes: Mapping[int, float]
    maker_bps: Mapping[int, float] = field(default_factory=dict)
    taker_bps: Mapping[int, float] = field(default_factory=dict)
    order_capacity: int = 1024
    fill_capacity: int = 1 << 16
    report_capacity: int = 1 << 16
    window_ticks: int = 1 << 17


@dataclass(frozen=True, slots=True)
class Step:
    """What the strategy may see after :meth:`Simulator.run_until`: new market data (``ingest_ts`` in the
    step), fills (FILL_DTYPE) and order reports (ORDER_DTYPE rows as of the status change; ``report_ts`` =
    when each reaches the strategy), all in local-time order."""

    events: EventArray
    fills: Records
    reports: Records
    report_ts: I64


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
    typ = events["kind"] & KIND_MASK
    not_trade = ~((typ == TRADE) | (typ == AGG_TRADE))
    return np.lexsort((not_trade, events["exchange_ts"]))


class Simulator:
    """The exchange side of a backtest over prepared EVENT_DTYPE arrays (one or several symbols).

    Usage: ``step = sim.run_until(t)`` (advance local time to t, see what arrived), then ``sim.submit(rows)``
    / ``sim.cancel(ids)`` at that local time; repeat. :meth:`run_to_end` drains the rest. All fills and
    reports ever produced are in :attr:`fills` / :attr:`reports` (exchange side, including those the strategy
    has not received yet).
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
        if events.shape[0] and np.any(events["ingest_ts"] < events["exchange_ts"]):
            raise ValueError("events received before they happened (ingest_ts < exchange_ts): align_local_clock first")
        self.config = config
        self.depth = SimDepth(config.tick_sizes, config.window_ticks)
        n_sym = self.depth.n_symbols
        self._ex = np.ascontiguousarray(events[exchange_order(events)])
        local = np.argsort(events["ingest_ts"], kind="stable")
        self._local = np.ascontiguousarray(events[local])
        self._local_ts = np.ascontiguousarray(self._local["ingest_ts"])
        self.entry = entry_latency or ConstantLatency(0)
        self.response = response_latency or ConstantLatency(0)
        self.queue = queue_model or QueueModel.risk_averse()
        self._rmode, self._rvals, self._rts = self.response.kernel_view()
        cap = config.order_capacity
        self.orders = np.zeros(cap, ORDER_DTYPE)
        self._used = np.zeros(cap, np.uint8)
        self._active = np.zeros(cap, np.int64)
        self._lvl = np.zeros(cap, np.float64)
        self._traded = np.zeros(cap, np.float64)
        self._mark = np.zeros(cap, np.int64)
        self._mid = np.full(cap, np.nan)
        self._cmds = np.zeros((64, 4), np.int64)
        self._fills = np.zeros(config.fill_capacity, FILL_DTYPE)
        self._reports = np.zeros(config.report_capacity, ORDER_DTYPE)
        self._report_ts = np.zeros(config.report_capacity, np.int64)
        self.position = np.zeros(n_sym, np.float64)
        self._maker = np.array([config.maker_bps.get(s, 0.0) for s in range(n_sym)], np.float64)
        self._taker = np.array([config.taker_bps.get(s, 0.0) for s in range(n_sym)], np.float64)
        self._ks = np.zeros(mk.N_KS, np.int64)
        self._pending_f: list[Records] = []  # produced, not delivered (local_ts still ahead)
        self._pending_r: list[Records] = []
        self._pending_t: list[I64] = []
        self._done_f: list[Records] = []  # delivered, in local-time order
        self._done_r: list[Records] = []
        self._done_t: list[I64] = []
        self._local_pos = 0
        self.now = int(self._local_ts[0]) - 1 if self._local_ts.shape[0] else 0  #: local time; nothing seen yet

    # --- commands (at the current local time) -----------------------------------------------------------------

    def submit(self, orders: Records) -> None:
        """Send orders at local time :attr:`now`; each reaches the exchange after an entry-latency draw."""
        orders = np.atleast_1d(np.asarray(orders))
        if orders.dtype != ORDER_DTYPE:
            raise TypeError("orders must be ORDER_DTYPE rows (see new_order)")
        k = orders.shape[0]
        if k == 0:
            return
        if np.any(orders["qty"] <= 0) or np.any(orders["symbol"] >= self.depth.n_symbols):
            raise ValueError("orders need qty > 0 and a configured symbol")
        free = np.flatnonzero(self._used == 0)[:k]
        if free.shape[0] < k:
            raise OrderTableFullError(f"{k} new orders but only {free.shape[0]} free of {self._used.shape[0]} slots")
        rows = orders.copy()
        lat = self.entry.draw(np.full(k, self.now, np.int64))
        rows["status"], rows["reason"], rows["filled"], rows["avg_px"] = PENDING, 0, 0.0, np.nan
        rows["local_ts"], rows["exch_ts"], rows["update_ts"], rows["queue_ahead"] = self.now, self.now + lat, 0, 0.0
        self.orders[free] = rows
        self._used[free] = 1
        syms = rows["symbol"]
        self._mid[free] = (
            self.depth.mid(int(syms[0]))
            if k == 1 or np.all(syms == syms[0])
            else [self.depth.mid(int(s)) for s in syms]
        )
        cmds = np.empty((k, 4), np.int64)
        cmds[:, 0], cmds[:, 1], cmds[:, 2], cmds[:, 3] = rows["exch_ts"], mk.CMD_SUBMIT, free, rows["order_id"]
        self._enqueue(cmds)

    def cancel(self, order_ids: npt.ArrayLike) -> None:
        """Request cancels at local time :attr:`now` (a cancel that finds nothing live is counted, not raised)."""
        ids = np.atleast_1d(np.asarray(order_ids, np.int64))
        if ids.shape[0] == 0:
            return
        lat = self.entry.draw(np.full(ids.shape[0], self.now, np.int64))
        cmds = np.empty((ids.shape[0], 4), np.int64)
        cmds[:, 0], cmds[:, 1], cmds[:, 2], cmds[:, 3] = self.now + lat, mk.CMD_CANCEL, 0, ids
        self._enqueue(cmds)

    def _enqueue(self, new: I64) -> None:
        """Pending commands stay sorted by arrival (stable: send order on ties)."""
        ks = self._ks
        old = self._cmds[ks[mk.K_CMD_HEAD] : ks[mk.K_CMD_N]]
        live = np.concatenate([old, new]) if old.shape[0] else new
        if live.shape[0] > 1:
            live = live[np.argsort(live[:, 0], kind="stable")]
        if live.shape[0] > self._cmds.shape[0]:
            self._cmds = np.zeros((2 * live.shape[0], 4), np.int64)
        self._cmds[: live.shape[0]] = live
        ks[mk.K_CMD_HEAD], ks[mk.K_CMD_N] = 0, live.shape[0]

    # --- time ------------------------------------------------------------------------------------------------

    def run_until(self, local_ts: int) -> Step:
        """Advance to local time ``local_ts``: the exchange processes everything up to exchange time
        ``local_ts`` (no report from later can arrive by then, and no later command can arrive earlier), and
        the step holds what the strategy has received by then."""
        if local_ts < self.now:
            raise SimulatorError(f"time goes forward only: {local_ts} < now {self.now}")
        self._advance(int(local_ts))
        self.now = int(local_ts)
        return self._visible(int(local_ts))

    def run_to_end(self) -> Step:
        """Process all remaining data and deliver every outstanding report."""
        big = int(np.iinfo(np.int64).max)
        self._advance(big)
        if self._local_ts.shape[0]:
            self.now = max(self.now, int(self._local_ts[-1]))
        return self._visible(big)

    def _advance(self, stop: int) -> None:
        d, ks = self.depth, self._ks
        while True:
            code = mk.run(
                self._ex, stop, ks, d.st, d.counters, d.batch_counters, d.touched, d.before, d.bq, d.aq, d.inv,
                d.width, d.buf_i, d.buf_f, d.buf_cap, d.tops, d.t_index, d.g, d.r, self.orders, self._used,
                self._active, self._lvl, self._traded, self._mark, self._mid, self._cmds, self._fills,
                self._reports, self._report_ts, self.position, self._maker, self._taker, self.queue.model,
                self.queue.param, self._rmode, self._rvals, self._rts,
            )  # fmt: skip
            self._drain()
            if code == mk.OK:
                return
            need = int(ks[mk.K_NEED])
            if code == mk.ERR_OUTPUT_FULL:
                if need > self._fills.shape[0]:
                    self._fills = np.zeros(2 * need, FILL_DTYPE)
                if need > self._reports.shape[0]:
                    self._reports = np.zeros(2 * need, ORDER_DTYPE)
                    self._report_ts = np.zeros(2 * need, np.int64)
            elif code == mk.ERR_LATENCY_EXHAUSTED:
                parts = [self._rvals[ks[mk.K_RESP_CUR] :]]
                while sum(p.shape[0] for p in parts) < 2 * need:
                    parts.append(self.response.next_block())
                self._rvals = np.concatenate(parts)
                ks[mk.K_RESP_CUR] = 0
            else:
                raise SimulatorError(f"matching kernel stopped with status {code}")

    def _drain(self) -> None:
        """Move the kernel's outputs to the in-flight lists (not yet delivered to the strategy)."""
        ks = self._ks
        if ks[mk.K_NF]:
            self._pending_f.append(_clean(self._fills[: ks[mk.K_NF]]))
            ks[mk.K_NF] = 0
        if ks[mk.K_NR]:
            self._pending_r.append(_clean(self._reports[: ks[mk.K_NR]]))
            self._pending_t.append(self._report_ts[: ks[mk.K_NR]].copy())
            ks[mk.K_NR] = 0

    def _visible(self, t: int) -> Step:
        end = int(np.searchsorted(self._local_ts, t, side="right"))
        events = self._local[self._local_pos : end]
        self._local_pos = end
        show_f, show_r, show_t = _NO_FILLS, _NO_REPORTS, _NO_TS
        if self._pending_f:
            f = self._pending_f[0] if len(self._pending_f) == 1 else np.concatenate(self._pending_f)
            f = f[np.argsort(f["local_ts"], kind="stable")]
            k = int(np.searchsorted(f["local_ts"], t, side="right"))
            show_f, rest = f[:k], f[k:]
            self._pending_f = [rest] if rest.shape[0] else []
            if k:
                self._done_f.append(show_f)
        if self._pending_r:
            if len(self._pending_r) == 1:
                r, rt = self._pending_r[0], self._pending_t[0]
            else:
                r, rt = np.concatenate(self._pending_r), np.concatenate(self._pending_t)
            order = np.argsort(rt, kind="stable")
            r, rt = r[order], rt[order]
            k = int(np.searchsorted(rt, t, side="right"))
            show_r, show_t = r[:k], rt[:k]
            self._pending_r = [r[k:]] if k < r.shape[0] else []
            self._pending_t = [rt[k:]] if k < r.shape[0] else []
            if k:
                self._done_r.append(show_r)
                self._done_t.append(show_t)
        return Step(events, show_f, show_r, show_t)

    # --- inspection ------------------------------------------------------------------------------------------

    @property
    def fills(self) -> Records:
        """Every fill so far: delivered ones in local-time order, then those still in flight."""
        parts = self._done_f + self._pending_f
        return _clean(np.concatenate(parts)) if parts else _NO_FILLS.copy()

    @property
    def reports(self) -> Records:
        """Every order report so far (ORDER_DTYPE rows as of each status change), delivered ones first."""
        parts = self._done_r + self._pending_r
        return _clean(np.concatenate(parts)) if parts else _NO_REPORTS.copy()

    @property
    def report_ts(self) -> I64:
        """When each row of :attr:`reports` reaches (or reached) the strategy (local ns)."""
        parts = self._done_t + self._pending_t
        return np.concatenate(parts) if parts else _NO_TS.copy()

    @property
    def exchange_ts(self) -> int:
        """Exchange time of the last unit of work the matcher processed."""
        return int(self._ks[mk.K_NOW])

    @property
    def cancel_misses(self) -> int:
        return int(self._ks[mk.K_CANCEL_MISS])

    def live_orders(self) -> Records:
        """Orders sent and not finished (PENDING, OPEN, PARTIALLY_FILLED) as the exchange sees them now."""
        live: Records = self.orders[self._used == 1].copy()
        return live


def _clean(rows: Records) -> Records:
    """A copy with zeroed padding bytes (the kernel's record stores may leave them dirty), so that logs are
    byte-for-byte reproducible and can be hashed."""
    out = np.zeros(rows.shape[0], rows.dtype)
    for name in rows.dtype.names or ():
        out[name] = rows[name]
    return out


def fills_per_order(fills: Records) -> Mapping[int, float]:
    """Total filled quantity by order id (a convenience for reports and tests)."""
    out: dict[int, float] = {}
    for oid, q in zip(fills["order_id"].tolist(), fills["qty"].tolist(), strict=True):
        out[oid] = out.get(oid, 0.0) + q
    return out
