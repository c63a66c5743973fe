"""Canary rollouts driven by the operator (its own process) against the real API server, with analyses over
a real ClickHouse server: promotion through every step, rollback on calibration drift, too few samples never
promote, a SIGKILL mid-rollout resumes at the same step, the CLI's abort/retry, rollback on latency, and a shadow
that is only compared (events, status, the report ConfigMap growing) until `tradeplane rollout promote`.

The world (inserted once through the store): four symbols, a decision every 20 ms per symbol over the whole
test, label horizon 1 s (``spec.training.horizonSeconds``). Each decision has a true P(up) q in {0.35, 0.55,
0.75}, and its label is drawn *exactly* (Bresenham: ups per q-bucket track q to within one decision), so a
calibrated model's bucket drift is ~0 and a shifted one's is ~ −20 pp — no flaky statistics. clf-v1 (stable)
scores q + 0.04 on two symbols, and clf-v5 (a shadow) scores those same decisions with q; clf-v2 (good) scores
q, clf-v3 (miscalibrated) q + 0.15 and clf-v4 (slow: 15 ms per inference against the stable's 1 ms) q on the
other two; clf-v9 has no rows at all.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.services import ClickHouseServer, KubernetesCluster
from tradeplane.engine.events import book_top_dtype
from tradeplane.workloads.store.clickhouse_server import ClickHouseServerStore, RetryPolicy
from tradeplane.workloads.store.market import book_top_rows

from .operator_proc import CLI, OperatorProcess, get, wait_for

pytestmark = pytest.mark.k8s

REPO = Path(__file__).resolve().parents[2]
NS = 1_000_000_000
STEP = 20_000_000  # one decision per symbol every 20 ms
H_STEPS = 50  # horizon 1 s = 50 decisions
VENUE = "binance-usdm"
SYMBOLS = ("AAAUSDT", "BBBUSDT", "CCCUSDT", "DDDUSDT")
CANDIDATE_SYMBOLS = SYMBOLS[:2]
Q = (0.35, 0.55, 0.75)
SPAN_S = 420  # the world covers the whole module's run
STABLE_NS = 1_000_000  # every decision's inference latency: 1 ms …
SLOW_NS = 15_000_000  # … but clf-v4's: 15 × the stable's, 3 × the default 5 ms ceiling
SIG = "8ba7689c1d92d99d92bcf2d9547091072f2be1b2036bbfda5cbb100b4e92eceb"
NAMES = ["ret_1_bps", "ret_5_bps", "ret_15_bps", "ret_60_bps", "rv", "rv_long", "rv_ratio", "rv_pct", "atr_bps",
         "bb_width", "bb_squeeze_turn", "range_bps", "close_location", "hour_sin", "hour_cos", "hours_to_funding",
         "funding_bps"]  # fmt: skip


@pytest.fixture(scope="module")
def cluster(k8s_cluster: KubernetesCluster) -> KubernetesCluster:
    k8s_cluster.apply_crds(sorted((REPO / "crds").glob("*.yaml")))
    k8s_cluster.install_kuberay_crds()
    return k8s_cluster


def _world(t0: int) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """(book_top columns, signals columns) from t0 for SPAN_S seconds."""
    n = SPAN_S * NS // STEP
    k = np.arange(n)
    qi = k % len(Q)
    q = np.asarray(Q)[qi]
    ts = t0 + k * STEP
    tops = np.zeros(len(SYMBOLS) * n, book_top_dtype(1))
    sig: dict[str, list[Any]] = {}
    for s in range(len(SYMBOLS)):
        # label of decision k = sign(mid[k + H] − mid[k]): each residue chain k mod H moves on its own, up for
        # exactly round(q·count) of the decisions of each q (Bresenham per (chain, q))
        up = np.zeros(n, bool)
        for b, qb in enumerate(Q):
            idx = np.flatnonzero(qi == b)
            c = np.arange(idx.size)
            up[idx] = np.floor((c + 1) * qb + 0.5 * s / len(SYMBOLS)) > np.floor(c * qb + 0.5 * s / len(SYMBOLS))
        mid = np.empty(n)
        for r in range(H_STEPS):
            chain = np.arange(r, n, H_STEPS)
            steps = np.where(up[chain], 1.0002, 0.9998)
            mid[chain] = 100.0 * (1 + s) * np.concatenate([[1.0], np.cumprod(steps)[:-1]])
        rows = tops[s * n : (s + 1) * n]
        rows["symbol"], rows["synced"], rows["exchange_ts"], rows["ingest_ts"] = s, 1, ts, ts + 1_000_000
        rows["seq"] = k
        rows["bid_px"][:, 0], rows["ask_px"][:, 0] = mid * 0.99999, mid * 1.00001
        rows["bid_qty"][:, 0] = rows["ask_qty"][:, 0] = 1.0
        tops[s * n : (s + 1) * n] = rows
        if SYMBOLS[s] in CANDIDATE_SYMBOLS:
            _append(sig, SYMBOLS[s], "clf-v2", ts, q)
            _append(sig, SYMBOLS[s], "clf-v3", ts, np.clip(q + 0.15, 0, 1))
            _append(sig, SYMBOLS[s], "clf-v4", ts, q, latency_ns=SLOW_NS)
        else:  # the stable decides; the shadow clf-v5 scores the same decisions, calibrated
            _append(sig, SYMBOLS[s], "clf-v1", ts, np.clip(q + 0.04, 0, 1), shadow=("clf-v5", q))
    return book_top_rows(tops, [f"{VENUE}:{s}" for s in SYMBOLS]), sig


def _append(cols: dict[str, list[Any]], symbol: str, version: str, ts: np.ndarray, p: np.ndarray, *,
            latency_ns: int = STABLE_NS, shadow: tuple[str, np.ndarray] | None = None) -> None:  # fmt: skip
    n = ts.size
    shadow_versions = [[shadow[0]] for _ in range(n)] if shadow else [[] for _ in range(n)]
    shadow_p_up = [[x] for x in shadow[1].tolist()] if shadow else [[] for _ in range(n)]
    decision = np.where(p >= 0.6, "enter-long", np.where(p <= 0.4, "enter-short", "skip"))
    values: dict[str, Any] = {
        "strategy": ["desk"] * n, "symbol": [symbol] * n, "ts": ts.tolist(),
        "signal_id": [f"{version}-{symbol}-{i}" for i in range(n)], "venue": [VENUE] * n,
        "exchange_ts": ts.tolist(), "ingest_ts": (ts + 1_000_000).tolist(), "infer_ts": (ts + 2_000_000).tolist(),
        "p_up": p.tolist(), "p_low": np.clip(p - 0.05, 0, 1).tolist(), "p_high": np.clip(p + 0.05, 0, 1).tolist(),
        "expected_return_bps": [1.0] * n, "cost_bps": [1.0] * n, "utility": [1.0] * n, "fee_bps": [1.0] * n,
        "slippage_bps": [0.0] * n, "funding_bps": [0.0] * n, "decision": decision.tolist(),
        "reason": ["" if d != "skip" else "BELOW_KAPPA" for d in decision], "reason_detail": [""] * n,
        "regime": ["calm"] * n, "contribution_names": [[] for _ in range(n)],
        "contribution_values": [[] for _ in range(n)], "model_version": [version] * n,
        "shadow_versions": shadow_versions, "shadow_p_up": shadow_p_up,
        "config_rev": ["rev1"] * n, "cooldown_until": [0] * n, "latency_ns": [latency_ns] * n,
        "size_mult": [1.0] * n, "tp_mult": [1.0] * n, "sl_mult": [1.0] * n, "rules_fired": [[] for _ in range(n)],
        "quality_flags": [0] * n, "run_id": ["desk"] * n,
    }  # fmt: skip
    for key, col in values.items():
        cols.setdefault(key, []).extend(col)


@pytest.fixture(scope="module")
def dsn(clickhouse_server: ClickHouseServer) -> Iterator[str]:
    """A database with the world, starting 10 s ago; the operator's TRADEPLANE_CLICKHOUSE__DSN."""
    database = f"rollop_{uuid.uuid4().hex[:10]}"
    store = ClickHouseServerStore(clickhouse_server.host, clickhouse_server.port, database=database,
                                  retry=RetryPolicy(3, 0.05))  # fmt: skip
    store.migrate()
    tops, signals = _world(time.time_ns() - 10 * NS)
    store.insert("book_top", tops)
    store.insert("signals", signals)
    yield f"clickhouse://default@{clickhouse_server.host}:{clickhouse_server.port}/{database}"
    store.execute(f"DROP DATABASE IF EXISTS {database}")
    store.close()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The operator's home: each candidate's offline calibration curve beside its (absent) model file,
    calibrated at the bucket centres (what training's calibration.json holds)."""
    root = tmp_path_factory.mktemp("home")
    for version in ("v2", "v3", "v4", "v5", "v9"):
        d = root / "models" / "clf" / version
        d.mkdir(parents=True)
        (d / "calibration.json").write_text(json.dumps({"hitRate": [(b + 0.5) / 10 for b in range(10)],
                                                        "count": [1000] * 10}))  # fmt: skip
    return root


@pytest.fixture
def operator(cluster: KubernetesCluster, namespace: str, tmp_path: Path, dsn: str, home: Path
             ) -> Iterator[OperatorProcess]:  # fmt: skip
    env = {"TRADEPLANE_CLICKHOUSE__DSN": dsn, "TRADEPLANE_HOME": str(home),
           "TRADEPLANE_OPERATOR__ROLLOUT_TICK_SECONDS": "0.5"}  # fmt: skip
    op = OperatorProcess(cluster, namespace, tmp_path, resync_s=5.0, env=env)
    yield op
    op.stop()
    assert "Traceback" not in op.text() or "KubeError: 409" in op.text(), op.text()[-4000:]


def _mv(name: str, *, strategy: str, serving: str = "in-process", steps: int = 3, pause: int = 5,
        analysis: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    rollout: dict[str, Any] = {"strategy": strategy}
    if strategy == "canary":
        rollout["steps"] = [{"weightPct": w, "pauseSeconds": pause} for w in (10, 50, 100)[-steps:]]
    if strategy in ("canary", "shadow"):
        rollout["analysis"] = {"intervalSeconds": 5, "minSamples": 100, "maxConsecutiveFailures": 1,
                               "thresholds": {"maxEce": 0.1}, **(analysis or {})}  # fmt: skip
    return {
        "apiVersion": "tradeplane.io/v1alpha1", "kind": "ModelVersion", "metadata": {"name": name},
        "spec": {"model": "clf", "artifact": {"uri": f"local://models/clf/{name.split('-')[-1]}/model.onnx",
                                              "sha256": "0" * 64},
                 "featureSignature": {"names": NAMES, "hash": SIG},
                 "training": {"data": ["local://d.parquet"], "horizonSeconds": 1},
                 "serving": {"mode": serving}, "rollout": rollout},
    }  # fmt: skip


def _apply(cluster: KubernetesCluster, ns: str, *objs: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objs}))


def _status(cluster: KubernetesCluster, ns: str, name: str) -> dict[str, Any]:
    return dict((get(cluster, ns, "modelversion", name) or {}).get("status") or {})


def _routes(cluster: KubernetesCluster, ns: str) -> dict[str, Any]:
    cm = get(cluster, ns, "configmap", "clf-routes")
    return json.loads(cm["data"]["routes.json"]) if cm else {}


def _user_config(cluster: KubernetesCluster, ns: str) -> dict[str, Any]:
    import yaml

    rs = get(cluster, ns, "rayservice", "clf-serve")
    config = yaml.safe_load(rs["spec"]["serveConfigV2"])
    router = next(a for a in config["applications"] if a["name"] == "clf")
    return dict(router["deployments"][0]["user_config"]["routes"])


def _events(cluster: KubernetesCluster, ns: str, name: str) -> list[dict[str, Any]]:
    out = get(cluster, ns, "events") or {"items": []}
    return [e for e in out["items"] if e["involvedObject"].get("name") == name]


def _cli(cluster: KubernetesCluster, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"KUBECONFIG": str(cluster.kubeconfig_path), "PATH": "/usr/bin:/bin",
           "PYTHONWARNINGS": "ignore:Unverified HTTPS request"}  # fmt: skip
    return subprocess.run([str(CLI), "rollout", *args], capture_output=True, text=True, env=env, timeout=60)


def test_a_better_candidate_is_promoted_through_every_step_and_the_routes_follow(
    cluster: KubernetesCluster, namespace: str, operator: OperatorProcess
) -> None:
    ns = namespace
    _apply(cluster, ns, _mv("clf-v1", strategy="immediate"), _mv("clf-v2", strategy="canary", serving="rayserve"))
    seen_weights: set[float] = set()
    seen_user: set[float] = set()

    def promoted() -> dict[str, Any] | None:
        routes = _routes(cluster, ns)
        if routes.get("weights", {}).get("clf-v2") is not None:
            seen_weights.add(routes["weights"]["clf-v2"])
        if get(cluster, ns, "rayservice", "clf-serve"):
            route = _user_config(cluster, ns).get("clf-v2", {})
            if route.get("role") == "canary":
                seen_user.add(route["weight"])
        st = _status(cluster, ns, "clf-v2")
        return st if st.get("phase") == "Promoted" else None

    st = wait_for(promoted, 90, "clf-v2 promoted", interval=0.3)
    steps = [h for h in st["history"] if h["phase"] == "Canary"]
    assert len(steps) == 3, st["history"]  # started at step 1, advanced to 2 and 3
    assert "step 1/3" in steps[0]["reason"] and "step 2/3" in steps[1]["reason"] and "step 3/3" in steps[2]["reason"]
    assert st["history"][-1]["phase"] == "Promoted" and st["rollout"]["previousStable"] == "clf-v1"
    assert st["rollout"]["lastVerdict"] == "Pass" and {r["metric"] for r in st["analysis"]} >= {"brier", "ece"}
    # every step reached the ConfigMap (0 before the rollout started)
    assert {0.0, 0.1, 0.5, 1.0} >= seen_weights >= {0.1, 0.5}, seen_weights
    assert seen_user >= {0.1, 0.5}, seen_user  # and the RayService router's user_config
    routes = wait_for(lambda: (r := _routes(cluster, ns)).get("roles", {}).get("clf-v2") == "stable" and r, 20,
                      "clf-v2 stable in the routes")  # fmt: skip
    assert routes["roles"]["clf-v1"] == "canary" and routes["weights"]["clf-v1"] == 0.0
    assert wait_for(lambda: _user_config(cluster, ns)["clf-v2"]["role"] == "stable", 20, "stable in user_config")
    reasons = {e["reason"] for e in _events(cluster, ns, "clf-v2")}
    assert {"RolloutStarted", "AnalysisPassed", "StepAdvanced", "Promoted"} <= reasons, reasons
    out = _cli(cluster, "status", "clf-v2", "-n", ns)
    assert out.returncode == 0, out.stderr
    assert "Promoted" in out.stdout and "brier" in out.stdout and "history:" in out.stdout


def test_a_miscalibrated_candidate_is_rolled_back_at_the_first_analysis_on_calibration_drift(
    cluster: KubernetesCluster, namespace: str, operator: OperatorProcess
) -> None:
    ns = namespace
    _apply(cluster, ns, _mv("clf-v1", strategy="immediate"),
           _mv("clf-v3", strategy="canary", analysis={"maxConsecutiveFailures": 2}))  # fmt: skip
    st = wait_for(lambda: (s := _status(cluster, ns, "clf-v3")).get("phase") == "RolledBack" and s, 40,
                  "clf-v3 rolled back")  # fmt: skip
    assert st["failures"] == 1 and st["weightPct"] == 0.0  # the first failing analysis, not a second
    assert "calibration drift" in st["history"][-1]["reason"] and "calibration_drift_pp" in st["history"][-1]["reason"]
    drift = next(r for r in st["analysis"] if r["metric"] == "calibration_drift_pp")
    assert drift["passed"] is False and abs(drift["candidate"]) > 5
    assert wait_for(lambda: _routes(cluster, ns).get("weights", {}).get("clf-v3") == 0.0, 20, "weight 0")
    assert _routes(cluster, ns)["roles"]["clf-v1"] == "stable"
    rolled = [e for e in _events(cluster, ns, "clf-v3") if e["reason"] == "RolledBack"]
    assert rolled and rolled[0]["type"] == "Warning" and "calibration" in rolled[0]["message"]
    degraded = next(c for c in st["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "RolledBack"


def test_too_few_samples_never_promote_and_the_cli_aborts_and_retries(
    cluster: KubernetesCluster, namespace: str, operator: OperatorProcess
) -> None:
    ns = namespace
    _apply(cluster, ns, _mv("clf-v1", strategy="immediate"), _mv("clf-v9", strategy="canary", steps=1, pause=0))
    # two analyses at least (interval 5 s), both inconclusive: still step 1, never promoted
    st = wait_for(lambda: (s := _status(cluster, ns, "clf-v9")).get("rollout", {}).get("lastAnalysisAt")
                  and len([e for e in _events(cluster, ns, "clf-v9") if e["reason"] == "AnalysisInconclusive"]) >= 2
                  and s, 40, "two inconclusive analyses")  # fmt: skip
    assert st["phase"] == "Canary" and st["currentStep"] == 0 and st["failures"] == 0
    assert "min_samples" in st["rollout"]["lastReason"]
    out = _cli(cluster, "abort", "clf-v9", "-n", ns, "--wait", "10")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Canary → RolledBack" in out.stdout
    st = _status(cluster, ns, "clf-v9")
    assert st["phase"] == "RolledBack" and "aborted by" in st["history"][-1]["reason"]
    mv = get(cluster, ns, "modelversion", "clf-v9")
    assert "tradeplane.io/rollout-command" not in (mv["metadata"].get("annotations") or {})
    out = _cli(cluster, "retry", "clf-v9", "-n", ns, "--wait", "10")
    assert out.returncode == 0, out.stdout + out.stderr
    st = _status(cluster, ns, "clf-v9")
    assert st["phase"] == "Canary" and st["currentStep"] == 0 and st["failures"] == 0
    assert [h["phase"] for h in st["history"]] == ["Canary", "RolledBack", "Canary"]
    unknown = _cli(cluster, "abort", "clf-nope", "-n", ns)
    assert unknown.returncode == 2 and "does not exist" in unknown.stderr


def test_a_sigkilled_operator_resumes_the_rollout_at_the_same_step(
    cluster: KubernetesCluster, namespace: str, tmp_path: Path, dsn: str, home: Path
) -> None:
    ns = namespace
    env = {"TRADEPLANE_CLICKHOUSE__DSN": dsn, "TRADEPLANE_HOME": str(home),
           "TRADEPLANE_OPERATOR__ROLLOUT_TICK_SECONDS": "0.5"}  # fmt: skip
    op = OperatorProcess(cluster, ns, tmp_path, resync_s=5.0, env=env)
    try:
        _apply(cluster, ns, _mv("clf-v1", strategy="immediate"), _mv("clf-v2", strategy="canary", pause=8))
        before = wait_for(lambda: (s := _status(cluster, ns, "clf-v2")).get("currentStep") == 1 and s, 60,
                          "step 2 reached")  # fmt: skip
        op.kill()
    finally:
        op.stop()
    time.sleep(1.0)
    op = OperatorProcess(cluster, ns, tmp_path, resync_s=5.0, env=env)
    try:
        time.sleep(3.0)  # the restarted operator has resumed (and its ticks run) but step 2's analysis is not due
        resumed = _status(cluster, ns, "clf-v2")
        assert resumed["currentStep"] == 1 and resumed["phase"] == "Canary"
        assert resumed["history"][: len(before["history"])] == before["history"]
        assert resumed["rollout"]["stepStartedAt"] == before["rollout"]["stepStartedAt"]  # same timers
        st = wait_for(lambda: (s := _status(cluster, ns, "clf-v2")).get("phase") == "Promoted" and s, 60, "promoted")
        phases = [(h["phase"], h["reason"][:12]) for h in st["history"]]
        assert len(phases) == len(set(phases)) == 4, st["history"]  # 3 steps + Promoted, none lost or repeated
    finally:
        op.stop()
    assert "Traceback" not in op.text(), op.text()[-4000:]


def _report(cluster: KubernetesCluster, ns: str, name: str) -> dict[str, Any]:
    """The operator's comparison report of ``name`` (its ConfigMap's report.json), {} before the first analysis."""
    cm = get(cluster, ns, "configmap", f"{name}-rollout-report")
    return json.loads(cm["data"]["report.json"]) if cm else {}


def test_a_slow_candidate_is_rolled_back_on_latency_at_its_first_judged_analysis(
    cluster: KubernetesCluster, namespace: str, operator: OperatorProcess
) -> None:
    ns = namespace
    _apply(cluster, ns, _mv("clf-v1", strategy="immediate"), _mv("clf-v4", strategy="canary", serving="rayserve"))
    st = wait_for(lambda: (s := _status(cluster, ns, "clf-v4")).get("phase") == "RolledBack" and s, 40,
                  "clf-v4 rolled back")  # fmt: skip
    assert st["failures"] == 1 and st["weightPct"] == 0.0  # its first judged analysis (maxConsecutiveFailures 1)
    assert [h["phase"] for h in st["history"]] == ["Canary", "RolledBack"]
    reason = st["history"][-1]["reason"]
    assert "latency_p99_ms 15 ms > ceiling 5 ms (stable 1 ms)" in reason, reason  # the metric and both values
    latency = next(r for r in st["analysis"] if r["metric"] == "latency_p99_ms")
    assert latency == {**latency, "candidate": 15.0, "stable": 1.0, "threshold": 5.0, "passed": False}
    assert [r["metric"] for r in st["analysis"] if not r["passed"]] == ["latency_p99_ms"]  # otherwise as good
    rolled = [e for e in _events(cluster, ns, "clf-v4") if e["reason"] == "RolledBack"]
    assert rolled and rolled[0]["type"] == "Warning" and "latency_p99_ms" in rolled[0]["message"]
    assert wait_for(lambda: _routes(cluster, ns).get("weights", {}).get("clf-v4") == 0.0, 20, "route weight 0")
    assert _routes(cluster, ns)["roles"] == {"clf-v1": "stable", "clf-v4": "canary"}
    assert wait_for(lambda: _user_config(cluster, ns).get("clf-v4") == {"role": "canary", "weight": 0.0}, 20,
                    "RayService weight 0")  # fmt: skip
    report = _report(cluster, ns, "clf-v4")  # a canary's analyses go to the same report
    assert [(r["verdict"], r["phase"]) for r in report["rows"]] == [("Fail", "RolledBack")]


def test_a_shadow_is_compared_never_promoted_by_itself_and_the_cli_promotes_it(
    cluster: KubernetesCluster, namespace: str, operator: OperatorProcess
) -> None:
    ns = namespace
    _apply(cluster, ns, _mv("clf-v1", strategy="immediate"), _mv("clf-v5", strategy="shadow", serving="rayserve"))
    sizes: list[int] = []

    def two_analyses() -> dict[str, Any] | None:
        rows = _report(cluster, ns, "clf-v5").get("rows", [])
        if rows and (not sizes or sizes[-1] != len(rows)):
            sizes.append(len(rows))
        return _report(cluster, ns, "clf-v5") if len(rows) >= 2 else None

    report = wait_for(two_analyses, 40, "two analyses in the report", interval=0.3)
    assert sizes[0] == 1 and sizes[-1] >= 2  # the report grew analysis by analysis
    st = _status(cluster, ns, "clf-v5")
    # both analyses passed (a canary would have moved on), yet it stays a shadow at weight 0
    assert st["phase"] == "Shadow" and st["weightPct"] == 0.0 and [h["phase"] for h in st["history"]] == ["Shadow"]
    assert st["rollout"]["lastVerdict"] == "Pass" and st["failures"] == 0
    by_metric = {r["metric"]: r for r in st["analysis"]}
    assert {"latency_p99_ms", "brier", "ece", "calibration_drift_pp", "decision_agreement"} <= set(by_metric)
    assert all(r["passed"] for r in st["analysis"]) and by_metric["brier"]["candidate"] < by_metric["brier"]["stable"]
    compared = [e for e in _events(cluster, ns, "clf-v5") if e["reason"] == "ShadowComparison"]
    assert len(compared) >= 2 and all(e["type"] == "Normal" and e["message"].startswith("Pass") for e in compared)
    assert _routes(cluster, ns)["roles"] == {"clf-v1": "stable", "clf-v5": "shadow"}
    # the report: one row per analysis, each metric with both values and the delta
    assert report["candidate"] == "clf-v5" and report["stable"] == "clf-v1" and report["strategy"] == "shadow"
    first, second = report["rows"][:2]
    assert first["verdict"] == second["verdict"] == "Pass" and first["time"] < second["time"]
    assert first["windowSeconds"] >= 5 and second["windowSeconds"] > first["windowSeconds"]  # since the start
    brier = next(m for m in second["metrics"] if m["metric"] == "brier")
    assert brier["delta"] == pytest.approx(brier["candidate"] - brier["stable"]) and brier["delta"] < 0
    cm = get(cluster, ns, "configmap", "clf-v5-rollout-report")
    assert cm["metadata"]["ownerReferences"][0]["name"] == "clf-v5"
    md = _cli(cluster, "report", "clf-v5", "-n", ns)
    assert md.returncode == 0, md.stderr
    assert "# Rollout report: clf-v5 (shadow) against stable clf-v1" in md.stdout and "## brier" in md.stdout
    js = _cli(cluster, "report", "clf-v5", "-n", ns, "--format", "json")
    assert js.returncode == 0 and len(json.loads(js.stdout)["rows"]) >= 2, js.stderr
    # promoted by hand only; the routes follow
    out = _cli(cluster, "promote", "clf-v5", "-n", ns, "--wait", "10")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Shadow → Promoted" in out.stdout and "promoted manually by" in out.stdout
    routes = wait_for(lambda: (r := _routes(cluster, ns)).get("roles", {}).get("clf-v5") == "stable" and r, 20,
                      "clf-v5 stable in the routes")  # fmt: skip
    assert routes["roles"]["clf-v1"] == "canary" and routes["weights"]["clf-v1"] == 0.0
    assert wait_for(lambda: _user_config(cluster, ns)["clf-v5"]["role"] == "stable", 20, "stable in user_config")
    assert _status(cluster, ns, "clf-v5")["rollout"]["previousStable"] == "clf-v1"
