"""A symbol's exchange filters as Decimals, and the formatting of quantities and prices to them.

Why Decimal and not float: Binance rejects a quantity that is not a multiple of the step size (-1013
``LOT_SIZE``) or has more decimals than the asset allows (-1111), and ``str(0.00001)`` is ``'1e-05'``,
which it does not parse at all. So every number sent is a Decimal rounded to the filter and written in
plain positional notation without trailing zeros (``0.00001``, ``64000.1``, ``100``).

Rounding: quantities round *down* to the step (never more than asked), prices round to the *nearest* tick.
A quantity that rounds below the minimum, or an order whose notional is below the minimum, is refused
with :class:`~.base.OrderValidationError` naming the field, before anything is sent.

Filters come from the engine's table (``engine.runtime.instruments.EXCHANGE_FILTERS``, what backtests use)
or from the venue's exchangeInfo (what a live adapter loads at start).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Any, Final

from ...engine.runtime.instruments import EXCHANGE_FILTERS, UnknownInstrumentError
from .base import Num, OrderValidationError, to_decimal

#: Quote assets, longest first, to split a symbol into base and quote when exchangeInfo did not say.
QUOTE_ASSETS: Final = ("FDUSD", "USDT", "USDC", "TUSD", "BUSD", "BTC", "ETH", "BNB", "EUR", "TRY")


def plain(d: Decimal) -> str:
    """``d`` in positional notation without trailing zeros: 0.00001, 64000.1, 100 (never 1E+2 or 1e-05)."""
    s = format(d, "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return "0" if s in ("", "-0") else s


def _dec(x: float) -> Decimal:
    """A float table value as the Decimal it was written as (``str(1e-05)`` parses exactly)."""
    return Decimal(str(x))


def split_symbol(symbol: str) -> tuple[str, str]:
    """(base, quote) of ``BTCUSDT`` → (BTC, USDT), by the known quote assets."""
    for quote in QUOTE_ASSETS:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    raise ValueError(f"cannot split {symbol!r} into base and quote asset (known quotes: {', '.join(QUOTE_ASSETS)})")


@dataclass(frozen=True, slots=True)
class SymbolFilters:
    """PRICE_FILTER tick, LOT_SIZE step and minimum, and the minimum notional of one symbol."""

    symbol: str
    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal
    min_notional: Decimal
    base_asset: str
    quote_asset: str

    def __post_init__(self) -> None:
        for name in ("tick_size", "step_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{self.symbol}: {name} must be > 0, got {getattr(self, name)}")

    @classmethod
    def from_engine(cls, venue: str, symbol: str) -> SymbolFilters:
        """From the engine's EXCHANGE_FILTERS table (``venue`` binance-spot or binance-usdm)."""
        try:
            tick, step, min_qty, min_notional = EXCHANGE_FILTERS[(venue, symbol)]
        except KeyError:
            raise UnknownInstrumentError(f"no exchange filters for {venue}:{symbol}") from None
        base, quote = split_symbol(symbol)
        return cls(symbol, _dec(tick), _dec(step), _dec(min_qty), _dec(min_notional), base, quote)

    @classmethod
    def from_exchange_info(cls, info: Mapping[str, Any]) -> SymbolFilters:
        """From one entry of exchangeInfo ``symbols`` (spot or USD-M); a missing filter raises naming it."""
        symbol = str(info.get("symbol", "?"))
        by_type = {f.get("filterType"): f for f in info.get("filters", ())}

        def field(ftype: str, key: str, *alts: str) -> Decimal:
            for ft in (ftype, *alts):
                f = by_type.get(ft)
                if f is not None and key in f:
                    return Decimal(str(f[key]))
            raise ValueError(f"exchangeInfo {symbol}: filter {ftype}.{key} missing")

        if "NOTIONAL" in by_type or "MIN_NOTIONAL" in by_type:
            f = by_type.get("NOTIONAL") or by_type["MIN_NOTIONAL"]
            min_notional = Decimal(str(f.get("minNotional", f.get("notional", "0"))))
        else:
            min_notional = Decimal(0)
        base = str(info.get("baseAsset") or split_symbol(symbol)[0])
        quote = str(info.get("quoteAsset") or split_symbol(symbol)[1])
        return cls(
            symbol,
            field("PRICE_FILTER", "tickSize"),
            field("LOT_SIZE", "stepSize"),
            field("LOT_SIZE", "minQty"),
            min_notional,
            base,
            quote,
        )

    def qty(self, value: Num, field: str = "qty") -> Decimal:
        """``value`` rounded down to the step; below the minimum quantity raises naming ``field``."""
        d = to_decimal(value, field)
        q = (d / self.step_size).to_integral_value(ROUND_DOWN) * self.step_size
        if q <= 0 or q < self.min_qty:
            raise OrderValidationError(
                f"{field}: {value} {self.symbol} rounds to {plain(q)} at step {plain(self.step_size)}, "
                f"below the minimum {plain(self.min_qty)}"
            )
        return q

    def price(self, value: Num, field: str = "price") -> Decimal:
        """``value`` rounded to the nearest tick; a price that rounds to 0 raises naming ``field``."""
        d = to_decimal(value, field)
        p = (d / self.tick_size).to_integral_value(ROUND_HALF_UP) * self.tick_size
        if p <= 0:
            raise OrderValidationError(f"{field}: {value} rounds to {plain(p)} at tick {plain(self.tick_size)}")
        return p

    def check_notional(self, qty: Decimal, price: Decimal, field: str = "qty") -> None:
        """Refuse an order worth less than the minimum notional at ``price``."""
        if qty * price < self.min_notional:
            raise OrderValidationError(
                f"{field}: {plain(qty)} {self.symbol} at {plain(price)} is {plain(qty * price)} "
                f"{self.quote_asset}, below the minimum notional {plain(self.min_notional)}"
            )
