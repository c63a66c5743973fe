"""ModelRouter canary units: ``weight`` (share of decisions, keyed) next to ``cohort`` (share of symbols).

References are independent of the router: the decision point is recomputed here from its definition
(blake2b of ``symbol \\x1f key`` under the ``tp-decision`` personalisation, top 53 bits / 2**53), shares are
checked against binomial bounds, and determinism is checked across router instances and processes.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from hashlib import blake2b

import pytest

from tradeplane.engine.decision.cooldown import Cooldowns
from tradeplane.engine.decision.pipeline import decide
from tradeplane.engine.decision.router import COHORT, KINDS, WEIGHT, ModelRouter, RoutedModel, decision_point
from tradeplane.engine.rollout import Route, StepKind

from .conftest import BASE_FEATURES, T0, ConstScorer, make_cfg, make_state

FEATS = {"qi1": 0.3, "ofi1": -1.0, "dmicro_bps": 0.5, "spread_bps": 0.02}
SYMBOL = "BTCUSDT"  #: cohort 0.368 (test_rollout_local's figure)
N = 20_000
KEYS = [1_700_000_000_000_000_000 + 250_000_000 * i for i in range(N)]  #: exchange_ts of N decisions, 250 ms apart


def _router(weight: float, kind: str, *extra: RoutedModel) -> ModelRouter:
    return ModelRouter(
        [
            RoutedModel("stable", "stable", 0.0, ConstScorer(0.6)),
            RoutedModel("canary", "canary", weight, ConstScorer(0.7), kind=kind),
            *extra,
        ]
    )


def _ref_point(symbol: str, key: object) -> float:
    digest = blake2b(f"{symbol}\x1f{key}".encode(), digest_size=8, person=b"tp-decision").digest()
    return (int.from_bytes(digest, "big") >> 11) / 2.0**53


def _ref_cohort(symbol: str) -> float:
    return (int.from_bytes(blake2b(symbol.encode(), digest_size=8).digest(), "big") >> 11) / 2.0**53


def _bound(p: float, n: int) -> float:
    """Five binomial standard deviations of a share: fails by chance with probability < 1e-6."""
    return 5.0 * math.sqrt(p * (1.0 - p) / n)


def _share(router: ModelRouter, version: str, symbol: str = SYMBOL, keys: list[int] = KEYS) -> float:
    return sum(router.route(symbol, k)[0] == version for k in keys) / len(keys)


def test_the_kinds_are_the_rollout_step_kinds() -> None:
    assert set(KINDS) == {k.value for k in StepKind} and (COHORT, WEIGHT) == (StepKind.COHORT, StepKind.WEIGHT)
    canary = Route("v1", "v2", "canary", 0.2, StepKind.WEIGHT)
    assert canary.canary_kinds() == {"v2": "weight"} and canary.canary_weights() == {"v2": 0.2}
    assert Route("v2", "v2", "stable", 1.0, StepKind.WEIGHT).canary_kinds() == {}


@pytest.mark.parametrize("weight", [0.01, 0.05, 0.2, 0.5])
def test_a_weight_canary_gets_its_share_of_one_symbols_decisions(weight: float) -> None:
    share = _share(_router(weight, WEIGHT), "canary")
    assert abs(share - weight) < _bound(weight, N), share


@pytest.mark.parametrize("weight", [0.05, 0.2, 0.5])
def test_a_cohort_canary_is_all_or_nothing_for_one_symbol(weight: float) -> None:
    share = _share(_router(weight, COHORT), "canary")
    assert share == (1.0 if _ref_cohort(SYMBOL) < weight else 0.0)  # BTCUSDT: 0 below 36.8 %, 1 above


def test_weight_routing_is_the_reference_hash() -> None:
    r = _router(0.3, WEIGHT)
    for k in KEYS[:3000]:
        assert decision_point(SYMBOL, k) == _ref_point(SYMBOL, k)
        assert r.route(SYMBOL, k)[0] == ("canary" if _ref_point(SYMBOL, k) < 0.3 else "stable")
    # the symbol is part of the unit: the same timestamp goes different ways for different symbols
    assert {r.route(f"S{i}USDT", KEYS[0])[0] for i in range(200)} == {"stable", "canary"}


def test_the_same_key_routes_the_same_way_in_every_router_and_process() -> None:
    first, second = _router(0.3, WEIGHT), _router(0.3, WEIGHT)
    routes = [first.route(SYMBOL, k) for k in KEYS[:2000]]
    assert routes == [second.route(SYMBOL, k) for k in KEYS[:2000]] == [first.route(SYMBOL, k) for k in KEYS[:2000]]
    assert [first.score(SYMBOL, FEATS, k).version for k in KEYS[:500]] == [v for v, _ in routes[:500]]
    code = (
        "from tradeplane.engine.decision.router import decision_point;"
        f"print(*(repr(decision_point('{SYMBOL}', k)) for k in {KEYS[:5]!r}))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "4242"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert [float(x) for x in out.split()] == [decision_point(SYMBOL, k) for k in KEYS[:5]]


def test_raising_a_weight_only_adds_decisions() -> None:
    r = _router(0.05, WEIGHT)
    before = {k for k in KEYS if r.route(SYMBOL, k)[0] == "canary"}
    r.set_weights({"canary": 0.2})
    after = {k for k in KEYS if r.route(SYMBOL, k)[0] == "canary"}
    assert before < after and abs(len(after) / N - 0.2) < _bound(0.2, N)


def test_set_weights_switches_the_unit_and_back() -> None:
    r = _router(0.5, COHORT)  # BTCUSDT's cohort 0.368 < 0.5: every decision to the canary
    assert _share(r, "canary") == 1.0 and r.kinds() == {"canary": COHORT}
    r.set_weights({}, {"canary": WEIGHT})  # the unit alone; the weight is kept
    assert r.kinds() == {"canary": WEIGHT} and r.weights()["canary"] == 0.5
    assert abs(_share(r, "canary") - 0.5) < _bound(0.5, N)
    r.set_weights({"canary": 0.2}, {"canary": COHORT})  # both at once: 0.2 < 0.368, nothing for the canary
    assert _share(r, "canary") == 0.0 and r.kinds() == {"canary": COHORT}


@pytest.mark.parametrize(
    ("kinds", "match"),
    [({"canary": "decisions"}, "kind must be one of"), ({"stable": WEIGHT}, "not canary"), ({"nope": COHORT}, "not")],
    ids=["unknown-kind", "stable-named", "unknown-version"],
)
def test_a_bad_kind_update_changes_nothing(kinds: dict[str, str], match: str) -> None:
    r = _router(0.3, COHORT)
    routes = [r.route(SYMBOL, k) for k in KEYS[:200]]
    with pytest.raises(ValueError, match=match):
        r.set_weights({"canary": 0.1}, kinds)
    assert r.kinds() == {"canary": COHORT} and r.weights()["canary"] == 0.3
    assert [r.route(SYMBOL, k) for k in KEYS[:200]] == routes


def test_an_unknown_kind_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        _router(0.1, "symbols")


def test_without_a_key_the_symbol_is_the_key() -> None:
    r = _router(0.5, WEIGHT)
    symbols = [f"S{i}USDT" for i in range(500)]
    assert [r.route(s) for s in symbols] == [r.route(s, s) for s in symbols]
    assert [r.score(s, FEATS).version for s in symbols[:100]] == [r.route(s, s)[0] for s in symbols[:100]]


def test_cohort_and_weight_canaries_together() -> None:
    """A cohort canary holds its symbols whole; a weight canary gets its share of *all* decisions from the
    symbols no cohort canary holds (its range scaled by 1 / (1 − 0.3))."""
    symbols = [f"S{i}USDT" for i in range(400)]
    keys = KEYS[:100]
    r = _router(0.3, COHORT, RoutedModel("w", "canary", 0.2, ConstScorer(0.8), kind=WEIGHT))
    held = {s for s in symbols if _ref_cohort(s) < 0.3}
    counts = {"stable": 0, "canary": 0, "w": 0}
    for s in symbols:
        got = {r.route(s, k)[0] for k in keys}
        if s in held:
            assert got == {"canary"}  # whole symbols, never shared with the weight canary
        for k in keys:
            counts[r.route(s, k)[0]] += 1
        assert r.reaches(s) == ({"canary"} if s in held else {"stable", "w"})
    n = len(symbols) * len(keys)
    assert counts["canary"] == len(held) * len(keys)
    assert abs(counts["w"] / n - 0.2) < _bound(0.2, n), counts
    assert r.weights() == pytest.approx({"stable": 0.5, "canary": 0.3, "w": 0.2})


def test_reaches_follows_the_unit() -> None:
    r = _router(0.2, WEIGHT)
    assert r.reaches(SYMBOL) == {"stable", "canary"}
    r.set_weights({"canary": 0.0})
    assert r.reaches(SYMBOL) == {"stable"}
    r.set_weights({"canary": 0.5}, {"canary": COHORT})
    assert r.reaches(SYMBOL) == {"canary"}


def test_the_pipeline_keys_each_decision_by_its_exchange_timestamp() -> None:
    """decide() on one symbol: each decision's model is the router's for (symbol, exchange_ts), and a replay of
    the same states gives the same models; the canary's share is its weight, not all or nothing."""
    cfg = make_cfg()
    r = _router(0.3, WEIGHT)

    def run() -> list[str]:
        out = []
        for i in range(2000):
            ts = T0 + 250_000_000 * i
            state = make_state(exchange_ts=ts)
            sig, _ = decide(cfg, state, BASE_FEATURES, r, Cooldowns(0), now=ts + 5_000_000, risk_headroom=True)
            assert sig.model_version == r.route(state.symbol, ts)[0]
            out.append(sig.model_version)
        return out

    first = run()
    assert run() == first
    assert abs(first.count("canary") / len(first) - 0.3) < _bound(0.3, len(first))
