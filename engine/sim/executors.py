"""Executors: turn a parent order (symbol, side, quantity) into child orders over time.

- **immediate** — one market order now (the taker baseline);
- **maker-then-taker** — post at the local touch (post-only), wait by the routing table's notional bucket,
  cancel and take whatever did not fill; large parents go out in spaced slices (:mod:`.routing`). When the
  maker fill ratio of the last hour falls below θ the desk *degrades*: new slices go straight to market;
- **TWAP** — N slices ``interval`` apart, each start moved by a seeded jitter of ±ε·interval; each slice is
  a market order or a short maker-then-taker.

Why a pure desk that returns :class:`Actions` instead of calling the venue: the same object drives the
backtest simulator, paper trading and (later) live adapters and the RL environment; it keeps no clock of its
own (``now`` comes in), draws randomness only from the generator it is given, and keys everything by order
id, so a run is reproducible. Work is per child order and per step, never per market event.

Exchange truth wins: a child's remaining quantity comes from its order reports (``filled`` as the venue saw
it), so a cancel that races a fill never makes the desk over-buy; parent VWAP, fees and slippage come from
the fills. Slippage is recorded as (VWAP − mid at send) / mid × 1e4 bps (``cost_bps`` = side × that, > 0 =
paid against mid).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from .matching import new_order
from .orders import (
    BUY,
    CANCELED,
    EXPIRED,
    FILLED,
    MARKET,
    OPEN,
    ORDER_DTYPE,
    POST_ONLY,
    REJECTED,
    SELL,
)
from .result import PARENT_DTYPE
from .routing import RoutingTable

Records = npt.NDArray[np.void]
I64 = npt.NDArray[np.int64]
Touch = Callable[[int], tuple[float, float]]
"""symbol → (best bid, best ask) as the strategy has seen them (NaN when unknown)."""

STYLE_IMMEDIATE: Final = 0
STYLE_MAKER_THEN_TAKER: Final = 1
STYLE_TWAP: Final = 2
STYLE_NAMES: Final = {STYLE_IMMEDIATE: "immediate", STYLE_MAKER_THEN_TAKER: "maker_then_taker", STYLE_TWAP: "twap"}

PARENT_WORKING: Final = 0
PARENT_FILLED: Final = 1
PARENT_PARTIAL: Final = 2  #: finished with part unfilled (no liquidity, book unsynced, retries used up)
PARENT_CANCELED: Final = 3
PARENT_STATUS_NAMES: Final = {PARENT_WORKING: "working", PARENT_FILLED: "filled", PARENT_PARTIAL: "partial",
                              PARENT_CANCELED: "canceled"}  # fmt: skip

_FINAL: Final = (FILLED, CANCELED, REJECTED, EXPIRED)
_MS: Final = 1_000_000
_NO_ORDERS = np.zeros(0, ORDER_DTYPE)
_NO_IDS = np.zeros(0, np.int64)


@dataclass(frozen=True, slots=True)
class TwapSpec:
    """N slices ``interval_ms`` apart; each start jittered uniformly by ±``jitter``·interval (0 ≤ ε < 0.5, so
    slices never swap order). ``child`` = ``immediate`` (market) or ``maker_then_taker`` (post, wait
    ``wait_ms`` — default half the interval — then take)."""

    slices: int
    interval_ms: float
    jitter: float = 0.0
    child: str = "immediate"
    wait_ms: float | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.slices, int) and self.slices >= 1):
            raise ValueError(f"TwapSpec.slices must be an int ≥ 1, got {self.slices!r}")
        if not self.interval_ms > 0:
            raise ValueError(f"TwapSpec.interval_ms must be > 0, got {self.interval_ms!r}")
        if not 0 <= self.jitter < 0.5:
            raise ValueError(f"TwapSpec.jitter must be in [0, 0.5), got {self.jitter!r}")
        if self.child not in ("immediate", "maker_then_taker"):
            raise ValueError(f"TwapSpec.child must be immediate or maker_then_taker, got {self.child!r}")
        if self.wait_ms is not None and not 0 <= self.wait_ms <= self.interval_ms:
            raise ValueError(f"TwapSpec.wait_ms must be in [0, interval_ms], got {self.wait_ms!r}")


@dataclass(frozen=True, slots=True)
class ExecutorConfig:
    """θ: degrade to market below this maker fill ratio (filled / posted quantity of the maker attempts that
    finished in the last ``ratio_window_ms``), judged once ``min_maker_attempts`` attempts exist. A rejected
    child (post-only would cross, book unsynced) is re-sent up to ``max_retries`` times, ``retry_ms`` apart
    for market orders (at once, at the new touch, for post-only)."""

    routing: RoutingTable = field(default_factory=RoutingTable.default)
    theta: float = 0.25
    ratio_window_ms: float = 3_600_000.0
    min_maker_attempts: int = 5
    max_retries: int = 3
    retry_ms: float = 100.0

    def __post_init__(self) -> None:
        if not 0 <= self.theta <= 1:
            raise ValueError(f"ExecutorConfig.theta must be in [0, 1], got {self.theta!r}")
        if not self.ratio_window_ms > 0:
            raise ValueError(f"ExecutorConfig.ratio_window_ms must be > 0, got {self.ratio_window_ms!r}")
        for name in ("min_maker_attempts", "max_retries"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 0):
                raise ValueError(f"ExecutorConfig.{name} must be an int ≥ 0, got {v!r}")


class OrderIds:
    """One increasing order-id sequence per run, shared by the desk and a strategy's own orders."""

    def __init__(self, start: int = 1) -> None:
        self._next = start

    def take(self) -> int:
        oid = self._next
        self._next += 1
        return oid


@dataclass(frozen=True, slots=True)
class Actions:
    """What to send to the venue now: new child orders (ORDER_DTYPE rows) and cancels (order ids)."""

    submit: Records
    cancel: I64

    @property
    def empty(self) -> bool:
        return bool(self.submit.shape[0] == 0 and self.cancel.shape[0] == 0)


@dataclass(slots=True)
class _Slice:
    due: int  # local ns when it starts
    qty: float
    maker: bool
    wait_ns: int


@dataclass(slots=True)
class _Child:
    order_id: int
    parent: int  # row in the desk's parent table
    qty: float
    maker: bool  # a post-only attempt (its rest is taken at the deadline)
    deadline: int  # maker: when to cancel; market: 0
    wait_ns: int
    retries: int = 0
    filled: float = 0.0  # exchange truth from reports
    was_open: bool = False
    cancel_sent: bool = False
    done: bool = False


def parent_units(lots: Mapping[int, float], ticks: Mapping[int, float], symbol: int, side: int, qty: float,
                 style: int, twap: TwapSpec | None, theta: float | None) -> int:  # fmt: skip
    """The whole lots of a parent :meth:`ExecutionDesk.start` accepts, or ``ValueError`` naming what is wrong.
    A function of its own because a remote caller (paper mode's ``decide``) must predict exactly what the
    desk accepts and the id it assigns."""
    if theta is not None and not 0 <= theta <= 1:
        raise ValueError(f"theta must be in [0, 1], got {theta!r}")
    if side not in (BUY, SELL):
        raise ValueError(f"side must be BUY (1) or SELL (-1), got {side!r}")
    if symbol not in lots or symbol not in ticks:
        raise ValueError(f"symbol {symbol} has no tick/lot size configured")
    lot = lots[symbol]
    units = math.floor(qty / lot + 1e-9)
    if not qty > 0 or units < 1:
        raise ValueError(f"qty must be ≥ one lot ({lot}), got {qty!r}")
    if style == STYLE_TWAP and twap is None:
        raise ValueError("a TWAP parent needs a TwapSpec")
    if style not in STYLE_NAMES:
        raise ValueError(f"unknown executor style {style!r}")
    return units


def init_parent(p: np.void, parent_id: int, now: int, symbol: int, side: int, style: int, qty: float,
                touch: tuple[float, float]) -> None:  # fmt: skip
    """Fill a fresh PARENT_DTYPE record as the desk does when it accepts a parent (working, nothing filled)."""
    bid, ask = touch
    mid = 0.5 * (bid + ask) if math.isfinite(bid) and math.isfinite(ask) else math.nan
    p["parent_id"], p["symbol"], p["side"], p["style"], p["status"] = parent_id, symbol, side, style, PARENT_WORKING
    p["qty"], p["vwap"], p["mid_at_send"], p["notional"] = qty, math.nan, mid, qty * mid
    p["slippage_bps"], p["cost_bps"], p["send_ts"] = math.nan, math.nan, now


class ExecutionDesk:
    """Works parent orders into child orders (see the module docstring). ``ticks``/``lots``: per symbol price
    tick and quantity step; child quantities are multiples of the step (the last slice takes the rounding)."""

    def __init__(
        self,
        ticks: Mapping[int, float],
        lots: Mapping[int, float],
        config: ExecutorConfig | None = None,
        *,
        ids: OrderIds | None = None,
        rng: np.random.Generator | None = None,
    ) -> None:
        self.ticks, self.lots = dict(ticks), dict(lots)
        self.config = config or ExecutorConfig()
        self.ids = ids or OrderIds()
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self._parents = np.zeros(64, PARENT_DTYPE)
        self._n = 0
        self._slices: dict[int, deque[_Slice]] = {}  # parent row → slices not started yet
        self._children: dict[int, _Child] = {}  # order id → live or unsettled child
        self._open_children: dict[int, set[int]] = {}  # parent row → its unsettled child ids
        self._retry_at: dict[int, tuple[int, _Child]] = {}  # retry number → (when, what to re-send)
        self._retry_seq = 0
        self._working: set[int] = set()  # parent rows not finished
        self._attempts: deque[tuple[int, float, float]] = deque()  # finished maker attempts (ts, posted, filled)
        self._vwap_num = np.zeros(64)  # Σ qty·px per parent
        self._reported = np.zeros(64)  # Σ filled of settled children per the venue's reports
        self._owner: dict[int, int] = {}  # child order id → parent row, kept for fills that trail the report
        self._routing: dict[int, RoutingTable] = {}  # parent row → its own routing table (else the config's)
        self._theta: dict[int, float] = {}  # parent row → its own degrade threshold (else the config's)

    # --- parents ---------------------------------------------------------------------------------------------

    def start(
        self,
        now: int,
        symbol: int,
        side: int,
        qty: float,
        touch: tuple[float, float],
        *,
        style: int = STYLE_MAKER_THEN_TAKER,
        twap: TwapSpec | None = None,
        routing: RoutingTable | None = None,
        theta: float | None = None,
    ) -> int:
        """Accept a parent at local time ``now``; returns its ``parent_id``. Children go out on the next
        :meth:`on_step` (at ``now`` for a first slice due now).

        ``routing`` and ``theta`` override the desk's :class:`ExecutorConfig` for this parent: strategies
        sharing one account (one desk) keep their own maker waits, slicing and degrade threshold, while the
        maker fill ratio θ is compared against stays the account's (it measures how our posts fill here)."""
        units = parent_units(self.lots, self.ticks, symbol, side, qty, style, twap, theta)
        lot = self.lots[symbol]
        row = self._new_row()
        p = self._parents[row]
        init_parent(p, row + 1, now, symbol, side, style, units * lot, touch)
        if routing is not None:
            self._routing[row] = routing
        if theta is not None:
            self._theta[row] = theta
        self._slices[row] = deque(self._schedule(row, now, units, lot, style, float(p["notional"]), twap))
        self._open_children[row] = set()
        self._working.add(row)
        return row + 1

    def _new_row(self) -> int:
        if self._n == self._parents.shape[0]:
            self._parents = np.concatenate([self._parents, np.zeros(self._n, PARENT_DTYPE)])
            self._vwap_num = np.concatenate([self._vwap_num, np.zeros(self._n)])
            self._reported = np.concatenate([self._reported, np.zeros(self._n)])
        self._n += 1
        return self._n - 1

    def _schedule(self, row: int, now: int, units: int, lot: float, style: int, notional: float,
                  twap: TwapSpec | None) -> list[_Slice]:  # fmt: skip
        if style == STYLE_IMMEDIATE:
            return [_Slice(now, units * lot, False, 0)]
        if style == STYLE_MAKER_THEN_TAKER:
            route = self._routing.get(row, self.config.routing).route_for(notional if math.isfinite(notional) else 0.0)
            n, step, wait, offsets = route.slices, route.interval_ns, route.wait_ns, None
            maker = True
        else:
            assert twap is not None
            n, step = twap.slices, round(twap.interval_ms * _MS)
            wait = round((twap.wait_ms if twap.wait_ms is not None else twap.interval_ms / 2) * _MS)
            maker = twap.child == "maker_then_taker"
            offsets = self.rng.uniform(-twap.jitter, twap.jitter, n) * step if twap.jitter > 0 else None
        n = min(n, units)  # never a slice below one lot
        per, extra = divmod(units, n)
        out = []
        for i in range(n):
            due = now + i * step
            if offsets is not None and i > 0:  # the first slice goes now; later ones move by ±ε·interval
                due += round(offsets[i])
            out.append(_Slice(due, (per + (1 if i >= n - extra else 0)) * lot, maker, wait))
        return out

    def cancel(self, now: int, parent_id: int) -> Actions:
        """Stop a parent: drop its unstarted slices and retries and cancel its live children (it finishes
        CANCELED once the venue has confirmed every child)."""
        row = parent_id - 1
        if not 0 <= row < self._n:
            raise KeyError(f"no parent {parent_id}")
        p = self._parents[row]
        if p["status"] != PARENT_WORKING:
            return Actions(_NO_ORDERS, _NO_IDS)
        p["status"] = PARENT_CANCELED
        self._slices[row].clear()
        for key in [k for k, (_, c) in self._retry_at.items() if c.parent == row]:
            del self._retry_at[key]
        ids = []
        for oid in sorted(self._open_children[row]):
            c = self._children[oid]
            if not c.cancel_sent:
                c.cancel_sent = True
                ids.append(oid)
        self._maybe_finish(row, now)
        return Actions(_NO_ORDERS, np.asarray(ids, np.int64))

    # --- the step ----------------------------------------------------------------------------------------------

    def on_step(self, now: int, fills: Records, reports: Records, touch: Touch) -> Actions:
        """Book what arrived by local time ``now`` and return the orders and cancels due now."""
        if fills.shape[0]:
            self._book_fills(fills)
        submit: list[Records] = []
        cancel: list[int] = []
        for r in reports:  # few per step: one per child status change
            c = self._children.get(int(r["order_id"]))
            if c is None or c.done:
                continue
            c.filled = float(r["filled"])
            status = int(r["status"])
            if status == OPEN:
                c.was_open = True
            if status in _FINAL:
                self._settle(c, status, now, touch, submit)
        for key, (due, c) in sorted(self._retry_at.items()):
            if due <= now:
                del self._retry_at[key]
                self._send(c.parent, c.qty, False, 0, now, touch, submit, retries=c.retries)
        for oid, c in self._children.items():  # maker deadlines
            if c.maker and not c.done and not c.cancel_sent and c.deadline <= now:
                c.cancel_sent = True
                cancel.append(oid)
        for row in sorted(self._working):
            todo = self._slices[row]
            while todo and todo[0].due <= now:
                s = todo.popleft()
                maker = s.maker
                if maker and self._degraded(now, row):
                    maker = False
                    self._parents[row]["degraded"] = 1
                self._send(row, s.qty, maker, s.wait_ns, now, touch, submit)
        for row in sorted(self._working):
            self._maybe_finish(row, now)
        return Actions(np.concatenate(submit) if submit else _NO_ORDERS, np.asarray(cancel, np.int64))

    def _book_fills(self, fills: Records) -> None:
        for f in fills:
            row = self._owner.get(int(f["order_id"]))
            if row is None:
                continue  # not a child of this desk (the strategy's own order)
            p, q, px = self._parents[row], float(f["qty"]), float(f["px"])
            p["filled"] += q
            p["fees"] += float(f["fee"])
            if f["maker"]:
                p["maker_qty"] += q
            else:
                p["taker_qty"] += q
            self._vwap_num[row] += q * px
            p["vwap"] = self._vwap_num[row] / p["filled"]
            mid = float(p["mid_at_send"])
            if math.isfinite(mid) and mid > 0:
                p["slippage_bps"] = (p["vwap"] - mid) / mid * 1e4
                p["cost_bps"] = int(p["side"]) * p["slippage_bps"]

    def _settle(self, c: _Child, status: int, now: int, touch: Touch, submit: list[Records]) -> None:
        """A child reached a final status: record the maker attempt, then take or retry what is left."""
        c.done = True
        self._open_children[c.parent].discard(c.order_id)
        self._reported[c.parent] += c.filled
        rest = self._round(c.parent, c.qty - c.filled)
        if c.maker and c.was_open:
            self._attempts.append((now, c.qty, c.filled))
        if rest <= 0 or self._parents[c.parent]["status"] != PARENT_WORKING:
            return
        if status == REJECTED and c.maker:  # post-only would have crossed: re-post at the new touch, or take
            if c.retries < self.config.max_retries and now < c.deadline:
                self._send(c.parent, rest, True, c.deadline - now, now, touch, submit, retries=c.retries + 1)
            else:
                self._send(c.parent, rest, False, 0, now, touch, submit)
        elif status == REJECTED:  # a market child refused (book unsynced): try again a little later
            if c.retries < self.config.max_retries:
                self._retry_seq += 1
                due = now + round(self.config.retry_ms * _MS)
                self._retry_at[self._retry_seq] = (due, _Child(0, c.parent, rest, False, 0, 0, c.retries + 1))
        elif c.maker:  # the deadline cancel (or an expiry) of a maker attempt: take the rest
            self._send(c.parent, rest, False, 0, now, touch, submit)

    def _send(self, row: int, qty: float, maker: bool, wait_ns: int, now: int, touch: Touch,
              out: list[Records], *, retries: int = 0) -> None:  # fmt: skip
        qty = self._round(row, qty)
        if qty <= 0:
            return
        p = self._parents[row]
        sym, side = int(p["symbol"]), int(p["side"])
        bid, ask = touch(sym)
        px = bid if side == BUY else ask
        oid = self.ids.take()
        if maker and math.isfinite(px):
            tick = round(px / self.ticks[sym])
            out.append(new_order(oid, side, qty, price_tick=tick, tif=POST_ONLY, symbol=sym))
            c = _Child(oid, row, qty, True, now + wait_ns, wait_ns, retries)
        else:  # a market child (also a maker slice with no touch known yet: nothing to post at)
            out.append(new_order(oid, side, qty, type=MARKET, symbol=sym))
            c = _Child(oid, row, qty, False, 0, 0, retries)
        self._children[oid] = c
        self._owner[oid] = row
        self._open_children[row].add(oid)
        p["n_children"] += 1

    def _round(self, row: int, qty: float) -> float:
        lot = self.lots[int(self._parents[row]["symbol"])]
        return math.floor(qty / lot + 1e-9) * lot

    def _maybe_finish(self, row: int, now: int) -> None:
        p = self._parents[row]
        if p["done_ts"] or self._open_children[row] or self._slices[row]:
            return
        if any(c.parent == row for _, c in self._retry_at.values()):
            return
        if p["filled"] < self._reported[row] - 1e-9 * max(1.0, float(p["qty"])):
            return  # a fill the venue already reported is still on its way
        p["done_ts"] = now
        self._working.discard(row)
        if p["status"] == PARENT_WORKING:
            p["status"] = PARENT_FILLED if p["filled"] >= p["qty"] - 1e-9 * max(1.0, p["qty"]) else PARENT_PARTIAL
        for oid in [o for o, c in self._children.items() if c.parent == row]:
            del self._children[oid]  # settled: later reports for them (none expected) are ignored

    # --- the degrade rule ----------------------------------------------------------------------------------------

    def maker_fill_ratio(self, now: int) -> float:
        """Filled / posted quantity of the maker attempts finished in the last window (NaN without any)."""
        horizon = now - int(self.config.ratio_window_ms * _MS)
        while self._attempts and self._attempts[0][0] < horizon:
            self._attempts.popleft()
        posted = sum(a[1] for a in self._attempts)
        return sum(a[2] for a in self._attempts) / posted if posted > 0 else math.nan

    def _degraded(self, now: int, row: int) -> bool:
        ratio = self.maker_fill_ratio(now)
        theta = self._theta.get(row, self.config.theta)
        return len(self._attempts) >= self.config.min_maker_attempts and ratio < theta

    # --- inspection ------------------------------------------------------------------------------------------

    def next_wakeup(self) -> int | None:
        """The earliest local time the desk must act without new reports (a slice, a deadline, a retry)."""
        if not self._working:
            return None
        times = [todo[0].due for todo in self._slices.values() if todo]
        times += [c.deadline for c in self._children.values() if c.maker and not c.done and not c.cancel_sent]
        times += [due for due, _ in self._retry_at.values()]
        return min(times) if times else None

    @property
    def parents(self) -> Records:
        """PARENT_DTYPE rows of every parent so far (a copy)."""
        return self._parents[: self._n].copy()

    @property
    def working(self) -> int:
        """Parents not finished yet."""
        return len(self._working)

    def parent_state(self, parent_id: int) -> tuple[int, float, float, float, float]:
        """(status, filled, vwap, fees, maker_qty) of one parent: cheap, for callers that track a few working
        parents and book their fills as deltas (a copy of :attr:`parents` per call would grow with the run)."""
        p = self._parents[parent_id - 1]
        return int(p["status"]), float(p["filled"]), float(p["vwap"]), float(p["fees"]), float(p["maker_qty"])

    def child_parent(self, order_id: int) -> int | None:
        """The parent id of a live child order (None for orders the desk did not send or already settled)."""
        c = self._children.get(order_id)
        return None if c is None else c.parent + 1


__all__ = [
    "Actions",
    "ExecutionDesk",
    "ExecutorConfig",
    "OrderIds",
    "TwapSpec",
]
