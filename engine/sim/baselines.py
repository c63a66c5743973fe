"""Baseline strategies for `tradeplane backtest`: a passive quoter, a TWAP of one parent, periodic parents.

Why they live in the engine: they are the reference points a desk compares a model-driven strategy against
(and the benchmark's workload), written only against the runner's :class:`~.runner.Context`, so they run
unchanged in a backtest, in paper trading and as RL baselines. Each works on the batch's arrays and the
context's book view; none loops over market events.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .executors import TwapSpec
from .orders import BUY, POST_ONLY, SELL
from .runner import Context, MarketBatch

_MS = 1_000_000


@dataclass
class QuotingStrategy:
    """Post-only quotes at the local touch on both sides, ``qty`` each; re-quoted when the touch moves or
    every ``requote_ms``; the side that would push |position| beyond ``max_position`` is not quoted."""

    symbol: int = 0
    qty: float = 0.01
    requote_ms: float = 1_000.0
    max_position: float = 0.05
    _last: int = field(default=-(1 << 62), init=False)
    _quoted: tuple[float, float] = field(default=(math.nan, math.nan), init=False)

    def on_batch(self, ctx: Context, batch: MarketBatch) -> None:
        bid, ask = ctx.touch(self.symbol)
        if not (math.isfinite(bid) and math.isfinite(ask)):
            return
        if (bid, ask) == self._quoted and ctx.now - self._last < self.requote_ms * _MS:
            return
        ctx.cancel(ctx.open_orders)
        pos = ctx.position(self.symbol)
        if pos + self.qty <= self.max_position + 1e-12:
            ctx.limit(self.symbol, BUY, self.qty, bid, tif=POST_ONLY)
        if pos - self.qty >= -self.max_position - 1e-12:
            ctx.limit(self.symbol, SELL, self.qty, ask, tif=POST_ONLY)
        self._quoted, self._last = (bid, ask), ctx.now


@dataclass
class TwapStrategy:
    """One parent order worked by TWAP, started ``start_ms`` after the first batch in which the book is known."""

    side: int
    qty: float
    twap: TwapSpec
    symbol: int = 0
    start_ms: float = 0.0
    parent_id: int | None = field(default=None, init=False)
    _first: int | None = field(default=None, init=False)

    def on_batch(self, ctx: Context, batch: MarketBatch) -> None:
        if self.parent_id is not None:
            return
        bid, ask = ctx.touch(self.symbol)
        if not (math.isfinite(bid) and math.isfinite(ask)):
            return
        if self._first is None:
            self._first = ctx.now
        if ctx.now - self._first >= self.start_ms * _MS:
            self.parent_id = ctx.execute(self.symbol, self.side, self.qty, "twap", twap=self.twap)


@dataclass
class PeriodicParentsStrategy:
    """Every ``every_ms`` a parent of the next notional in ``notionals`` (USDT), sides alternating, through
    ``style`` (maker_then_taker exercises every routing bucket; immediate is the taker baseline)."""

    notionals: tuple[float, ...] = (100.0, 300.0, 700.0, 1500.0)
    every_ms: float = 10_000.0
    style: str = "maker_then_taker"
    symbol: int = 0
    _next: int | None = field(default=None, init=False)
    _k: int = field(default=0, init=False)

    def on_batch(self, ctx: Context, batch: MarketBatch) -> None:
        bid, ask = ctx.touch(self.symbol)
        if not (math.isfinite(bid) and math.isfinite(ask)):
            return
        if self._next is None:
            self._next = ctx.now
        if ctx.now < self._next:
            return
        mid, lot = 0.5 * (bid + ask), ctx.lot(self.symbol)
        qty = max(lot, math.floor(self.notionals[self._k % len(self.notionals)] / mid / lot) * lot)
        ctx.execute(self.symbol, BUY if self._k % 2 == 0 else SELL, qty, self.style)
        self._k += 1
        self._next += round(self.every_ms * _MS)
