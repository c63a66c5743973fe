"""Rollouts inside `tradeplane run`: the controller driven by the desk's clock over a synthetic market, with
real trained models, the run's own chDB store, the router's weights, the state file and command files.

The desk: the demo's manifests (both strategies trading BTCUSDT and ETHUSDT, horizon 10 s) plus a canary.
The router assigns symbols by a stable hash: BTCUSDT's cohort is 0.368 and ETHUSDT's 0.706, so a canary
at 50 % and then 60 % holds BTCUSDT while the stable keeps ETHUSDT (both sides have samples at every step).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import yaml

from tradeplane.engine.decision.router import ModelRouter
from tradeplane.workloads.local import models as local_models
from tradeplane.workloads.local.runner import RunConfig, RunSummary, run_local
from tradeplane.workloads.rollout import read_state, state_path, write_command
from tradeplane.workloads.training.registry import (
    ARTIFACT_INDEX,
    CALIBRATION_FILE,
    read_offline_calibration,
    sha256_file,
    write_index,
    write_offline_calibration,
)

SYMBOLS = ["BTCUSDT", "ETHUSDT"]
ANALYSIS: dict[str, Any] = {"intervalSeconds": 10, "minSamples": 30, "maxConsecutiveFailures": 2}
OPEN = {"maxLatencyP99Ms": 1000, "maxBrier": None, "maxEce": None, "maxCalibrationDriftPp": None}


def _desk(home: Path, manifests: Path, out: Path, candidate: dict[str, Any], extra: dict[str, Any] | None = None
          ) -> Path:  # fmt: skip
    """The trained desk with both strategies on SYMBOLS (10 s horizon), ofi-lgbm-v2 replaced by ``candidate``
    (its rollout), and an ``extra`` ModelVersion document."""
    out.mkdir()
    for f in sorted(manifests.glob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(f.read_text()) if d]
        for d in docs:
            if d["kind"] == "Strategy":
                d["spec"]["symbols"] = SYMBOLS
                d["spec"]["decision"]["horizonSeconds"] = 10
                d["spec"]["decision"]["cooldownSeconds"] = 5
            if d["kind"] == "ModelVersion" and d["metadata"]["name"] == "ofi-lgbm-v2":
                d["spec"]["rollout"] = candidate
        (out / f.name).write_text(yaml.safe_dump_all(docs, sort_keys=False))
    if extra is not None:
        (out / "12-modelversion-extra.yaml").write_text(yaml.safe_dump(extra, sort_keys=False))
    return out


def _run(home: Path, desk: Path, run_id: str, progress: Callable[[str], None] = lambda _: None) -> RunSummary:
    state_path(home, "ofi-lgbm-v2").unlink(missing_ok=True)
    return run_local(RunConfig(manifests=(desk,), seconds=150, seed=11, home=home, run_id=run_id, report=False),
                     progress=progress)  # fmt: skip


def test_symbol_cohorts_split_the_desk() -> None:
    router = ModelRouter.__new__(ModelRouter)
    router._cohorts = {}
    assert ModelRouter.cohort(router, "BTCUSDT") < 0.5 < 0.6 < ModelRouter.cohort(router, "ETHUSDT")


def test_a_canary_walks_its_steps_and_is_promoted(trained: tuple[Path, Path], tmp_path: Path) -> None:
    home, manifests = trained
    rollout = {"strategy": "canary", "steps": [{"cohortPct": 50, "pauseSeconds": 30}, {"cohortPct": 60, "pauseSeconds": 30}],
               "analysis": {**ANALYSIS, "thresholds": OPEN}}  # fmt: skip
    seen: list[str] = []
    summary = _run(home, _desk(home, manifests, tmp_path / "m", rollout), "rollout-promote", seen.append)
    r = summary.rollouts["ofi-lgbm-v2"]
    assert r["phase"] == "Promoted", r
    assert [h["phase"] for h in r["history"]] == ["Canary", "Canary", "Promoted"]
    assert "step 2/2 at 60 %" in r["history"][1]["reason"]
    # the router saw the first step's weight, the second's, then all traffic on promotion
    assert [w for _, w in r["routerWeights"]] == [0.5, 0.6, 1.0]
    ts = [t for t, _ in r["routerWeights"]]
    assert ts == sorted(ts) and ts[1] - ts[0] >= 30 * 10**9 and ts[2] - ts[1] >= 30 * 10**9  # pauses in desk time
    state = read_state(home, "ofi-lgbm-v2")
    assert state is not None and state["phase"] == "Promoted" and state["rollout"]["stable"] == "ofi-lgbm-v2"
    assert state["rollout"]["previousStable"] == "ofi-lgbm-v1"
    assert any("ModelVersion/ofi-lgbm-v2: Promoted" in m for m in seen)
    assert r["analyses"] >= 2 and r["lastVerdict"] == "Pass"
    run = json.loads((summary.out / "run.json").read_text())
    assert run["rollouts"]["ofi-lgbm-v2"]["phase"] == "Promoted"


def _overconfident(version: str) -> Callable[..., Any]:
    """Wrap ``models._scorer`` so ``version`` answers p = 0.85 + noise whatever the features: no skill, shifted
    far above what its offline curve promised in that bucket."""
    original = local_models._scorer

    class Shifted:
        def __init__(self, inner: Any) -> None:
            self.inner, self.feature_names = inner, inner.feature_names
            self.rng = np.random.default_rng(0)

        def predict(self, features: npt.ArrayLike) -> npt.NDArray[np.float64]:
            n = np.asarray(features).shape[0]
            return np.asarray(0.8 + 0.09 * self.rng.random(n), dtype=np.float64)

    def scorer(name: str, spec: Any, data: Any, serve: Any) -> Any:
        inner = original(name, spec, data, serve)
        return Shifted(inner) if name == version else inner

    return scorer


def _candidate_artifact(home: Path, version: str) -> dict[str, Any]:
    """ofi-lgbm-v1's model as a new version whose training promised a calibrated curve over all buckets (the
    OOF outcomes of a calibrated model: y ~ Bernoulli(p)); the side file is hashed into artifact.json."""
    src, dst = home / "models" / "ofi-lgbm" / "v1", home / "models" / "ofi-lgbm" / version
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    rng = np.random.default_rng(7)
    p = rng.uniform(0.0, 1.0, 20_000)
    write_offline_calibration(dst, (rng.random(p.shape[0]) < p).astype(np.float64), p)
    index = json.loads((dst / ARTIFACT_INDEX).read_text())
    write_index(dst, list(index["files"]), model="ofi-lgbm", version=version,
                feature_names=index["featureSignature"]["names"])  # fmt: skip
    assert json.loads((dst / ARTIFACT_INDEX).read_text())["files"][CALIBRATION_FILE]["sha256"] == sha256_file(
        dst / CALIBRATION_FILE
    )
    offline = read_offline_calibration(dst)
    assert offline is not None and offline.count[8] > 1000
    v1 = yaml.safe_load((home / "demo" / "manifests" / "10-modelversion-v1.yaml").read_text())
    v1["metadata"]["name"] = f"ofi-lgbm-{version}"
    v1["spec"]["artifact"]["uri"] = f"local://models/ofi-lgbm/{version}/model.onnx"
    return dict(v1)


def test_a_miscalibrated_candidate_is_rolled_back_on_calibration_drift(
    trained: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, manifests = trained
    doc = _candidate_artifact(home, "v3")
    doc["spec"]["rollout"] = {
        "strategy": "canary", "steps": [{"cohortPct": 50, "pauseSeconds": 30}, {"cohortPct": 60, "pauseSeconds": 30}],
        "analysis": {**ANALYSIS, "thresholds": {**OPEN, "maxCalibrationDriftPp": 5}},
    }  # fmt: skip
    shadow = {"strategy": "shadow"}  # v2 stays a shadow: one canary in the family
    monkeypatch.setattr(local_models, "_scorer", _overconfident("ofi-lgbm-v3"))
    summary = _run(home, _desk(home, manifests, tmp_path / "m", shadow, extra=doc), "rollout-miscal")
    r = summary.rollouts["ofi-lgbm-v3"]
    assert r["phase"] == "RolledBack", r
    assert r["failures"] == 1  # the first judged analysis rolled it back
    assert r["history"][-1]["reason"].startswith("calibration drift beyond its limit rolls back at once")
    assert "calibration_drift_pp" in r["history"][-1]["reason"]
    assert r["routerWeights"][-1][1] == 0.0
    assert read_state(home, "ofi-lgbm-v3")["phase"] == "RolledBack"  # type: ignore[index]
    # the shadow v2 was compared on the same schedule and never changed phase
    assert summary.rollouts["ofi-lgbm-v2"]["phase"] == "Shadow"
    # its comparison report: one row per analysis, in the files the run summary (and run.json) points to
    shadow = summary.rollouts["ofi-lgbm-v2"]
    rows = json.loads(Path(shadow["reportJson"]).read_text())["rows"]
    assert len(rows) == shadow["reportRows"] == shadow["analyses"] >= 2 and rows[0]["time"] < rows[-1]["time"]
    assert {m["metric"] for m in rows[-1]["metrics"]} >= {"latency_p99_ms", "decision_agreement"}
    assert Path(shadow["report"]).read_text().startswith("# Rollout report: ofi-lgbm-v2 (shadow) against stable")
    run = json.loads((summary.out / "run.json").read_text())["rollouts"]
    assert run["ofi-lgbm-v2"]["report"] == shadow["report"] and run["ofi-lgbm-v3"]["phase"] == "RolledBack"


def test_a_promote_command_written_mid_run_is_applied(trained: tuple[Path, Path], tmp_path: Path) -> None:
    home, manifests = trained
    rollout = {"strategy": "canary", "steps": [{"cohortPct": 50, "pauseSeconds": 3600}],
               "analysis": {**ANALYSIS, "thresholds": OPEN}}  # fmt: skip

    def progress(message: str) -> None:
        if "RolloutStarted" in message:  # the run is under way: a person types `tradeplane rollout promote`
            write_command(home, "ofi-lgbm-v2", "promote", "alice")

    summary = _run(home, _desk(home, manifests, tmp_path / "m", rollout), "rollout-command", progress)
    r = summary.rollouts["ofi-lgbm-v2"]
    assert r["phase"] == "Promoted"
    assert r["history"][-1]["reason"].startswith("promoted manually by alice")
    assert [w for _, w in r["routerWeights"]] == [0.5, 1.0]
    assert not (home / "rollouts" / "ofi-lgbm-v2.command.json").exists()  # consumed
