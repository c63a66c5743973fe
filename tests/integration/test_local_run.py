"""`tradeplane run` end to end: real ONNX models trained by the research pipeline, the desk runtime, the
in-process bus, embedded chDB, the audit log and the report — and backtest–live parity on a real capture.

What is compared, and against what:
- the store against the run's own in-memory records (nothing lost or altered between desk and table);
- the local run against the backtester running the same DeskRuntime on the same events (parity);
- a Ctrl-C stop: everything published before the stop is in the store and the report is written.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import yaml

from tradeplane.engine.sim.runner import run_backtest
from tradeplane.workloads.audit import read_audit
from tradeplane.workloads.local.manifests import ManifestError, load_desk
from tradeplane.workloads.local.runner import RunConfig, backtest_config, build_desk, market_data, run_local
from tradeplane.workloads.store.chdb_store import ChdbStore

from .conftest import usdm_only

REPO = Path(__file__).resolve().parents[2]


def _store_rows(home: Path, table: str, run_id: str, order: str = "ts") -> dict[str, np.ndarray]:
    with ChdbStore(home / "store") as store:
        return store.query(f"SELECT * FROM {table} WHERE run_id = '{run_id}' ORDER BY {order}")


def test_synthetic_run_stores_every_record_and_writes_the_report(trained: tuple[Path, Path]) -> None:
    home, manifests = trained
    summary = run_local(RunConfig(manifests=(manifests,), seconds=240, seed=11, home=home, run_id="synth"))
    assert not summary.stopped
    assert summary.decisions > 1000
    signals = _store_rows(home, "signals", "synth", "infer_ts, strategy, symbol")
    assert signals["signal_id"].shape[0] == summary.decisions
    # every skip is a rejection with the same reason; every entry has an intent row
    rejections = _store_rows(home, "rejections", "synth")
    decision_rej = rejections["reason"][rejections["stage"] == "decision"]
    skipped = signals["reason"][signals["decision"] == "skip"]
    assert sorted(decision_rej.tolist()) == sorted(skipped.tolist())
    intents = _store_rows(home, "intents", "synth")
    assert intents["intent_id"].shape[0] == summary.entries
    fills = _store_rows(home, "fills", "synth")
    assert fills["qty"].shape[0] == summary.fills
    # the audit log holds one record per signal, and the audit table the same ones
    audit = list(read_audit(summary.out / "audit.jsonl"))
    assert len(audit) == summary.decisions
    assert {a["signal_id"] for a in audit} == set(signals["signal_id"].tolist())
    # every signal carries the configuration revision of its strategy, and the shadow model's score
    desk = load_desk([manifests])
    from tradeplane.engine.decision.config import config_rev

    revs = {name: config_rev(spec) for name, spec in desk.strategies.items()}
    assert {(s, r) for s, r in zip(signals["strategy"], signals["config_rev"], strict=True)} == set(revs.items())
    scored = signals["model_version"] == "ofi-lgbm-v1"
    assert scored.any()
    assert all(list(v) == ["ofi-lgbm-v2"] for v in signals["shadow_versions"][scored])
    # the stable model's decisions carry their top-5 feature contributions, named by its signature
    names = set(desk.models["ofi-lgbm-v1"].feature_signature.names)  # type: ignore[union-attr]
    tops = signals["contribution_names"][scored]
    assert all(len(t) == 5 and set(t) <= names for t in tops)
    # and a 90 % interval around p_up from the artifact's interval.json (NaN only where no model scored)
    lo, p, hi = signals["p_low"][scored], signals["p_up"][scored], signals["p_high"][scored]
    assert np.all((lo <= p) & (p <= hi) & (lo >= 0) & (hi <= 1)) and np.all(hi - lo > 0)
    for name in ("report.html", "equity.png", "calibration.png", "latency.png", "rejections.png", "run.json"):
        assert (summary.out / name).stat().st_size > 0, name


def test_local_run_matches_the_backtest_on_a_real_capture(trained: tuple[Path, Path], shared_dir: Path) -> None:
    """Parity: the same desk over the same recorded data through the local runner (bus, codec, store) and
    through the backtester yields identical decisions and fills."""
    home, manifests = trained
    capture = shared_dir / "data" / "binance" / "ws" / "usdm_btcusdt_20240808.jsonl.gz"
    only_usdm = usdm_only(manifests)
    cfg = RunConfig(manifests=(only_usdm,), source="files", files=(capture,), home=home, run_id="parity",
                    report=False)  # fmt: skip
    local = run_local(cfg, clock=lambda: 0)
    # the backtester: the same engine objects, no bus, no store
    desk, instruments, _ = build_desk(load_desk([only_usdm]), home, initial_balance=cfg.initial_balance)
    data = market_data(cfg, instruments)
    run_backtest(data.events, desk, backtest_config(desk, instruments, initial_balance=cfg.initial_balance, seed=0))
    ref = desk.outbox
    assert local.decisions == len(ref.signals) > 1000
    stored = _store_rows(home, "signals", "parity", "infer_ts, symbol")
    assert stored["signal_id"].tolist() == [s.id for s in ref.signals]
    assert stored["decision"].tolist() == [s.decision for s in ref.signals]
    assert stored["reason"].tolist() == [s.reason for s in ref.signals]
    np.testing.assert_array_equal(stored["p_up"], [s.p_up for s in ref.signals])
    fills = _store_rows(home, "fills", "parity", "ts, client_order_id, trade_id")
    ref_fills = sorted(ref.fills, key=lambda r: (r["ts"], r["client_order_id"], r["trade_id"]))
    assert fills["client_order_id"].tolist() == [r["client_order_id"] for r in ref_fills]
    np.testing.assert_array_equal(fills["qty"], [r["qty"] for r in ref_fills])
    np.testing.assert_array_equal(fills["price"], [r["price"] for r in ref_fills])


def test_a_stop_request_ends_the_run_cleanly_and_keeps_what_ran(trained: tuple[Path, Path]) -> None:
    home, manifests = trained
    stop = threading.Event()
    seen: list[str] = []

    def progress(message: str) -> None:
        seen.append(message)
        if message.startswith("t+"):
            stop.set()  # the first progress line: "Ctrl-C" while the run is in full swing

    summary = run_local(RunConfig(manifests=(manifests,), seconds=3600, seed=5, home=home, run_id="stopped"),
                        progress=progress, stop=stop)  # fmt: skip
    assert summary.stopped
    assert summary.decisions > 0
    signals = _store_rows(home, "signals", "stopped")
    assert signals["signal_id"].shape[0] == summary.decisions  # flushed on the way out
    assert (summary.out / "report.html").exists()


def test_invalid_manifests_fail_before_running_naming_the_field(tmp_path: Path, trained: tuple[Path, Path]) -> None:
    home, manifests = trained
    bad = tmp_path / "desk"
    bad.mkdir()
    for f in manifests.glob("*.yaml"):
        (bad / f.name).write_text(f.read_text())
    strategy = next(f for f in bad.glob("*.yaml") if "usdm" in f.name)
    strategy.write_text(strategy.read_text().replace("tau: 0.62", "tau: 1.7"))
    with pytest.raises(ManifestError, match=r"spec\.decision\.tau"):
        run_local(RunConfig(manifests=(bad,), seconds=10, home=home, run_id="bad"))
    model = next(f for f in bad.glob("*modelversion-v1.yaml"))
    strategy.write_text(strategy.read_text().replace("tau: 1.7", "tau: 0.62"))
    doc = yaml.safe_load(model.read_text())
    doc["spec"]["artifact"]["sha256"] = "0" * 64
    model.write_text(yaml.safe_dump(doc))
    with pytest.raises(ManifestError, match=r"spec\.artifact\.sha256"):
        run_local(RunConfig(manifests=(bad,), seconds=10, home=home, run_id="bad"))


def test_editing_the_manifests_while_running_applies_the_kill_switch_and_a_new_tau(
    tmp_path: Path, trained: tuple[Path, Path]
) -> None:
    """Hot configuration through the files: the runner re-reads changed manifests; the halt reaches the desk at
    the next batch and the new τ gives every later signal the new config_rev."""
    home, manifests = trained
    desk_dir = tmp_path / "desk"
    desk_dir.mkdir()
    for f in manifests.glob("*.yaml"):
        (desk_dir / f.name).write_text(f.read_text())
    budget = desk_dir / "00-riskbudget.yaml"
    strategy = desk_dir / "21-strategy-btc-usdm.yaml"
    edited = {"done": False}

    def progress(message: str) -> None:
        if message.startswith("t+") and not edited["done"]:
            edited["done"] = True
            budget.write_text(budget.read_text().replace("halt: false", "halt: true"))
            strategy.write_text(strategy.read_text().replace("tau: 0.62", "tau: 0.7"))

    cfg = RunConfig(manifests=(desk_dir,), seconds=600, seed=9, home=home, run_id="hot", report=False,
                    reload_every_s=0.0)  # fmt: skip
    summary = run_local(cfg, progress=progress)
    assert edited["done"]
    events = _store_rows(home, "risk_events", "hot")
    halts = [i for i, r in enumerate(events["reason"]) if r == "KILL_SWITCH"]
    assert halts, events
    halted_at = int(events["ts"][halts[0]].astype("datetime64[ns]").astype(np.int64))
    orders = _store_rows(home, "orders", "hot")
    sent_after = [t for t, s in zip(orders["send_ts"], orders["status"], strict=True) if s == "NEW" and t > halted_at]
    assert sent_after == []
    signals = _store_rows(home, "signals", "hot", "infer_ts")
    usdm = signals["strategy"] == "usdm-btc"
    revs = list(dict.fromkeys(signals["config_rev"][usdm].tolist()))
    assert len(revs) == 2  # the old revision, then the new one from the next tick on
    late = signals["infer_ts"][usdm] > halted_at
    assert set(signals["config_rev"][usdm][late].tolist()) == {revs[1]}
    assert summary.decisions == signals["signal_id"].shape[0]
