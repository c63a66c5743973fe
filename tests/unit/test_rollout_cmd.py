"""`tradeplane rollout` against a local run's home (the cluster path is covered by
tests/integration/test_operator_rollout.py): status from the state file, commands queued as command files,
exit codes for unknown versions and bad usage."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from typer.testing import CliRunner

from tradeplane.api.v1alpha1.modelversion import ModelVersionPhase
from tradeplane.cli import app
from tradeplane.engine.rollout import HistoryEntry, MetricResult, RolloutState, status_patch
from tradeplane.workloads.rollout.local import command_path, state_path

runner = CliRunner()
T0 = datetime(2025, 1, 1, 12, tzinfo=UTC)


def _state(phase: ModelVersionPhase = ModelVersionPhase.CANARY) -> dict[str, object]:
    s = RolloutState(phase, "clf-v2", "clf-v1", step=1, weight_pct=20.0, step_started_at=T0, last_analysis_at=T0,
                     history=(HistoryEntry(ModelVersionPhase.CANARY, T0, "rollout started: canary step 1/3"),),
                     analysis=(MetricResult("brier", 0.21, 0.22, 0.25, True, "ok"),
                               MetricResult("ece", 0.08, 0.01, 0.05, False, "ece 0.08 > 0.05")))  # fmt: skip
    return status_patch(s)


def _home(tmp_path: Path, phase: ModelVersionPhase = ModelVersionPhase.CANARY) -> Path:
    path = state_path(tmp_path, "clf-v2")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(_state(phase)))
    return tmp_path


def test_status_prints_phase_step_weight_metrics_and_history(tmp_path: Path) -> None:
    home = _home(tmp_path)
    out = runner.invoke(app, ["rollout", "status", "clf-v2", "--home", str(home)])
    assert out.exit_code == 0, out.output
    assert "phase:       Canary" in out.output and "step:        2" in out.output and "20 %" in out.output
    assert "brier" in out.output and "NO" in out.output and "0.08" in out.output
    assert "rollout started: canary step 1/3" in out.output and "stable:      clf-v1" in out.output
    js = runner.invoke(app, ["rollout", "status", "clf-v2", "--home", str(home), "-o", "json"])
    assert json.loads(js.output)["weightPct"] == 20.0


def test_commands_queue_a_command_file_for_the_local_loop(tmp_path: Path) -> None:
    home = _home(tmp_path)
    for action in ("promote", "abort", "retry"):
        out = runner.invoke(app, ["rollout", action, "clf-v2", "--home", str(home)])
        assert out.exit_code == 0, out.output
        doc = json.loads(command_path(home, "clf-v2").read_text())
        assert doc["action"] == action and doc["by"].endswith("(cli)")


def test_wait_reports_the_phase_change_or_times_out(tmp_path: Path) -> None:
    home = _home(tmp_path)

    def local_loop() -> None:  # what `tradeplane run` does with the command file
        time.sleep(0.5)
        command_path(home, "clf-v2").unlink()
        state_path(home, "clf-v2").write_text(json.dumps(_state(ModelVersionPhase.ROLLED_BACK)))

    t = threading.Thread(target=local_loop)
    t.start()
    out = runner.invoke(app, ["rollout", "abort", "clf-v2", "--home", str(home), "--wait", "5"])
    t.join()
    assert out.exit_code == 0, out.output
    assert "phase Canary → RolledBack" in out.output
    slow = runner.invoke(app, ["rollout", "promote", "clf-v2", "--home", str(home), "--wait", "0.5"])
    assert slow.exit_code == 1 and "still RolledBack" in slow.output


def test_unknown_versions_and_bad_usage_exit_2(tmp_path: Path) -> None:
    home = _home(tmp_path)
    out = runner.invoke(app, ["rollout", "status", "clf-v7", "--home", str(home)])
    assert out.exit_code == 2 and "no local rollout of clf-v7" in out.output
    out = runner.invoke(app, ["rollout", "abort", "clf-v7", "--home", str(home)])
    assert out.exit_code == 2 and not command_path(home, "clf-v7").exists()
    assert runner.invoke(app, ["rollout", "status", "clf-v2", "--home", str(home), "-o", "xml"]).exit_code == 2
    assert runner.invoke(app, ["rollout", "frobnicate", "clf-v2"]).exit_code == 2


def test_an_unreachable_api_server_exits_1(tmp_path: Path, monkeypatch: object) -> None:
    import pytest

    mp = pytest.MonkeyPatch()
    try:
        mp.setenv("KUBECONFIG", str(tmp_path / "missing-kubeconfig"))
        mp.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        out = runner.invoke(app, ["rollout", "status", "clf-v2", "-n", "desk"])
    finally:
        mp.undo()
    assert out.exit_code == 1 and "cannot reach the Kubernetes API" in out.output
