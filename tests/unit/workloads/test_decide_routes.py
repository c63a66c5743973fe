"""decide's RoutesWatcher against real ModelRouters: a new revision's weights take effect without a restart,
a promotion rebuilds the router with the new stable, and a missing, partial or invalid file keeps the last
good routing (and says why, once)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import numpy.typing as npt

from tradeplane.engine.decision.router import ModelRouter, RoutedModel
from tradeplane.workloads.decide.routes import RoutesWatcher, desk_routes, parse_routes, routes_path

SYMBOLS = [f"S{i}USDT" for i in range(400)]


class Const:
    feature_names = ("x",)

    def __init__(self, p: float) -> None:
        self.p = p

    def predict(self, features: npt.ArrayLike) -> npt.NDArray[np.float64]:
        return np.full(np.asarray(features).shape[0], self.p)


def _models() -> list[RoutedModel]:
    return [RoutedModel("v1", "stable", 0.0, Const(0.1)), RoutedModel("v2", "canary", 0.05, Const(0.9))]


def _write(root: Path, revision: int, weights: dict[str, float], roles: dict[str, str], family: str = "clf") -> None:
    path = routes_path(family, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"family": family, "weights": weights, "roles": roles, "revision": revision}))


def _share(router: ModelRouter, version: str) -> float:
    return sum(router.route(s)[0] == version for s in SYMBOLS) / len(SYMBOLS)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_weights_of_a_new_revision_reach_the_live_router(tmp_path: Path) -> None:
    models = _models()
    routers = {"clf": ModelRouter(models)}
    clock = Clock()
    w = RoutesWatcher({"clf": routes_path("clf", tmp_path)}, routers, poll_s=2.0,
                      models_by_family={"clf": models}, clock=clock)  # fmt: skip
    router = routers["clf"]
    _write(tmp_path, 1, {"v2": 0.5}, {"v1": "stable", "v2": "canary"})
    [msg] = w.check()
    assert "revision 1 applied" in msg and router.weights() == {"v1": 0.5, "v2": 0.5}
    assert routers["clf"] is router  # weights only: the same router, swapped table
    assert 0.35 < _share(router, "v2") < 0.65
    assert router.score("S1USDT", {"x": 0.0}).version == router.route("S1USDT")[0]
    _write(tmp_path, 2, {"v2": 1.0}, {"v1": "stable", "v2": "canary"})
    assert w.check() == []  # within poll_s: not read yet
    clock.t = 2.0
    assert w.check() and _share(router, "v2") == 1.0
    clock.t = 4.0
    assert w.check() == []  # same revision: nothing to do


def test_a_promotion_rebuilds_the_router_with_the_new_stable(tmp_path: Path) -> None:
    models = _models()
    routers = {"clf": ModelRouter(models)}
    swapped: list[tuple[str, ModelRouter]] = []
    w = RoutesWatcher({"clf": routes_path("clf", tmp_path)}, routers, models_by_family={"clf": models},
                      on_router=lambda f, r: swapped.append((f, r)))  # fmt: skip
    _write(tmp_path, 3, {"v1": 0.0}, {"v1": "canary", "v2": "stable"})
    [msg] = w.check(force=True)
    assert "stable v2" in msg
    new = routers["clf"]
    assert swapped == [("clf", new)] and _share(new, "v2") == 1.0
    assert new.score("S1USDT", {"x": 0.0}).p_up == 0.9
    _write(tmp_path, 4, {"v2": 0.0}, {"v1": "stable", "v2": "canary"})  # abort after promotion
    w.check(force=True)
    assert _share(routers["clf"], "v1") == 1.0


def test_missing_partial_or_invalid_files_keep_the_last_good_weights(tmp_path: Path) -> None:
    models = _models()
    routers = {"clf": ModelRouter(models)}
    path = routes_path("clf", tmp_path)
    w = RoutesWatcher({"clf": path}, routers, models_by_family={"clf": models})
    [msg] = w.check(force=True)
    assert "does not exist" in msg and "keeping the spec's routes" in msg
    assert routers["clf"].weights()["v2"] == 0.05
    assert w.check(force=True) == []  # reported once
    _write(tmp_path, 1, {"v2": 0.2}, {"v1": "stable", "v2": "canary"})
    w.check(force=True)
    for bad, why in (
        ('{"family": "clf", "weights": {"v2": 0.9', "not JSON"),  # partial write
        (json.dumps({"family": "clf", "weights": {"v2": 1.5}, "roles": {}, "revision": 2}), "not in [0, 1]"),
        (json.dumps({"family": "other", "weights": {}, "roles": {}, "revision": 2}), "family"),
        (json.dumps({"family": "clf", "weights": {}, "roles": {"v2": "boss"}, "revision": 2}), "roles"),
        (json.dumps({"family": "clf", "weights": {}, "roles": {"v1": "stable", "v2": "stable"}, "revision": 2}),
         "more than one stable"),
    ):  # fmt: skip
        path.write_text(bad)
        [msg] = w.check(force=True)
        assert why in msg and "keeping revision 1" in msg, msg
        assert routers["clf"].weights()["v2"] == 0.2
    path.unlink()
    [msg] = w.check(force=True)
    assert "does not exist" in msg and routers["clf"].weights()["v2"] == 0.2


def test_without_models_weights_still_apply(tmp_path: Path) -> None:
    routers = {"clf": ModelRouter(_models())}
    w = RoutesWatcher({"clf": routes_path("clf", tmp_path)}, routers)
    _write(tmp_path, 1, {"v2": 0.3, "v-unknown": 0.1}, {"v1": "stable", "v2": "canary", "v-unknown": "canary"})
    [msg] = w.check(force=True)
    assert "applied" in msg and routers["clf"].weights()["v2"] == 0.3


def test_parse_routes_reads_the_operator_document() -> None:
    r = parse_routes(json.dumps({"family": "f", "weights": {"a": 0.25}, "roles": {"a": "canary"}, "revision": 7}), "f")
    assert (r.revision, r.weights, r.roles) == (7, {"a": 0.25}, {"a": "canary"})


def test_desk_routes_swaps_the_router_the_strategies_hold_on_a_promotion(tmp_path: Path) -> None:
    """decide's wiring: weights move the router every strategy of the family holds; a promotion rebuilds it and
    each of those strategies (and only those) then scores with the new stable — twice in a row, too."""
    from types import SimpleNamespace

    models = _models()
    fm = SimpleNamespace(router=ModelRouter(models), models=tuple(models))
    other = ModelRouter([RoutedModel("o1", "stable", 0.0, Const(0.5))])
    desk = SimpleNamespace(strategies=[SimpleNamespace(router=fm.router), SimpleNamespace(router=fm.router),
                                       SimpleNamespace(router=other)])  # fmt: skip
    w = desk_routes({"clf": fm}, desk, root=tmp_path, poll_s=0.0)
    _write(tmp_path, 1, {"v2": 0.5}, {"v1": "stable", "v2": "canary"})
    w.check()
    assert desk.strategies[0].router is fm.router and _share(fm.router, "v2") > 0.3
    _write(tmp_path, 2, {}, {"v1": "canary", "v2": "stable"})  # promoted: v2 stable, v1 kept at weight 0
    w.check()
    promoted = desk.strategies[0].router
    assert promoted is not fm.router and desk.strategies[1].router is promoted and desk.strategies[2].router is other
    assert promoted.score("S1USDT", {"x": 0.0}).version == "v2" and _share(promoted, "v2") == 1.0
    _write(tmp_path, 3, {}, {"v1": "stable", "v2": "canary"})  # aborted after promotion: v1 back
    w.check()
    back = desk.strategies[0].router
    assert back is not promoted and desk.strategies[1].router is back and _share(back, "v1") == 1.0
