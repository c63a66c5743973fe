"""The training report: every PNG decodes to a real image, the HTML carries the data (escaped), edge cases render,
the output is deterministic, and no pyplot is involved."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.unit.workloads.report_checks import assert_pngs
from tradeplane.engine import metrics
from tradeplane.workloads.training.report import (
    PLOTS,
    TOP_FEATURES,
    FoldRow,
    ReportData,
    importance_shares,
    write_report,
)

DAY_NS = 86_400 * 10**9
T0_NS = 1_717_200_000 * 10**9  # 2024-06-01T00:00:00Z


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def _report_data(seed: int = 0, n_folds: int = 5, n_trials: int = 25, n_features: int = 30) -> ReportData:
    rng = np.random.default_rng(seed)

    def sample(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        z = rng.normal(size=n)
        y = (rng.random(n) < _sigmoid(z - 0.8)).astype(np.float64)
        raw = _sigmoid(1.7 * z - 1.0)
        calibrated = np.round(_sigmoid(z - 0.8), 2)  # rounded: ties, as isotonic calibration gives
        baseline = _sigmoid(0.5 * z - 0.8 + rng.normal(0, 0.5, n))
        return y, raw, calibrated, baseline

    y, raw, cal, base = sample(3000)
    y_ho, _, p_ho, _ = sample(800)
    folds = []
    for k in range(n_folds):
        part = slice(k * 3000 // n_folds, (k + 1) * 3000 // n_folds)
        m, b = ({"pr_auc": metrics.pr_auc(y[part], p[part]), "roc_auc": metrics.roc_auc(y[part], p[part]),
                 "brier": metrics.brier(y[part], p[part]), "base_rate": float(y[part].mean())}
                for p in (cal, base))  # fmt: skip
        test_start = T0_NS + (k + 5) * DAY_NS
        folds.append(FoldRow(k, T0_NS, test_start, test_start, test_start + DAY_NS, 1000 * (k + 5), 600, m, b))
    search = [
        {
            "trial": i,
            "objective": float(0.1 + 0.05 * np.tanh(i / 8) + rng.normal(0, 0.01)),
            "params": {"num_leaves": int(rng.integers(8, 128)), "learning_rate": float(rng.uniform(0.01, 0.2))},
            "pr_auc": float(rng.uniform(0.3, 0.45)),
        }
        for i in range(n_trials)
    ]
    rng.shuffle(search)  # the report sorts by trial number
    return ReportData(
        title="ofi-lgbm v3 — BTCUSDT 1m, triple-barrier H=30",
        y_oof=y,
        p_oof_raw=raw,
        p_oof=cal,
        p_oof_baseline=base,
        y_holdout=y_ho,
        p_holdout=p_ho,
        feature_names=[f"feat_{i:02d}_{'ofi' if i % 2 else 'spread'}" for i in range(n_features)],
        importance_gain=rng.gamma(1.0, 10.0, n_features),
        folds=folds,
        summary={
            "out-of-fold": {"pr_auc": 0.123456, "roc_auc": 0.7, "brier": float("nan"), "n": 3000},
            "hold-out": {"pr_auc": 0.4567891, "big": 12345.678},
            "baseline (out-of-fold)": {"pr_auc": 0.3},
        },
        search=search,
        lineage={"files": [{"path": "data/btc <1m>.parquet", "sha256": "ab" * 32}], "code": "cfee5b0"},
        contributions_example=[[("feat_01_ofi", 0.31), ("feat_02_spread", -0.125)], [("feat_03_ofi", -0.2)]],
    )


def _section(page: str, heading: str) -> str:
    match = re.search(rf"<h2>{re.escape(heading)}</h2>(.*?)</section>", page, re.S)
    assert match, heading
    return match.group(1)


def _body_rows(section: str) -> list[str]:
    body = re.search(r"<tbody>(.*?)</tbody>", section, re.S)
    return re.findall(r"<tr[ >].*?</tr>", body.group(1), re.S) if body else []


def _assert_pngs(paths: dict[str, Path]) -> None:
    assert_pngs(paths, PLOTS, min_height=250, min_width=500, min_std=0.05)


def test_write_report_writes_five_decodable_pngs_and_the_html(tmp_path: Path) -> None:
    data = _report_data()
    paths = write_report(tmp_path / "report", data)
    assert set(paths) == {"html", *PLOTS}
    assert paths["html"] == tmp_path / "report" / "report.html"
    _assert_pngs(paths)
    page = paths["html"].read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert "<link" not in page and "<script" not in page and "http" not in page  # self-contained
    for key in PLOTS:
        assert f'<img src="{key}.png" alt=' in page
    assert data.title in page and f"<title>{data.title}</title>" in page


def test_html_carries_summary_importance_folds_trials_contributions_and_lineage(tmp_path: Path) -> None:
    data = _report_data()
    page = write_report(tmp_path, data)["html"].read_text(encoding="utf-8")

    summary = _section(page, "Summary")
    for text in ("0.1235", "0.4568", "1.235e+04", "3000", "0.7", "—", "baseline (out-of-fold)"):
        assert f"<td>{text}</td>" in summary or f"<th>{text}</th>" in summary, text
    assert "0.123456" not in summary

    importance = _section(page, "Feature importance")
    order = np.argsort(-data.importance_gain, kind="stable")
    top = [data.feature_names[i] for i in order[:TOP_FEATURES]]
    rows = _body_rows(importance)
    assert len(rows) == TOP_FEATURES
    for rank, (row, name) in enumerate(zip(rows, top, strict=True), start=1):
        assert f"<td>{rank}</td><td>{name}</td>" in row
    assert data.feature_names[order[-1]] not in importance  # the smallest is not in the top 20 of 30

    folds = _section(page, "Walk-forward folds")
    assert len(_body_rows(folds)) == len(data.folds)
    assert "<td>2024-06-01T00:00:00Z</td><td>2024-06-06T00:00:00Z</td>" in folds
    first = data.folds[0]
    for key in ("pr_auc", "roc_auc", "brier"):
        assert f"<td>{first.metrics[key]:.4g}</td><td>{first.baseline_metrics[key]:.4g}</td>" in folds

    trials = _section(page, "Search trials")
    rows = _body_rows(trials)
    assert len(rows) == len(data.search)
    numbers = [int(re.findall(r"<td>(.*?)</td>", r)[1]) for r in rows]
    assert numbers == sorted(numbers)
    best = max(data.search, key=lambda t: t["objective"])
    best_rows = [r for r in rows if '<tr class="best">' in r]
    assert len(best_rows) == 1 and f"<td>{best['trial']}</td><td>{best['objective']:.4g}</td>" in best_rows[0]

    contributions = _section(page, "Contribution examples (hold-out)")
    assert "Example 2" in contributions and "+0.31" in contributions and "-0.125" in contributions

    lineage = _section(page, "Lineage")
    assert "data/btc &lt;1m&gt;.parquet" in lineage and "ab" * 32 in lineage


def test_every_string_is_escaped(tmp_path: Path) -> None:
    evil = "<script>alert('x')</script>"
    data = dataclasses.replace(
        _report_data(n_features=3),
        title=f"model {evil} $5 & more",
        feature_names=[evil, "b&c", "d\"e'"],
        summary={evil: {evil: 1.0}},
        search=[{"trial": 0, "objective": 1.0, "params": {evil: evil}, evil: evil}],
        contributions_example=[[(evil, 1.0)]],
        lineage={evil: evil},
    )
    paths = write_report(tmp_path, data)
    page = paths["html"].read_text(encoding="utf-8")
    assert "<script" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "<title>model &lt;script&gt;" in page and "$5 &amp; more" in page
    assert "b&amp;c" in page and "d&quot;e&#x27;" in page
    _assert_pngs(paths)  # "$" in the title and names is not taken for mathtext


def test_minimized_objective_marks_the_smallest_trial(tmp_path: Path) -> None:
    data = dataclasses.replace(_report_data(), objective_direction="minimize")
    page = write_report(tmp_path, data)["html"].read_text(encoding="utf-8")
    best = min(data.search, key=lambda t: t["objective"])
    best_rows = [r for r in _body_rows(_section(page, "Search trials")) if "best" in r]
    assert len(best_rows) == 1 and f"<td>{best['trial']}</td>" in best_rows[0]


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"search": [], "folds": []}, id="no-search-no-folds"),
        pytest.param({"importance_gain": np.full(30, np.nan)}, id="all-nan-importance"),
        pytest.param({"importance_gain": np.zeros(30)}, id="zero-importance"),
        pytest.param({"feature_names": [], "importance_gain": np.array([])}, id="no-features"),
        pytest.param({"y_holdout": np.array([]), "p_holdout": np.array([])}, id="no-hold-out"),
        pytest.param({"y_holdout": np.zeros(50), "p_holdout": np.linspace(0, 1, 50)}, id="hold-out-one-class"),
        pytest.param({"summary": {}, "lineage": {}, "contributions_example": ()}, id="empty-mappings"),
        pytest.param(
            {"search": [{"trial": 0, "objective": float("nan"), "params": {}}, {"objective": 0.2}]}, id="odd-trials"
        ),
    ],
)
def test_edge_cases_render(tmp_path: Path, change: dict[str, object]) -> None:
    data = dataclasses.replace(_report_data(), **change)  # type: ignore[arg-type]
    paths = write_report(tmp_path, data)
    _assert_pngs(paths)
    assert data.title in paths["html"].read_text(encoding="utf-8")


def test_a_nan_fold_metric_renders_as_a_dash(tmp_path: Path) -> None:
    data = _report_data()
    broken = dataclasses.replace(
        data.folds[1],
        metrics={**data.folds[1].metrics, "roc_auc": float("nan"), "pr_auc": float("nan")},
        baseline_metrics={"pr_auc": 0.5},  # and keys missing
    )
    data = dataclasses.replace(data, folds=[data.folds[0], broken, *data.folds[2:]])
    paths = write_report(tmp_path, data)
    _assert_pngs(paths)
    rows = _body_rows(_section(paths["html"].read_text(encoding="utf-8"), "Walk-forward folds"))
    assert len(rows) == len(data.folds)
    assert rows[1].count("<td>—</td>") >= 4


def test_output_is_deterministic(tmp_path: Path) -> None:
    first = write_report(tmp_path / "a", _report_data())
    second = write_report(tmp_path / "b", _report_data())
    for key in first:
        assert first[key].read_bytes() == second[key].read_bytes(), key


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"p_oof": np.zeros(5)}, "p_oof has shape"),
        ({"y_holdout": np.full(800, 2.0)}, "only 0 and 1"),
        ({"p_holdout": np.full(800, np.nan)}, "finite"),
        ({"importance_gain": np.ones(3)}, "importance_gain"),
        ({"objective_direction": "up"}, "objective_direction"),
    ],
)
def test_inconsistent_input_raises_before_writing(tmp_path: Path, change: dict[str, object], message: str) -> None:
    data = dataclasses.replace(_report_data(), **change)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        write_report(tmp_path / "out", data)
    assert not (tmp_path / "out").exists()


def test_importance_shares_are_normalized_top_first() -> None:
    names = ["a", "b", "c", "d"]
    assert importance_shares(names, [1.0, np.nan, 3.0, 0.0]) == pytest.approx([("c", 0.75), ("a", 0.25), ("b", 0.0), ("d", 0.0)])  # fmt: skip
    assert importance_shares(names, [1.0, 2.0, 3.0, 4.0], top=2) == pytest.approx([("d", 0.4), ("c", 0.3)])
    assert importance_shares(names, [np.nan] * 4) == []


def test_no_pyplot_is_imported() -> None:
    code = (
        "import sys, tempfile, pathlib\n"
        "from tests.unit.workloads.test_training_report import _report_data\n"
        "from tradeplane.workloads.training.report import write_report\n"
        "write_report(pathlib.Path(tempfile.mkdtemp()), _report_data(n_folds=2, n_trials=3))\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n"
    )
    root = Path(__file__).resolve().parents[3]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, timeout=120)
