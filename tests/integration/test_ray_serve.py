"""Ray Serve inference on a real local Ray: one family (v1 stable, v2 canary 30 %, v3 shadow) deployed once
per module from the config config.py renders, the way a RayService applies ``serveConfigV2``.

References are independent of Serve: each version's in-process ``OnnxScorer`` on the same artifact, and the
engine's ``ModelRouter`` built from in-process scorers with the same routes. What would fail if Serve broke:
scores differing from in-process, no batching under concurrency, a weight change that restarts a replica or
is ignored, a shadow that is chosen, an artifact with the wrong sha256 that is served, a client that hangs or
does not flag degraded when the app is gone, and a decision that does not fall back to rules then.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from ray import serve

from tests.services import RayRuntime
from tradeplane.api.v1alpha1.modelversion import ModelVersionSpec, feature_signature_hash
from tradeplane.api.v1alpha1.strategy import StrategySpec
from tradeplane.engine.calibration import ProbabilityInterval, fit_probability_interval
from tradeplane.engine.decision.config import compile_decision_config
from tradeplane.engine.decision.cooldown import Cooldowns
from tradeplane.engine.decision.pipeline import decide
from tradeplane.engine.decision.router import ModelRouter, RoutedModel
from tradeplane.engine.decision.types import RULES_FALLBACK, MarketState
from tradeplane.engine.models.gbm import GbmParams, fit_gbm
from tradeplane.engine.models.onnx_graph import classifier_to_onnx
from tradeplane.engine.models.onnx_scorer import OnnxScorer
from tradeplane.workloads.local.models import interval_of
from tradeplane.workloads.serve import app as serve_app
from tradeplane.workloads.serve.artifacts import ArtifactError
from tradeplane.workloads.serve.client import (
    ClientOptions,
    HandleTransport,
    HttpTransport,
    ServeClient,
    ServeError,
    ServeScorer,
    ServeUnavailableError,
    scorer_for,
)
from tradeplane.workloads.serve.config import (
    build_family_apps,
    build_model_app,
    build_serve_config,
    default_routes,
    model_app_name,
    model_deployment_name,
)
from tradeplane.workloads.serve.deployments import OnnxModel
from tradeplane.workloads.training.registry import INTERVAL_FILE

FAMILY = "fam"
NAMES = ["ret_1_bps", "rv", "qi1", "ofi1", "dmicro_bps", "rv_pct"]
MAX_BATCH = 16
SYMBOLS = [f"S{i:04d}USDT" for i in range(2000)]
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Family:
    home: Path
    specs: dict[str, ModelVersionSpec]
    scorers: dict[str, OnnxScorer]  #: the in-process references


def _train(seed: int) -> bytes:
    """A tiny LightGBM (engine fit_gbm) on synthetic rows → the engine's float64 ONNX graph."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3000, len(NAMES)))
    x[rng.random(x.shape) < 0.02] = np.nan
    logit = np.nan_to_num(x[:, 0]) - 0.7 * np.nan_to_num(x[:, 2]) + 0.3 * seed * np.nan_to_num(x[:, 4])
    y = (rng.random(len(x)) < 1 / (1 + np.exp(-logit))).astype(np.float64)
    params = GbmParams(n_estimators=25, num_leaves=7, min_data_in_leaf=40, seed=seed)
    booster = fit_gbm(x, y, params, feature_names=NAMES)
    return bytes(classifier_to_onnx(booster.dump_model(), NAMES).SerializeToString())


def _spec(version: str, data: bytes, rollout: dict[str, Any], *, sha256: str | None = None) -> ModelVersionSpec:
    return ModelVersionSpec.model_validate(
        {
            "model": FAMILY,
            "artifact": {
                "uri": f"local://models/{version}/model.onnx",
                "sha256": sha256 or hashlib.sha256(data).hexdigest(),
            },
            "featureSignature": {"names": NAMES, "hash": feature_signature_hash(NAMES)},
            "serving": {
                "mode": "rayserve",
                "replicas": 1,
                "maxBatchSize": MAX_BATCH,
                "batchWaitTimeoutMs": 5,
                "resources": {"cpu": "250m", "memory": "256Mi"},
            },
            "rollout": rollout,
        }
    )


@pytest.fixture(scope="session")
def family(tmp_path_factory: pytest.TempPathFactory) -> Family:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    home = tmp_path_factory.mktemp("serve-home")
    (home / "models").mkdir()
    rollouts: dict[str, dict[str, Any]] = {
        "v1": {"strategy": "immediate"},
        "v2": {"strategy": "canary", "steps": [{"weightPct": 30}]},
        "v3": {"strategy": "shadow"},
    }
    specs, scorers = {}, {}
    for seed, (version, rollout) in enumerate(rollouts.items(), start=1):
        data = _train(seed)
        (home / "models" / version).mkdir()
        (home / "models" / version / "model.onnx").write_bytes(data)
        specs[version] = _spec(version, data, rollout)
        scorers[version] = OnnxScorer(data, NAMES)
        interval = fit_probability_interval(scorers[version].predict(_rows(2000, seed=seed)), buckets=5)
        (home / "models" / version / INTERVAL_FILE).write_text(json.dumps(interval.to_dict()))
    return Family(home, specs, scorers)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class App:
    family: Family
    port: int
    handle: ServeClient
    http: ServeClient

    def deploy(self, specs: dict[str, ModelVersionSpec] | None = None, **overrides: Any) -> None:
        """Render the family's config (with the rollout's overrides) and apply it as a RayService would."""
        apps = build_family_apps(FAMILY, specs or self.family.specs, home=str(self.family.home), **overrides)
        serve_app.deploy(build_serve_config(apps, host="127.0.0.1", port=self.port), timeout_s=120)


@pytest.fixture(scope="module")
def served(ray_runtime: RayRuntime, family: Family) -> Iterator[App]:
    """The family deployed once for the module (Serve shut down at the end: the Ray runtime is shared)."""
    port = _free_port()
    options = ClientOptions(timeout_s=10.0, retry_after_s=1.0)  # generous: the box is shared
    app = App(
        family,
        port,
        ServeClient(HandleTransport(FAMILY), options=options),
        ServeClient(HttpTransport(f"http://127.0.0.1:{port}/models/{FAMILY}"), options=options),
    )
    try:
        app.deploy()
        yield app
    finally:
        app.handle.close()
        app.http.close()
        serve.shutdown()  # type: ignore[no-untyped-call]


def _rows(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(NAMES)))
    x[rng.random(x.shape) < 0.05] = np.nan
    return x


def _features(row: np.ndarray) -> dict[str, float]:
    return dict(zip(NAMES, map(float, row), strict=True))


def _reference_router(
    family: Family, weights: dict[str, float] | None = None, kinds: dict[str, str] | None = None
) -> ModelRouter:
    """The engine router over in-process scorers, routes as the spec says (the local runner's order; v2's
    weightPct step: a share of decisions)."""
    routes = default_routes(family.specs)
    return ModelRouter(
        [
            RoutedModel(v, r.role, (weights or {}).get(v, r.weight), family.scorers[v], _interval(family, v),
                        kind=(kinds or {}).get(v, r.kind))
            for v, r in sorted(routes.items())
        ]
    )  # fmt: skip


def _interval(family: Family, version: str) -> ProbabilityInterval | None:
    """interval.json beside the artifact, as the local runner loads it."""
    return interval_of(family.home / "models" / version / INTERVAL_FILE)


def _router_handle() -> Any:
    return serve.get_deployment_handle("router", app_name=FAMILY)


def _model_handle(version: str) -> Any:
    return serve.get_deployment_handle(model_deployment_name(version), app_name=model_app_name(FAMILY, version))


def _identities() -> dict[str, tuple[str, str, int]]:
    """(replica id, actor id, pid) of every replica of the family: equal before and after means no restart."""
    out = {"router": _router_handle().routes.remote().result(timeout_s=30)}
    out |= {v: _model_handle(v).stats.remote().result(timeout_s=30) for v in ("v1", "v2", "v3")}
    return {k: (d["replica_id"], d["actor_id"], d["pid"]) for k, d in out.items()}


def test_scores_equal_in_process_onnx(served: App, family: Family) -> None:
    x = _rows(40, seed=7)
    for version, reference in family.scorers.items():
        want = reference.predict(x)
        for client in (served.handle, served.http):
            np.testing.assert_allclose(client.predict(version, x), want, rtol=0, atol=1e-6)
        one = ServeScorer(served.handle, version, NAMES)
        np.testing.assert_allclose(one.predict(x[3]), want[3:4], rtol=0, atol=1e-6)  # one row [F], as OnnxScorer


def test_router_scores_like_the_engine_router(served: App, family: Family) -> None:
    """client.score == ModelRouter.score in-process: same version per symbol and decision key (v2 is a weight
    canary), same p_up, same shadow scores; through both transports."""
    reference = _reference_router(family)
    x = _rows(60, seed=11)
    chosen = set()
    for i, symbol in enumerate(SYMBOLS[:60]):
        feats = _features(x[i])
        key = None if i % 3 == 0 else 1_700_000_000_000_000_000 + i  # a decision's key, or none (the symbol)
        want = reference.score(symbol, feats, key=key)
        client = served.http if i % 4 == 0 else served.handle
        got = client.score(symbol, feats, key=key)
        assert (got.version, got.role) == (want.version, want.role), symbol
        assert got.p_up == pytest.approx(want.p_up, abs=1e-6)
        assert (got.p_low, got.p_high) == pytest.approx((want.p_low, want.p_high), abs=1e-6)  # interval.json
        assert got.p_low < got.p_up < got.p_high
        assert [v for v, _ in got.shadow] == ["v3"]
        assert got.shadow[0][1] == pytest.approx(want.shadow[0][1], abs=1e-6)
        assert got.error == ""
        chosen.add(got.version)
    assert chosen == {"v1", "v2"}  # 60 symbols at 30 % canary: both routed, the shadow never


def test_a_request_key_routes_each_decision_like_the_engine_and_the_kind_moves_without_restart(
    served: App, family: Family
) -> None:
    """POST {"symbol", "features", "key"}: one symbol's decisions split by key at v2's 30 % of decisions, each
    exactly as the in-process router routes (symbol, key); switching v2 to a share of symbols is a
    ``user_config`` change (no restart) after which one symbol is all or nothing again."""
    import urllib.request

    def post(body: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(f"http://127.0.0.1:{served.port}/models/{FAMILY}", data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json"}, method="POST")  # fmt: skip
        with urllib.request.urlopen(req, timeout=30) as resp:
            out: dict[str, Any] = json.loads(resp.read())
            return out

    router = _router_handle()
    assert router.routes.remote().result(timeout_s=30)["kinds"] == {"v2": "weight"}
    reference = _reference_router(family)
    feats = _features(np.nan_to_num(_rows(1, seed=9)[0]))
    keys = [1_700_000_000_000_000_000 + 100_000_000 * i for i in range(60)]
    got = [post({"symbol": "BTCUSDT", "features": feats, "key": k})["version"] for k in keys]
    assert got == [reference.route("BTCUSDT", k)[0] for k in keys] and set(got) == {"v1", "v2"}
    assert (
        post({"symbol": "BTCUSDT", "features": feats, "key": "req-7"})["version"]
        == reference.route("BTCUSDT", "req-7")[0]
    )
    with pytest.raises(urllib.error.HTTPError) as bad:
        post({"symbol": "BTCUSDT", "features": feats, "key": [1]})
    assert bad.value.code == 400

    before = router.routes.remote().result(timeout_s=30)
    served.deploy(kinds={"v2": "cohort"})
    after = router.routes.remote().result(timeout_s=30)
    assert after["kinds"] == {"v2": "cohort"} and after["actor_id"] == before["actor_id"]
    by_symbol = _reference_router(family, kinds={"v2": "cohort"})
    routed = {post({"symbol": "BTCUSDT", "features": feats, "key": k})["version"] for k in keys[:20]}
    assert routed == {by_symbol.route("BTCUSDT")[0]}  # one symbol, one model, whatever the key
    served.deploy()  # back to the spec's unit
    assert router.routes.remote().result(timeout_s=30)["kinds"] == {"v2": "weight"}


def test_shadow_scored_but_never_chosen(served: App) -> None:
    routes = _router_handle().route.remote(SYMBOLS).result(timeout_s=30)
    versions = [v for v, _ in routes]
    assert "v3" not in versions
    assert set(versions) == {"v1", "v2"}


def test_concurrent_requests_are_batched(served: App, family: Family) -> None:
    handle = _model_handle("v1")
    handle.reset_stats.remote().result(timeout_s=30)
    x = _rows(96, seed=3)
    responses = [handle.predict.remote(x[i]) for i in range(len(x))]  # all in flight at once
    got = np.concatenate([r.result(timeout_s=60) for r in responses])
    np.testing.assert_allclose(got, family.scorers["v1"].predict(x), rtol=0, atol=1e-6)
    stats = handle.stats.remote().result(timeout_s=30)
    assert stats["rows"] == len(x) and stats["requests"] == len(x)
    sizes = stats["requests_per_batch"]
    assert max(sizes) > 1, sizes  # the deployment saw batches, not 96 single calls
    assert sum(k * n for k, n in sizes.items() if k > 1) >= len(x) // 2, sizes
    assert stats["max_rows_per_batch"] <= MAX_BATCH  # spec.serving.maxBatchSize bounds rows per batch


def test_weights_move_through_user_config_without_restart(served: App, family: Family) -> None:
    router, model = _router_handle(), _model_handle("v2")
    before = router.routes.remote().result(timeout_s=30)
    model_before = model.stats.remote().result(timeout_s=30)
    at_30 = router.route.remote(SYMBOLS).result(timeout_s=30)
    assert at_30 == router.route.remote(SYMBOLS).result(timeout_s=30)  # stable per symbol at one weight

    served.deploy(weights={"v2": 0.8})  # what the rollout controller does at the next canary step
    after = router.routes.remote().result(timeout_s=30)
    for key in ("replica_id", "actor_id", "pid"):
        assert after[key] == before[key], key  # reconfigured in place, not restarted
    assert after["reconfigures"] == before["reconfigures"] + 1
    assert after["weights"]["v2"] == pytest.approx(0.8)
    model_after = model.stats.remote().result(timeout_s=30)
    assert (model_after["actor_id"], model_after["reconfigures"]) == (
        model_before["actor_id"],
        model_before["reconfigures"],
    )

    at_80 = router.route.remote(SYMBOLS).result(timeout_s=30)
    share = sum(v == "v2" for v, _ in at_80) / len(SYMBOLS)
    assert share == pytest.approx(0.8, abs=0.04)
    assert at_80 == [_reference_router(family, {"v2": 0.8}).route(s) for s in SYMBOLS]  # the engine's cohorts
    assert all(b[0] == "v2" for a, b in zip(at_30, at_80, strict=True) if a[0] == "v2")  # raising only adds
    moved = [s for s, a, b in zip(SYMBOLS, at_30, at_80, strict=True) if a != b]
    assert len(moved) == pytest.approx(0.5 * len(SYMBOLS), abs=0.05 * len(SYMBOLS))  # 30 % → 80 %
    feats = _features(_rows(1, seed=5)[0])
    scored = {served.handle.score(s, feats).version for s in moved[:20]}
    assert scored == {"v2"}  # scoring follows the new table, not only the route query

    served.deploy()  # back to the spec's 30 %
    assert router.route.remote(SYMBOLS).result(timeout_s=30) == at_30  # same symbols as before: cohorts are stable
    assert router.routes.remote().result(timeout_s=30)["actor_id"] == before["actor_id"]


def test_batching_and_a_new_version_move_without_restart(served: App, family: Family) -> None:
    """A batching change is v1's user_config; a version joining is its own application plus the router's
    user_config: no replica of the family restarts (Serve restarts an application whose args change)."""
    before = _identities()
    v1 = family.specs["v1"]
    smaller = v1.model_copy(update={"serving": v1.serving.model_copy(update={"max_batch_size": 4})})
    data = (family.home / "models" / "v3" / "model.onnx").read_bytes()
    v4 = _spec("v3", data, {"strategy": "shadow"})  # v3's file, as a second shadow called v4
    try:
        served.deploy({**family.specs, "v1": smaller, "v4": v4})
        assert _identities() == before
        assert _model_handle("v1").stats.remote().result(timeout_s=30)["max_batch_size"] == 4
        # the router learns v4's handle at once, but its first call may miss the deadline on a loaded machine
        # (a shadow miss is recorded as NaN, never raised): ask again until it answers, bounded
        deadline = time.monotonic() + 60
        while True:
            got = served.handle.score("BTCUSDT", _features(_rows(1, seed=8)[0]))
            if all(math.isfinite(p) for _, p in got.shadow) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert [v for v, _ in got.shadow] == ["v3", "v4"] and got.shadow[0][1] == pytest.approx(got.shadow[1][1])
    finally:
        served.deploy()  # v4 leaves, v1's batching is back
    assert _identities() == before
    assert _model_handle("v1").stats.remote().result(timeout_s=30)["max_batch_size"] == MAX_BATCH


def test_artifact_with_wrong_sha256_is_refused(served: App, family: Family) -> None:
    data = (family.home / "models" / "v1" / "model.onnx").read_bytes()
    wrong = hashlib.sha256(b"another model").hexdigest()
    spec = _spec("v1", data, {"strategy": "immediate"}, sha256=wrong)
    bad_app = build_model_app(FAMILY, "bad", spec, home=str(family.home))
    with pytest.raises(ArtifactError, match=r"ModelVersion/bad: spec\.artifact\.sha256: .* has sha256 .* refused"):
        OnnxModel(bad_app["args"])  # the replica constructor, before any Serve context

    bad_app["deployments"][0]["max_constructor_retry_count"] = 1  # fail fast here (rendered: 3 attempts)
    apps = [*build_family_apps(FAMILY, family.specs, home=str(family.home)), bad_app]
    config = build_serve_config(apps, host="127.0.0.1", port=served.port)
    try:
        with pytest.raises(serve_app.ServeDeployError, match=r"fam--bad.*DEPLOY_FAILED.*spec\.artifact\.sha256"):
            serve_app.deploy(config, timeout_s=120)
        x = _rows(5, seed=1)  # the accepted application kept serving
        np.testing.assert_allclose(served.handle.predict("v1", x), family.scorers["v1"].predict(x), atol=1e-6)
    finally:
        served.deploy()  # the bad application is removed with the next config


def test_scorer_for_follows_the_serving_mode(served: App, family: Family) -> None:
    x = _rows(4, seed=2)
    in_process = family.specs["v1"].model_copy(
        update={"serving": family.specs["v1"].serving.model_copy(update={"mode": "in-process"})}
    )
    local = scorer_for("v1", in_process, home=family.home, client=None)
    remote = scorer_for("v1", family.specs["v1"], home=family.home, client=served.handle)
    assert isinstance(local, OnnxScorer) and isinstance(remote, ServeScorer)
    np.testing.assert_allclose(remote.predict(x), local.predict(x), atol=1e-6)
    with pytest.raises(ValueError, match="no Serve client"):
        scorer_for("v1", family.specs["v1"], home=family.home, client=None)
    with pytest.raises(ServeError, match="ValueError"):  # Serve answered: bad rows are this request's fault
        served.handle.predict("v1", np.zeros((2, 3)))
    with pytest.raises(ServeError, match=r"HTTP 400: .*routes no version 'v9'"):
        served.http.predict("v9", x)
    assert not served.handle.degraded and not served.http.degraded


def _desk_manifests(family: Family, out: Path) -> Path:
    """The example spot strategy and budget, on this module's family (its three rayserve versions)."""
    strategy = yaml.safe_load((REPO / "examples/20-strategy-btc-spot.yaml").read_text())
    strategy["spec"]["model"]["family"] = FAMILY
    docs = [yaml.safe_load((REPO / "examples/00-riskbudget.yaml").read_text()), strategy]
    docs += [{"apiVersion": "tradeplane.io/v1alpha1", "kind": "ModelVersion", "metadata": {"name": v},
              "spec": spec.model_dump(by_alias=True, mode="json", exclude_none=True)}
             for v, spec in family.specs.items()]  # fmt: skip
    path = out / "desk.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def test_decide_desk_scores_through_serve_like_in_process(served: App, family: Family, tmp_path: Path) -> None:
    """decide's wiring: with a Serve URL template, every rayserve version of the desk is scored by Serve (the
    client's call counter moves, once per decision and version) and the signals equal the in-process desk's."""
    from prometheus_client import CollectorRegistry

    from tradeplane.engine.sim.runner import run_backtest
    from tradeplane.workloads.decide.serving import ServeClients
    from tradeplane.workloads.local.manifests import load_desk
    from tradeplane.workloads.local.runner import backtest_config, build_desk
    from tradeplane.workloads.local.source import synthetic_market

    desk_def = load_desk([_desk_manifests(family, tmp_path)])
    registry = CollectorRegistry()
    clients = ServeClients(f"http://127.0.0.1:{served.port}", ClientOptions(timeout_s=10.0, retry_after_s=1.0),
                           registry)  # fmt: skip
    target = f"http://127.0.0.1:{served.port}/models/{FAMILY}"

    def ok_calls() -> float:
        return (
            registry.get_sample_value("tradeplane_serve_client_calls_total", {"target": target, "outcome": "ok"}) or 0.0
        )

    outboxes = []
    for via in (None, clients):
        desk, instruments, _ = build_desk(desk_def, family.home, initial_balance=10_000.0, serve=via)
        events = synthetic_market(instruments, seconds=40, seed=3).events
        run_backtest(events, desk, backtest_config(desk, instruments, initial_balance=10_000.0, seed=0))
        outboxes.append(desk.outbox)
        if via is None:
            assert ok_calls() == 0  # in-process: Serve was never asked
    clients.close()
    local, remote = outboxes
    assert len(remote.signals) == len(local.signals) > 50
    assert [s.model_version for s in remote.signals] == [s.model_version for s in local.signals]
    assert [s.decision for s in remote.signals] == [s.decision for s in local.signals]
    np.testing.assert_allclose([s.p_up for s in remote.signals], [s.p_up for s in local.signals], atol=1e-9)
    scored = sum(1 for s in local.signals if s.model_version in family.specs)
    assert scored > 50 and ok_calls() >= scored  # each model-scored decision went through Serve
    assert clients.check().ok and "1 Serve client" in clients.check().reason


def _decision_inputs() -> tuple[Any, MarketState, dict[str, float]]:
    doc = yaml.safe_load((REPO / "examples/20-strategy-btc-spot.yaml").read_text())
    cfg = compile_decision_config("spot-majors", StrategySpec.model_validate(doc["spec"]), NAMES)
    state = MarketState(
        symbol="BTCUSDT", venue="binance-spot", exchange_ts=1_723_075_200_000_000_000,
        ingest_ts=1_723_075_200_002_000_000, bid=60_000.0, ask=60_000.1, bid_qty=3.0, ask_qty=1.0,
        tick_size=0.1, step_size=0.00001, min_qty=0.00001, min_notional=5.0, next_funding_rate=math.nan,
        data_ok=True, atr=120.0,
    )  # fmt: skip
    feats = {**_features(_rows(1, seed=9)[0]), "qi1": 0.5, "ofi1": 1.0, "dmicro_bps": 0.2}
    return cfg, state, feats


def test_app_gone_client_degrades_and_decisions_fall_back(served: App, family: Family) -> None:
    """Last: deletes the application."""
    cfg, state, feats = _decision_inputs()
    client = ServeClient(HandleTransport(FAMILY), options=ClientOptions(timeout_s=2.0, retry_after_s=30.0))
    router = ModelRouter(
        [RoutedModel("v1", "stable", 0.0, scorer_for("v1", family.specs["v1"], home=None, client=client))]
    )
    signal, _ = decide(cfg, state, feats, router, Cooldowns(0), now=state.exchange_ts, risk_headroom=True)
    assert signal.model_version == "v1"
    assert signal.p_up == pytest.approx(_reference_router(family).score("BTCUSDT", feats).p_up, abs=1e-6)

    for app in list(serve.status().applications):  # the family's router and version applications
        serve.delete(app, _blocking=False)
    deadline = time.monotonic() + 60
    while serve.status().applications and time.monotonic() < deadline:
        time.sleep(0.1)
    x = _rows(2, seed=4)
    t0 = time.monotonic()
    with pytest.raises(ServeUnavailableError):
        client.predict("v1", x)
    assert time.monotonic() - t0 < 5.0  # bounded by the deadline, not a hang
    assert client.degraded and client.health()["status"] == "degraded"
    t0 = time.monotonic()
    with pytest.raises(ServeUnavailableError, match="degraded, next attempt"):
        client.predict("v1", x)  # breaker open: fails at once
    assert time.monotonic() - t0 < 0.05
    with pytest.raises(ServeUnavailableError, match="HTTP 404"):
        served.http.predict("v1", x)
    assert served.http.degraded

    signal, _ = decide(cfg, state, feats, router, Cooldowns(0), now=state.exchange_ts + 1, risk_headroom=True)
    assert signal.model_version == RULES_FALLBACK
    assert "ServeUnavailableError" in signal.reason_detail
    assert not client.check()
