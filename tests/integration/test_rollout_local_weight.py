"""A ``weightPct`` canary step inside ``tradeplane run`` over a single-symbol desk: the candidate scores its
share of the *decisions*, not all or nothing per symbol, and a replay of the same market routes every decision
to the same model. The next step, a ``cohortPct`` one, switches the router's unit back to symbols.

With symbol-only routing this desk could not be split: BTCUSDT's cohort is 0.368, so a 30 % step would give
the candidate nothing (and a 40 % step everything).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

from tradeplane.workloads.local.manifests import load_desk
from tradeplane.workloads.local.models import load_families
from tradeplane.workloads.local.runner import RunConfig, RunSummary, run_local
from tradeplane.workloads.rollout import state_path

SYMBOL = "BTCUSDT"
WEIGHT_PCT = 30
COHORT_PCT = 20  #: below BTCUSDT's cohort (0.368): as a share of symbols, nothing for the candidate
OPEN = {"maxLatencyP99Ms": 1000, "maxBrier": None, "maxEce": None, "maxCalibrationDriftPp": None}
ROLLOUT = {"strategy": "canary",
           "steps": [{"weightPct": WEIGHT_PCT, "pauseSeconds": 90}, {"cohortPct": COHORT_PCT, "pauseSeconds": 3600}],
           "analysis": {"intervalSeconds": 10, "minSamples": 30, "thresholds": OPEN}}  # fmt: skip


def _desk(manifests: Path, out: Path) -> Path:
    """The demo desk with every strategy on BTCUSDT only, ofi-lgbm-v2 a canary: 30 % of decisions for 90 s,
    then 20 % of symbols."""
    out.mkdir()
    for f in sorted(manifests.glob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(f.read_text()) if d]
        for d in docs:
            if d["kind"] == "Strategy":
                d["spec"]["symbols"] = [SYMBOL]
                d["spec"]["decision"]["horizonSeconds"] = 10
            if d["kind"] == "ModelVersion" and d["metadata"]["name"] == "ofi-lgbm-v2":
                d["spec"]["rollout"] = ROLLOUT
        (out / f.name).write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return out


def _run(home: Path, desk: Path, run_id: str) -> RunSummary:
    state_path(home, "ofi-lgbm-v2").unlink(missing_ok=True)
    return run_local(RunConfig(manifests=(desk,), seconds=180, seed=11, home=home, run_id=run_id, report=False))


def _scored(summary: RunSummary) -> list[dict[str, Any]]:
    """The run's signals scored by a model (not the rules fallback), in audit order."""
    rows = [json.loads(line)["signal"] for line in Path(summary.files["audit"]).read_text().splitlines() if line]
    return [s for s in rows if str(s.get("model_version", "")).startswith("ofi-lgbm-v")]


def test_a_weight_step_gives_the_candidate_its_share_of_one_symbols_decisions(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    home, manifests = trained
    desk = _desk(manifests, tmp_path / "m")
    families = load_families(load_desk([desk]).models, {"ofi-lgbm"}, home)  # the loader: the first step's unit
    assert families["ofi-lgbm"].router.kinds() == {"ofi-lgbm-v2": "weight"}
    summary = _run(home, desk, "rollout-weight")
    r = summary.rollouts["ofi-lgbm-v2"]
    assert r["phase"] == "Canary" and r["step"] == 1, r
    assert [w for _, w in r["routerWeights"]] == [WEIGHT_PCT / 100, COHORT_PCT / 100]
    assert r["routerKinds"] == ["weight", "cohort"]
    switched = r["routerWeights"][1][0]  # desk time of the step change

    scored = _scored(summary)
    assert {s["symbol"] for s in scored} == {SYMBOL}
    by_key: dict[int, set[str]] = defaultdict(set)
    for s in scored:
        by_key[s["exchange_ts"]].add(s["model_version"])
    assert all(len(v) == 1 for v in by_key.values())  # one decision key, one model, whichever strategy asked
    step1 = [v for ts, v in by_key.items() if ts <= switched]
    step2 = [v for ts, v in by_key.items() if ts > switched]
    n, share = len(step1), sum(v == {"ofi-lgbm-v2"} for v in step1) / len(step1)
    p = WEIGHT_PCT / 100
    assert n > 300 and abs(share - p) < 5 * math.sqrt(p * (1 - p) / n), (share, n)
    assert len(step2) > 100 and all(v == {"ofi-lgbm-v1"} for v in step2)  # a share of symbols: all or nothing

    again = _scored(_run(home, desk, "rollout-weight-replay"))  # the same market replayed: the same routing
    assert [(s["exchange_ts"], s["strategy"], s["model_version"]) for s in again] == [
        (s["exchange_ts"], s["strategy"], s["model_version"]) for s in scored
    ]
