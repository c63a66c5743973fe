"""decide's Serve wiring without a Ray cluster: URL templates, which versions ask for a client, the readiness
check. Scoring through a real Serve application is tested in tests/integration/test_ray_serve.py."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tradeplane.api.v1alpha1.modelversion import ModelVersionSpec, feature_signature_hash
from tradeplane.engine.models.gbm import GbmParams, fit_gbm
from tradeplane.engine.models.onnx_graph import classifier_to_onnx
from tradeplane.workloads.decide.serving import ServeClients, family_url
from tradeplane.workloads.local.manifests import ManifestError
from tradeplane.workloads.local.models import load_family
from tradeplane.workloads.serve.client import ClientOptions, ServeClient

NAMES = ["ret_1_bps", "qi1"]


def test_family_url_fills_the_family_and_appends_the_router_prefix() -> None:
    template = "http://{family}-serve-serve-svc.desk.svc:8000"
    assert family_url(template, "ofi") == "http://ofi-serve-serve-svc.desk.svc:8000/models/ofi"
    assert family_url("http://serve:8000/", "ofi") == "http://serve:8000/models/ofi"  # one proxy for all
    with pytest.raises(ValueError, match="serve_url_template"):
        family_url("http://{model}:8000", "ofi")


def test_a_bad_template_is_refused_before_any_model_loads() -> None:
    with pytest.raises(ValueError, match="expected http://"):
        ServeClients("ftp://{family}:8000", ClientOptions())


def _onnx() -> bytes:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, len(NAMES)))
    y = (x[:, 0] > 0).astype(np.float64)
    booster = fit_gbm(x, y, GbmParams(n_estimators=5, num_leaves=3, min_data_in_leaf=20), feature_names=NAMES)
    return bytes(classifier_to_onnx(booster.dump_model(), NAMES).SerializeToString())


def _spec(version: str, sha: str, mode: str, rollout: dict[str, Any]) -> ModelVersionSpec:
    return ModelVersionSpec.model_validate(
        {
            "model": "fam",
            "artifact": {"uri": f"local://models/{version}/model.onnx", "sha256": sha},
            "featureSignature": {"names": NAMES, "hash": feature_signature_hash(NAMES)},
            "serving": {"mode": mode},
            "rollout": rollout,
        }
    )


def test_only_rayserve_versions_ask_for_a_client_and_need_no_local_file(tmp_path: Path) -> None:
    data = _onnx()
    (tmp_path / "models" / "v1").mkdir(parents=True)
    (tmp_path / "models" / "v1" / "model.onnx").write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    versions = {
        "v1": _spec("v1", sha, "in-process", {"strategy": "immediate"}),
        "v2": _spec("v2", "0" * 64, "rayserve", {"strategy": "shadow"}),  # not on this machine: Serve has it
    }
    asked: list[str] = []
    clients = ServeClients("http://127.0.0.1:9/", ClientOptions(timeout_s=0.05))

    def serve(family: str) -> ServeClient:
        asked.append(family)
        return clients(family)

    fm = load_family("fam", versions, tmp_path, serve=serve)
    assert asked == ["fam"] and set(clients.clients) == {"fam"}
    assert fm.roles == {"v1": "stable", "v2": "shadow"}
    row = {"ret_1_bps": 1.0, "qi1": 0.2}
    scored = fm.router.score("BTCUSDT", row)  # the stable in-process model answers; the shadow's miss is recorded
    assert scored.version == "v1" and 0 < scored.p_up < 1
    # without Serve, a rayserve version must be on this machine: the error names the field
    with pytest.raises(ManifestError, match=r"ModelVersion/v2: spec.artifact.uri: cannot read"):
        load_family("fam", versions, tmp_path)
    assert clients.check().ok and clients.check().reason.startswith("degraded")  # the shadow's call failed
    clients.close()


def test_check_reports_degraded_families_and_stays_ready() -> None:
    clients = ServeClients("http://127.0.0.1:9", ClientOptions(timeout_s=0.05, retry_after_s=60))
    assert clients.check().ok and "no family" in clients.check().reason
    client = clients("fam")
    with pytest.raises(Exception, match=r"unavailable|refused|Connection"):
        client.predict("v1", np.zeros((1, 2)))
    check = clients.check()
    assert check.ok and check.reason.startswith("degraded") and "fam" in check.details["degraded"]
    clients.close()
