"""The Serve config a family's ModelVersions render to (pure, no Ray running), the artifact check, and the
client's deadline/breaker logic over a fake transport.

The rendered config is validated by Ray Serve's own ``ServeDeploySchema`` (what the dashboard and KubeRay
accept), and the properties a rollout relies on are checked directly: moving a weight, promoting, or
changing batching changes only ``user_config`` (Serve restarts every replica of an application whose
``args`` change), and adding a version adds an application without touching the others.
"""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from prometheus_client import CollectorRegistry
from ray.serve.schema import ServeDeploySchema

from tradeplane.api.v1alpha1.modelversion import ModelVersionSpec, feature_signature_hash
from tradeplane.engine.decision import router as engine_router
from tradeplane.workloads.serve.artifacts import ArtifactError, load_artifact
from tradeplane.workloads.serve.client import ClientOptions, ServeClient, ServeError, ServeUnavailableError
from tradeplane.workloads.serve.config import (
    DEFAULT_SHADOW_TIMEOUT_S,
    MODEL_IMPORT_PATH,
    ROLES,
    ROUTER_DEPLOYMENT,
    ROUTER_IMPORT_PATH,
    Route,
    RouterOptions,
    ServeConfigError,
    build_family_apps,
    build_serve_config,
    default_routes,
    parse_batching,
    parse_quantity,
    parse_router_config,
    resolve_routes,
    serve_config_v2,
)

NAMES = ["ret_1_bps", "rv", "qi1"]
SHA = "a" * 64


def spec(
    rollout: dict[str, Any] | None = None,
    *,
    mode: str = "rayserve",
    model: str = "fam",
    uri: str = "local://models/x.onnx",
    serving: dict[str, Any] | None = None,
) -> ModelVersionSpec:
    return ModelVersionSpec.model_validate(
        {
            "model": model,
            "artifact": {"uri": uri, "sha256": SHA},
            "featureSignature": {"names": NAMES, "hash": feature_signature_hash(NAMES)},
            "serving": {"mode": mode, **(serving or {})},
            "rollout": rollout or {"strategy": "immediate"},
        }
    )


def family(**extra: ModelVersionSpec) -> dict[str, ModelVersionSpec]:
    return {
        "v1": spec({"strategy": "immediate"}, serving={"replicas": 2, "resources": {"cpu": "500m", "memory": "1Gi"}}),
        "v2": spec(
            {"strategy": "canary", "steps": [{"weightPct": 10}, {"weightPct": 50}]},
            serving={"maxBatchSize": 64, "batchWaitTimeoutMs": 5},
        ),
        "v3": spec({"strategy": "shadow"}),
        **extra,
    }


def by_name(apps: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {a["name"]: a for a in apps}


def router_config(apps: list[dict[str, Any]]) -> dict[str, Any]:
    cfg: dict[str, Any] = by_name(apps)["fam"]["deployments"][0]["user_config"]
    return cfg


class TestRendering:
    def test_ray_serve_accepts_the_rendered_config(self) -> None:
        config = build_serve_config(build_family_apps("fam", family(), home="/data"), port=8123)
        parsed = ServeDeploySchema.model_validate(config)  # the schema of PUT /api/serve/applications/
        assert [a.name for a in parsed.applications] == ["fam", "fam--v1", "fam--v2", "fam--v3"]
        assert yaml.safe_load(serve_config_v2(config)) == config  # serveConfigV2 is this, as YAML

    def test_router_application(self) -> None:
        router = by_name(build_family_apps("fam", family(), home="/data"))["fam"]
        assert (router["route_prefix"], router["import_path"]) == ("/models/fam", ROUTER_IMPORT_PATH)
        assert router["args"] == {"family": "fam", "home": "/data"}
        (deployment,) = router["deployments"]
        assert deployment["name"] == ROUTER_DEPLOYMENT
        assert deployment["user_config"] == {
            "routes": {
                "v1": {"role": "stable", "weight": 0.0},
                "v2": {"role": "canary", "weight": 0.1, "kind": "weight"},  # the first canary step (weightPct)
                "v3": {"role": "shadow", "weight": 0.0},
            },
            "versions": {v: {"feature_names": NAMES, "uri": "local://models/x.onnx"} for v in ("v1", "v2", "v3")},
            "shadow_timeout_s": DEFAULT_SHADOW_TIMEOUT_S,
        }
        assert router["logging_config"] == {"enable_access_log": False}

    def test_model_application_follows_the_serving_spec(self) -> None:
        apps = by_name(build_family_apps("fam", family(), home="/data"))
        v1, v2 = apps["fam--v1"], apps["fam--v2"]
        assert v1["route_prefix"] is None and v1["import_path"] == MODEL_IMPORT_PATH  # handles only, no HTTP
        assert v1["args"] == {
            "family": "fam",
            "version": "v1",
            "home": "/data",
            "uri": "local://models/x.onnx",
            "sha256": SHA,
            "feature_names": NAMES,
        }
        (d1,) = v1["deployments"]
        assert d1["name"] == "model-v1"
        assert d1["num_replicas"] == 2
        assert d1["ray_actor_options"] == {"num_cpus": 0.5, "memory": 2**30}
        assert d1["user_config"] == {"max_batch_size": 32, "batch_wait_timeout_s": 0.002}  # ServingSpec defaults
        (d2,) = v2["deployments"]
        assert d2["user_config"] == {"max_batch_size": 64, "batch_wait_timeout_s": 0.005}  # ms → s
        assert d2["max_ongoing_requests"] >= 64  # a full batch can queue, or batches never fill
        assert d2["ray_actor_options"] == {"num_cpus": 1.0, "memory": 2 * 2**30}  # ComputeResources defaults

    def test_in_process_versions_are_not_served(self) -> None:
        apps = build_family_apps("fam", family(v4=spec({"strategy": "shadow"}, mode="in-process")))
        assert "fam--v4" not in by_name(apps)
        assert "v4" not in router_config(apps)["routes"]

    def test_router_options(self) -> None:
        apps = build_family_apps(
            "fam", family(), router=RouterOptions(num_replicas=2, num_cpus=0.5, shadow_timeout_s=0.2)
        )
        (d,) = by_name(apps)["fam"]["deployments"]
        assert (d["num_replicas"], d["ray_actor_options"], d["user_config"]["shadow_timeout_s"]) == (
            2,
            {"num_cpus": 0.5},
            0.2,
        )


class TestRolloutChangesOnlyUserConfig:
    """Serve restarts every replica of an application whose ``args`` (or import path) change."""

    @staticmethod
    def frozen(apps: list[dict[str, Any]]) -> dict[str, Any]:
        return {a["name"]: (a["import_path"], a["args"]) for a in apps}

    def test_moving_a_weight(self) -> None:
        before = build_family_apps("fam", family())
        after = build_family_apps("fam", family(), weights={"v2": 0.5})
        assert self.frozen(after) == self.frozen(before)
        assert router_config(after)["routes"]["v2"] == {"role": "canary", "weight": 0.5, "kind": "weight"}
        assert by_name(after)["fam--v1"] == by_name(before)["fam--v1"]  # model apps untouched

    def test_promotion(self) -> None:
        before = build_family_apps("fam", family())
        after = build_family_apps("fam", family(), roles={"v1": "shadow", "v2": "stable"})
        assert self.frozen(after) == self.frozen(before)
        routes = router_config(after)["routes"]
        assert routes["v1"]["role"] == "shadow" and routes["v2"] == {"role": "stable", "weight": 0.0}

    def test_batching(self) -> None:
        before = build_family_apps("fam", family())
        changed = family(v2=spec(family()["v2"].rollout.model_dump(), serving={"maxBatchSize": 8}))
        after = build_family_apps("fam", changed)
        assert self.frozen(after) == self.frozen(before)
        assert by_name(after)["fam--v2"]["deployments"][0]["user_config"]["max_batch_size"] == 8

    def test_a_version_joining_adds_an_application(self) -> None:
        before = build_family_apps("fam", family())
        after = build_family_apps("fam", family(v4=spec({"strategy": "shadow"})))
        assert {n: a for n, a in by_name(after).items() if n != "fam" and n != "fam--v4"} == {
            n: a for n, a in by_name(before).items() if n != "fam"
        }
        assert self.frozen(after)["fam"] == self.frozen(before)["fam"]
        assert router_config(after)["routes"]["v4"] == {"role": "shadow", "weight": 0.0}


class TestRoutes:
    def test_roles_match_the_engine_router(self) -> None:
        assert ROLES == engine_router.ROLES

    def test_default_routes_follow_the_rollout_spec(self) -> None:
        cohort = spec({"strategy": "canary", "steps": [{"cohortPct": 25}]})
        assert default_routes(family(v4=cohort)) == {
            "v1": Route(role="stable"),
            "v2": Route(role="canary", weight=0.1, kind="weight"),  # weightPct: a share of decisions
            "v3": Route(role="shadow"),
            "v4": Route(role="canary", weight=0.25),  # cohortPct: a share of symbols (the default kind)
        }

    @pytest.mark.parametrize(
        ("weights", "roles", "error"),
        [
            pytest.param({"v1": 0.2}, None, r"weights: 'v1' is not a canary", id="weight-on-stable"),
            pytest.param({"v9": 0.2}, None, r"weights: 'v9' is not a canary", id="weight-on-unknown"),
            pytest.param({"v2": 1.5}, None, r"weights\['v2'\]: must be in \[0, 1\]", id="weight-above-1"),
            pytest.param({"v2": math.nan}, None, r"weights\['v2'\]", id="weight-nan"),
            pytest.param(None, {"v2": "stable"}, r"exactly one stable version allowed, got \['v1', 'v2'\]", id="two"),
            pytest.param(None, {"v2": "boss"}, r"roles\['v2'\]: role must be one of", id="bad-role"),
            pytest.param(None, {"v9": "shadow"}, r"roles: 'v9' is not a version", id="role-on-unknown"),
        ],
    )
    def test_bad_overrides_name_the_field(
        self, weights: dict[str, float] | None, roles: dict[str, str] | None, error: str
    ) -> None:
        with pytest.raises(ServeConfigError, match=error):
            resolve_routes(family(), weights=weights, roles=roles)

    def test_canary_weights_above_one_in_total(self) -> None:
        versions = family(v4=spec({"strategy": "canary", "steps": [{"weightPct": 60}]}))
        with pytest.raises(ServeConfigError, match=r"canary weights sum to 1\.1 > 1"):
            resolve_routes(versions, weights={"v2": 0.5})

    def test_router_user_config_errors_name_the_field(self) -> None:
        good = router_config(build_family_apps("fam", family()))
        assert parse_router_config(good).routes["v2"].weight == 0.1
        bad = {**good, "routes": {**good["routes"], "v2": {"role": "canary", "weight": 2}}}
        with pytest.raises(ServeConfigError, match=r"routes\.v2\.weight"):
            parse_router_config(bad)
        missing = {**good, "versions": {"v1": good["versions"]["v1"]}}
        with pytest.raises(ServeConfigError, match=r"missing from versions: \['v2', 'v3'\]"):
            parse_router_config(missing)
        with pytest.raises(ServeConfigError, match=r"model-v1 user_config: max_batch_size"):
            parse_batching({"max_batch_size": 0, "batch_wait_timeout_s": 0.001}, "v1")


class TestBadSpecs:
    @pytest.mark.parametrize(
        ("versions", "error"),
        [
            pytest.param(
                {"v1": spec(mode="in-process")}, r"no ModelVersion with spec\.serving\.mode rayserve", id="none"
            ),
            pytest.param({"v1": spec(model="other")}, r"ModelVersion/v1: spec\.model is 'other'", id="other-family"),
            pytest.param(
                {"v1": spec(uri="s3://bucket/m.onnx")}, r"ModelVersion/v1: spec\.artifact\.uri: 's3://", id="s3-uri"
            ),
            pytest.param({"v1": spec(serving={"resources": {"cpu": "1", "memory": "2Gi"}})}, None, id="fine"),
        ],
    )
    def test_errors_name_version_and_field(self, versions: dict[str, ModelVersionSpec], error: str | None) -> None:
        if error is None:
            build_family_apps("fam", versions)
            return
        with pytest.raises(ServeConfigError, match=error):
            build_family_apps("fam", versions)

    def test_untrained_version(self) -> None:
        untrained = ModelVersionSpec.model_validate(
            {"model": "fam", "training": {"data": ["file:///d.csv"]}, "serving": {"mode": "rayserve"}}
        )
        with pytest.raises(ServeConfigError, match=r"ModelVersion/v9: spec\.artifact: not trained yet"):
            build_family_apps("fam", family(v9=untrained))

    def test_weights_for_versions_not_served(self) -> None:
        versions = family(v4=spec({"strategy": "canary", "steps": [{"weightPct": 5}]}, mode="in-process"))
        with pytest.raises(ServeConfigError, match=r"not served by Ray Serve: \['v4'\]"):
            build_family_apps("fam", versions, weights={"v4": 0.1})

    def test_duplicate_application_names_and_prefixes(self) -> None:
        apps = build_family_apps("fam", family())
        with pytest.raises(ServeConfigError, match=r"duplicate names \['fam'"):
            build_serve_config(apps + apps[:1])
        other = build_family_apps("fam2", {"v1": spec(model="fam2")}, route_prefix="/models/fam")
        with pytest.raises(ServeConfigError, match=r"duplicate route prefixes \['/models/fam'\]"):
            build_serve_config(apps + other)

    @pytest.mark.parametrize(
        ("quantity", "value"),
        [("500m", 0.5), ("2", 2.0), ("1.5", 1.5), ("512Mi", 512 * 2**20), ("2Gi", 2 * 2**30), ("1G", 1e9)],
    )
    def test_quantities(self, quantity: str, value: float) -> None:
        assert parse_quantity(quantity, "cpu") == pytest.approx(value)

    def test_bad_quantity(self) -> None:
        with pytest.raises(ServeConfigError, match=r"resources\.cpu: not a Kubernetes quantity: '1 core'"):
            parse_quantity("1 core", "resources.cpu")


def test_config_imports_without_ray_or_numpy() -> None:
    """The operator image renders this config: no Ray, no numpy there."""
    code = (
        "import sys, tradeplane.workloads.serve.config as c; "
        "bad = [m for m in ('ray', 'numpy', 'onnxruntime') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


class TestArtifact:
    def test_sha256_mismatch_is_refused(self, tmp_path: Path) -> None:
        (tmp_path / "m.onnx").write_bytes(b"model bytes")
        good = hashlib.sha256(b"model bytes").hexdigest()
        assert load_artifact("v1", "local://m.onnx", good, tmp_path) == b"model bytes"
        assert load_artifact("v1", f"file://{tmp_path}/m.onnx", good, None) == b"model bytes"
        with pytest.raises(ArtifactError, match=r"ModelVersion/v1: spec\.artifact\.sha256: .* has sha256 " + good):
            load_artifact("v1", "local://m.onnx", SHA, tmp_path)

    def test_unreadable_or_unsupported(self, tmp_path: Path) -> None:
        with pytest.raises(ArtifactError, match=r"ModelVersion/v1: spec\.artifact\.uri: cannot read"):
            load_artifact("v1", "local://missing.onnx", SHA, tmp_path)
        with pytest.raises(ArtifactError, match=r"spec\.artifact\.uri: .*relative to the tradeplane home"):
            load_artifact("v1", "local://m.onnx", SHA, None)
        with pytest.raises(ArtifactError, match=r"spec\.artifact\.uri: artifact uri 's3://b/m'"):
            load_artifact("v1", "s3://b/m", SHA, tmp_path)


class FakeTransport:
    """Answers, fails as unavailable, or fails as a bad request, as told; counts calls."""

    kind = "fake"
    target = "fam"

    def __init__(self) -> None:
        self.mode = "ok"
        self.calls = 0
        self.keys: list[str | int | None] = []

    def _maybe_fail(self) -> None:
        self.calls += 1
        if self.mode == "down":
            raise ServeUnavailableError("fam: connection refused")
        if self.mode == "bad":
            raise ServeError("fam: HTTP 400: bad rows")

    def predict(self, version: str, rows: np.ndarray, timeout_s: float) -> np.ndarray:
        self._maybe_fail()
        return np.full(len(rows), 0.6)

    def score(
        self, symbol: str, features: Mapping[str, float], timeout_s: float, key: str | int | None = None
    ) -> dict[str, Any]:
        self._maybe_fail()
        self.keys.append(key)
        return {
            "p_up": 0.7, "p_low": None, "p_high": 0.8, "version": "v2", "role": "canary",
            "shadow": [["v3", None], ["v4", 0.4]], "error": "v3: TimeoutError: ",
        }  # fmt: skip

    def routes(self, timeout_s: float) -> dict[str, Any]:
        self._maybe_fail()
        return {"routes": {}}

    def close(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class TestClient:
    def make(self) -> tuple[ServeClient, FakeTransport, Clock, CollectorRegistry]:
        transport, clock, registry = FakeTransport(), Clock(), CollectorRegistry()
        client = ServeClient(
            transport, options=ClientOptions(timeout_s=0.05, retry_after_s=2.0), registry=registry, clock=clock
        )
        return client, transport, clock, registry

    def test_breaker_opens_short_circuits_and_recovers(self) -> None:
        client, transport, clock, registry = self.make()
        scorer = client.scorer("v1", NAMES)
        assert scorer.predict(np.zeros(3)).tolist() == [0.6] and not client.degraded
        transport.mode = "down"
        with pytest.raises(ServeUnavailableError, match="connection refused"):
            scorer.predict(np.zeros((2, 3)))
        assert client.degraded and client.health()["status"] == "degraded"
        with pytest.raises(ServeUnavailableError, match=r"degraded, next attempt in 2\.00s"):
            scorer.predict(np.zeros((2, 3)))
        assert transport.calls == 2  # the short-circuited call never reached the transport
        clock.now += 2.5
        transport.mode = "ok"
        assert scorer.predict(np.zeros((2, 3))).tolist() == [0.6, 0.6]
        assert not client.degraded and client.health()["status"] == "ok"
        calls = {
            outcome: registry.get_sample_value(
                "tradeplane_serve_client_calls_total", {"target": "fam", "outcome": outcome}
            )
            for outcome in ("ok", "unavailable", "short_circuit")
        }
        assert calls == {"ok": 2.0, "unavailable": 1.0, "short_circuit": 1.0}

    def test_a_bad_request_does_not_open_the_breaker(self) -> None:
        client, transport, _, _ = self.make()
        transport.mode = "bad"
        with pytest.raises(ServeError, match="bad rows") as info:
            client.predict("v1", np.zeros((1, 3)))
        assert not isinstance(info.value, ServeUnavailableError) and not client.degraded

    def test_scorer_checks_shape_like_onnx_scorer(self) -> None:
        client, transport, _, _ = self.make()
        with pytest.raises(ValueError, match=r"expected features of shape \[N, 3\] or \[3\], got \(2, 2\)"):
            client.scorer("v1", NAMES).predict(np.zeros((2, 2)))
        assert transport.calls == 0

    def test_score_is_a_routed_score(self) -> None:
        client, transport, _, _ = self.make()
        got = client.score("BTCUSDT", {"ret_1_bps": 1.0})
        assert isinstance(got, engine_router.RoutedScore)
        client.score("BTCUSDT", {"ret_1_bps": 1.0}, key=1_700_000_000_000_000_123)
        assert transport.keys == [None, 1_700_000_000_000_000_123]  # the decision key reaches the Serve router
        assert (got.p_up, got.version, got.role, got.error, got.p_high) == (
            0.7,
            "v2",
            "canary",
            "v3: TimeoutError: ",
            0.8,
        )
        assert math.isnan(got.p_low) and math.isnan(got.shadow[0][1]) and got.shadow[1] == ("v4", 0.4)

    def test_check_probes_despite_the_breaker(self) -> None:
        client, transport, _, _ = self.make()
        transport.mode = "down"
        assert not client.check() and client.degraded
        transport.mode = "ok"
        assert client.check() and not client.degraded  # no waiting for retry_after_s

    def test_engine_router_degrades_through_it(self) -> None:
        """A ModelRouter over ServeScorers: a routed failure propagates (the pipeline falls back), a shadow's
        is recorded."""
        client, transport, _, _ = self.make()
        router = engine_router.ModelRouter(
            [
                engine_router.RoutedModel("v1", "stable", 0.0, client.scorer("v1", NAMES)),
                engine_router.RoutedModel("v3", "shadow", 0.0, client.scorer("v3", NAMES)),
            ]
        )
        assert router.score("BTCUSDT", {"rv": 1.0}).p_up == pytest.approx(0.6)
        transport.mode = "down"
        with pytest.raises(ServeUnavailableError):
            router.score("BTCUSDT", {"rv": 1.0})
