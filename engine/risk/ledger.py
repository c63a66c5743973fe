"""Positions, working orders and PnL of every strategy charged to one RiskBudget, from fills and marks.

Why the risk engine keeps its own ledger instead of asking the venues: a limit that spans strategies and venues
needs one consistent view at the instant of a check, and the checks must replay bit for bit in a backtest.
The ledger is fed the same fills and marks the strategies see and is the only input of the exposure limits.

Accounting (USDT-margined and spot, all values in USDT):

- A position is kept per (strategy, venue, symbol), signed in base units, with an average entry price.
  Adding moves the average (weighted); reducing realizes ``closed qty × (fill − average) × sign`` and keeps
  the average; a fill through zero realizes the closed part and opens the rest at the fill price.
- The mark of a market (venue, symbol) is the latest :meth:`Ledger.set_mark` price; before the first mark the
  latest fill price stands in, and before any fill the price of a working order.
- Gross notional = Σ |qty| × mark over all positions. Net notional per symbol = |Σ qty × mark| over the
  strategies *and venues* trading that symbol (a spot long hedged by a perpetual short nets out). Futures
  margin = Σ |qty| × mark / leverage over futures positions. Spot quote = Σ max(qty, 0) × mark over spot
  positions plus the remaining quote of working spot buys (the venue locks it when the order rests).
- Venues: ``binance-usdm`` and ``paper`` count as futures (the paper venue simulates USD-M perpetuals),
  ``binance-spot`` as spot; any other venue is a ValueError, never silently unlimited.
- Working orders: every recorded order that is not an exit. Pre-trade checks count their remaining quantity
  as if filled (so ten entries sent in one tick cannot each see the same free gross); usage reports count
  positions only, except the spot quote, which the venue has already locked. ``on_fill`` carries no order
  id, so a fill consumes the oldest working order of the same strategy, market and side first.
- Open entries in a market = positions with a non-zero quantity + working entry orders with nothing filled
  yet (a partly filled entry is already a position and counts once).
- Equity = initial equity + realized − fees + unrealized. The UTC-day baseline is the equity just before the
  first event stamped in a new UTC day; the daily PnL is equity − baseline. The peak is the highest equity
  seen after any fill or mark; the drawdown is (peak − equity) / peak in percent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final

DAY_NS: Final = 86_400 * 1_000_000_000

FUTURES_VENUES: Final = frozenset({"binance-usdm", "paper"})
SPOT_VENUES: Final = frozenset({"binance-spot"})

#: A position or working-order key: (strategy, venue, symbol).
Key = tuple[str, str, str]
#: A market: (venue, symbol).
Market = tuple[str, str]

#: Relative tolerance under which a quantity counts as zero (float sums of fills rarely cancel exactly).
_QTY_EPS: Final = 1e-9


def is_futures(venue: str) -> bool:
    """True for futures venues, False for spot; a ValueError naming the venue for anything else."""
    if venue in FUTURES_VENUES:
        return True
    if venue in SPOT_VENUES:
        return False
    known = sorted(FUTURES_VENUES | SPOT_VENUES)
    raise ValueError(f"unknown venue {venue!r}: the risk engine knows {known}")


def shrinks(qty: float, delta: float) -> bool:
    """True when adding ``delta`` to position ``qty`` reduces |qty| without flipping its sign (an exit)."""
    if qty == 0.0 or delta == 0.0 or (qty > 0.0) == (delta > 0.0):
        return False
    return abs(delta) <= abs(qty) * (1.0 + _QTY_EPS)


@dataclass(slots=True)
class Position:
    """One strategy's position in one market (signed base units) and what it has realized."""

    qty: float = 0.0
    avg_price: float = 0.0
    leverage: int = 1
    realized_usdt: float = 0.0
    fees_usdt: float = 0.0


@dataclass(slots=True)
class WorkingOrder:
    """A recorded order that is not an exit, with what is left of it."""

    key: str  # caller's order key (client order id); "" when the caller gave none
    strategy: str
    venue: str
    symbol: str
    side: int
    remaining: float
    price: float
    leverage: int
    is_entry: bool
    ts: int
    filled: float = 0.0


@dataclass(slots=True)
class MarketBook:
    """Quantity aggregates of one market, rebuilt when a fill or a working order of that market changes.

    Why per market: marks arrive every tick while fills and orders are rare, and every valuation below is a
    quantity aggregate times the market's price. Keeping the aggregates makes a mark cost O(markets) with a few
    multiplications each, instead of a walk over every position and working order.
    """

    futures: bool
    symbol: str
    net_qty: float = 0.0  # Σ qty of positions
    abs_qty: float = 0.0  # Σ |qty| of positions
    margin_qty: float = 0.0  # Σ |qty| / leverage of positions (futures)
    long_qty: float = 0.0  # Σ max(qty, 0) of positions (spot quote)
    cost: float = 0.0  # Σ qty × average entry of positions (unrealized = net_qty × price − cost)
    open_positions: int = 0
    pending_entries: int = 0  # working entry orders with nothing filled yet
    working_buy_quote: float = 0.0  # Σ remaining × price of working buys (spot quote)
    eff_net_qty: float = 0.0  # the same three with every working order filled
    eff_abs_qty: float = 0.0
    eff_margin_qty: float = 0.0
    eff_qty: dict[Key, float] = field(default_factory=dict)  # per strategy, working orders filled
    eff_leverage: dict[Key, int] = field(default_factory=dict)


@dataclass(slots=True)
class Totals:
    """Valuations of all markets at their current prices (recomputed lazily when anything changed)."""

    gross_usdt: float = 0.0
    margin_usdt: float = 0.0
    spot_quote_usdt: float = 0.0
    unrealized_usdt: float = 0.0
    eff_gross_usdt: float = 0.0  # as if every working order filled: the base of the pre-trade checks
    eff_margin_usdt: float = 0.0
    eff_net_usdt: dict[str, float] = field(default_factory=dict)  # signed, per symbol


@dataclass(frozen=True, slots=True)
class After:
    """The exposure after a hypothetical fill of one more order (see :meth:`Ledger.after`)."""

    gross_usdt: float
    net_usdt: float  # |net| of the order's symbol
    margin_usdt: float
    spot_quote_usdt: float
    entries: int


#: Price sources in priority order: a working order's price < a fill < a mark.
_SRC_ORDER, _SRC_FILL, _SRC_MARK = 0, 1, 2


class Ledger:
    """Positions, working orders, marks and equity of one RiskBudget (see the module docstring)."""

    def __init__(self, initial_equity: float) -> None:
        if not (math.isfinite(initial_equity) and initial_equity > 0.0):
            raise ValueError(f"initial_equity must be a positive finite number, got {initial_equity}")
        self.initial_equity = float(initial_equity)
        self.positions: dict[Key, Position] = {}
        self.working: list[WorkingOrder] = []
        self.markets: dict[Market, MarketBook] = {}
        self._keys: dict[Market, list[Key]] = {}
        self._px: dict[Market, float] = {}
        self._px_src: dict[Market, int] = {}
        self.realized_usdt = 0.0
        self.fees_usdt = 0.0
        self.day = -1  # UTC day index (ts // DAY_NS) of the current baseline; -1 before the first event
        self.day_start_equity = self.initial_equity
        self.peak_equity = self.initial_equity
        self._version = 0
        self._totals = Totals()
        self._totals_version = 0

    # --- inputs ---------------------------------------------------------------------------------------------
    def roll_day(self, ts: int) -> bool:
        """Start a new UTC-day baseline at the first event of a later day; True when the day changed.

        Call it *before* applying the event stamped ``ts``, so the baseline excludes that event. A ``ts`` in an
        earlier day than the current one (late data) never moves the baseline back.
        """
        day = ts // DAY_NS
        if day <= self.day:
            return False
        self.day = day
        self.day_start_equity = self.equity()
        return True

    def apply_fill(
        self,
        strategy: str,
        venue: str,
        symbol: str,
        side: int,
        qty: float,
        price: float,
        fee_usdt: float,
        leverage: int,
    ) -> None:
        """Book one fill: move the position, realize what it closes, charge the fee, consume working orders."""
        futures = is_futures(venue)
        key = (strategy, venue, symbol)
        market = (venue, symbol)
        pos = self.positions.get(key)
        if pos is None:
            pos = self.positions[key] = Position()
            self._keys.setdefault(market, []).append(key)
        delta = side * qty
        q = pos.qty
        if q == 0.0 or (q > 0.0) == (delta > 0.0):
            new_q = q + delta
            pos.avg_price = (abs(q) * pos.avg_price + qty * price) / abs(new_q)
        else:
            closed = min(qty, abs(q))
            pnl = closed * (price - pos.avg_price) * (1.0 if q > 0.0 else -1.0)
            pos.realized_usdt += pnl
            self.realized_usdt += pnl
            new_q = q + delta
            if abs(new_q) <= _QTY_EPS * max(qty, abs(q)):
                new_q = 0.0
            if new_q == 0.0:
                pos.avg_price = 0.0
            elif (new_q > 0.0) != (q > 0.0):
                pos.avg_price = price
        pos.qty = new_q
        pos.leverage = max(1, int(leverage)) if futures else 1
        pos.fees_usdt += fee_usdt
        self.fees_usdt += fee_usdt
        self._set_price(market, price, _SRC_FILL)
        self._consume_working(key, side, qty)
        self._rebuild(market)
        self._touch_peak()

    def set_mark(self, venue: str, symbol: str, price: float) -> None:
        """The latest mark (mid or mark price) of a market; moves unrealized PnL, equity and the peak."""
        self._set_price((venue, symbol), price, _SRC_MARK)
        self._touch_peak()

    def add_working(
        self,
        key: str,
        strategy: str,
        venue: str,
        symbol: str,
        side: int,
        qty: float,
        price: float,
        leverage: int,
        *,
        is_entry: bool,
        ts: int,
    ) -> None:
        """Record an order that is not an exit until it fills or :meth:`remove_working` drops it."""
        futures = is_futures(venue)
        lev = max(1, int(leverage)) if futures else 1
        self.working.append(WorkingOrder(key, strategy, venue, symbol, side, qty, price, lev, is_entry, ts))
        self._set_price((venue, symbol), price, _SRC_ORDER)
        self._rebuild((venue, symbol))

    def remove_working(self, strategy: str, venue: str, symbol: str, key: str) -> bool:
        """Drop a working order that is final (filled, cancelled, expired); True when one was dropped.

        ``key`` "" drops the oldest working order of the strategy in that market. A key that is not known drops
        the oldest order recorded without a key (callers that never passed keys), else nothing: an order that
        fills completely has already left the working set, so a late "done" for it is a no-op.
        """
        mine = [i for i, w in enumerate(self.working) if (w.strategy, w.venue, w.symbol) == (strategy, venue, symbol)]
        pick = None
        if key:
            pick = next((i for i in mine if self.working[i].key == key), None)
            if pick is None:
                pick = next((i for i in mine if not self.working[i].key), None)
        elif mine:
            pick = mine[0]
        if pick is None:
            return False
        del self.working[pick]
        self._rebuild((venue, symbol))
        return True

    def _set_price(self, market: Market, price: float, src: int) -> None:
        old_src = self._px_src.get(market, -1)
        if src < old_src or (src == _SRC_ORDER and old_src == _SRC_ORDER):
            return  # a better source already prices this market (the first working order's price stays)
        if src == old_src and self._px[market] == price:
            return
        self._px[market] = price
        self._px_src[market] = src
        self._version += 1

    def _consume_working(self, key: Key, side: int, qty: float) -> None:
        left = qty
        i = 0
        while left > 0.0 and i < len(self.working):
            w = self.working[i]
            if (w.strategy, w.venue, w.symbol) == key and w.side == side:
                used = min(w.remaining, left)
                w.remaining -= used
                w.filled += used
                left -= used
                if w.remaining <= _QTY_EPS * max(w.remaining + w.filled, 1e-300):
                    del self.working[i]
                    continue
            i += 1

    def _rebuild(self, market: Market) -> None:
        """Recompute one market's quantity aggregates from its positions and working orders."""
        venue, symbol = market
        book = MarketBook(is_futures(venue), symbol)
        eff, lev = book.eff_qty, book.eff_leverage
        for key in self._keys.get(market, ()):
            p = self.positions[key]
            q = p.qty
            if q == 0.0:
                continue
            book.net_qty += q
            book.abs_qty += abs(q)
            book.margin_qty += abs(q) / p.leverage
            book.long_qty += max(q, 0.0)
            book.cost += q * p.avg_price
            book.open_positions += 1
            eff[key] = q
            lev[key] = p.leverage
        for w in self.working:
            if w.venue != venue or w.symbol != symbol:
                continue
            k = (w.strategy, venue, symbol)
            eff[k] = eff.get(k, 0.0) + w.side * w.remaining
            lev.setdefault(k, w.leverage)
            if w.is_entry and w.filled == 0.0:
                book.pending_entries += 1
            if w.side > 0:
                book.working_buy_quote += w.remaining * w.price
        for k, q in eff.items():
            book.eff_net_qty += q
            book.eff_abs_qty += abs(q)
            book.eff_margin_qty += abs(q) / lev[k]
        self.markets[market] = book
        self._version += 1

    # --- views ----------------------------------------------------------------------------------------------
    def price(self, venue: str, symbol: str) -> float:
        """The market's valuation price: mark, else the latest fill, else a working order's price, else NaN."""
        return self._px.get((venue, symbol), math.nan)

    def position(self, strategy: str, venue: str, symbol: str) -> float:
        """Signed quantity of one strategy in one market (0 when none)."""
        pos = self.positions.get((strategy, venue, symbol))
        return 0.0 if pos is None else pos.qty

    def market_qty(self, venue: str, symbol: str) -> float:
        """Signed quantity of all strategies together in one market (what the venue account holds)."""
        book = self.markets.get((venue, symbol))
        return 0.0 if book is None else book.net_qty

    def net_by_market(self) -> dict[Market, float]:
        """Signed quantity per market, all strategies together, markets in sorted order (flat ones left out)."""
        return {m: b.net_qty for m, b in sorted(self.markets.items()) if abs(b.net_qty) > _QTY_EPS * b.abs_qty}

    def totals(self) -> Totals:
        """Every valuation at the current prices, recomputed over the markets only when something changed."""
        if self._totals_version == self._version:
            return self._totals
        t = Totals()
        net = t.eff_net_usdt
        for market, b in self.markets.items():
            px = self._px[market]
            t.gross_usdt += b.abs_qty * px
            t.unrealized_usdt += b.net_qty * px - b.cost
            t.eff_gross_usdt += b.eff_abs_qty * px
            net[b.symbol] = net.get(b.symbol, 0.0) + b.eff_net_qty * px
            if b.futures:
                t.margin_usdt += b.margin_qty * px
                t.eff_margin_usdt += b.eff_margin_qty * px
            else:
                t.spot_quote_usdt += b.long_qty * px + b.working_buy_quote
        self._totals = t
        self._totals_version = self._version
        return t

    def unrealized(self) -> float:
        """Σ qty × (mark − average entry) over open positions (USDT)."""
        return self.totals().unrealized_usdt

    def equity(self) -> float:
        """Initial equity + realized − fees + unrealized (USDT)."""
        return self.initial_equity + self.realized_usdt - self.fees_usdt + self.totals().unrealized_usdt

    def daily_pnl(self) -> float:
        """Realized + unrealized − fees since the current UTC day's baseline (USDT)."""
        return self.equity() - self.day_start_equity

    def drawdown_pct(self) -> float:
        """Drawdown of the equity from its peak in percent (0 at a new high)."""
        peak = self.peak_equity
        if peak <= 0.0:
            return 100.0
        return max(0.0, (peak - self.equity()) / peak * 100.0)

    def _touch_peak(self) -> None:
        eq = self.equity()
        if eq > self.peak_equity:
            self.peak_equity = eq

    def gross_notional(self) -> float:
        """Σ |qty| × mark over all positions (USDT); working orders excluded."""
        return self.totals().gross_usdt

    def futures_margin(self) -> float:
        """Σ |qty| × mark / leverage over futures positions (USDT); working orders excluded."""
        return self.totals().margin_usdt

    def spot_quote(self) -> float:
        """Quote in spot long positions (at the mark) plus the remaining quote of working spot buys (USDT)."""
        return self.totals().spot_quote_usdt

    def entries(self, venue: str, symbol: str) -> int:
        """Open entries in a market: non-zero positions + working entry orders with nothing filled yet."""
        book = self.markets.get((venue, symbol))
        return 0 if book is None else book.open_positions + book.pending_entries

    def after(
        self,
        strategy: str,
        venue: str,
        symbol: str,
        side: int,
        qty: float,
        price: float,
        leverage: int,
        *,
        is_entry: bool,
    ) -> After:
        """Exposure (working orders included) after one more order of ``qty`` at ``price`` fills; records nothing.

        The order's market is valued at its price (``price`` when the market has none yet), like every other
        position, so "after" differs from the current exposure by exactly this order's effect.
        """
        futures = is_futures(venue)
        t = self.totals()
        market = (venue, symbol)
        book = self.markets.get(market)
        m = self._px.get(market, price)
        key = (strategy, venue, symbol)
        q0 = 0.0 if book is None else book.eff_qty.get(key, 0.0)
        q1 = q0 + side * qty
        gross = t.eff_gross_usdt - abs(q0) * m + abs(q1) * m
        net = abs(t.eff_net_usdt.get(symbol, 0.0) + side * qty * m)
        margin = t.eff_margin_usdt
        spot_quote = t.spot_quote_usdt
        if futures:
            lev = max(1, int(leverage))
            old_lev = lev if book is None else book.eff_leverage.get(key, lev)
            margin += -abs(q0) * m / old_lev + abs(q1) * m / lev
        elif side > 0:
            spot_quote += qty * price
        entries = (0 if book is None else book.open_positions + book.pending_entries) + (1 if is_entry else 0)
        return After(gross, net, margin, spot_quote, entries)
