"""exchangeInfo: tick and step sizes of the ingested symbols, cached and refreshed daily.

Why the ingest needs them: the book keys levels by integer tick (``BookConfig.tick_sizes``), and a tick
taken from the exchange is exact where an inferred one can be too coarse for a while. Filters change rarely
and with notice, so one read a day is plenty; a failed refresh keeps the last good document.

Parsing reuses :meth:`tradeplane.workloads.venues.filters.SymbolFilters.from_exchange_info` (the execution
adapters read the same document), so both sides agree on every filter.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..venues.filters import SymbolFilters


class ExchangeInfoError(ValueError):
    """An exchangeInfo document that cannot be used; the message names the symbol or the part at fault."""


def parse_exchange_info(doc: Any, symbols: Iterable[str] | None = None) -> dict[str, SymbolFilters]:
    """Filters per symbol from an exchangeInfo document (spot or futures), for ``symbols`` or all of them.

    Raises :class:`ExchangeInfoError` naming the problem: not an object, no ``symbols`` list, a wanted
    symbol missing, or a symbol without PRICE_FILTER / LOT_SIZE.
    """
    if not isinstance(doc, Mapping) or not isinstance(doc.get("symbols"), list):
        raise ExchangeInfoError("exchangeInfo: expected an object with a 'symbols' list")
    wanted = None if symbols is None else list(symbols)
    out: dict[str, SymbolFilters] = {}
    for entry in doc["symbols"]:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("symbol"), str):
            raise ExchangeInfoError(f"exchangeInfo: a 'symbols' entry is not an object with a symbol: {entry!r:.80}")
        name = entry["symbol"]
        if wanted is not None and name not in wanted:
            continue
        try:
            out[name] = SymbolFilters.from_exchange_info(entry)
        except (ValueError, ArithmeticError) as exc:
            raise ExchangeInfoError(f"exchangeInfo {name}: {exc}") from exc
    if wanted is not None:
        missing = [s for s in wanted if s not in out]
        if missing:
            raise ExchangeInfoError(f"exchangeInfo has no entry for {', '.join(missing)}")
    return out


@dataclass
class ExchangeInfoCache:
    """The last good filters and when they were read (seconds on the caller's monotonic clock)."""

    refresh_s: float
    filters: dict[str, SymbolFilters] = field(default_factory=dict)
    loaded_at: float | None = None
    failures: int = 0

    def due(self, now: float) -> bool:
        """True when never loaded or older than ``refresh_s``."""
        return self.loaded_at is None or now - self.loaded_at >= self.refresh_s

    def age(self, now: float) -> float | None:
        return None if self.loaded_at is None else now - self.loaded_at

    def update(self, doc: Any, symbols: Iterable[str], now: float) -> bool:
        """Parse ``doc`` and keep it; returns True when a tick size changed (the books must be rebuilt).

        A document that does not parse raises :class:`ExchangeInfoError` and leaves the cache as it was."""
        fresh = parse_exchange_info(doc, symbols)
        changed = any(name in self.filters and self.filters[name].tick_size != f.tick_size for name, f in fresh.items())
        self.filters = fresh
        self.loaded_at = now
        self.failures = 0
        return changed

    def tick_sizes(self) -> dict[str, float]:
        """Symbol → PRICE_FILTER tick as a float (what ``BookConfig.tick_sizes`` takes)."""
        return {name: float(f.tick_size) for name, f in self.filters.items()}

    def step_sizes(self) -> dict[str, float]:
        """Symbol → LOT_SIZE step as a float."""
        return {name: float(f.step_size) for name, f in self.filters.items()}
