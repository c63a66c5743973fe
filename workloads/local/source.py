"""Market data for a local run: a synthetic market per instrument, or recorded Binance captures.

Why both go through the same function: the desk, the simulator and the store do not care where events
come from; a run over ``--source synth`` and one over a capture differ only in lineage (the seed, or the
file and its sha256), which the audit records carry.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...api.v1alpha1.strategy import market_data_venue
from ...engine.events import SymbolTable
from ...engine.replay import DataFileError, read_capture, symbol_from_capture_name, venue_from_capture_name
from ...engine.runtime.instruments import REFERENCE_PRICES, Instrument
from ...engine.sim.latency import align_local_clock
from ...engine.synth import SyntheticMarket, SyntheticMarketConfig

_NS_PER_MS = 1_000_000


class SourceError(ValueError):
    """The market source cannot serve the desk; the message names the source and the missing pair."""


@dataclass
class MarketData:
    """Events for the desk's instruments (ids as in the instrument table) and where they came from."""

    events: np.ndarray
    lineage: dict[str, Any] = field(default_factory=dict)


#: Mean resting order and smallest market order in quote currency: with these, traded volume (~0.4M USDT/s)
#: is of the order of Binance's BTCUSDT and top-of-book depth some tens of thousands of USDT (thinner than
#: Binance's), independent of the symbol's price. The generator's own defaults are a thin book for unit tests.
LIMIT_ORDER_QUOTE = 30_000.0
MARKET_ORDER_MIN_QUOTE = 6_000.0


def synthetic_config(inst: Instrument) -> SyntheticMarketConfig:
    """The synthetic market of one instrument: its tick, a typical price and realistic order sizes."""
    price = REFERENCE_PRICES.get(inst.symbol, 100.0)
    return SyntheticMarketConfig(symbol=inst.id, futures=inst.futures, tick_size=inst.tick_size, start_price=price,
                                 limit_size_mean=LIMIT_ORDER_QUOTE / price,
                                 market_size_min=MARKET_ORDER_MIN_QUOTE / price)  # fmt: skip


def synthetic_market(instruments: list[Instrument], *, seconds: float, seed: int) -> MarketData:
    """One independent synthetic market per instrument (its own seed stream), merged in receive order."""
    parts = []
    seeds = np.random.SeedSequence(seed).spawn(len(instruments))
    for inst, ss in zip(instruments, seeds, strict=True):
        cfg = synthetic_config(inst)
        market = SyntheticMarket(cfg, seed=int(ss.generate_state(1)[0]))
        parts.append(market.advance(seconds))
    events = np.concatenate(parts)
    events = events[np.argsort(events["ingest_ts"], kind="stable")]
    return MarketData(align_local_clock(events, _NS_PER_MS), {"source": "synth", "seed": seed, "seconds": seconds})


def capture_market(files: list[Path], instruments: list[Instrument]) -> MarketData:
    """Recorded captures (one venue and symbol per file, named as in ../shared/data), mapped onto the desk's
    instrument ids; every instrument must be covered by some file."""
    table = SymbolTable()
    for inst in instruments:  # intern first, so the file's ids are the desk's ids
        table.intern(market_data_venue(inst.venue), inst.symbol)
    parts, lineage = [], []
    covered: set[str] = set()
    for path in files:
        if not path.is_file():
            raise SourceError(f"--source {path}: no such file")
        venue = venue_from_capture_name(path)
        symbol = (symbol_from_capture_name(path) or "").upper()
        decoded = read_capture(path, table, venue, snapshot_symbol=symbol)
        parts.append(decoded.events)
        covered.add(f"{venue}:{symbol}")
        lineage.append({"file": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()})
    missing = [i.key for i in instruments if f"{market_data_venue(i.venue)}:{i.symbol}" not in covered]
    if missing:
        raise SourceError(f"no capture covers {', '.join(missing)} (files: {', '.join(map(str, files))})")
    if len(table.to_list()) > len(instruments):
        extra = table.to_list()[len(instruments) :]
        raise SourceError(f"captures hold pairs no strategy trades: {extra}; pass only the files the desk needs")
    events = np.concatenate(parts)
    events = events[np.argsort(events["ingest_ts"], kind="stable")]
    try:
        aligned = align_local_clock(events, _NS_PER_MS)
    except ValueError as exc:
        raise DataFileError(files[0], None, str(exc)) from None
    return MarketData(aligned, {"source": "capture", "files": lineage})
