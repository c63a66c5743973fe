"""Contract specifications and the PnL arithmetic of linear, inverse and spot instruments.

Why one module for both contract families: the portfolio, the matcher's fee computation and the risk checks
must agree to the last bit on what a fill is worth, and the only difference between a USDⓈ-M (linear) and a
COIN-M (inverse) contract is the coordinate the price enters in. A linear contract is linear in the price
``p`` and settles in quote; an inverse contract is linear in ``1/p`` and settles in the coin:

=========  ==============================  ===============================================  ================
kind       quantity unit                   PnL of ``q`` closed from ``entry`` to ``exit``   notional
=========  ==============================  ===============================================  ================
linear     base units                      q · (exit − entry) · side      (quote)           q · p (quote)
inverse    contracts of ``contract_size``  q · cs · (1/entry − 1/exit) · side   (coin)      q · cs / p (coin)
spot       base units                      as linear (quote)                                q · p (quote)
=========  ==============================  ===============================================  ================

Averaging follows from the same linearity (and is what Binance shows): the average entry of a linear
position is the quantity-weighted mean price; of an inverse position the harmonic mean, total contracts
divided by total coin value (1,000 contracts at 5,000 plus 2,000 at 6,000 average 5,625), so that
realized plus unrealized PnL always equals the mark-to-market of the fills' cash flows.

The numba functions take the kind as an int (``KIND_*``) and plain floats so any kernel can inline them;
:class:`ContractSpec` is the validated Python edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
from numba import njit

from ..costs import fee_schedule

# --- contract kind (int code used inside kernels) -------------------------------------------------------------
KIND_LINEAR: Final = 0  #: USDⓈ-M futures / perpetuals: quantity in base, PnL and fees in quote
KIND_INVERSE: Final = 1  #: COIN-M: quantity in contracts of ``contract_size`` USD, PnL and fees in the coin
KIND_SPOT: Final = 2  #: spot: accounted like linear (quote), no funding; shorts only if the caller allows them

ContractKind = Literal["linear", "inverse", "spot"]
_KIND_CODES: Final[dict[str, int]] = {"linear": KIND_LINEAR, "inverse": KIND_INVERSE, "spot": KIND_SPOT}
_BPS: Final = 1e4
_DUST_LOTS: Final = 1e-9  #: |position| below this many lots is float residue of a full close: snapped to 0


@dataclass(frozen=True, kw_only=True)
class ContractSpec:
    """One instrument as the simulator accounts for it.

    Fees are in bps of notional (negative maker = rebate). ``initial_margin_frac`` is 1 / leverage;
    ``maintenance_margin_frac`` is the first tier's rate (a flat approximation of Binance's tiered table).
    """

    kind: ContractKind
    tick_size: float
    lot_size: float
    contract_size: float = 1.0  #: inverse: USD per contract (BTCUSD_PERP 100, altcoins 10); 1 otherwise
    maker_bps: float
    taker_bps: float
    initial_margin_frac: float = 0.1
    maintenance_margin_frac: float = 0.004

    def __post_init__(self) -> None:
        if self.kind not in _KIND_CODES:
            raise ValueError(f"kind must be one of {sorted(_KIND_CODES)}, got {self.kind!r}")
        for name in ("tick_size", "lot_size", "contract_size"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.kind != "inverse" and self.contract_size != 1.0:
            raise ValueError(
                f"contract_size applies to inverse contracts only, got {self.contract_size} for {self.kind}"
            )
        if not 0 < self.initial_margin_frac <= 1 or not 0 <= self.maintenance_margin_frac <= self.initial_margin_frac:
            raise ValueError(
                "need 0 < initial_margin_frac <= 1 and 0 <= maintenance_margin_frac <= initial_margin_frac"
            )

    @property
    def kind_code(self) -> int:
        """The kind as the kernels see it (``KIND_*``)."""
        return _KIND_CODES[self.kind]

    def fee_bps(self, maker: bool) -> float:
        return self.maker_bps if maker else self.taker_bps


def binance_usdm(tick: float, lot: float, tier: str = "vip0", *, leverage: float = 10.0) -> ContractSpec:
    """A Binance USDⓈ-M perpetual (e.g. BTCUSDT: tick 0.1, lot 0.001)."""
    fees = fee_schedule("binance-usdm", tier)
    return ContractSpec(kind="linear", tick_size=tick, lot_size=lot, maker_bps=fees.maker_bps,
                        taker_bps=fees.taker_bps, initial_margin_frac=1.0 / leverage)  # fmt: skip


def binance_coinm(
    tick: float, lot: float = 1.0, tier: str = "vip0", *, contract_size: float = 100.0, leverage: float = 10.0
) -> ContractSpec:
    """A Binance COIN-M perpetual (BTCUSD_PERP: tick 0.1, 1 contract = 100 USD; altcoins 10 USD)."""
    fees = fee_schedule("binance-coinm", tier)
    return ContractSpec(kind="inverse", tick_size=tick, lot_size=lot, contract_size=contract_size,
                        maker_bps=fees.maker_bps, taker_bps=fees.taker_bps,
                        initial_margin_frac=1.0 / leverage)  # fmt: skip


def binance_spot(tick: float, lot: float, tier: str = "vip0") -> ContractSpec:
    """A Binance spot pair: no leverage (initial margin 100 %), no maintenance margin, no funding.

    Binance charges spot fees in the received asset unless paid in BNB; the simulator books them in quote
    (as with BNB payment at the fill price), which keeps the accounting in one currency.
    """
    fees = fee_schedule("binance-spot", tier)
    return ContractSpec(kind="spot", tick_size=tick, lot_size=lot, maker_bps=fees.maker_bps,
                        taker_bps=fees.taker_bps, initial_margin_frac=1.0, maintenance_margin_frac=0.0)  # fmt: skip


# --- kernels: plain floats in, plain floats out ---------------------------------------------------------------
@njit(cache=True, inline="always")
def notional(kind: int, contract_size: float, qty: float, px: float) -> float:
    """Value of ``qty`` (≥ 0) at ``px`` in the settlement currency: quote (linear, spot) or coin (inverse)."""
    if kind == KIND_INVERSE:
        return qty * contract_size / px
    return qty * px


@njit(cache=True, inline="always")
def fee(kind: int, contract_size: float, qty: float, px: float, bps: float) -> float:
    """Fee of a fill in the settlement currency; negative for a rebate (negative ``bps``)."""
    return notional(kind, contract_size, qty, px) * bps / _BPS


@njit(cache=True, inline="always")
def pnl(kind: int, contract_size: float, qty: float, entry: float, exit_px: float, side: int) -> float:
    """PnL of ``qty`` (≥ 0) held on ``side`` (+1 long, −1 short) from ``entry`` to ``exit_px``."""
    if kind == KIND_INVERSE:
        return qty * contract_size * (1.0 / entry - 1.0 / exit_px) * side
    return qty * (exit_px - entry) * side


@njit(cache=True, inline="always")
def blend_entry(kind: int, held: float, entry: float, add: float, px: float) -> float:
    """Average entry after adding ``add`` at ``px`` to ``held`` (both ≥ 0, same side) at ``entry``.

    Linear: quantity-weighted mean price. Inverse: harmonic mean (total contracts / total coin value), the
    exchange convention that keeps inverse PnL additive.
    """
    if held <= 0.0:
        return px
    if kind == KIND_INVERSE:
        return (held + add) / (held / entry + add / px)
    return (held * entry + add * px) / (held + add)


@njit(cache=True, inline="always")
def fill_position(kind: int, contract_size: float, lot_size: float, position: float, entry: float, side: int,
                  qty: float, px: float) -> tuple[float, float, float]:  # fmt: skip
    """Position after a fill of ``qty`` (> 0) on ``side`` at ``px``: (new signed position, average entry, realized).

    Exchange convention: adding moves the average (:func:`blend_entry`); reducing realizes PnL at the average
    and keeps it; a fill through zero realizes the closed part and opens the rest at ``px``. Flat means
    entry NaN; a residue under 1e-9 lots after a full close is float noise and snaps to 0.
    """
    dust = _DUST_LOTS * lot_size
    held = abs(position)
    new = position + side * qty
    if held <= dust or (position > 0.0) == (side > 0):  # open or add
        return new, blend_entry(kind, held if held > dust else 0.0, entry, qty, px), 0.0
    closed = held if qty >= held - dust else qty
    realized = pnl(kind, contract_size, closed, entry, px, 1 if position > 0.0 else -1)
    if qty - closed > dust:
        return new, px, realized  # flipped: the remainder opens at the fill price
    if abs(new) <= dust:
        return 0.0, np.nan, realized
    return new, entry, realized


@njit(cache=True, inline="always")
def funding_payment(kind: int, contract_size: float, position: float, mark_px: float, rate: float) -> float:
    """Funding paid by a signed ``position`` at one settlement (negative = received).

    Linear: position · mark · rate in quote; inverse: contracts · contract_size / mark · rate in coin. Longs
    pay when the rate is positive. Spot has no funding (0).
    """
    if kind == KIND_SPOT:
        return 0.0
    if kind == KIND_INVERSE:
        return position * contract_size / mark_px * rate
    return position * mark_px * rate
