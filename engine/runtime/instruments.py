"""Instruments of a desk: the (venue, symbol) pairs its strategies trade, with exchange filters and contracts.

Why a table of its own: the simulator, the feature engine and the books see dense integer ids; the
decision sees symbols, tick and step sizes and the exchange's minimum order; the portfolio needs the
contract. One :class:`Instrument` per pair carries all of them, so no layer re-derives another's view.
The filters are Binance's published exchangeInfo values for the pairs the platform ships with; the live
ingest workload refreshes them daily from the exchange (issue 7).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..sim.contracts import ContractSpec, binance_spot, binance_usdm

#: venue, symbol → (tick size, step size, min qty, min notional USDT), from Binance exchangeInfo (2024-08).
EXCHANGE_FILTERS: Mapping[tuple[str, str], tuple[float, float, float, float]] = {
    ("binance-usdm", "BTCUSDT"): (0.1, 0.001, 0.001, 100.0),
    ("binance-usdm", "ETHUSDT"): (0.01, 0.001, 0.001, 20.0),
    ("binance-spot", "BTCUSDT"): (0.01, 0.00001, 0.00001, 5.0),
    ("binance-spot", "ETHUSDT"): (0.01, 0.0001, 0.0001, 5.0),
}
#: Typical price per symbol, used to start a synthetic market near reality.
REFERENCE_PRICES: Mapping[str, float] = {"BTCUSDT": 60_000.0, "ETHUSDT": 2_600.0}

FUTURES_VENUES = frozenset({"binance-usdm", "paper"})


class UnknownInstrumentError(ValueError):
    """A (venue, symbol) pair without known exchange filters."""


@dataclass(frozen=True)
class Instrument:
    """One tradable pair and everything each layer needs to know about it."""

    id: int  #: dense id: the simulator's and the feature engine's symbol
    venue: str  #: binance-spot | binance-usdm | paper
    symbol: str  #: e.g. BTCUSDT
    tick_size: float
    step_size: float
    min_qty: float
    min_notional: float

    @property
    def futures(self) -> bool:
        return self.venue in FUTURES_VENUES

    @property
    def key(self) -> str:
        """``venue:SYMBOL``, the SymbolTable name of the pair."""
        return f"{self.venue}:{self.symbol}"

    def contract(self, fee_tier: str = "vip0", leverage: float = 10.0) -> ContractSpec:
        """The simulator's contract for this pair (fees of the venue's tier)."""
        if self.futures:
            return binance_usdm(self.tick_size, self.step_size, fee_tier, leverage=leverage)
        return binance_spot(self.tick_size, self.step_size, fee_tier)


def _filters(venue: str, symbol: str) -> tuple[float, float, float, float]:
    lookup = "binance-usdm" if venue == "paper" else venue
    try:
        return EXCHANGE_FILTERS[(lookup, symbol)]
    except KeyError:
        known = ", ".join(f"{v}:{s}" for v, s in EXCHANGE_FILTERS)
        raise UnknownInstrumentError(f"no exchange filters for {venue}:{symbol} (known: {known})") from None


def instrument_table(pairs: Iterable[tuple[str, str]]) -> list[Instrument]:
    """Instruments for the distinct pairs, ids in first-seen order (the order the data is read in)."""
    out: list[Instrument] = []
    seen: set[tuple[str, str]] = set()
    for venue, symbol in pairs:
        if (venue, symbol) in seen:
            continue
        seen.add((venue, symbol))
        tick, step, min_qty, min_notional = _filters(venue, symbol)
        out.append(Instrument(len(out), venue, symbol, tick, step, min_qty, min_notional))
    return out
