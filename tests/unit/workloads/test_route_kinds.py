"""A canary's unit (``cohort``: share of symbols, ``weight``: share of decisions) travels with its route:
ModelVersion spec → local loader, operator status → ``<family>-routes`` ConfigMap → decide's RoutesWatcher,
and spec/overrides → Ray Serve router ``user_config`` → the engine router the Serve app builds. A route
without a kind means cohort everywhere (documents written before kinds existed)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import yaml

from tradeplane.api.v1alpha1.modelversion import ModelVersionSpec, RolloutSpec, feature_signature_hash
from tradeplane.engine.decision import router as engine_router
from tradeplane.engine.decision.router import COHORT, WEIGHT, ModelRouter, RoutedModel
from tradeplane.operator.render import routes as op_routes
from tradeplane.operator.render.modelversion import render_family_rayservice
from tradeplane.operator.render.routes import family_routes, render_routes_configmap
from tradeplane.workloads.decide.routes import desk_routes, parse_routes, routes_path
from tradeplane.workloads.serve import config as serve_config
from tradeplane.workloads.serve.config import (
    Route,
    ServeConfigError,
    build_family_apps,
    parse_router_config,
    resolve_routes,
)
from tradeplane.workloads.serve.deployments import routing_table

from .test_decide_routes import Const

NAMES = ["ret_1_bps", "rv", "qi1"]
SYMBOL = "BTCUSDT"  #: cohort 0.368
KEYS = [1_700_000_000_000_000_000 + 100_000_000 * i for i in range(10_000)]
LADDER = [{"cohortPct": 10, "pauseSeconds": 60}, {"weightPct": 30, "pauseSeconds": 60}]


def _share(router: ModelRouter, version: str) -> float:
    return sum(router.route(SYMBOL, k)[0] == version for k in KEYS) / len(KEYS)


def _near(share: float, p: float) -> bool:
    return abs(share - p) < 5 * math.sqrt(p * (1 - p) / len(KEYS))


def _spec(rollout: dict[str, Any], mode: str = "rayserve") -> dict[str, Any]:
    return {
        "model": "clf",
        "artifact": {"uri": "local://models/clf/m.onnx", "sha256": "a" * 64},
        "featureSignature": {"names": NAMES, "hash": feature_signature_hash(NAMES)},
        "serving": {"mode": mode},
        "rollout": rollout,
    }


def _mv(name: str, rollout: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"apiVersion": "tradeplane.io/v1alpha1", "kind": "ModelVersion",
            "metadata": {"name": name, "namespace": "desk", "uid": f"uid-{name}", "creationTimestamp": "2025-01-01T00:00:00Z"},
            "spec": _spec(rollout), "status": status or {}}  # fmt: skip


def _family(step: int, phase: str = "Canary") -> list[dict[str, Any]]:
    pct = [10.0, 30.0][min(step, 1)]
    cand = _mv("v2", {"strategy": "canary", "steps": LADDER}, {"phase": phase, "currentStep": step, "weightPct": pct})
    return [_mv("v1", {"strategy": "immediate"}, {"phase": "Ready"}), cand]


# ---------------------------------------------------------------------------------------------- constants, spec


def test_every_copy_of_the_kinds_is_the_engines() -> None:
    assert serve_config.KINDS == engine_router.KINDS
    assert (op_routes.COHORT, op_routes.WEIGHT) == (engine_router.COHORT, engine_router.WEIGHT)


def test_the_spec_says_the_unit_of_each_step() -> None:
    spec = RolloutSpec.model_validate({"strategy": "canary", "steps": LADDER})
    assert [s.kind for s in spec.steps] == [COHORT, WEIGHT]
    assert (spec.initial_kind(), spec.step_kind(1), spec.step_kind(7)) == (COHORT, WEIGHT, WEIGHT)  # past: last
    weight_first = RolloutSpec.model_validate({"strategy": "canary", "steps": [{"weightPct": 5}]})
    assert weight_first.initial_route() == ("canary", 0.05) and weight_first.initial_kind() == WEIGHT
    assert RolloutSpec.model_validate({"strategy": "shadow"}).initial_kind() == COHORT


# ---------------------------------------------------------------------------------------------- Ray Serve config


def _served(**rollouts: dict[str, Any]) -> dict[str, ModelVersionSpec]:
    return {n: ModelVersionSpec.model_validate(_spec(r)) for n, r in rollouts.items()}


SERVED = {
    "v1": {"strategy": "immediate"},
    "v2": {"strategy": "canary", "steps": [{"weightPct": 20}]},
    "v3": {"strategy": "canary", "steps": [{"cohortPct": 10}]},
}


def _user_config(**kw: Any) -> dict[str, Any]:
    apps = build_family_apps("clf", _served(**SERVED), **kw)
    cfg: dict[str, Any] = next(a for a in apps if a["name"] == "clf")["deployments"][0]["user_config"]
    return cfg


def test_the_serve_router_config_round_trips_the_kind() -> None:
    uc = _user_config()
    assert uc["routes"]["v2"] == {"role": "canary", "weight": 0.2, "kind": "weight"}
    assert uc["routes"]["v3"] == {"role": "canary", "weight": 0.1}  # cohort: the default, not written
    again = yaml.safe_load(yaml.safe_dump(uc))  # as it travels in serveConfigV2
    cfg = parse_router_config(again)
    assert {v: r.kind for v, r in cfg.routes.items()} == {"v1": COHORT, "v2": WEIGHT, "v3": COHORT}
    assert cfg.model_dump() == uc
    router = routing_table(cfg)  # what FamilyRouter.reconfigure builds
    assert router.kinds() == {"v2": WEIGHT, "v3": COHORT}
    # v3 (cohort 10 %) does not hold BTCUSDT (0.368); v2 gets 20 % of its decisions of all decisions
    assert _near(_share(router, "v2"), 0.2) and _share(router, "v3") == 0.0


def test_the_controllers_kinds_override_the_spec() -> None:
    uc = _user_config(weights={"v2": 0.3, "v3": 0.4}, kinds={"v2": "cohort", "v3": "weight"})
    assert uc["routes"]["v2"] == {"role": "canary", "weight": 0.3}
    assert uc["routes"]["v3"] == {"role": "canary", "weight": 0.4, "kind": "weight"}
    promoted = resolve_routes(_served(**SERVED), roles={"v1": "canary", "v2": "stable"})
    assert promoted["v2"] == Route(role="stable") and promoted["v1"] == Route(role="canary")
    assert resolve_routes(_served(**SERVED), roles={"v1": "canary"}, weights={"v1": 0.0})["v2"].kind == WEIGHT


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"kinds": {"v2": "symbols"}}, r"kinds\['v2'\]: must be one of"),
        ({"kinds": {"v1": "weight"}}, r"kinds: 'v1' is not a canary"),
        ({"kinds": {"v9": "weight"}}, r"not served by Ray Serve: \['v9'\]"),
    ],
    ids=["unknown-kind", "stable", "unknown-version"],
)
def test_bad_kinds_are_refused_with_the_field(kw: dict[str, Any], match: str) -> None:
    with pytest.raises(ServeConfigError, match=match):
        _user_config(**kw)


def test_a_router_config_without_kinds_is_cohort_and_a_bad_kind_names_the_field() -> None:
    uc = _user_config()
    old = {**uc, "routes": {v: {k: x for k, x in r.items() if k != "kind"} for v, r in uc["routes"].items()}}
    assert all(r.kind == COHORT for r in parse_router_config(old).routes.values())
    with pytest.raises(ServeConfigError, match=r"routes\.v2\.kind"):
        parse_router_config({**uc, "routes": {**uc["routes"], "v2": {"role": "canary", "weight": 0.2, "kind": "x"}}})


# ---------------------------------------------------------------------------------------------- operator → decide


def test_the_routes_configmap_carries_the_current_steps_kind() -> None:
    at_weight = family_routes("clf", _family(step=1))
    assert at_weight.weights == {"v2": 0.3} and at_weight.kinds == {"v2": WEIGHT}
    at_cohort = family_routes("clf", _family(step=0))
    assert at_cohort.kinds == {"v2": COHORT}
    doc = json.loads(render_routes_configmap(at_weight, "desk", owners=[], live=None)["data"]["routes.json"])
    assert doc["kinds"] == {"v2": "weight"}
    cohort_doc = json.loads(render_routes_configmap(at_cohort, "desk", owners=[], live=None)["data"]["routes.json"])
    assert "kinds" not in cohort_doc  # cohort-only families render as before kinds existed
    rolled_back = family_routes("clf", _family(step=1, phase="RolledBack"))
    assert rolled_back.weights == {"v2": 0.0} and rolled_back.kinds == {"v2": COHORT}


def test_the_rayservice_gets_the_kind_of_the_current_step() -> None:
    versions = _family(step=1)
    routes = family_routes("clf", versions)
    weights, roles = routes.only(["v1", "v2"])
    rs = render_family_rayservice(versions, image="img", namespace="desk", weights=weights, roles=roles,
                                  kinds=routes.kinds_of(["v1", "v2"]))  # fmt: skip
    assert rs is not None
    config = yaml.safe_load(rs["spec"]["serveConfigV2"])
    user = next(a for a in config["applications"] if a["name"] == "clf")["deployments"][0]["user_config"]
    assert user["routes"]["v2"] == {"role": "canary", "weight": 0.3, "kind": "weight"}
    assert routing_table(parse_router_config(user)).kinds() == {"v2": WEIGHT}


def _write_configmap(root: Path, versions: list[dict[str, Any]], live: dict[str, Any] | None) -> dict[str, Any]:
    cm = render_routes_configmap(family_routes("clf", versions), "desk", owners=[], live=live)
    path = routes_path("clf", root)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(cm["data"]["routes.json"])  # what the kubelet projects into decide's pod
    return cm


def test_decide_applies_the_configmaps_kind_to_the_live_router(tmp_path: Path) -> None:
    """ConfigMap render → file → desk_routes → the router every strategy holds: a weight step gives the canary
    its share of one symbol's decisions; the cohort step (and a document without kinds) all or nothing."""
    spec = ModelVersionSpec.model_validate(_spec({"strategy": "canary", "steps": LADDER}))
    models = [RoutedModel("v1", "stable", 0.0, Const(0.1)),
              RoutedModel("v2", "canary", 0.1, Const(0.9), kind=spec.rollout.initial_kind())]  # fmt: skip
    fm = SimpleNamespace(router=ModelRouter(models), models=tuple(models))
    desk = SimpleNamespace(strategies=[SimpleNamespace(router=fm.router)])
    watcher = desk_routes({"clf": fm}, desk, root=tmp_path, poll_s=0.0)
    assert fm.router.kinds() == {"v2": COHORT} and _share(fm.router, "v2") == 0.0

    cm = _write_configmap(tmp_path, _family(step=1), None)
    [msg] = watcher.check()
    assert "revision 1 applied" in msg and "'v2': 'weight'" in msg
    assert fm.router.kinds() == {"v2": WEIGHT} and _near(_share(fm.router, "v2"), 0.3)

    cm = _write_configmap(tmp_path, _family(step=0), cm)  # back on a cohort step (no kinds in the document)
    watcher.check()
    assert fm.router.kinds() == {"v2": COHORT} and _share(fm.router, "v2") == 0.0  # 0.368 ≥ 10 %

    _write_configmap(tmp_path, _family(step=1), cm)
    watcher.check()
    assert _near(_share(desk.strategies[0].router, "v2"), 0.3)
    doc = json.loads(routes_path("clf", tmp_path).read_text())
    promoted = {**doc, "roles": {"v1": "canary", "v2": "stable"}, "weights": {"v1": 0.0},
                "kinds": {"v1": "weight"}, "revision": doc["revision"] + 1}  # fmt: skip
    routes_path("clf", tmp_path).write_text(json.dumps(promoted))
    watcher.check()
    rebuilt = desk.strategies[0].router
    assert rebuilt is not fm.router and rebuilt.kinds() == {"v1": WEIGHT} and _share(rebuilt, "v2") == 1.0


def test_parse_routes_reads_kinds_and_refuses_unknown_ones() -> None:
    doc = {"family": "f", "weights": {"a": 0.25}, "roles": {"a": "canary"}, "kinds": {"a": "weight"}, "revision": 3}
    r = parse_routes(json.dumps(doc), "f")
    assert r.kinds == {"a": "weight"} and r.kind("a") == WEIGHT and r.kind("b") == COHORT
    assert parse_routes(json.dumps({k: v for k, v in doc.items() if k != "kinds"}), "f").kind("a") == COHORT
    with pytest.raises(ValueError, match=r"kinds\['a'\]"):
        parse_routes(json.dumps({**doc, "kinds": {"a": "decisions"}}), "f")


def test_the_local_drawdown_guard_charges_the_symbols_the_candidate_can_score(tmp_path: Path) -> None:
    """A cohort step charges the candidate its cohort's symbols; a weight step every symbol (it scores a share
    of each one's decisions); weight 0 none."""
    from tradeplane.workloads.rollout.local import RolloutDriver

    symbols = [f"S{i}USDT" for i in range(300)]

    class Recorder:  # the guard's view of which symbols are the candidate's
        def __init__(self) -> None:
            self.charged: set[str] = set()

        def signal(self, mine: Any) -> None:
            self.charged = {s for s in symbols if mine(s)}

    router = ModelRouter([RoutedModel("v1", "stable", 0.0, Const(0.1)),
                          RoutedModel("v2", "canary", 0.3, Const(0.9), kind=COHORT)])  # fmt: skip
    guard = Recorder()
    spec = ModelVersionSpec.model_validate(_spec({"strategy": "canary", "steps": LADDER}))
    driver = RolloutDriver("v2", spec, stable="v1", router=router, role="canary", store=cast(Any, None), home=tmp_path,
                           run_id="r", strategies=[], horizon_ns=1, tops=cast(Any, None), guard=cast(Any, guard))  # fmt: skip
    driver._guard()
    assert guard.charged == {s for s in symbols if router.cohort(s) < 0.3} and 0 < len(guard.charged) < 150
    router.set_weights({}, {"v2": WEIGHT})
    driver._guard()
    assert guard.charged == set(symbols)
    router.set_weights({"v2": 0.0})
    driver._guard()
    assert guard.charged == set()
