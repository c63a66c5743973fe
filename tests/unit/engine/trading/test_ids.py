"""client_order_id: Binance-valid, deterministic, reversible, and distinct per leg and intent."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradeplane.engine.trading.ids import (
    LEG_CODES,
    LEGS,
    PREFIX,
    client_order_id,
    is_ours,
    parse_client_order_id,
)

BINANCE = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")  # written out here, not imported: the venue's rule
HEX20 = "0123456789abcdef0123"

intent_ids = st.one_of(
    st.text(alphabet="0123456789abcdef", min_size=20, max_size=20),
    st.text(alphabet="0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=32),
)


@pytest.mark.parametrize(
    ("leg", "expected"),
    [
        ("entry", "tpe_0123456789abcdef0123"),
        ("stop", "tps_0123456789abcdef0123"),
        ("tp", "tpt_0123456789abcdef0123"),
        ("exit", "tpx_0123456789abcdef0123"),
        ("add1", "tpa_0123456789abcdef0123"),
        ("add2", "tpb_0123456789abcdef0123"),
        ("partial", "tpp_0123456789abcdef0123"),
        ("flatten", "tpf_0123456789abcdef0123"),
    ],
)
def test_layout_per_leg(leg: str, expected: str) -> None:
    assert client_order_id(HEX20, leg) == expected
    assert parse_client_order_id(expected) == (HEX20, leg)
    assert len(expected) == 24 and BINANCE.match(expected)


def test_every_contract_leg_has_a_code() -> None:
    assert set(LEGS) == {"entry", "stop", "tp", "exit", "add1", "add2", "partial", "flatten"}
    assert len(set(LEG_CODES.values())) == len(LEGS)


@pytest.mark.parametrize(
    ("intent_id", "leg"),
    [
        pytest.param(HEX20, "entry2", id="unknown-leg"),
        pytest.param("", "entry", id="empty-intent"),
        pytest.param("ab cd", "entry", id="space"),
        pytest.param("ab-cd", "entry", id="dash-would-be-ambiguous"),
        pytest.param("a" * 33, "entry", id="too-long-for-36"),
    ],
)
def test_bad_inputs_raise(intent_id: str, leg: str) -> None:
    with pytest.raises(ValueError, match=r"leg|intent id"):
        client_order_id(intent_id, leg)


@pytest.mark.parametrize(
    "coid",
    [
        pytest.param("web_7d1c0a1e2f", id="binance-web"),
        pytest.param("x-ABCDEF12345", id="broker"),
        pytest.param("6gCrw2kRUAF9CvJDGP16IP", id="binance-random"),
        pytest.param("tpz_0123456789abcdef0123", id="unknown-code"),
        pytest.param("tpe-0123456789abcdef0123", id="wrong-separator"),
        pytest.param("tpe_", id="no-intent"),
        pytest.param("TPE_0123456789abcdef0123", id="case"),
        pytest.param("tpe_" + "a" * 33, id="too-long"),
        pytest.param("", id="empty"),
    ],
)
def test_foreign_ids_do_not_parse(coid: str) -> None:
    assert parse_client_order_id(coid) is None
    assert not is_ours(coid)


def test_is_ours_with_a_narrower_prefix() -> None:
    e, s = client_order_id(HEX20, "entry"), client_order_id(HEX20, "stop")
    assert is_ours(e) and is_ours(s)
    assert is_ours(e, "tpe_") and not is_ours(s, "tpe_")


@given(intent_ids, st.sampled_from(LEGS))
def test_any_id_is_valid_and_round_trips(intent_id: str, leg: str) -> None:
    coid = client_order_id(intent_id, leg)
    assert BINANCE.match(coid) and len(coid) <= 36
    assert coid.startswith(PREFIX)
    assert coid == client_order_id(intent_id, leg)  # deterministic: a retry re-sends the same id
    assert parse_client_order_id(coid) == (intent_id, leg)


@given(intent_ids, intent_ids)
def test_distinct_legs_and_intents_give_distinct_ids(a: str, b: str) -> None:
    ids = {(i, leg): client_order_id(i, leg) for i in {a, b} for leg in LEGS}
    assert len(set(ids.values())) == len(ids)
