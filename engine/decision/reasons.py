"""Reason codes of the decision: every skipped signal carries exactly one.

Codes are stable strings (UPPER_SNAKE) because they are stored with every signal, counted in the run report
and matched by alerts; renaming one is a breaking change of the signal contract. Risk rejections have their
own codes in ``engine/risk/reasons.py``.
"""

from __future__ import annotations

from typing import Final

GATE_FUNDING: Final = "GATE_FUNDING"
GATE_SPREAD: Final = "GATE_SPREAD"
GATE_DEPTH: Final = "GATE_DEPTH"
GATE_DATA_QUALITY: Final = "GATE_DATA_QUALITY"
GATE_RISK_HEADROOM: Final = "GATE_RISK_HEADROOM"
RULE_SKIP: Final = "RULE_SKIP"
SIZE_ZERO: Final = "SIZE_ZERO"
BELOW_TAU: Final = "BELOW_TAU"
BELOW_KAPPA: Final = "BELOW_KAPPA"
COOLDOWN: Final = "COOLDOWN"
DUPLICATE: Final = "DUPLICATE"
NO_MODEL: Final = "NO_MODEL"
QTY_BELOW_MIN: Final = "QTY_BELOW_MIN"
NO_SHORT_ON_SPOT: Final = "NO_SHORT_ON_SPOT"

#: One line per code, for the docs and the run report (in pipeline order).
DESCRIPTIONS: Final[dict[str, str]] = {
    NO_MODEL: "no model could score and the rules-only fallback is disabled (model.degradeToRules: false)",
    GATE_FUNDING: "|next funding rate| above gates.maxAbsFundingRateBps (futures)",
    GATE_SPREAD: "quoted spread above gates.maxSpreadBps",
    GATE_DEPTH: "best-level depth on a side below gates.minTop1DepthUsdt",
    GATE_DATA_QUALITY: "book not synced, degraded or stale",
    GATE_RISK_HEADROOM: "the RiskBudget has no headroom for a new entry",
    NO_SHORT_ON_SPOT: "the model favours a fall but a spot account cannot sell what it does not hold",
    RULE_SKIP: "a rule with skipEntry fired (detail: the rule name)",
    SIZE_ZERO: "the size multiplier is 0 (probability bucket or rules)",
    BELOW_TAU: "probability of the predicted direction below τ",
    BELOW_KAPPA: "utility U = E[excess return] / cost below κ (or not computable)",
    QTY_BELOW_MIN: "quantity after rounding below the symbol's minimum quantity or notional",
    DUPLICATE: "this intent was already issued (replayed input)",
    COOLDOWN: "an entry in this symbol and direction happened less than decision.cooldownSeconds ago",
}

#: Every decision reason code.
ALL: Final[tuple[str, ...]] = tuple(DESCRIPTIONS)
