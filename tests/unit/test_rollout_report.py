"""engine/rollout/report: successive analysis verdicts → report rows (exact values), the bounded history, the
JSON round trip and the Markdown a person reads; and `tradeplane rollout report --home` printing it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tradeplane.api.v1alpha1.modelversion import ModelVersionPhase, RolloutSpec
from tradeplane.cli import app
from tradeplane.cli.rollout_cmd import REPORT_KEYS, REPORT_SUFFIX
from tradeplane.engine.rollout import (
    AnalysisVerdict,
    MetricResult,
    MetricRow,
    ReportRow,
    RolloutReport,
    Verdict,
    advance,
    append_rows,
    report_row,
    row_for,
    status_patch,
)
from tradeplane.operator.render.rollout_report import REPORT_JSON_KEY, REPORT_MD_KEY, report_config_map_name
from tradeplane.workloads.rollout.local import report_paths, state_path

T0 = datetime(2025, 1, 1, 12, tzinfo=UTC)
SHADOW = ModelVersionPhase.SHADOW


def _verdicts() -> list[AnalysisVerdict]:
    """Three runs of a shadow: too few samples, a pass, then a fail on latency."""
    return [
        AnalysisVerdict(Verdict.INCONCLUSIVE, "candidate n=40 < min_samples=100", n_candidate=40, n_stable=40),
        AnalysisVerdict(
            Verdict.PASS,
            "all 2 thresholds held",
            (
                MetricResult("latency_p99_ms", 1.0, 1.0, 5.0, True, "ok"),
                MetricResult("brier", 0.2, 0.25, 0.25, True, "ok"),
                MetricResult("decision_agreement", 0.75, None, None, True, "info"),
            ),
            n_candidate=150,
            n_stable=150,
            n_matured=120,
        ),
        AnalysisVerdict(
            Verdict.FAIL,
            "latency_p99_ms 15 ms > ceiling 5 ms (stable 1 ms)",
            (
                MetricResult("latency_p99_ms", 15.0, 1.0, 5.0, False, "slow"),
                MetricResult("brier", float("nan"), 0.25, 0.25, True, "ok"),
            ),
            n_candidate=300,
            n_stable=310,
            n_matured=280,
        ),
    ]


def _rows() -> list[ReportRow]:
    return [
        report_row(
            v,
            time=T0 + timedelta(seconds=10 * (i + 1)),
            window=(T0, T0 + timedelta(seconds=10 * (i + 1))),
            phase=SHADOW,
        )
        for i, v in enumerate(_verdicts())
    ]


def test_verdicts_become_exact_rows() -> None:
    rows = _rows()
    assert [(r.verdict, r.window_seconds, r.n_candidate, r.n_stable, r.n_matured) for r in rows] == [
        (Verdict.INCONCLUSIVE, 10.0, 40, 40, 0),
        (Verdict.PASS, 20.0, 150, 150, 120),
        (Verdict.FAIL, 30.0, 300, 310, 280),
    ]
    assert rows[0].metrics == () and rows[0].reason == "candidate n=40 < min_samples=100"
    assert rows[1].metrics == (
        MetricRow("latency_p99_ms", 1.0, 1.0, 0.0, 5.0, True),
        MetricRow("brier", 0.25, 0.2, pytest.approx(-0.05), 0.25, True),  # delta = candidate − stable
        MetricRow("decision_agreement", None, 0.75, None, None, True),  # no stable value: no delta
    )
    assert rows[2].metrics == (
        MetricRow("latency_p99_ms", 1.0, 15.0, 14.0, 5.0, False),
        MetricRow("brier", 0.25, None, None, 0.25, True),  # NaN reported as missing
    )
    assert rows[2].failing == ("latency_p99_ms",) and rows[2].time == T0 + timedelta(seconds=30)


def test_row_for_takes_the_window_the_analysis_read_and_the_phase_after() -> None:
    spec = RolloutSpec.model_validate({"strategy": "canary", "steps": [{"weightPct": 10, "pauseSeconds": 60}],
                                       "analysis": {"intervalSeconds": 30, "maxConsecutiveFailures": 1}})  # fmt: skip
    before = advance(spec, None, T0, candidate="clf-v2", stable="clf-v1").state
    now = T0 + timedelta(seconds=30)
    slow = _verdicts()[2]
    after = advance(spec, before, now, verdict=slow).state
    row = row_for(before, after, slow, now)
    assert (row.window_start, row.window_end, row.time) == (T0, now, now)
    assert row.phase is ModelVersionPhase.ROLLED_BACK and row.verdict is Verdict.FAIL


def test_the_history_is_bounded_and_round_trips_through_json() -> None:
    rows = _rows()
    assert append_rows(rows[:2], rows[2:], limit=2) == (rows[1], rows[2])  # the oldest goes first
    with pytest.raises(ValueError, match="limit"):
        append_rows(rows, (), limit=0)
    report = RolloutReport("clf-v5", "clf-v1", "shadow", limit=2)
    for r in rows:
        report = report.with_row(r)
    assert report.rows == (rows[1], rows[2])
    doc = json.loads(json.dumps(report.to_json()))
    assert RolloutReport.from_json(doc) == report
    assert doc["rows"][1]["metrics"][0] == {"metric": "latency_p99_ms", "stable": 1.0, "candidate": 15.0,
                                             "delta": 14.0, "threshold": 5.0, "passed": False}  # fmt: skip
    assert doc["rows"][1]["windowStart"] == "2025-01-01T12:00:00Z" and doc["rows"][1]["phase"] == "Shadow"
    with pytest.raises(ValueError, match="not a rollout report"):
        RolloutReport.from_json({"rows": []})
    long = AnalysisVerdict(Verdict.FAIL, "x" * 1000)
    assert len(report_row(long, time=T0, window=(T0, T0)).reason) == 400
    with pytest.raises(ValueError, match="before it starts"):
        report_row(long, time=T0, window=(T0, T0 - timedelta(seconds=1)))


def test_markdown_has_one_line_per_analysis_and_a_table_per_metric() -> None:
    report = RolloutReport("clf-v5", "clf-v1", "shadow", tuple(_rows()))
    md = report.markdown()
    assert md.startswith("# Rollout report: clf-v5 (shadow) against stable clf-v1\n")
    assert "3 analyses from 2025-01-01T12:00:10Z to 2025-01-01T12:00:30Z" in md and "Latest: **Fail**" in md
    assert "| 1 | 2025-01-01T12:00:10Z | 10 | 40 | 40 | 0 | Inconclusive | Shadow | – |" in md
    assert "| 3 | 2025-01-01T12:00:30Z | 30 | 300 | 310 | 280 | Fail | Shadow | latency_p99_ms |" in md
    assert "- #1 Inconclusive: candidate n=40 < min_samples=100" in md
    assert "## latency_p99_ms" in md and "| 2 | 2025-01-01T12:00:20Z | 1 | 1 | +0 | 5 | pass |" in md
    assert "| 3 | 2025-01-01T12:00:30Z | 1 | 15 | +14 | 5 | **FAIL** |" in md
    assert "| 2 | 2025-01-01T12:00:20Z | 0.25 | 0.2 | -0.05 | 0.25 | pass |" in md  # brier
    assert "| 2 | 2025-01-01T12:00:20Z | – | 0.75 | – | – | info |" in md  # decision_agreement
    assert [line for line in md.splitlines() if line.startswith("## ")] == [
        "## Analyses", "## latency_p99_ms", "## brier", "## decision_agreement"]  # fmt: skip
    assert "No analysis has run yet" in RolloutReport("clf-v5", None, "shadow").markdown()


def test_cli_report_prints_the_local_report(tmp_path: Path) -> None:
    runner = CliRunner()
    state = advance(RolloutSpec.model_validate({"strategy": "shadow"}), None, T0, candidate="clf-v5",
                    stable="clf-v1").state  # fmt: skip
    path = state_path(tmp_path, "clf-v5")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(status_patch(state)))
    missing = runner.invoke(app, ["rollout", "report", "clf-v5", "--home", str(tmp_path)])
    assert missing.exit_code == 2 and "no analysis has run" in missing.output
    report = RolloutReport("clf-v5", "clf-v1", "shadow", tuple(_rows()))
    json_path, md_path = report_paths(tmp_path, "clf-v5")
    json_path.write_text(json.dumps(report.to_json()))
    md_path.write_text(report.markdown())
    out = runner.invoke(app, ["rollout", "report", "clf-v5", "--home", str(tmp_path)])
    assert out.exit_code == 0, out.output
    assert out.output == report.markdown()
    js = runner.invoke(app, ["rollout", "report", "clf-v5", "--home", str(tmp_path), "--format", "json"])
    assert js.exit_code == 0 and RolloutReport.from_json(json.loads(js.output)) == report
    bad = runner.invoke(app, ["rollout", "report", "clf-v5", "--home", str(tmp_path), "--format", "html"])
    assert bad.exit_code == 2
    unknown = runner.invoke(app, ["rollout", "report", "clf-nope", "--home", str(tmp_path)])
    assert unknown.exit_code == 2 and "no local rollout of clf-nope" in unknown.output
    # the cluster path reads the ConfigMap the operator writes: the same name and keys on both sides
    assert report_config_map_name("clf-v5") == "clf-v5" + REPORT_SUFFIX
    assert set(REPORT_KEYS.values()) == {REPORT_JSON_KEY, REPORT_MD_KEY}
