"""Reason codes of the risk engine: every rejection and every phase change carries exactly one.

Codes are stable strings (UPPER_SNAKE) because they are stored with orders and risk events, counted in the run
report and matched by alerts; renaming one is a breaking change. ``docs/risk.md`` carries the same table (a
test keeps the two in step). Decision skips have their own codes in ``engine/decision/reasons.py``.
"""

from __future__ import annotations

from typing import Final

RISK_ORDER_NOTIONAL: Final = "RISK_ORDER_NOTIONAL"
RISK_GROSS_NOTIONAL: Final = "RISK_GROSS_NOTIONAL"
RISK_NET_NOTIONAL: Final = "RISK_NET_NOTIONAL"
RISK_FUTURES_MARGIN: Final = "RISK_FUTURES_MARGIN"
RISK_SPOT_QUOTE: Final = "RISK_SPOT_QUOTE"
RISK_CONCURRENT_ENTRIES: Final = "RISK_CONCURRENT_ENTRIES"
RISK_ORDER_RATE: Final = "RISK_ORDER_RATE"
RISK_DAILY_LOSS: Final = "RISK_DAILY_LOSS"
RISK_DRAWDOWN: Final = "RISK_DRAWDOWN"
RISK_CONSECUTIVE_LOSSES: Final = "RISK_CONSECUTIVE_LOSSES"
RISK_REDUCE_ONLY: Final = "RISK_REDUCE_ONLY"
RISK_HALTED: Final = "RISK_HALTED"
BREAKER_INGEST_LAG: Final = "BREAKER_INGEST_LAG"
BREAKER_FEED_GAP: Final = "BREAKER_FEED_GAP"
BREAKER_DECISION_LATENCY: Final = "BREAKER_DECISION_LATENCY"
BREAKER_DRAWDOWN: Final = "BREAKER_DRAWDOWN"
KILL_SWITCH: Final = "KILL_SWITCH"

#: One line per code, for the docs and the run report (pre-trade limits in check order, then phases, breakers).
DESCRIPTIONS: Final[dict[str, str]] = {
    RISK_ORDER_NOTIONAL: "the order's notional is above limits.maxOrderNotionalUsdt",
    RISK_GROSS_NOTIONAL: "gross notional (positions + working orders) would exceed limits.maxGrossNotionalUsdt",
    RISK_NET_NOTIONAL: "absolute net notional of the symbol (all venues) would exceed "
    "limits.maxNetNotionalPerSymbolUsdt",
    RISK_FUTURES_MARGIN: "futures initial margin (notional / leverage) would exceed limits.maxFuturesMarginUsdt",
    RISK_SPOT_QUOTE: "quote in spot positions and working spot buys would exceed limits.maxSpotQuoteUsdt",
    RISK_CONCURRENT_ENTRIES: "open entries in the venue+symbol would exceed limits.maxConcurrentEntriesPerMarket",
    RISK_ORDER_RATE: "orders in the last 60 s would exceed limits.maxOrdersPerMinute",
    RISK_DAILY_LOSS: "loss since 00:00 UTC reached limits.maxDailyLossUsdt (Halted) or reduceAtPct of it (Reducing)",
    RISK_DRAWDOWN: "drawdown from the equity peak reached limits.maxDrawdownPct (Halted) or reduceAtPct of it "
    "(Reducing)",
    RISK_CONSECUTIVE_LOSSES: "limits.maxConsecutiveLosses losing trades in a row (Reducing until a winning trade "
    "or a spec change)",
    RISK_REDUCE_ONLY: "the budget is Reducing: only orders that shrink a position are accepted",
    RISK_HALTED: "the budget is Halted (daily loss or drawdown): no orders except the engine's flatten orders",
    BREAKER_INGEST_LAG: "ingest lag above breakers.maxIngestLagMs (entries stop until recovered + cooldown)",
    BREAKER_FEED_GAP: "feed gap ratio above breakers.maxFeedGapRatioPct (entries stop until recovered + cooldown)",
    BREAKER_DECISION_LATENCY: "decision latency p99 over the last minute above breakers.maxDecisionLatencyP99Ms "
    "(entries stop until recovered + cooldown)",
    BREAKER_DRAWDOWN: "drawdown reached reduceAtPct of limits.maxDrawdownPct (entries stop until recovered + cooldown)",
    KILL_SWITCH: "spec.halt is true: the budget is Halted within one tick until it is set back to false",
}

#: Every risk reason code.
ALL: Final[tuple[str, ...]] = tuple(DESCRIPTIONS)

#: The codes that come from a circuit breaker (entries stop; exits still pass).
BREAKERS: Final[tuple[str, ...]] = (BREAKER_INGEST_LAG, BREAKER_FEED_GAP, BREAKER_DECISION_LATENCY, BREAKER_DRAWDOWN)

# --- desk events -------------------------------------------------------------------------------------------------
#: The desk's reconciler found its books and the venue disagreeing (``risk_events`` row, phase unchanged). Not a
#: rejection nor a phase change, so not part of :data:`ALL` (the risk engine's codes); the docs table lists it too.
RECONCILE_MISMATCH: Final = "RECONCILE_MISMATCH"

#: Codes the desk runtime records in ``risk_events`` besides the risk engine's transitions.
DESK_EVENTS: Final[dict[str, str]] = {
    RECONCILE_MISMATCH: "a desk event, phase unchanged: the reconciler found the trade books and the venue "
    "disagreeing (missed fills adopted, orders cancelled, positions flattened or trades closed per the orphan "
    "policy; details in the event)",
}
