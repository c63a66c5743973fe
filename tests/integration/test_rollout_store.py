"""Rollout analysis against real stores (chDB and the ClickHouse 18.16 server): signals and book tops written
through the runtime's row builders (rows.signal_row, market.book_top_rows), read back by read_window, judged by
run_analysis.

The synthetic world: four USD-M symbols, one decision per symbol every horizon h; each decision has a true
P(up) q ~ U(0.2, 0.8) and the mid path moves up over the next h with probability q (so the label is known).
The stable scores q + noise, a good candidate q itself, a miscalibrated one q + 0.15, a slow one q with 3×
the latency ceiling. The candidate holds two symbols (canary rows), the stable the other two.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from tests.services import ClickHouseServer
from tradeplane.api.v1alpha1.modelversion import ModelVersionPhase, ModelVersionSpec, feature_signature_hash
from tradeplane.engine.decision.types import Signal
from tradeplane.engine.events import book_top_dtype
from tradeplane.engine.rollout import OfflineCalibration, RolloutState, Verdict
from tradeplane.workloads.rollout import read_window, run_analysis
from tradeplane.workloads.store import Store
from tradeplane.workloads.store.chdb_store import ChdbStore
from tradeplane.workloads.store.clickhouse_server import ClickHouseServerStore, RetryPolicy
from tradeplane.workloads.store.market import book_top_rows
from tradeplane.workloads.store.rows import signal_row

NS = 1_000_000_000
T0 = 1_722_470_400 * NS
H = 10 * NS  # label horizon = decision spacing per symbol
K = 1_500  # decisions per symbol
VENUE = "binance-usdm"
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT")
CANDIDATE, STABLE = "clf-v2", "clf-v1"
CANDIDATE_SYMBOLS = SYMBOLS[:2]
RNG = np.random.default_rng(20240808)
Q = RNG.uniform(0.2, 0.8, size=(len(SYMBOLS), K))  # true P(up) of each decision
UP = RNG.random(size=(len(SYMBOLS), K)) < Q  # what happened over the next h
NOISE = RNG.normal(0.0, 0.1, size=(len(SYMBOLS), K))
END = T0 + K * H  # the last top is at T0 + K·h: every decision's label has matured by END


def _mid_paths() -> np.ndarray:
    """Mid of each symbol at T0 + k·h, k = 0..K: ±2 bp per step, in the drawn direction."""
    steps = np.where(UP, 1.0002, 0.9998)
    start = np.array([60_000.0, 3_000.0, 150.0, 0.5])[:, None]
    return np.concatenate([start, start * np.cumprod(steps, axis=1)], axis=1)


MIDS = _mid_paths()


def _tops() -> np.ndarray:
    n = K + 1
    tops = np.zeros(len(SYMBOLS) * n, book_top_dtype(1))
    for s in range(len(SYMBOLS)):
        rows = tops[s * n : (s + 1) * n]
        ts = T0 + np.arange(n, dtype=np.int64) * H
        half = MIDS[s] * 0.00005
        rows["symbol"], rows["synced"], rows["exchange_ts"], rows["ingest_ts"] = s, 1, ts, ts + 1_000_000
        rows["seq"] = np.arange(n)
        rows["bid_px"][:, 0], rows["ask_px"][:, 0] = MIDS[s] - half, MIDS[s] + half
        rows["bid_qty"][:, 0] = rows["ask_qty"][:, 0] = 1.0
        tops[s * n : (s + 1) * n] = rows
    return tops


def _signal(s: int, k: int, version: str, p: float, latency_ns: int, shadow: tuple[tuple[str, float], ...] = ()
            ) -> Signal:  # fmt: skip
    decision = "enter-long" if p >= 0.6 else "enter-short" if p <= 0.4 else "skip"
    entered = decision != "skip"
    return Signal(
        id=f"{s}-{k}-{uuid.uuid4().hex[:8]}", strategy="usdm-multi", symbol=SYMBOLS[s], venue=VENUE,
        exchange_ts=T0 + k * H, ingest_ts=T0 + k * H + 1_000_000, infer_ts=T0 + k * H + 2_000_000, p_up=p,
        p_low=max(p - 0.05, 0.0), p_high=min(p + 0.05, 1.0), expected_return_bps=1.0,
        cost_bps=1.0 if entered else float("nan"), utility=1.0, fee_bps=1.0, slippage_bps=0.0, funding_bps=0.0,
        decision=decision, reason="" if entered else "BELOW_KAPPA", reason_detail="", regime="calm",
        contributions=(), model_version=version, shadow=shadow, config_rev="rev1", cooldown_until=0,
        latency_ns=latency_ns, size_mult=1.0, tp_mult=1.0, sl_mult=1.0, rules_fired=(), quality_flags=0,
    )  # fmt: skip


def _insert_signals(store: Store, run_id: str, signals: list[Signal]) -> None:
    rows = [signal_row(s) for s in signals]
    columns = {name: [r[name] for r in rows] for name in rows[0]}
    columns["run_id"] = [run_id] * len(rows)
    store.insert("signals", columns)


def _canary_world(store: Store, shift: float = 0.0, cand_latency_ns: int = 1_000_000, offset: int = 0) -> str:
    """Insert one scenario's signals (its own run_id); returns the run_id. ``offset`` moves decisions later."""
    run_id = f"r{uuid.uuid4().hex[:10]}"
    signals = []
    for s in range(len(SYMBOLS)):
        mine = SYMBOLS[s] in CANDIDATE_SYMBOLS
        for k in range(K):
            if mine:
                p = float(np.clip(Q[s, k] + shift, 0.0, 1.0))
                signals.append(_signal(s, k + offset, CANDIDATE, p, cand_latency_ns))
            else:
                p = float(np.clip(Q[s, k] + NOISE[s, k], 0.0, 1.0))
                signals.append(_signal(s, k + offset, STABLE, p, 1_200_000))
    _insert_signals(store, run_id, signals)
    return run_id


@pytest.fixture(scope="module")
def server_store(clickhouse_server: ClickHouseServer) -> Iterator[ClickHouseServerStore]:
    store = ClickHouseServerStore(clickhouse_server.host, clickhouse_server.port,
                                  database=f"ro_{uuid.uuid4().hex[:10]}", retry=RetryPolicy(3, 0.05))  # fmt: skip
    store.migrate()
    store.insert("book_top", book_top_rows(_tops(), [f"{VENUE}:{s}" for s in SYMBOLS]))
    yield store
    store.execute(f"DROP DATABASE IF EXISTS {store.database}")
    store.close()


@pytest.fixture(scope="module")
def chdb_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChdbStore]:
    store = ChdbStore(tmp_path_factory.mktemp("chdb") / "store")
    store.migrate()
    store.insert("book_top", book_top_rows(_tops(), [f"{VENUE}:{s}" for s in SYMBOLS]))
    yield store
    store.close()


@pytest.fixture(params=["server", "chdb"])
def store(request: pytest.FixtureRequest) -> Store:
    return request.getfixturevalue(f"{request.param}_store")  # type: ignore[no-any-return]


def _spec(**analysis: object) -> ModelVersionSpec:
    return ModelVersionSpec.model_validate({
        "model": "clf", "artifact": {"uri": "local://m.onnx", "sha256": "0" * 64},
        "featureSignature": {"names": ["x"], "hash": feature_signature_hash(["x"])},
        "rollout": {"strategy": "canary", "steps": [{"weightPct": 50, "pauseSeconds": 60}],
                    "analysis": {"minSamples": 500, **analysis}},
    })  # fmt: skip


def _at(ns: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)


def _state(start_ns: int = T0) -> RolloutState:
    return RolloutState(ModelVersionPhase.CANARY, CANDIDATE, STABLE, step=0, weight_pct=50.0,
                        step_started_at=_at(start_ns))  # fmt: skip


OFFLINE = OfflineCalibration.from_outcomes(
    (RNG.random(200_000) < (q := RNG.uniform(0.2, 0.8, 200_000))).astype(float), q
)


def _verdict(store: Store, run_id: str, *, end_ns: int = END, **analysis: object):  # type: ignore[no-untyped-def]
    return run_analysis(store, _spec(**analysis), _state(), _at(end_ns), run_id=run_id, offline=OFFLINE,
                        horizon_ns=H)  # fmt: skip


# ------------------------------------------------------------------------------------------------------ tests


def _plain_label(tops: list[tuple[int, float]], t: int, until: int) -> tuple[float, float, float]:
    """The label by a plain loop: as-of mids at t and t + h; NaN unless a top at or after t + h was seen."""
    seen = [(ts, m) for ts, m in tops if ts <= until]
    before = [m for ts, m in seen if ts <= t]
    after = [m for ts, m in seen if ts <= t + H]
    if not before or not any(ts >= t + H for ts, _ in seen):
        return float("nan"), float("nan"), float("nan")
    m0, m1 = before[-1], after[-1]
    return m0, m1, float(np.sign(m1 - m0))


def test_read_window_returns_the_expected_arrays(store: Store) -> None:
    """A small case: 6 canary decisions, 6 stable decisions with the candidate also as a shadow, checked row
    by row against labels computed by a plain loop (the last two are not matured at the window's end)."""
    run_id = f"small{uuid.uuid4().hex[:8]}"
    canary = [_signal(0, k, CANDIDATE, float(Q[0, k]), 1_000_000 + k) for k in range(6)]
    stable = [_signal(2, k, STABLE, float(Q[2, k]), 2_000_000, shadow=(("clf-v3", float(1 - Q[2, k])),))
              for k in range(6)]  # fmt: skip
    _insert_signals(store, run_id, canary + stable)
    end = T0 + 5 * H - 1  # [T0, end) holds k = 0..4; k = 4 needs the top at T0 + 5h, not seen by `end`
    cand, st = read_window(store, candidate=CANDIDATE, stable=STABLE, start_ns=T0, end_ns=end, horizon_ns=H,
                           run_id=run_id)  # fmt: skip
    for sample, s, sigs in ((cand, 0, canary), (st, 2, stable)):
        tops = [(T0 + i * H, float(MIDS[s, i])) for i in range(K + 1)]
        expected = [_plain_label(tops, sig.exchange_ts, end) for sig in sigs[:5]]
        np.testing.assert_array_equal(sample.p_up, [sig.p_up for sig in sigs[:5]])
        np.testing.assert_array_equal(sample.label, [e[2] for e in expected])
        np.testing.assert_array_equal(sample.acted, [sig.decision != "skip" for sig in sigs[:5]])
        np.testing.assert_allclose(sample.latency_ms, [sig.latency_ns / 1e6 for sig in sigs[:5]])
        sides = [1.0 if sig.decision == "enter-long" else -1.0 if sig.decision == "enter-short" else
                 (1.0 if sig.p_up >= 0.5 else -1.0) for sig in sigs[:5]]  # fmt: skip
        np.testing.assert_array_equal(sample.side, sides)
        pnl = [sd * (e[1] - e[0]) / e[0] - 1.0 / 10_000 for sd, e, sig in zip(sides, expected, sigs[:5], strict=True)
               if sig.decision != "skip" and np.isfinite(e[2])]  # fmt: skip
        if pnl:
            assert sample.pnl is not None
            np.testing.assert_allclose(sample.pnl, pnl)
        else:
            assert sample.pnl is None
    assert np.isnan(cand.label[-1]) and np.isfinite(cand.label[:-1]).all()  # k = 4 has not matured at `end`
    # the shadow clf-v3 rides on the stable's rows: its own p, the stable's entries, the same rows as stable
    sh, st2 = read_window(store, candidate="clf-v3", stable=STABLE, start_ns=T0, end_ns=end, horizon_ns=H,
                          run_id=run_id)  # fmt: skip
    np.testing.assert_array_equal(sh.p_up, [1 - Q[2, k] for k in range(5)])
    np.testing.assert_array_equal(sh.label, st2.label)
    np.testing.assert_array_equal(sh.acted, st2.acted)
    np.testing.assert_array_equal(sh.side, np.where(sh.p_up >= 0.5, 1.0, -1.0))


def test_a_truly_better_candidate_passes(store: Store) -> None:
    v = _verdict(store, _canary_world(store))
    assert v.verdict is Verdict.PASS, v.reason
    assert v.n_candidate == 2 * K and v.n_stable == 2 * K and v.n_matured == 2 * K
    res = {r.metric: r for r in v.results}
    assert res["brier"].candidate < res["brier"].stable  # type: ignore[operator]
    assert abs(res["calibration_drift_pp"].candidate) < 5  # type: ignore[arg-type]
    assert res["pnl_vs_stable_per_risk"].candidate is not None


def test_a_miscalibrated_candidate_fails_on_calibration_drift(store: Store) -> None:
    v = _verdict(store, _canary_world(store, shift=0.15))
    assert v.verdict is Verdict.FAIL
    failed = {r.metric: r for r in v.failed}
    assert "calibration_drift_pp" in failed and failed["calibration_drift_pp"].candidate > 10  # type: ignore[operator]
    assert "calibration_drift_pp" in v.reason


def test_a_slow_candidate_fails_on_latency(store: Store) -> None:
    v = _verdict(store, _canary_world(store, cand_latency_ns=15_000_000))  # 3 × the 5 ms ceiling
    assert v.verdict is Verdict.FAIL
    assert [r.metric for r in v.failed] == ["latency_p99_ms"]
    assert v.failed[0].candidate == pytest.approx(15.0)


def test_too_few_samples_is_inconclusive(store: Store) -> None:
    run_id = _canary_world(store)
    v = _verdict(store, run_id, end_ns=T0 + 200 * H)  # 400 candidate decisions < minSamples 500
    assert v.verdict is Verdict.INCONCLUSIVE
    assert v.reason == "candidate n=400 < min_samples=500"


def test_unmatured_labels_keep_label_metrics_pending(store: Store) -> None:
    """Decisions after the last book top: nothing has matured, latency is judged, label metrics wait."""
    run_id = _canary_world(store, offset=K + 10)
    end = T0 + (2 * K + 20) * H
    v = run_analysis(store, _spec(), _state(T0 + (K + 10) * H), _at(end), run_id=run_id, offline=OFFLINE,
                     horizon_ns=H)  # fmt: skip
    assert v.verdict is Verdict.INCONCLUSIVE and v.n_matured == 0
    assert [r.metric for r in v.results] == ["latency_p99_ms"]
    assert any(p.startswith("brier: 0 matured labels") for p in v.pending)
    assert any(p.startswith("calibration_drift_pp") for p in v.pending)


def test_strategies_and_run_filters_select_rows(store: Store) -> None:
    run_id = _canary_world(store)
    cand, _ = read_window(store, candidate=CANDIDATE, stable=STABLE, start_ns=T0, end_ns=END, horizon_ns=H,
                          run_id=run_id, strategies=["other"])  # fmt: skip
    assert cand.n == 0
    cand, _ = read_window(store, candidate=CANDIDATE, stable=STABLE, start_ns=T0, end_ns=END, horizon_ns=H,
                          run_id=run_id, strategies=["usdm-multi"])  # fmt: skip
    assert cand.n == 2 * K
    with pytest.raises(ValueError, match="not a valid name"):
        read_window(store, candidate="x' OR 1=1 --", stable=STABLE, start_ns=T0, end_ns=END, horizon_ns=H)
    assert dataclasses.is_dataclass(cand)
