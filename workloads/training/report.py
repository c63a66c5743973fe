"""The training report: one self-contained ``report.html`` and five PNG plots next to it.

The training job hands over plain arrays and dicts (:class:`ReportData`); :func:`write_report` draws

- ``calibration.png``: reliability diagram over decile (quantile) buckets of raw OOF, calibrated OOF and hold-out
  probabilities against the diagonal, with the distribution of the probabilities below;
- ``pr_curve.png``: OOF precision-recall curves of the calibrated model and the logistic baseline, the hold-out
  curve and the base rates;
- ``importance.png``: the 20 largest LightGBM gain importances, as shares of the total gain;
- ``folds.png``: PR-AUC and ROC-AUC per walk-forward fold, model against baseline, with each fold's base rate;
- ``search.png``: the search objective by trial with the running best;

and writes the HTML around them (summary tables, folds, trials, contribution examples, lineage). Plots use
matplotlib's object-oriented API (``Figure`` on the Agg canvas, never pyplot, so no global figure state and no
display backend). The output holds no timestamp of the run itself; only the search table's trial
durations vary between runs.
"""

from __future__ import annotations

import html
import json
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from matplotlib.figure import Figure

from tradeplane import __version__
from tradeplane.engine.metrics import FloatArray, calibration_table, pr_auc, precision_recall_curve
from tradeplane.workloads.reporting import CSS, html_table, iso_ns, new_figure, no_data, tex_safe, write_report_files

TOP_FEATURES = 20
"""Features shown in the importance plot and table."""

N_BUCKETS = 10
"""Quantile buckets of the reliability diagram (deciles)."""


PLOTS = ("calibration", "pr_curve", "importance", "folds", "search")
"""Keys of the PNGs in :func:`write_report`'s result; each is written as ``<key>.png``."""

_COLORS = {"raw": "#9e9e9e", "model": "#1f77b4", "baseline": "#ff7f0e", "holdout": "#2ca02c", "base": "#555555"}


@dataclass(frozen=True)
class FoldRow:
    """Out-of-fold metrics of one walk-forward fold (times in ns since the epoch, UTC)."""

    fold: int
    train_start_ns: int
    train_end_ns: int
    test_start_ns: int
    test_end_ns: int
    n_train: int
    n_test: int
    metrics: Mapping[str, float]
    """Metrics of the model on the fold's test part, e.g. ``pr_auc``, ``roc_auc``, ``brier``, ``base_rate``."""
    baseline_metrics: Mapping[str, float]
    """The same keys for the logistic baseline."""


@dataclass(frozen=True)
class ReportData:
    """Everything the report shows. Arrays are 1-D; ``y_*`` hold 0/1 labels, ``p_*`` finite probabilities."""

    title: str
    y_oof: FloatArray
    p_oof_raw: FloatArray
    """Model probabilities before calibration, out-of-fold."""
    p_oof: FloatArray
    """Calibrated model probabilities, out-of-fold."""
    p_oof_baseline: FloatArray
    """Logistic baseline probabilities, out-of-fold."""
    y_holdout: FloatArray
    p_holdout: FloatArray
    """Calibrated hold-out probabilities of the exported model."""
    feature_names: Sequence[str]
    importance_gain: FloatArray
    """LightGBM gain importance, one per feature name (NaN counts as no gain)."""
    folds: Sequence[FoldRow]
    summary: Mapping[str, Mapping[str, float]]
    """Section -> metric -> value, e.g. ``{"out-of-fold": {...}, "hold-out": {...}}``."""
    search: Sequence[Mapping[str, Any]]
    """One dict per trial: ``trial``, ``objective``, ``params`` (a dict) and any further scalar metrics."""
    lineage: Mapping[str, Any]
    """JSON-able provenance: data files and hashes, spans, code version, command line."""
    contributions_example: Sequence[Sequence[tuple[str, float]]] = ()
    """Top contributions (feature, value) of a few hold-out predictions."""
    objective_direction: Literal["maximize", "minimize"] = "maximize"
    """Which way the search objective improves: decides the running best and the marked best trial."""


def write_report(out_dir: Path, data: ReportData) -> dict[str, Path]:
    """Write ``report.html`` and the five PNGs into ``out_dir`` (created if missing, files overwritten).

    Returns the paths under the keys ``html`` and those of :data:`PLOTS`. Every plot is always written; a plot
    without data (no folds, no trials, no importance, no hold-out) says so instead of drawing. Inconsistent
    input (arrays of different lengths, labels other than 0/1, non-finite probabilities) raises ``ValueError``
    before anything is written.
    """
    _validate(data)
    figures = {
        "calibration": _calibration_figure(data),
        "pr_curve": _pr_figure(data),
        "importance": _importance_figure(data),
        "folds": _folds_figure(data),
        "search": _search_figure(data),
    }
    return write_report_files(out_dir, figures, render_html(data))


# ---------------------------------------------------------------------------------------------------- validation


def _validate(data: ReportData) -> None:
    for y_name, p_names in (("y_oof", ("p_oof_raw", "p_oof", "p_oof_baseline")), ("y_holdout", ("p_holdout",))):
        y = np.asarray(getattr(data, y_name), dtype=np.float64)
        if y.ndim != 1:
            raise ValueError(f"{y_name} must be 1-D, got shape {y.shape}")
        if not np.all((y == 0) | (y == 1)):
            raise ValueError(f"{y_name} must hold only 0 and 1")
        for p_name in p_names:
            p = np.asarray(getattr(data, p_name), dtype=np.float64)
            if p.shape != y.shape:
                raise ValueError(f"{p_name} has shape {p.shape}, {y_name} {y.shape}")
            if not np.all(np.isfinite(p)):
                raise ValueError(f"{p_name} must be finite")
    if data.objective_direction not in ("maximize", "minimize"):
        raise ValueError(f"objective_direction must be 'maximize' or 'minimize', got {data.objective_direction!r}")
    gain = np.asarray(data.importance_gain, dtype=np.float64)
    if gain.shape != (len(data.feature_names),):
        raise ValueError(f"importance_gain has shape {gain.shape} for {len(data.feature_names)} feature names")


# ---------------------------------------------------------------------------------------------------- plots


def _f64(a: npt.ArrayLike) -> FloatArray:
    return np.asarray(a, dtype=np.float64)


def _calibration_figure(data: ReportData) -> Figure:
    fig = new_figure(7.5, 7.5)
    ax, ax_hist = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    y_oof, y_ho = _f64(data.y_oof), _f64(data.y_holdout)
    series = [
        ("raw OOF", y_oof, _f64(data.p_oof_raw), _COLORS["raw"], "s"),
        ("calibrated OOF", y_oof, _f64(data.p_oof), _COLORS["model"], "o"),
        ("hold-out", y_ho, _f64(data.p_holdout), _COLORS["holdout"], "^"),
    ]
    series = [s for s in series if len(s[1]) > 0]
    ax.set_title(f"Reliability by {N_BUCKETS} quantile buckets", fontsize=13)
    fig.suptitle(tex_safe(data.title), fontsize=10, color="#444444")
    if not series:
        no_data(ax, "no predictions")
        no_data(ax_hist, "")
        return fig
    points: list[FloatArray] = []
    for label, y, p, color, marker in series:
        table = calibration_table(y, p, N_BUCKETS, by="quantile")
        m = table.count > 0
        ax.plot(
            table.predicted[m],
            table.observed[m],
            marker=marker,
            color=color,
            linewidth=1.5,
            markersize=6,
            label=f"{label} (n={len(y):,}, max err {_fmt(table.max_error_pp, 3)} pp)",
        )
        points += [table.predicted[m], table.observed[m], np.quantile(p, [0.01, 0.99])]
    every = np.concatenate(points)
    lo, hi = float(every.min()), float(every.max())
    pad = max(0.02, 0.05 * (hi - lo))
    lo, hi = max(0.0, lo - pad), min(1.0, hi + pad)
    ax.plot([lo, hi], [lo, hi], linestyle="--", color="black", linewidth=1, label="perfect calibration")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_ylabel("observed frequency of label 1", fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize=9)
    bins = np.linspace(lo, hi, 41)
    for label, _, p, color, _ in series:
        ax_hist.hist(np.clip(p, lo, hi), bins=bins, density=True, histtype="step", color=color, label=label)
    ax_hist.set_xlabel("predicted probability (points: bucket means)", fontsize=11)
    ax_hist.set_ylabel("density", fontsize=10)
    ax_hist.grid(True, alpha=0.3)
    return fig


def _pr_figure(data: ReportData) -> Figure:
    fig = new_figure(7.5, 6.0)
    ax = fig.subplots()
    ax.set_title("Precision-recall", fontsize=13)
    fig.suptitle(tex_safe(data.title), fontsize=10, color="#444444")
    y_oof, y_ho = _f64(data.y_oof), _f64(data.y_holdout)
    curves = [
        ("model, calibrated OOF", y_oof, _f64(data.p_oof), _COLORS["model"], "-"),
        ("logistic baseline OOF", y_oof, _f64(data.p_oof_baseline), _COLORS["baseline"], "-"),
        ("model, hold-out", y_ho, _f64(data.p_holdout), _COLORS["holdout"], "-"),
    ]
    drawn = False
    for label, y, p, color, style in curves:
        if float(y.sum()) == 0:  # no positive (or no sample): no curve
            continue
        precision, recall, _ = precision_recall_curve(y, p)
        ax.plot(
            recall,
            precision,
            drawstyle="steps-post",
            color=color,
            linestyle=style,
            linewidth=1.5,
            label=f"{label} (PR-AUC {_fmt(pr_auc(y, p))})",
        )
        drawn = True
    for label, y, color in (
        ("base rate OOF", y_oof, _COLORS["base"]),
        ("base rate hold-out", y_ho, _COLORS["holdout"]),
    ):
        if len(y) > 0:
            rate = float(y.mean())
            ax.axhline(rate, color=color, linestyle=":", linewidth=1.2, label=f"{label} ({_fmt(rate)})")
            drawn = True
    if not drawn:
        no_data(ax, "no labelled predictions")
        return fig
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall", fontsize=11)
    ax.set_ylabel("precision", fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", fontsize=9)
    return fig


def importance_shares(names: Sequence[str], gain: npt.ArrayLike, top: int = TOP_FEATURES) -> list[tuple[str, float]]:
    """The ``top`` features by gain as (name, share of the total gain), largest first; NaN gain counts as 0.

    Empty when there is no positive total gain. Ties keep the order of ``names``.
    """
    return [(str(names[i]), share) for i, share in _top_importance(gain, top)]


def _top_importance(gain: npt.ArrayLike, top: int) -> list[tuple[int, float]]:
    g = np.nan_to_num(np.asarray(gain, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    total = float(g.sum())
    if not total > 0:
        return []
    order = np.argsort(-g, kind="mergesort")[:top]
    return [(int(i), float(g[i] / total)) for i in order]


def _importance_figure(data: ReportData) -> Figure:
    shares = importance_shares(data.feature_names, data.importance_gain)
    fig = new_figure(8.0, max(3.0, 1.2 + 0.3 * len(shares)))
    ax = fig.subplots()
    ax.set_title(f"Gain importance, top {min(TOP_FEATURES, len(data.feature_names))} (share of total gain)")
    if not shares:
        no_data(ax, "no importance available")
        return fig
    names = [tex_safe(n) for n, _ in shares][::-1]  # largest at the top
    values = [v for _, v in shares][::-1]
    bars = ax.barh(range(len(values)), values, color=_COLORS["model"])
    ax.set_yticks(range(len(values)), names, fontsize=9)
    ax.bar_label(bars, labels=[f"{v:.1%}" for v in values], padding=3, fontsize=8)
    ax.set_xlim(0, max(values) * 1.15)
    ax.set_xlabel("share of total gain", fontsize=11)
    ax.grid(True, axis="x", alpha=0.3)
    return fig


def _fold_metric(rows: Sequence[FoldRow], key: str, baseline: bool = False) -> FloatArray:
    out = np.full(len(rows), np.nan)
    for i, row in enumerate(rows):
        value = (row.baseline_metrics if baseline else row.metrics).get(key)
        if isinstance(value, numbers.Real):
            out[i] = float(value)
    return out


def _folds_figure(data: ReportData) -> Figure:
    rows = list(data.folds)
    fig = new_figure(max(8.0, 2.0 + 0.55 * len(rows)), 7.0)
    ax_pr, ax_roc = fig.subplots(2, 1, sharex=True)
    fig.suptitle("Walk-forward folds: model vs logistic baseline", fontsize=13)
    if not rows:
        no_data(ax_pr, "no folds")
        no_data(ax_roc, "")
        return fig
    x = np.arange(len(rows), dtype=np.float64)
    width = 0.38
    for ax, key, ref_label in ((ax_pr, "pr_auc", "base rate"), (ax_roc, "roc_auc", "chance (0.5)")):
        for offset, baseline, color, label in (
            (-width / 2, False, "model", "model"),
            (width / 2, True, "baseline", "baseline"),
        ):
            values = _fold_metric(rows, key, baseline)
            ok = np.isfinite(values)
            ax.bar(x[ok] + offset, values[ok], width, color=_COLORS[color], label=label)
            for xi in x[~ok]:
                ax.text(xi + offset, 0.01, "n/a", ha="center", va="bottom", fontsize=8, rotation=90, color="#777777")
        if key == "pr_auc":
            rate = _fold_metric(rows, "base_rate")
            ok = np.isfinite(rate)
            ax.hlines(
                rate[ok],
                x[ok] - 1.2 * width,
                x[ok] + 1.2 * width,
                color="black",
                linewidth=2,
                zorder=3,
                label=ref_label,
            )
        else:
            ax.axhline(0.5, color="black", linestyle=":", linewidth=1.2, label=ref_label)
        ax.set_ylabel({"pr_auc": "PR-AUC", "roc_auc": "ROC-AUC"}[key], fontsize=11)
        ax.set_ylim(0, 1)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9)
    labels = [f"{r.fold}\n{iso_ns(r.test_start_ns)[:10]}" for r in rows]
    ax_roc.set_xticks(x, labels, fontsize=8, rotation=0 if len(rows) <= 12 else 90)
    ax_roc.set_xlabel("fold (test start, UTC)", fontsize=11)
    return fig


@dataclass(frozen=True)
class _Trials:
    """Trials sorted by trial number, their objectives and the index of the best one (-1: none)."""

    rows: list[Mapping[str, Any]]
    trial_numbers: FloatArray
    objective: FloatArray
    best: int


def _trials(data: ReportData) -> _Trials:
    indexed = [(_as_float(t.get("trial", i)), i, t) for i, t in enumerate(data.search)]
    indexed.sort(key=lambda e: (math.isnan(e[0]), e[0], e[1]))
    rows = [t for _, _, t in indexed]
    trial_numbers = np.array([n if not math.isnan(n) else i for n, i, _ in indexed], dtype=np.float64)
    objective = np.array([_as_float(t.get("objective")) for t in rows], dtype=np.float64)
    best = -1
    if np.isfinite(objective).any():
        sign = 1.0 if data.objective_direction == "maximize" else -1.0
        best = int(np.argmax(np.where(np.isfinite(objective), sign * objective, -np.inf)))
    return _Trials(rows, trial_numbers, objective, best)


def _search_figure(data: ReportData) -> Figure:
    fig = new_figure(8.0, 5.0)
    ax = fig.subplots()
    ax.set_title(f"Hyper-parameter search: objective J by trial ({data.objective_direction})", fontsize=13)
    trials = _trials(data)
    if trials.best < 0:
        no_data(ax, "no trials" if not trials.rows else "no finite objective")
        return fig
    ok = np.isfinite(trials.objective)
    ax.scatter(trials.trial_numbers[ok], trials.objective[ok], s=22, color=_COLORS["model"], alpha=0.7, label="trial")
    acc = np.fmax.accumulate if data.objective_direction == "maximize" else np.fmin.accumulate
    running = acc(trials.objective)  # fmax/fmin skip NaN (failed trials)
    ax.step(trials.trial_numbers, running, where="post", color=_COLORS["baseline"], linewidth=1.8, label="running best")
    b = trials.best
    ax.scatter(
        [trials.trial_numbers[b]],
        [trials.objective[b]],
        marker="*",
        s=260,
        color="#d62728",
        zorder=3,
        label=f"best: trial {_fmt(trials.trial_numbers[b])}, J={_fmt(trials.objective[b])}",
    )
    if (~ok).any():
        ax.text(
            0.99,
            0.01,
            f"{int((~ok).sum())} trial(s) without a finite J not drawn",
            transform=ax.transAxes,
            ha="right",
            va="bottom",
            fontsize=8,
            color="#777777",
        )
    ax.set_xlabel("trial", fontsize=11)
    ax.set_ylabel("objective J", fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    return fig


# ---------------------------------------------------------------------------------------------------- HTML


def _as_float(value: Any) -> float:
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    return float("nan")


def _fmt(value: Any, digits: int = 4) -> str:
    """A cell's text (not yet escaped): floats to ``digits`` significant digits, NaN/None as "—"."""
    if value is None:
        return "—"
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        x = float(value)
        if math.isnan(x):
            return "—"
        if math.isinf(x):
            return "∞" if x > 0 else "−∞"
        return f"{x:.{digits}g}"
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str, ensure_ascii=False, sort_keys=True)


def _e(value: Any) -> str:
    return html.escape(_fmt(value), quote=True)


def _tag(name: str, content: str, cls: str | None = None) -> str:
    attr = f' class="{html.escape(cls)}"' if cls else ""
    return f"<{name}{attr}>{content}</{name}>"


def _union_keys(mappings: Iterable[Mapping[str, Any]], skip: Iterable[str] = ()) -> list[str]:
    keys: dict[str, None] = {}
    skipped = set(skip)
    for m in mappings:
        keys.update((str(k), None) for k in m if k not in skipped)
    return list(keys)


def _summary_html(data: ReportData) -> str:
    if not data.summary:
        return '<p class="muted">No summary metrics.</p>'
    sections = [str(s) for s in data.summary]
    metric_names = _union_keys(data.summary.values())
    rows = []
    for name in metric_names:
        cells = [html.escape(name)]
        for section in data.summary.values():
            cells.append(_e(section[name]) if name in section else "")
        rows.append(cells)
    return html_table(["metric", *sections], rows)


def _importance_html(data: ReportData) -> str:
    top = _top_importance(data.importance_gain, TOP_FEATURES)
    if not top:
        return '<p class="muted">No importance available (no positive gain).</p>'
    gain = np.asarray(data.importance_gain, dtype=np.float64)
    rows = [
        [str(rank), html.escape(str(data.feature_names[i])), html.escape(f"{share:.1%}"), _e(gain[i])]
        for rank, (i, share) in enumerate(top, start=1)
    ]
    return html_table(["#", "feature", "share of gain", "gain"], rows)


def _folds_html(data: ReportData) -> str:
    if not data.folds:
        return '<p class="muted">No folds.</p>'
    keys = _union_keys(f.metrics for f in data.folds)
    keys += [k for k in _union_keys(f.baseline_metrics for f in data.folds) if k not in keys]
    model_keys = [k for k in keys if k != "base_rate"]
    header = ["fold", "train start", "train end", "test start", "test end", "n train", "n test"]
    if "base_rate" in keys:
        header.append("base rate")
    for k in model_keys:
        header += [f"{k} model", f"{k} baseline"]
    rows = []
    for f in data.folds:
        cells = [
            _e(f.fold),
            *(_e(iso_ns(t)) for t in (f.train_start_ns, f.train_end_ns, f.test_start_ns, f.test_end_ns)),
        ]
        cells += [html.escape(f"{int(f.n_train):,}"), html.escape(f"{int(f.n_test):,}")]
        if "base_rate" in keys:
            cells.append(_e(f.metrics.get("base_rate", f.baseline_metrics.get("base_rate"))))
        for k in model_keys:
            cells += [_e(f.metrics.get(k)), _e(f.baseline_metrics.get(k))]
        rows.append(cells)
    return html_table(header, rows)


def _search_html(data: ReportData) -> str:
    trials = _trials(data)
    if not trials.rows:
        return '<p class="muted">No hyper-parameter search trials.</p>'
    metric_keys = _union_keys(trials.rows, skip=("trial", "objective", "params"))
    param_keys = _union_keys(t["params"] for t in trials.rows if isinstance(t.get("params"), Mapping))
    header = ["", "trial", "objective J", *metric_keys, *(f"param {k}" for k in param_keys)]
    rows, classes = [], []
    for i, t in enumerate(trials.rows):
        params = t.get("params")
        params = params if isinstance(params, Mapping) else {}
        mark = "★ best" if i == trials.best else ""
        cells = [html.escape(mark), _e(t.get("trial", "")), _e(t.get("objective"))]
        cells += [_e(t[k]) if k in t else "" for k in metric_keys]
        cells += [_e(params[k]) if k in params else "" for k in param_keys]
        rows.append(cells)
        classes.append("best" if i == trials.best else None)
    note = f"<p>{len(trials.rows)} trial(s); the objective is {html.escape(data.objective_direction)}d.</p>"
    return note + html_table(header, rows, classes)


def _contributions_html(data: ReportData) -> str:
    if not data.contributions_example:
        return '<p class="muted">No contribution examples.</p>'
    parts = []
    for i, example in enumerate(data.contributions_example, start=1):
        rows = []
        for name, value in example:
            x = _as_float(value)
            cls = "pos" if x > 0 else "neg" if x < 0 else ""
            text = f"{x:+.4g}" if math.isfinite(x) else _fmt(value)
            rows.append([html.escape(str(name)), f'<span class="{cls}">{html.escape(text)}</span>'])
        parts.append(f'<div class="example"><h3>Example {i}</h3>{html_table(["feature", "contribution"], rows)}</div>')
    return '<div class="examples">' + "".join(parts) + "</div>"


def _lineage_html(data: ReportData) -> str:
    text = json.dumps(data.lineage, indent=2, default=str, ensure_ascii=False)
    return f"<pre>{html.escape(text)}</pre>"


_FIGURES = (
    (
        "calibration",
        "Reliability diagram",
        "Observed frequency against mean predicted probability in decile buckets of each set of predictions, "
        "raw and calibrated out-of-fold and hold-out; the legend gives the largest bucket error in percentage "
        "points. Below: the distribution of the probabilities.",
    ),
    (
        "pr_curve",
        "Precision-recall curves",
        "Out-of-fold curves of the calibrated model and the logistic baseline, the hold-out curve, and the base "
        "rates (the precision of predicting 1 always).",
    ),
    ("importance", "Gain importance", f"The {TOP_FEATURES} largest LightGBM gain importances, as shares of the total."),
    (
        "folds",
        "Per-fold metrics",
        "PR-AUC (with each fold's base rate) and ROC-AUC (with chance) of the model and the baseline per fold.",
    ),
    ("search", "Hyper-parameter search", "The objective J of every trial and the running best."),
)


def render_html(data: ReportData) -> str:
    """The report page; it references the PNGs by file name (``calibration.png`` …) in the same folder."""
    figures = "".join(
        f'<figure><img src="{key}.png" alt="{html.escape(alt, quote=True)}">'
        f"<figcaption><b>{html.escape(alt)}.</b> {html.escape(caption)}</figcaption></figure>\n"
        for key, alt, caption in _FIGURES
    )
    title = html.escape(data.title)
    n_oof, n_ho = len(data.y_oof), len(data.y_holdout)
    counts = (
        f"{n_oof:,} out-of-fold samples, {n_ho:,} hold-out samples, {len(data.folds)} fold(s), "
        f"{len(data.search)} search trial(s), {len(data.feature_names)} feature(s)."
    )
    sections = [
        ("Summary", f'<p>{html.escape(counts)}</p><div class="scroll">{_summary_html(data)}</div>'),
        ("Plots", figures),
        ("Feature importance", _importance_html(data)),
        ("Walk-forward folds", f'<div class="scroll">{_folds_html(data)}</div>'),
        ("Search trials", f'<div class="scroll">{_search_html(data)}</div>'),
        ("Contribution examples (hold-out)", _contributions_html(data)),
        ("Lineage", _lineage_html(data)),
    ]
    body = "".join(f"<section>\n<h2>{html.escape(h)}</h2>\n{content}\n</section>\n" for h, content in sections)
    generated = f"Generated by tradeplane {__version__} (tradeplane train, tradeplane.workloads.training.report)."
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f'<h1>{title}</h1>\n<p class="generated">{html.escape(generated)}</p>\n{body}\n</body>\n</html>\n'
    )
