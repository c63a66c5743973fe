"""Decision types: the MarketState derived values, deterministic ids, and the reason-code catalogue."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import subprocess
import sys
from hashlib import blake2b
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradeplane.engine.decision import reasons
from tradeplane.engine.decision.types import (
    ENTER_LONG,
    ENTER_SHORT,
    LONG,
    SHORT,
    SKIP,
    intent_id,
    signal_id,
)

from .conftest import BASE_STATE, make_state

# ------------------------------------------------------------------------------------------ MarketState

STATE_CASES: dict[str, tuple[dict[str, Any], float, float, float]] = {
    # name: (changes, mid, spread_bps, depth1_quote)
    "btc_tight": ({}, 60_000.05, 1e4 * 0.1 / 60_000.05, 120_000.0),
    "wide_spread": (dict(bid=99.0, ask=101.0, bid_qty=1.0, ask_qty=1.0), 100.0, 200.0, 99.0),
    "thin_ask_side": (dict(bid=100.0, ask=100.02, bid_qty=50.0, ask_qty=3.0), 100.01, 1e4 * 0.02 / 100.01, 300.06),
    "thin_bid_side": (dict(bid=100.0, ask=100.02, bid_qty=1.0, ask_qty=50.0), 100.01, 1e4 * 0.02 / 100.01, 100.0),
    "locked_book": (dict(bid=100.0, ask=100.0, bid_qty=1.0, ask_qty=1.0), 100.0, 0.0, 100.0),
    "empty_book": (dict(bid=0.0, ask=0.0, bid_qty=0.0, ask_qty=0.0), 0.0, math.nan, 0.0),
}


@pytest.mark.parametrize(("changes", "mid", "spread", "depth"), STATE_CASES.values(), ids=STATE_CASES.keys())
def test_market_state_derived_values(changes: dict[str, Any], mid: float, spread: float, depth: float) -> None:
    s = make_state(**changes)
    assert s.mid == pytest.approx(mid, rel=1e-12)
    if math.isnan(spread):
        assert math.isnan(s.spread_bps)
    else:
        assert s.spread_bps == pytest.approx(spread, rel=1e-9, abs=1e-15)  # ask − bid is not exact
    assert s.depth1_quote == pytest.approx(depth, rel=1e-12)


def test_types_are_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        BASE_STATE.bid = 1.0  # type: ignore[misc]


def test_sides_and_decisions_are_the_contract_values() -> None:
    assert (LONG, SHORT) == (1, -1)
    assert (ENTER_LONG, ENTER_SHORT, SKIP) == ("enter-long", "enter-short", "skip")


# ------------------------------------------------------------------------------------------------- ids


def test_signal_id_is_blake2b_of_the_documented_key() -> None:
    sid = signal_id("usdm-btc", "BTCUSDT", 1_700_000_000_000_000_000)
    assert re.fullmatch(r"[0-9a-f]{16}", sid)
    assert sid == blake2b(b"usdm-btc:BTCUSDT:1700000000000000000", digest_size=8).hexdigest()


def test_intent_id_is_blake2b_of_the_documented_key() -> None:
    iid = intent_id("usdm-btc", "BTCUSDT", SHORT, 1_700_000_000_000_000_000, "abcdef012345")
    assert re.fullmatch(r"[0-9a-f]{20}", iid)
    assert iid == blake2b(b"usdm-btc:BTCUSDT:-1:1700000000000000000:abcdef012345", digest_size=10).hexdigest()


INTENT_VARIANTS: dict[str, tuple[str, str, int, int, str]] = {
    "strategy": ("other", "BTCUSDT", LONG, 5, "rev"),
    "symbol": ("s", "ETHUSDT", LONG, 5, "rev"),
    "side": ("s", "BTCUSDT", SHORT, 5, "rev"),
    "exchange_ts": ("s", "BTCUSDT", LONG, 6, "rev"),
    "config_rev": ("s", "BTCUSDT", LONG, 5, "rev2"),
}


@pytest.mark.parametrize("variant", INTENT_VARIANTS.values(), ids=INTENT_VARIANTS.keys())
def test_intent_id_changes_with_each_input(variant: tuple[str, str, int, int, str]) -> None:
    base = intent_id("s", "BTCUSDT", LONG, 5, "rev")
    assert intent_id(*variant) != base
    assert intent_id("s", "BTCUSDT", LONG, 5, "rev") == base


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "usdm-btc"]),
            st.sampled_from(["BTCUSDT", "ETHUSDT"]),
            st.sampled_from([LONG, SHORT]),
            st.integers(0, 2**62),
            st.sampled_from(["r1", "r2"]),
        ),
        unique=True,
        max_size=50,
    )
)
def test_distinct_decisions_get_distinct_intent_ids(keys: list[tuple[str, str, int, int, str]]) -> None:
    ids = [intent_id(*k) for k in keys]
    assert len(set(ids)) == len(keys)


def test_ids_are_identical_in_another_process() -> None:
    """No dependence on Python's per-process hash randomisation."""
    code = (
        "from tradeplane.engine.decision.types import intent_id, signal_id;"
        "print(signal_id('s', 'BTCUSDT', 42), intent_id('s', 'BTCUSDT', -1, 42, 'rev'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == [signal_id("s", "BTCUSDT", 42), intent_id("s", "BTCUSDT", -1, 42, "rev")]


# ---------------------------------------------------------------------------------------------- reasons

CONTRACT_CODES = [
    "NO_SHORT_ON_SPOT",
    "GATE_FUNDING",
    "GATE_SPREAD",
    "GATE_DEPTH",
    "GATE_DATA_QUALITY",
    "GATE_RISK_HEADROOM",
    "RULE_SKIP",
    "SIZE_ZERO",
    "BELOW_TAU",
    "BELOW_KAPPA",
    "COOLDOWN",
    "DUPLICATE",
    "NO_MODEL",
    "QTY_BELOW_MIN",
]


def test_reason_catalogue_is_exactly_the_contract() -> None:
    assert sorted(reasons.ALL) == sorted(CONTRACT_CODES)
    assert len(set(reasons.ALL)) == len(reasons.ALL)
    assert set(reasons.DESCRIPTIONS) == set(reasons.ALL)


@pytest.mark.parametrize("code", CONTRACT_CODES)
def test_each_code_is_a_named_upper_snake_constant_with_a_description(code: str) -> None:
    assert getattr(reasons, code) == code
    assert re.fullmatch(r"[A-Z][A-Z0-9_]*", code)
    text = reasons.DESCRIPTIONS[code]
    assert text and "\n" not in text
