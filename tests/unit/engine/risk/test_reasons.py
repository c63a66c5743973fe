"""Risk reason codes: the contract's set, stable UPPER_SNAKE strings, one description each, all documented."""

from __future__ import annotations

import re

import pytest

from tradeplane.engine.risk import reasons

from .support import REPO

CONTRACT = [
    "RISK_GROSS_NOTIONAL",
    "RISK_NET_NOTIONAL",
    "RISK_ORDER_NOTIONAL",
    "RISK_FUTURES_MARGIN",
    "RISK_SPOT_QUOTE",
    "RISK_CONCURRENT_ENTRIES",
    "RISK_ORDER_RATE",
    "RISK_DAILY_LOSS",
    "RISK_DRAWDOWN",
    "RISK_CONSECUTIVE_LOSSES",
    "RISK_REDUCE_ONLY",
    "RISK_HALTED",
    "BREAKER_INGEST_LAG",
    "BREAKER_FEED_GAP",
    "BREAKER_DECISION_LATENCY",
    "BREAKER_DRAWDOWN",
    "KILL_SWITCH",
]
DOC = REPO / "docs" / "risk.md"


def test_codes_are_the_contract_set_each_its_own_name() -> None:
    assert sorted(reasons.ALL) == sorted(CONTRACT)
    for code in reasons.ALL:
        assert getattr(reasons, code) == code
        assert re.fullmatch(r"[A-Z][A-Z0-9_]+", code)
        assert reasons.DESCRIPTIONS[code].strip()
    assert set(reasons.BREAKERS) == {c for c in reasons.ALL if c.startswith("BREAKER_")}


@pytest.mark.parametrize("code", reasons.ALL)
def test_every_code_is_in_the_docs_table_with_its_description(code: str) -> None:
    rows = [line for line in DOC.read_text().splitlines() if line.startswith(f"| `{code}` |")]
    assert rows == [f"| `{code}` | {reasons.DESCRIPTIONS[code]} |"]


@pytest.mark.parametrize("code", list(reasons.DESK_EVENTS))
def test_every_desk_event_is_in_the_docs_table_with_its_description(code: str) -> None:
    assert getattr(reasons, code) == code and code not in reasons.ALL  # an event, never a rejection
    rows = [line for line in DOC.read_text().splitlines() if line.startswith(f"| `{code}` |")]
    assert rows == [f"| `{code}` | {reasons.DESK_EVENTS[code]} |"]
