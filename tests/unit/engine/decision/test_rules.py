"""Rules: compiled from spec data (never eval), multiplied in order, clamped, skip short-circuits."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeplane.api.v1alpha1.strategy import Rule
from tradeplane.engine.decision.rules import RuleOutcome, RuleSet


def _rule(name: str, when: list[dict[str, Any]], **effects: Any) -> Rule:
    return Rule.model_validate({"name": name, "when": when, **effects})


def _cond(feature: str, op: str, value: float) -> dict[str, Any]:
    return {"feature": feature, "op": op, "value": value}


RULES = [
    _rule("wide-spread-smaller", [_cond("spread_bps", "gt", 1.5)], sizeMult=0.5, slMult=1.5),
    _rule("trend-bigger", [_cond("ret_bps", "ge", 10.0), _cond("rv_pct", "lt", 0.8)], sizeMult=1.6, tpMult=2.0),
    _rule("high-vpin-stand-aside", [_cond("vpin", "gt", 0.8)], skipEntry=True),
    _rule("never-reached-after-skip", [_cond("vpin", "gt", 0.0)], sizeMult=0.1),
]
RS = RuleSet.from_spec(RULES, min_mult=0.0, max_mult=2.0)

CALM = {"spread_bps": 1.0, "ret_bps": 0.0, "rv_pct": 0.5, "vpin": 0.0}

# features (overrides of CALM) → expected outcome
MATRIX: dict[str, tuple[dict[str, float], RuleOutcome]] = {
    "none-fire": ({}, RuleOutcome(1.0, 1.0, 1.0, False, "", ())),
    "one-fires": ({"spread_bps": 2.0}, RuleOutcome(0.5, 1.0, 1.5, False, "", ("wide-spread-smaller",))),
    "two-multiply": (
        {"spread_bps": 2.0, "ret_bps": 12.0},
        RuleOutcome(0.8, 2.0, 1.5, False, "", ("wide-spread-smaller", "trend-bigger")),
    ),
    "and-needs-all-conditions": ({"ret_bps": 12.0, "rv_pct": 0.9}, RuleOutcome(1.0, 1.0, 1.0, False, "", ())),
    "ge-boundary-fires": ({"ret_bps": 10.0}, RuleOutcome(1.6, 2.0, 1.0, False, "", ("trend-bigger",))),
    "gt-boundary-does-not": ({"spread_bps": 1.5}, RuleOutcome(1.0, 1.0, 1.0, False, "", ())),
    "skip-short-circuits": (
        {"spread_bps": 2.0, "vpin": 0.9},
        RuleOutcome(0.5, 1.0, 1.5, True, "high-vpin-stand-aside", ("wide-spread-smaller", "high-vpin-stand-aside")),
    ),
    "nan-never-fires": ({"spread_bps": math.nan, "vpin": math.nan}, RuleOutcome(1.0, 1.0, 1.0, False, "", ())),
}


@pytest.mark.parametrize(("over", "expected"), MATRIX.values(), ids=MATRIX.keys())
def test_rule_matrix(over: dict[str, float], expected: RuleOutcome) -> None:
    feats = {**CALM, **over}
    got = RS.apply(feats)
    assert got.fired == expected.fired and got.skip == expected.skip and got.skipped_by == expected.skipped_by
    assert (got.size_mult, got.tp_mult, got.sl_mult) == pytest.approx(
        (expected.size_mult, expected.tp_mult, expected.sl_mult)
    )


def test_a_missing_feature_counts_as_nan() -> None:
    assert RS.apply({}).fired == ()
    assert RS.apply({"spread_bps": 3.0}).fired == ("wide-spread-smaller",)


@pytest.mark.parametrize(
    ("op", "value", "fires_at"),
    [
        ("lt", 1.0, {0.5}),
        ("le", 1.0, {0.5, 1.0}),
        ("gt", 1.0, {1.5}),
        ("ge", 1.0, {1.0, 1.5}),
        ("eq", 1.0, {1.0}),
        ("ne", 1.0, {0.5, 1.5}),
    ],
    ids=["lt", "le", "gt", "ge", "eq", "ne"],
)
def test_every_comparison(op: str, value: float, fires_at: set[float]) -> None:
    rs = RuleSet.from_spec([_rule("r", [_cond("x", op, value)], sizeMult=2.0)], min_mult=0.0, max_mult=10.0)
    for x in (0.5, 1.0, 1.5, math.nan):
        assert (rs.apply({"x": x}).fired == ("r",)) == (x in fires_at), (op, x)


def test_clamps_size_to_the_whitelist_and_tp_sl_to_tenth_and_ten() -> None:
    big = [_rule(f"big{i}", [_cond("x", "ge", 0.0)], sizeMult=10.0, tpMult=10.0, slMult=0.1) for i in range(3)]
    out = RuleSet.from_spec(big, min_mult=0.25, max_mult=1.5).apply({"x": 1.0})
    assert (out.size_mult, out.tp_mult, out.sl_mult) == (1.5, 10.0, 0.1)
    tiny = [_rule("zero", [_cond("x", "ge", 0.0)], sizeMult=0.0)]
    assert RuleSet.from_spec(tiny, min_mult=0.25, max_mult=1.5).apply({"x": 1.0}).size_mult == 0.25


def test_unknown_feature_names_the_path_and_the_rule() -> None:
    rules = [RULES[0], _rule("typo", [_cond("spread_bps", "gt", 1.0), _cond("vpn", "gt", 0.5)])]
    with pytest.raises(ValueError, match=r"rules\[1\]\.when\[1\]\.feature.*'vpn'.*'typo'"):
        RuleSet.from_spec(rules, min_mult=0.0, max_mult=2.0, known_features={"spread_bps", "vpin"})
    ok = RuleSet.from_spec(rules[:1], min_mult=0.0, max_mult=2.0, known_features={"spread_bps"})
    assert ok.names == ("wide-spread-smaller",) and ok.features == ("spread_bps",)


def test_duplicate_names_and_bad_clamp_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"rules\[1\]\.name"):
        RuleSet.from_spec([RULES[0], RULES[0]], min_mult=0.0, max_mult=2.0)
    with pytest.raises(ValueError, match="min_mult"):
        RuleSet.from_spec(RULES, min_mult=3.0, max_mult=2.0)


def test_names_and_features_in_spec_order() -> None:
    assert RS.names == tuple(r.name for r in RULES)
    assert RS.features == ("spread_bps", "ret_bps", "rv_pct", "vpin")
    assert len(RS) == 4 and RuleSet.from_spec([], min_mult=0.0, max_mult=2.0).apply(CALM) == MATRIX["none-fire"][1]


def test_the_spec_is_data_not_code() -> None:
    # A value that would do something if it were evaluated is just a number or fails validation.
    with pytest.raises(ValueError):
        _rule("evil", [_cond("__import__('os').system('true')", "gt", 0.0)])
    with pytest.raises(ValueError):
        _rule("evil", [{"feature": "x", "op": "lambda: 1", "value": 0.0}])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0.0, 10.0), st.floats(0.01, 10.0), st.floats(0.01, 10.0), st.booleans()),
        min_size=0,
        max_size=6,
    ),
    st.floats(-5.0, 5.0),
)
def test_outcome_is_the_clamped_product_of_fired_rules(
    effects: list[tuple[float, float, float, bool]], x: float
) -> None:
    # rule i fires when x > i - 3: a prefix of a sorted threshold list, so the expected set is easy to state
    rules = [
        _rule(f"r{i}", [_cond("x", "gt", i - 3.0)], sizeMult=s, tpMult=t, slMult=sl, skipEntry=skip)
        for i, (s, t, sl, skip) in enumerate(effects)
    ]
    out = RuleSet.from_spec(rules, min_mult=0.1, max_mult=2.0).apply({"x": x})
    size = tp = stop = 1.0
    fired: list[str] = []
    skipped_by = ""
    for i, (s, t, sl, skip) in enumerate(effects):
        if x > i - 3.0:
            fired.append(f"r{i}")
            if skip:
                skipped_by = f"r{i}"
                break
            size, tp, stop = size * s, tp * t, stop * sl
    assert out.fired == tuple(fired) and out.skipped_by == skipped_by and out.skip == bool(skipped_by)
    assert out.size_mult == pytest.approx(min(max(size, 0.1), 2.0))
    assert out.tp_mult == pytest.approx(min(max(tp, 0.1), 10.0))
    assert out.sl_mult == pytest.approx(min(max(stop, 0.1), 10.0))
