"""L0 gates: cheap market-condition checks that veto an entry before any sizing or cost arithmetic.

A gate answers "is this market fit to trade at all right now", independently of what the model thinks:
funding too expensive to hold through, spread too wide to cross, too little depth at the touch to fill
without walking the book, a book we do not trust, or a RiskBudget with no room left. Gates run in a fixed
order and the *first* failure is the skip's one primary reason code (the signal contract wants exactly one),
with a detail string naming the observed value and the limit so an operator reading the audit trail can see
by how much it failed without re-deriving anything.

Comparisons are written so that a NaN observation fails the gate (``not (x <= limit)``): an unknown spread
or depth is not a reason to trade.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tradeplane.api.v1alpha1.strategy import GateSpec

from . import reasons
from .types import MarketState

_BPS = 1e4


@dataclass(frozen=True)
class GateConfig:
    """Gate limits, compiled once per config revision (defaults equal :class:`GateSpec`'s)."""

    max_abs_funding_rate_bps: float = 10.0  #: |next funding rate| ceiling, bps per 8 h (futures only)
    max_spread_bps: float = 5.0  #: quoted spread ceiling, bps of mid
    min_top1_depth_usdt: float = 10_000.0  #: minimum best-level depth, quote currency, the thinner side
    require_data_quality: bool = True  #: skip when the book is unsynced, degraded or stale
    require_risk_headroom: bool = True  #: skip when the RiskBudget has no room for another entry

    @classmethod
    def from_spec(cls, g: GateSpec) -> GateConfig:
        return cls(
            max_abs_funding_rate_bps=float(g.max_abs_funding_rate_bps),
            max_spread_bps=float(g.max_spread_bps),
            min_top1_depth_usdt=float(g.min_top1_depth_usdt),
            require_data_quality=bool(g.require_data_quality),
            require_risk_headroom=bool(g.require_risk_headroom),
        )


def failed_gate(state: MarketState, cfg: GateConfig, *, risk_headroom: bool) -> tuple[str, str] | None:
    """(reason code, detail) of the first failing gate, or None when every gate passes.

    Order: funding, spread, depth, data quality, risk headroom — the market-structure gates first, so a
    skip on a thin or wide market reports that even when the risk budget happens to be full as well.
    The funding gate applies only when ``next_funding_rate`` is a number: it is NaN on spot (no funding)
    and while a futures rate is unknown; the data-quality gate is the one that catches a stale feed.
    """
    rate = state.next_funding_rate
    if not math.isnan(rate):
        rate_bps = rate * _BPS
        if not abs(rate_bps) <= cfg.max_abs_funding_rate_bps:
            return reasons.GATE_FUNDING, f"|funding_rate_bps|={abs(rate_bps):.4g}>{cfg.max_abs_funding_rate_bps:g}"
    spread = state.spread_bps
    if not spread <= cfg.max_spread_bps:
        return reasons.GATE_SPREAD, f"spread_bps={spread:.4g}>{cfg.max_spread_bps:g}"
    depth = state.depth1_quote
    if not depth >= cfg.min_top1_depth_usdt:
        return reasons.GATE_DEPTH, f"depth1_usdt={depth:.6g}<{cfg.min_top1_depth_usdt:g}"
    if cfg.require_data_quality and not state.data_ok:
        return reasons.GATE_DATA_QUALITY, "data_ok=False"
    if cfg.require_risk_headroom and not risk_headroom:
        return reasons.GATE_RISK_HEADROOM, "risk_headroom=False"
    return None
