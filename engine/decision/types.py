"""What a decision sees (MarketState), what it says (Signal) and what it asks execution to do (Intent).

Every decision produces a Signal, taken or not, so skipped opportunities can be audited and counted by
reason. Ids are derived from the inputs (blake2b of the fields that make the decision unique), never from
a counter or a clock: a replay of the same market state produces the same ids, which is what makes a
replayed intent recognisable as a duplicate and keeps ``client_order_id`` idempotent downstream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from hashlib import blake2b
from typing import Final

LONG: Final = 1
SHORT: Final = -1

ENTER_LONG: Final = "enter-long"
ENTER_SHORT: Final = "enter-short"
SKIP: Final = "skip"

#: model_version recorded when the rules-only fallback decided.
RULES_FALLBACK: Final = "rules-fallback"

# Signal.quality_flags bits.
QUALITY_DATA_DEGRADED: Final = 1
QUALITY_MODEL_DEGRADED: Final = 2
QUALITY_SHADOW_ERROR: Final = 4
#: A fitted slippage table was given (``MarketState.slippage_edges_usdt``) but its bucket for the order's
#: notional is not trusted (too few samples, or none fitted yet): the cost charged the half-spread proxy.
QUALITY_SLIPPAGE_PROXY: Final = 8

_BPS = 1e4


@dataclass(frozen=True, slots=True)
class MarketState:
    """What one decision sees for one symbol at one tick (built by the runtime from the book and metadata)."""

    symbol: str
    venue: str
    exchange_ts: int  #: ns, of the latest book top used
    ingest_ts: int  #: ns
    bid: float  #: quote per base
    ask: float
    bid_qty: float  #: base units at level 1
    ask_qty: float
    tick_size: float
    step_size: float
    min_qty: float
    min_notional: float
    next_funding_rate: float  #: fraction per 8 h; NaN on spot or when unknown
    data_ok: bool  #: book synced, not degraded, fresh
    atr: float  #: quote per base, ATR scaled to the holding horizon (typical move); NaN when not warmed up
    #: The one-way taker slippage fitted for this instrument at the strategy's ``slippageQuantile``
    #: (engine/runtime/slippage.py): notional bucket lower edges in USDT, ascending, and the slippage in bps of
    #: each bucket, NaN where the bucket is not trusted. Empty: no fitted table, the cost charges half the spread.
    slippage_edges_usdt: tuple[float, ...] = ()
    slippage_bps: tuple[float, ...] = ()

    @property
    def mid(self) -> float:
        return 0.5 * (self.bid + self.ask)

    @property
    def spread_bps(self) -> float:
        """Quoted spread in bps of mid (NaN for a crossed-to-zero or empty book)."""
        mid = 0.5 * (self.bid + self.ask)
        return _BPS * (self.ask - self.bid) / mid if mid > 0 else math.nan

    @property
    def depth1_quote(self) -> float:
        """Quote currency at the thinner side of the best level: what an order can take without walking."""
        return min(self.bid * self.bid_qty, self.ask * self.ask_qty)


@dataclass(frozen=True, slots=True)
class Signal:
    """One decision, taken or not (the signal contract; tradeplane/contracts/signal.proto mirrors it)."""

    id: str  #: signal_id(strategy, symbol, exchange_ts)
    strategy: str
    symbol: str
    venue: str
    exchange_ts: int
    ingest_ts: int
    infer_ts: int  #: the decision time passed in (ns)
    p_up: float  #: calibrated P(up) over the horizon
    p_low: float  #: 90 % interval of p_up (NaN when the scorer provides none)
    p_high: float
    expected_return_bps: float
    cost_bps: float  #: fee_bps + slippage_bps + funding_bps
    utility: float
    fee_bps: float
    slippage_bps: float
    funding_bps: float
    decision: str  #: ENTER_LONG | ENTER_SHORT | SKIP
    reason: str  #: "" when entered, else one code of engine/decision/reasons.py
    reason_detail: str
    regime: str  #: "calm" | "volatile" | "unknown"
    contributions: tuple[tuple[str, float], ...]  #: top-5 (feature, contribution)
    model_version: str  #: the version that decided; RULES_FALLBACK in degrade mode
    shadow: tuple[tuple[str, float], ...]  #: (version, p_up) of shadow models, recorded only
    config_rev: str
    cooldown_until: int  #: ns; 0 when no cooldown applies
    latency_ns: int
    size_mult: float
    tp_mult: float
    sl_mult: float
    rules_fired: tuple[str, ...]
    quality_flags: int  #: QUALITY_* bits

    @property
    def entered(self) -> bool:
        return self.decision != SKIP


@dataclass(frozen=True, slots=True)
class Intent:
    """What the decision asks execution to do: enter ``side`` with ``qty`` and attach the stop and target."""

    intent_id: str  #: intent_id(strategy, symbol, side, exchange_ts, config_rev)
    signal_id: str
    strategy: str
    symbol: str
    venue: str
    side: int  #: LONG | SHORT (entry direction)
    qty: float  #: base units, already rounded to step_size
    notional_usdt: float
    price: float  #: reference mid at the decision
    stop_price: float
    take_profit_price: float
    leverage: int  #: 1 on spot
    oco: bool  #: spot: place take-profit and stop as an OCO pair after the entry fills
    exchange_ts: int
    config_rev: str


def signal_id(strategy: str, symbol: str, exchange_ts: int) -> str:
    """16 hex: one signal per strategy, symbol and book state (the same top decided twice has one id)."""
    return blake2b(f"{strategy}:{symbol}:{exchange_ts}".encode(), digest_size=8).hexdigest()


def intent_id(strategy: str, symbol: str, side: int, exchange_ts: int, config_rev: str) -> str:
    """20 hex. The config revision is part of it: the same book state under a new configuration is a new
    decision, while a replay under the same configuration maps to the same intent (and the same orders)."""
    key = f"{strategy}:{symbol}:{side}:{exchange_ts}:{config_rev}".encode()
    return blake2b(key, digest_size=10).hexdigest()
