"""The cost of a trade, C(s, t), and the utility U = E[excess return] / C.

A signal is worth taking only if what it expects to earn beats what it costs to get in and out: fees on
both legs, slippage from walking the book (which grows with size and shrinks with depth), and, for
perpetual futures, the funding paid over the holding horizon. Everything is in basis points of notional so
that returns and costs compare directly. Formulas: docs/costs.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
_BPS = 1e4
_FUNDING_PERIOD_S = 8 * 3600


@dataclass(frozen=True)
class FeeSchedule:
    """Fees in bps of notional; a negative maker fee is a rebate."""

    maker_bps: float
    taker_bps: float


#: Binance regular-user (VIP 0) fees by venue and tier; extend with the account's tier from the API.
FEE_TIERS: dict[str, dict[str, FeeSchedule]] = {
    "binance-spot": {"vip0": FeeSchedule(10.0, 10.0), "vip0-bnb": FeeSchedule(7.5, 7.5)},
    "binance-usdm": {"vip0": FeeSchedule(2.0, 5.0), "vip0-bnb": FeeSchedule(1.8, 4.5)},
    "binance-coinm": {"vip0": FeeSchedule(2.0, 5.0)},
    "paper": {"vip0": FeeSchedule(2.0, 5.0)},
}


def fee_schedule(venue: str, tier: str = "vip0") -> FeeSchedule:
    try:
        return FEE_TIERS[venue][tier]
    except KeyError:
        known = ", ".join(f"{v}/{t}" for v, tiers in FEE_TIERS.items() for t in tiers)
        raise ValueError(f"no fee schedule for venue {venue!r} tier {tier!r} (known: {known})") from None


def walk_book(
    qty: npt.ArrayLike, level_px: npt.ArrayLike, level_qty: npt.ArrayLike, mid: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Fill ``qty`` (base units) against the levels of one side, best first; rows are independent orders.

    ``level_px``/``level_qty`` are (rows, levels) arrays of the side the order takes from (asks for a buy).
    Returns (VWAP, slippage in bps of mid = |VWAP − mid| / mid, filled quantity). What the visible levels
    cannot fill is left unfilled (the caller decides whether that is acceptable); NaN levels are empty.
    """
    px = np.atleast_2d(np.asarray(level_px, dtype=np.float64))
    lq = np.nan_to_num(np.atleast_2d(np.asarray(level_qty, dtype=np.float64)), nan=0.0)
    want = np.broadcast_to(np.asarray(qty, dtype=np.float64), (px.shape[0],))
    m = np.broadcast_to(np.asarray(mid, dtype=np.float64), (px.shape[0],))
    before = np.cumsum(lq, axis=1) - lq  # quantity ahead of each level
    take = np.clip(want[:, None] - before, 0.0, lq)
    filled = take.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        vwap = np.nansum(take * np.nan_to_num(px), axis=1) / filled
        slip = np.abs(vwap - m) / m * _BPS
    return vwap, slip, filled


@dataclass(frozen=True)
class SlippageQuantiles:
    """Empirical one-way taker slippage (bps) per notional bucket, at any quantile (``fit_slippage_quantiles``).

    The table keeps each bucket's samples, sorted, so every quantile is exact (numpy's default linear
    interpolation between order statistics): ``samples_bps[offsets[b]:offsets[b + 1]]`` are bucket b's. A
    strategy's ``slippageQuantile`` can be any value in (0, 1) and needs no refit.
    """

    edges_usdt: FloatArray  #: bucket lower edges, ascending; bucket i covers [edges[i], edges[i+1])
    samples_bps: FloatArray  #: finite samples grouped by bucket, ascending within each bucket
    offsets: npt.NDArray[np.int64]  #: len(edges) + 1 bounds of each bucket's run in ``samples_bps``

    @property
    def count(self) -> npt.NDArray[np.int64]:
        """Samples per bucket."""
        return np.diff(self.offsets)

    def at(self, q: float, min_count: int = 1) -> FloatArray:
        """Slippage at quantile ``q`` ∈ [0, 1] of each bucket: ``np.quantile`` of its samples, bit for bit;
        NaN for a bucket with fewer than ``min_count`` samples (no borrowing: the caller decides)."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be within [0, 1], got {q}")
        out = np.full(len(self.edges_usdt), np.nan)
        o = self.offsets.tolist()
        for b in range(len(out)):
            if o[b + 1] - o[b] >= max(min_count, 1):
                out[b] = np.quantile(self.samples_bps[o[b] : o[b + 1]], q)
        return out

    def _borrowed(self, q: float) -> FloatArray:
        """:meth:`at` with every empty bucket holding the next smaller non-empty bucket's value."""
        v = self.at(q)
        for b in range(1, len(v)):
            if v[b] != v[b]:
                v[b] = v[b - 1]
        return v

    @property
    def q025(self) -> FloatArray:
        return self._borrowed(0.025)

    @property
    def q50(self) -> FloatArray:
        return self._borrowed(0.5)

    @property
    def q975(self) -> FloatArray:
        return self._borrowed(0.975)

    def quantile(self, notional_usdt: npt.ArrayLike, which: float = 0.5) -> FloatArray:
        """Slippage for orders of the given notional at quantile ``which`` ∈ [0, 1]; an empty bucket borrows
        the next smaller non-empty bucket's value (optimistic for sizes never observed; ``count`` says so)."""
        i = np.clip(np.searchsorted(self.edges_usdt, np.asarray(notional_usdt, dtype=np.float64), "right") - 1,
                    0, len(self.edges_usdt) - 1)  # fmt: skip
        return np.asarray(self._borrowed(which)[i])


def fit_slippage_quantiles(
    notional_usdt: npt.ArrayLike, slippage_bps: npt.ArrayLike, edges_usdt: npt.ArrayLike
) -> SlippageQuantiles:
    """Empirical slippage per notional bucket (e.g. taker orders vs the mid just before them), queryable at
    any quantile. Samples with a non-finite slippage, or a notional below ``edges[0]`` (or NaN), are left
    out. The result depends on the samples as a multiset only, not on their order."""
    n = np.asarray(notional_usdt, dtype=np.float64)
    s = np.asarray(slippage_bps, dtype=np.float64)
    edges = np.asarray(edges_usdt, dtype=np.float64)
    if n.shape != s.shape or edges.ndim != 1 or len(edges) == 0 or np.any(np.diff(edges) <= 0):
        raise ValueError("notional and slippage must be equally long; edges must be 1-D and strictly ascending")
    keep = np.isfinite(s) & (n >= edges[0])
    idx = np.searchsorted(edges, n[keep], "right") - 1
    s = s[keep]
    order = np.lexsort((s, idx))
    offsets = np.zeros(len(edges) + 1, dtype=np.int64)
    np.cumsum(np.bincount(idx, minlength=len(edges)), out=offsets[1:])
    return SlippageQuantiles(edges, s[order], offsets)


def funding_cost_bps(funding_rate: npt.ArrayLike, horizon_s: float, direction: npt.ArrayLike) -> FloatArray:
    """Expected funding paid over the horizon, in bps (positive = a cost).

    Longs pay shorts when the rate is positive. The rate is per 8 h; over H seconds the expected payment is
    rate × H / 8 h (settlements are discrete, so this is the expectation for a random entry time).
    """
    rate = np.asarray(funding_rate, dtype=np.float64)
    d = np.sign(np.asarray(direction, dtype=np.float64))
    return np.asarray(d * rate * _BPS * horizon_s / _FUNDING_PERIOD_S)


@dataclass(frozen=True)
class CostBreakdown:
    """Round-trip cost components in bps of notional."""

    fees_bps: FloatArray
    slippage_bps: FloatArray
    funding_bps: FloatArray

    @property
    def total_bps(self) -> FloatArray:
        return np.asarray(self.fees_bps + self.slippage_bps + self.funding_bps)


def round_trip_cost(
    *,
    fees: FeeSchedule,
    entry_maker: npt.ArrayLike,
    exit_maker: npt.ArrayLike,
    slippage_bps: npt.ArrayLike,
    funding_rate: npt.ArrayLike = 0.0,
    horizon_s: float = 0.0,
    direction: npt.ArrayLike = 1,
) -> CostBreakdown:
    """C(s, t): fees on both legs (maker or taker each), slippage on the taker legs, funding over H.

    ``slippage_bps`` is the one-way taker slippage for this size (from :func:`walk_book` or a fitted
    quantile); maker legs pay no slippage (they may not fill — the execution layer prices that risk).
    """
    em = np.asarray(entry_maker, dtype=bool)
    xm = np.asarray(exit_maker, dtype=bool)
    fee = np.where(em, fees.maker_bps, fees.taker_bps) + np.where(xm, fees.maker_bps, fees.taker_bps)
    slip = np.asarray(slippage_bps, dtype=np.float64) * ((~em).astype(float) + (~xm).astype(float))
    fund = funding_cost_bps(funding_rate, horizon_s, direction)
    shape = np.broadcast_shapes(fee.shape, slip.shape, fund.shape)
    return CostBreakdown(
        np.broadcast_to(fee, shape).astype(np.float64),
        np.broadcast_to(slip, shape).astype(np.float64),
        np.broadcast_to(fund, shape).astype(np.float64),
    )


def expected_excess_return_bps(p_up: npt.ArrayLike, up_move_bps: npt.ArrayLike, down_move_bps: npt.ArrayLike,
                               direction: npt.ArrayLike) -> FloatArray:  # fmt: skip
    """E[return] of a position in ``direction`` (+1 long, −1 short) given P(up) and the typical move sizes.

    With barriers at +u and −d: E = p·u − (1 − p)·d for a long, (1 − p)·d − p·u for a short.
    """
    p = np.asarray(p_up, dtype=np.float64)
    u = np.asarray(up_move_bps, dtype=np.float64)
    d = np.asarray(down_move_bps, dtype=np.float64)
    long_e = p * u - (1 - p) * d
    return np.asarray(np.where(np.asarray(direction) >= 0, long_e, -long_e))


def utility(expected_bps: npt.ArrayLike, cost_bps: npt.ArrayLike) -> FloatArray:
    """U = E[excess return] / C. C ≤ 0 (rebates exceed everything) gives +inf for a positive expectation."""
    e = np.asarray(expected_bps, dtype=np.float64)
    c = np.asarray(cost_bps, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.where(c > 0, e / c, np.where(e > 0, np.inf, -np.inf)))


def passes_thresholds(p_direction: npt.ArrayLike, u: npt.ArrayLike, tau: float, kappa: float) -> npt.NDArray[np.bool_]:
    """The utility filter: probability of the chosen direction ≥ τ and U ≥ κ."""
    return np.asarray((np.asarray(p_direction) >= tau) & (np.asarray(u) >= kappa))
