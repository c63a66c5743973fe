"""Position sizing: how much to buy or sell, where the stop goes and where the take-profit goes.

The size comes from a base margin scaled by a multiplier (the piecewise-in-p bucket times the rules'
``size_mult``), times leverage on futures. The exits come from money, not from chart levels: the stop is the
closer of an ATR multiple (volatility-aware) and the distance at which the position loses ``max_loss_usdt``;
the take-profit is where the position nets ``target_net_pnl_usdt`` after the round-trip fees.

Everything is rounded to the venue's filters (stepSize for quantities, tickSize for prices), and the rounding
direction is chosen so the two money promises hold *after* rounding, exactly as the floats compute them:

- **quantity**: spot floors to the step (the quote balance must cover it); futures rounds to the nearest step
  (margin is leverage-backed, so a half-step more is not an overdraft; rounding to nearest keeps the realized
  notional closest to what was asked).
- **stop**: rounded *toward* the entry, so the distance never grows and the loss at the stop (``qty × |entry −
  stop|``) never exceeds ``max_loss_usdt``; a final float check steps one more tick toward the entry if the
  product still comes out a rounding error above the cap. (The alternative — rounding away from the entry,
  which gives the trade more room — would break the loss cap by up to one tick.) One exception: when the
  ATR distance is below a tick (quiet large-tick markets) and rounding would put the stop on the entry, the
  stop goes to the first grid price beyond the entry, if the loss cap allows it; otherwise there is no entry.
- **take-profit**: rounded *away* from the entry, so the net PnL at the take-profit is at least the target
  (fees as :func:`net_pnl_at_take_profit` charges them); it is always at least one grid price beyond the entry,
  even when a net maker rebate alone would cover the target.

Reference price: the stop and take-profit are placed relative to the mid of the book top the decision saw
(``Intent.price``); crossing the half spread is a cost the decision charges separately (slippage in C).
The loss cap is on the price move (gross); fees at the exit come on top, like on any exchange stop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tradeplane.api.v1alpha1.strategy import SizingSpec

from .types import MarketState

_BPS = 1e4
_GRID_EPS = 1e-9  #: in units of a step/tick: absorbs float error in x / step (e.g. 0.3 / 0.1 = 2.9999999999999996)

#: The issue's default buckets: p > 0.85 ×1.2; 0.6–0.85 ×1.0; 0.4–0.6 ×0.5; below 0.4 no entry.
DEFAULT_BUCKETS: tuple[tuple[float, float], ...] = ((0.85, 1.2), (0.6, 1.0), (0.4, 0.5), (0.0, 0.0))


@dataclass(frozen=True)
class SizingConfig:
    """Sizing parameters, compiled once per config revision (defaults equal :class:`SizingSpec`'s)."""

    margin_base_usdt: float = 50.0  #: margin (futures) or quote (spot) per entry before multipliers
    leverage: int = 1  #: futures leverage; 1 on spot whatever the spec says
    buckets: tuple[tuple[float, float], ...] = DEFAULT_BUCKETS  #: (min_p, mult), min_p descending
    min_size_mult: float = 0.0  #: lower clamp of the combined multiplier
    max_size_mult: float = 2.0  #: upper clamp of the combined multiplier
    atr_mult: float = 1.5  #: stop distance in ATRs
    max_loss_usdt: float = 10.0  #: loss at the stop caps the stop distance
    target_net_pnl_usdt: float = 5.0  #: take-profit set for this net PnL (after round-trip fees)
    futures: bool = False

    def __post_init__(self) -> None:
        mins = [b[0] for b in self.buckets]
        if not self.buckets or mins != sorted(mins, reverse=True):
            raise ValueError(f"buckets must be non-empty and sorted by min_p descending, got {self.buckets}")
        if not 0.0 <= self.min_size_mult <= self.max_size_mult:
            raise ValueError(
                f"need 0 <= min_size_mult <= max_size_mult, got {self.min_size_mult}, {self.max_size_mult}"
            )
        if self.leverage < 1 or (not self.futures and self.leverage != 1):
            raise ValueError(f"leverage must be >= 1 on futures and 1 on spot, got {self.leverage}")

    @classmethod
    def from_spec(cls, s: SizingSpec, *, futures: bool) -> SizingConfig:
        buckets = sorted(((float(b.min_p), float(b.mult)) for b in s.probability_buckets), key=lambda b: -b[0])
        return cls(
            margin_base_usdt=float(s.margin_base_usdt),
            leverage=int(s.leverage) if futures else 1,
            buckets=tuple(buckets),
            min_size_mult=float(s.min_size_mult),
            max_size_mult=float(s.max_size_mult),
            atr_mult=float(s.atr_mult),
            max_loss_usdt=float(s.max_loss_usdt),
            target_net_pnl_usdt=float(s.target_net_pnl_usdt),
            futures=futures,
        )


def probability_mult(p: float, buckets: tuple[tuple[float, float], ...]) -> float:
    """Size multiplier of the first bucket whose ``min_p`` ≤ p (buckets sorted by min_p descending).

    The bound is inclusive, as the API documents it (``minP`` ≤ p), so with the defaults p = 0.85 exactly
    gets ×1.2 where the issue's prose says "> 0.85"; the difference is one float value and the spec's own
    wording wins. No bucket applies (p below every ``min_p``, or NaN) → 0, i.e. no entry.
    """
    for min_p, mult in buckets:
        if min_p <= p:
            return mult
    return 0.0


@dataclass(frozen=True)
class Sizing:
    """One entry's size and exits, already on the venue's step and tick grids."""

    qty: float  #: base units, on the step grid
    notional_usdt: float  #: qty × reference mid
    stop_distance: float  #: |reference mid − stop_price| after rounding (quote per base)
    stop_price: float
    take_profit_price: float


def _on_grid(n: int, grid: float) -> float:
    """The n-th grid price as the float nearest to the exact decimal n × grid.

    Venue grids are 10⁻ᵏ-like (0.001, 0.5, 0.0005): 1/grid is an integer m and n / m is one correctly rounded
    division, so 7 steps of 0.1 print as 0.7, not 0.7000000000000001. Integer grids (1, 5, 10) multiply
    exactly; any other grid falls back to n × grid."""
    inv = 1.0 / grid
    m = round(inv)
    if m >= 1 and abs(inv - m) <= 1e-9 * inv:
        return n / m
    return n * grid


def _step_toward(x: float, target: float, grid: float) -> float:
    """One grid step from the grid price x toward target (one ulp when there is no grid)."""
    if grid > 0:
        return _on_grid(round(x / grid) + (1 if target > x else -1), grid)
    return math.nextafter(x, target)


def _first_beyond(price: float, direction: int, grid: float) -> float:
    """The first grid price strictly above (direction +1) or below (−1) ``price``."""
    if grid <= 0:
        return math.nextafter(price, direction * math.inf)
    g = price / grid
    return _on_grid(math.floor(g + _GRID_EPS) + 1 if direction > 0 else math.ceil(g - _GRID_EPS) - 1, grid)


def net_pnl_at_take_profit(side: int, qty: float, entry: float, tp: float, round_trip_fee_bps: float) -> float:
    """Net PnL when the take-profit fills: the price gain minus the whole round-trip fee charged on the
    less favourable of the entry and exit notionals — the larger one for a fee (on a long, the exit at the
    take-profit), the smaller one for a net rebate. The target then holds whichever leg pays what, and also
    under the plain "fee × entry notional" reading."""
    fee = round_trip_fee_bps / _BPS
    charged = max(entry, tp) if fee >= 0 else min(entry, tp)
    return qty * side * (tp - entry) - fee * qty * charged


def size_entry(
    side: int,
    p_mult_times_rules: float,
    state: MarketState,
    cfg: SizingConfig,
    *,
    tp_mult: float,
    sl_mult: float,
    round_trip_fee_bps: float,
) -> Sizing | None:
    """Quantity, stop and take-profit of an entry in ``side`` (+1 long, −1 short), or None when it cannot
    be placed: multiplier ≤ 0, no usable mid, quantity below ``min_qty`` or notional below ``min_notional``
    after rounding, a stop that cannot be placed within the loss cap on the tick grid (the cap allows less
    than the distance to the first grid price beyond the entry), or a short take-profit at or below zero.

    ``p_mult_times_rules`` is the bucket multiplier times the rules' ``size_mult``; it is clamped to the
    config's [min_size_mult, max_size_mult] here too (idempotent with the pipeline's clamp), but a
    multiplier ≤ 0 means "no entry" and is never lifted by a positive lower clamp.

    Stop distance d = min(min(atr_mult·ATR, max_loss/qty) × sl_mult, max_loss/qty): the rules' ``sl_mult``
    scales the distance, but ``max_loss_usdt`` stays a hard cap even for ``sl_mult`` > 1. A NaN (not warmed
    up) or non-positive ATR leaves only the loss cap. Take-profit distance t solves
    ``qty·t − fees = target_net_pnl × tp_mult`` with fees per :func:`net_pnl_at_take_profit`.
    """
    if side not in (1, -1):
        raise ValueError(f"side must be +1 (long) or -1 (short), got {side}")
    fee = round_trip_fee_bps / _BPS
    if not -1 < fee < 1:  # a negative round trip is a net maker rebate
        raise ValueError(f"round_trip_fee_bps must be within (-1e4, 1e4), got {round_trip_fee_bps}")
    if not p_mult_times_rules > 0:
        return None
    mult = min(max(p_mult_times_rules, cfg.min_size_mult), cfg.max_size_mult)
    price = state.mid
    if not (mult > 0 and math.isfinite(price) and price > 0):
        return None

    # quantity on the step grid
    step = state.step_size
    raw_qty = cfg.margin_base_usdt * mult * (cfg.leverage if cfg.futures else 1) / price
    if step > 0:
        n = round(raw_qty / step) if cfg.futures else math.floor(raw_qty / step + _GRID_EPS)
        qty = _on_grid(n, step)
    else:
        qty = raw_qty
    notional = qty * price
    if not qty > 0 or qty < state.min_qty or notional < state.min_notional:
        return None

    # stop: capped distance, rounded toward the entry, then checked in floats as the loss is measured
    tick = state.tick_size
    max_loss = cfg.max_loss_usdt
    loss_d = max_loss / qty
    atr_d = cfg.atr_mult * state.atr if state.atr > 0 and math.isfinite(state.atr) else math.inf
    d = min(min(atr_d, loss_d) * sl_mult, loss_d)
    raw_stop = price - side * d
    if tick > 0:
        g = raw_stop / tick
        stop = _on_grid(math.ceil(g - _GRID_EPS) if side > 0 else math.floor(g + _GRID_EPS), tick)
        if side > 0 and stop <= 0:  # a long's stop below zero: the lowest price on the grid is safer still
            stop = _on_grid(1, tick)
    else:
        stop = max(raw_stop, math.ulp(0.0)) if side > 0 else raw_stop
    min_gap = tick * _GRID_EPS if tick > 0 else 0.0  # "on the entry" up to float noise
    if not side * (price - stop) > min_gap:  # rounded onto (or past) the entry: the first grid price beyond it
        stop = _first_beyond(price, -side, tick)
    for _ in range(4):  # float noise in the loss product: one more tick toward the entry
        if qty * side * (price - stop) <= max_loss:
            break
        stop = _step_toward(stop, price, tick)
    if not (qty * side * (price - stop) <= max_loss and side * (price - stop) > min_gap and stop > 0):
        return None

    # take-profit: the exact distance for the net target, rounded away from the entry, then checked
    target = cfg.target_net_pnl_usdt * tp_mult
    if (side > 0) == (fee >= 0):  # fee charged on the take-profit's notional: solve side·(tp − e) − f·tp
        raw_tp = (target / qty + side * price) / (side - fee)
    else:  # charged on the entry's notional
        raw_tp = price + side * (target / qty + fee * price)
    if tick > 0:
        g = raw_tp / tick
        tp = _on_grid(math.ceil(g - _GRID_EPS) if side > 0 else math.floor(g + _GRID_EPS), tick)
    else:
        tp = raw_tp
    if not side * (tp - price) > min_gap:  # a net maker rebate can cover the target: still beyond the entry
        tp = _first_beyond(price, side, tick)
    for _ in range(4):
        if net_pnl_at_take_profit(side, qty, price, tp, round_trip_fee_bps) >= target:
            break
        tp = _step_toward(tp, side * math.inf, tick)
    if not (
        net_pnl_at_take_profit(side, qty, price, tp, round_trip_fee_bps) >= target
        and side * (tp - price) > min_gap
        and tp > 0
    ):
        return None

    return Sizing(
        qty=qty,
        notional_usdt=notional,
        stop_distance=abs(price - stop),
        stop_price=stop,
        take_profit_price=tp,
    )
