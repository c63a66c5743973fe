"""The run report of ``tradeplane run``: one self-contained ``report.html`` and six PNG plots next to it.

:func:`write_run_report` draws, from a finished run's arrays (:class:`RunReportData`),

- ``equity.png``: equity per risk budget (or the total) over time, with each series' PnL;
- ``drawdown.png``: the fall from the running peak of equity, in currency and in percent of the peak;
- ``calibration.png``: the reliability diagram of the live ``p_up`` against what the mid did over the horizon
  (:func:`live_outcomes`), on :data:`N_BUCKETS` equal-width buckets with their counts, plus the first shadow
  model's curve when one scored; Brier and ECE in the legend and the caption;
- ``utility.png``: the distribution of the utility U of entered against skipped signals;
- ``latency.png``: the decision latency in µs with p50, p99 and the in-process budget (:data:`LATENCY_BUDGET_NS`);
- ``rejections.png``: counts by reason code, decision and risk stages in their own colours;

and writes the HTML around them: run summary, decisions per strategy, rejections by reason (with each code's
description from ``engine.decision.reasons`` / ``engine.risk.reasons`` when those modules are importable), the
model versions with their live Brier / ECE / hit rate on matured signals, and the first fills.

The data and the statistics live in :mod:`tradeplane.workloads.local.report_data`; this module draws and writes.
Why the calibration is computed here, from the run's own marks: a live model is only trustworthy while its
probabilities keep meaning what they say on the data it is deciding on; the offline report cannot show drift.
The metrics are ``engine.metrics``' (the same functions score training folds and canary windows), so the numbers
are comparable with the training report. The ECE uses the same equal-width buckets as the diagram, so the ECE is
the count-weighted mean vertical gap of the diagram's points.

Conventions as the other reports (:mod:`tradeplane.workloads.reporting`): ``Figure`` on the Agg canvas, never
pyplot; no matplotlib version in the PNGs; every string escaped; nothing about the time of writing, so the same
data gives byte-identical files. Empty inputs (no signals, no fills, nothing matured) still write every file, with a
"no data" panel in place of the plot.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Final

import numpy as np
from matplotlib.figure import Figure

from tradeplane import __version__
from tradeplane.engine.metrics import calibration_table
from tradeplane.workloads.reporting import (
    datetimes,
    drawdown_figure,
    equity_figure,
    esc,
    figures_html,
    finish_drawdown_axes,
    finish_equity_axes,
    formatted,
    html_table,
    iso_ns,
    kv_table,
    new_figure,
    no_data,
    percent,
    plot_drawdown,
    report_page,
    tex_safe,
    write_report_files,
)

from .report_data import (
    ENTER_LONG,
    ENTER_SHORT,
    N_BUCKETS,
    RUN_ID,
    SKIP,
    STAGES,
    TOTAL,
    EquitySeries,
    FloatArray,
    RunReportData,
    dec1,
    latency_us,
    live_and_shadow,
    model_stats,
    money,
    reason_descriptions,
    rejection_counts,
    summary_rows,
)

PLOTS: Final = ("equity", "drawdown", "calibration", "utility", "latency", "rejections")
"""The PNGs :func:`write_run_report` writes, as ``<key>.png``, in this order after ``report.html``."""

TABLE_ROWS: Final = 200
"""Fills shown in the HTML (the store holds them all)."""

_COLORS: Final = {
    "live": "#1f77b4",
    "shadow": "#ff7f0e",
    "entered": "#2ca02c",
    "skipped": "#9e9e9e",
    "latency": "#1f77b4",
    "p50": "#2ca02c",
    "p99": "#ff7f0e",
    "budget": "#d62728",
    "drawdown": "#d62728",
    "decision": "#1f77b4",
    "risk": "#d62728",
}
_SERIES_COLORS: Final = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf")


# ---------------------------------------------------------------------------------------------------- plots


def _title(data: RunReportData) -> str:
    run_id = data.summary.get(RUN_ID)
    return f"Run report: {run_id}" if run_id not in (None, "") else "Run report"


def _series(data: RunReportData) -> list[tuple[str, EquitySeries]]:
    """Non-empty series, :data:`TOTAL` first, then the budgets by name."""
    return sorted(((k, v) for k, v in data.equity.items() if len(v)), key=lambda kv: (kv[0] != TOTAL, kv[0]))


def _equity_figure(data: RunReportData) -> Figure:
    fig, ax_eq, ax_pnl = equity_figure(_title(data), "Equity (settlement currency)")
    series = _series(data)
    if not series:
        no_data(ax_eq, "no equity rows")
        no_data(ax_pnl, "")
        return fig
    # The total on top (budgets of different sizes on one equity axis would flatten each other), every series'
    # PnL since its start below, where they share a scale.
    headline = series[:1] if series[0][0] == TOTAL else series
    for i, (name, s) in enumerate(series):
        color = _SERIES_COLORS[i % len(_SERIES_COLORS)]
        pnl = s.equity - s.equity[0]
        t = datetimes(s.ts)
        if i < len(headline):
            label = f"{name} (end {money(s.equity[-1])})"
            ax_eq.plot(t, s.equity, color=color, linewidth=1.4, label=tex_safe(label))
        ax_pnl.plot(t, pnl, color=color, linewidth=1.8 if name == TOTAL else 1.2,
                    label=tex_safe(f"{name} ({money(pnl[-1])})"))  # fmt: skip
    finish_equity_axes(ax_eq, ax_pnl, pnl_label="PnL since start", xlabel="time (UTC)")
    return fig


def _drawdown_figure(data: RunReportData) -> Figure:
    fig, ax_abs, ax_pct = drawdown_figure(_title(data))
    series = _series(data)
    if not series:
        no_data(ax_abs, "no equity rows")
        no_data(ax_pct, "")
        return fig
    for i, (name, s) in enumerate(series):
        color = _COLORS["drawdown"] if len(series) == 1 else _SERIES_COLORS[i % len(_SERIES_COLORS)]
        t = datetimes(s.ts)
        peak = s.equity + s.drawdown
        with np.errstate(divide="ignore", invalid="ignore"):
            pct = np.where(peak > 0, -100.0 * s.drawdown / peak, np.nan)
        labels = (
            tex_safe(f"{name} (max {money(np.nanmax(s.drawdown))})"),
            tex_safe(f"{name} (max {percent(-np.nanmin(pct) / 100)})"),
        )
        plot_drawdown(ax_abs, ax_pct, t, s.drawdown, pct, color=color, labels=labels, fill=len(series) == 1)
    finish_drawdown_axes(ax_abs, ax_pct, xlabel="time (UTC)")
    return fig


def _calibration_figure(data: RunReportData) -> Figure:
    fig = new_figure(7.5, 7.5)
    ax, ax_n = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    fig.suptitle(tex_safe(_title(data)), fontsize=10, color="#444444")
    ax.set_title(f"Reliability of the live p_up on matured signals ({N_BUCKETS} equal-width buckets)", fontsize=12)
    live, shadow = live_and_shadow(data)
    styled = ((live, _COLORS["live"], "o"), (shadow, _COLORS["shadow"], "s"))
    curves = [(c, color, marker) for c, color, marker in styled if c is not None]
    if not curves:
        no_data(ax, "no matured signals" if len(data.signals) else "no signals")
        no_data(ax_n, "")
        return fig
    width = 1.0 / N_BUCKETS
    centers = (np.arange(N_BUCKETS) + 0.5) * width
    shift = width / 4 if len(curves) == 2 else 0.0
    points: list[FloatArray] = []
    for k, (c, color, marker) in enumerate(curves):
        table = calibration_table(c.y, c.p, N_BUCKETS, by="uniform")
        m = table.count > 0
        ax.plot(table.predicted[m], table.observed[m], marker=marker, color=color, linewidth=1.5, markersize=6,
                label=tex_safe(f"{c.label} (n={c.n:,}, Brier {_dec4(c.brier)}, ECE {_dec4(c.ece)})"))  # fmt: skip
        for x, yv, n in zip(table.predicted[m], table.observed[m], table.count[m], strict=True):
            ax.annotate(f"{int(n):,}", (float(x), float(yv)), textcoords="offset points", xytext=(5, -10 - 10 * k),
                        fontsize=7, color=color)  # fmt: skip
        ax_n.bar(centers + (shift if k else -shift), table.count, width=width / (2 if shift else 1) * 0.9,
                 color=color, alpha=0.7, label=tex_safe(c.label))  # fmt: skip
        points += [table.predicted[m], table.observed[m]]
    every = np.concatenate(points)
    lo, hi = float(every.min()), float(every.max())
    pad = max(0.05, 0.1 * (hi - lo))
    lo, hi = max(0.0, lo - pad), min(1.0, hi + pad)
    ax.plot([lo, hi], [lo, hi], linestyle="--", color="black", linewidth=1, label="perfect calibration")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_ylabel("observed frequency of mid up", fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    ax_n.set_ylabel("signals", fontsize=10)
    ax_n.set_xlabel("predicted p_up (points: bucket means, labels: bucket counts)", fontsize=11)
    ax_n.grid(True, alpha=0.3)
    return fig


def _clipped_range(values: FloatArray) -> tuple[float, float]:
    """The 0.5 %–99.5 % range of the values (all of them when few): heavy tails would squash the histogram."""
    lo, hi = np.quantile(values, [0.005, 0.995]) if values.shape[0] >= 200 else (values.min(), values.max())
    lo, hi = float(lo), float(hi)
    return (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5)


def _utility_figure(data: RunReportData) -> Figure:
    fig = new_figure(8.0, 5.0)
    ax = fig.subplots()
    fig.suptitle(tex_safe(_title(data)), fontsize=10, color="#444444")
    ax.set_title("Utility U = E[excess return] / cost, entered versus skipped", fontsize=13)
    s = data.signals
    if len(s) == 0:
        no_data(ax, "no signals")
        return fig
    entered = s.entered
    finite = np.isfinite(s.utility)
    if not finite.any():
        no_data(ax, f"no signal reached the utility (of {len(s):,})")
        return fig
    lo, hi = _clipped_range(s.utility[finite])
    bins: list[float] = np.linspace(lo, hi, 41).tolist()
    for name, sel in (("entered", entered), ("skipped", ~entered)):
        u = s.utility[sel & finite]
        missing = int((sel & ~finite).sum())
        label = f"{name} (n={u.shape[0]:,}" + (f"; {missing:,} without U)" if missing else ")")
        if u.shape[0]:
            ax.hist(np.clip(u, lo, hi), bins=bins, histtype="stepfilled", alpha=0.5, color=_COLORS[name],
                    edgecolor=_COLORS[name], label=label)  # fmt: skip
        else:
            ax.plot([], [], color=_COLORS[name], label=label)
    ax.set_xlabel("U (values beyond the 0.5–99.5 % range drawn at the edges)", fontsize=10)
    ax.set_ylabel("signals", fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    return fig


def _latency_figure(data: RunReportData) -> Figure:
    fig = new_figure(8.0, 5.0)
    ax = fig.subplots()
    fig.suptitle(tex_safe(_title(data)), fontsize=10, color="#444444")
    ax.set_title("Decision latency (features → score → gates → sizing → intent)", fontsize=13)
    us = latency_us(data)
    if us.shape[0] == 0:
        no_data(ax, "no decisions")
        return fig
    budget = data.latency_budget_ns / 1e3
    p50, p99 = (float(q) for q in np.percentile(us, [50, 99]))
    hi = max(float(np.percentile(us, 99.9)) * 1.05, budget * 1.2)
    over = int((us > budget).sum())
    ax.hist(np.clip(us, 0.0, hi), bins=np.linspace(0.0, hi, 61).tolist(), color=_COLORS["latency"], alpha=0.6,
            label=f"decisions (n={us.shape[0]:,}; {over:,} over budget)")  # fmt: skip
    ax.axvline(p50, color=_COLORS["p50"], linestyle="--", linewidth=1.5, label=f"p50 {dec1(p50)} µs")
    ax.axvline(p99, color=_COLORS["p99"], linestyle="--", linewidth=1.5, label=f"p99 {dec1(p99)} µs")
    ax.axvline(budget, color=_COLORS["budget"], linewidth=2.0, label=f"budget (p99) {dec1(budget)} µs")
    ax.set_xlabel("µs (slower than the plot's range drawn at the right edge)", fontsize=10)
    ax.set_ylabel("decisions", fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    return fig


def _rejections_figure(data: RunReportData) -> Figure:
    counts = rejection_counts(data)
    fig = new_figure(9.0, max(4.5, 1.5 + 0.35 * len(counts)))
    ax = fig.subplots()
    fig.suptitle(tex_safe(_title(data)), fontsize=10, color="#444444")
    ax.set_title("Rejections by reason code", fontsize=13)
    if not counts:
        no_data(ax, "no rejections")
        return fig
    y = np.arange(len(counts))
    for stage in STAGES:
        idx = [i for i, c in enumerate(counts) if c[0] == stage]
        if idx:
            total = sum(counts[i][2] for i in idx)
            ax.barh(y[idx], [counts[i][2] for i in idx], color=_COLORS[stage], alpha=0.8,
                    label=f"{stage} stage ({total:,})")  # fmt: skip
    for i, (_, _, n) in enumerate(counts):
        ax.annotate(f"{n:,}", (n, float(i)), textcoords="offset points", xytext=(3, 0), va="center", fontsize=8)
    ax.set_yticks(y, [tex_safe(c[1]) for c in counts], fontsize=9)
    ax.invert_yaxis()
    ax.margins(x=0.12)
    ax.set_xlabel("count", fontsize=11)
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=9)
    return fig


# ---------------------------------------------------------------------------------------------------- formats


def _dec4(x: Any) -> str:
    """Four decimals: Brier, ECE, probabilities."""
    return formatted(x, ".4f")


# ---------------------------------------------------------------------------------------------------- HTML


def _rejections_html(data: RunReportData) -> str:
    counts = rejection_counts(data)
    if not counts:
        return '<p class="muted">No rejections.</p>'
    descriptions = reason_descriptions()
    per_stage = {stage: sum(n for st, _, n in counts if st == stage) for stage in STAGES}
    rows = [
        [esc(stage), esc(code), esc(f"{n:,}"), esc(percent(n / per_stage[stage])),
         esc(descriptions.get(stage, {}).get(code, code))]
        for stage, code, n in counts
    ]  # fmt: skip
    return html_table(["stage", "reason", "count", "share of stage", "description"], rows)


def _models_html(data: RunReportData) -> str:
    stats = model_stats(data)
    if not stats:
        return '<p class="muted">No signals: no model decided.</p>'
    rows = [
        [esc(m.version), esc(m.role), esc(f"{m.signals:,}"), esc(f"{m.matured:,}"), esc(_dec4(m.mean_p)),
         esc(_dec4(m.brier)), esc(_dec4(m.ece)), esc(percent(m.hit_rate))]
        for m in stats
    ]  # fmt: skip
    header = ["version", "role", "signals", "matured", "mean p_up", "Brier", "ECE", "hit rate"]
    return html_table(header, rows)


def _rollouts_html(data: RunReportData) -> str:
    """One row per ModelVersion the run's rollout controller drove (``summary["rollouts"]``): where it ended,
    the last verdict and where its comparison report (one row per analysis) was written."""
    rollouts = data.summary.get("rollouts") or {}
    if not rollouts:
        return '<p class="muted">No canary or shadow ModelVersion in this run.</p>'
    rows = []
    for version, r in sorted(rollouts.items()):
        report = r.get("report")
        where = f"<code>{esc(str(report))}</code> ({esc(str(r.get('reportRows', 0)))} analyses)" if report else "—"
        rows.append([esc(str(version)), esc(str(r.get("phase"))), esc(str(r.get("step", "—"))),
                     esc(formatted(r.get("weightPct"), ".3g")), esc(str(r.get("stable") or "—")),
                     esc(str(r.get("analyses", 0))), esc(str(r.get("lastVerdict") or "—")),
                     esc(str(r.get("lastReason") or "")), where])  # fmt: skip
    header = ["version", "phase", "step", "weight %", "stable", "analyses", "last verdict", "reason", "report"]
    return html_table(header, rows)


def _decisions_html(data: RunReportData) -> str:
    s, y = data.signals, data.outcomes
    if len(s) == 0:
        return '<p class="muted">No signals.</p>'
    long_, short = s.decision == ENTER_LONG, s.decision == ENTER_SHORT
    right = (long_ & (y == 1.0)) | (short & (y == 0.0))  # an entry whose side matched the outcome
    rows = []
    for strategy in np.unique(s.strategy).tolist():
        m = s.strategy == strategy
        entered = m & (long_ | short)
        matured_entries = int((entered & np.isfinite(y)).sum())
        hit = int((m & right).sum()) / matured_entries if matured_entries else math.nan
        counted = (m, m & long_, m & short, m & (s.decision == SKIP), m & np.isfinite(y))
        cells = [esc(f"{int(x.sum()):,}") for x in counted]
        rows.append([esc(strategy), *cells, esc(f"{matured_entries:,}"), esc(percent(hit))])
    header = ["strategy", "signals", "enter-long", "enter-short", "skip", "matured", "matured entries",
              "entry hit rate"]  # fmt: skip
    return html_table(header, rows)


def _fills_html(data: RunReportData) -> str:
    f = data.fills
    if len(f) == 0:
        return '<p class="muted">No fills.</p>'
    n = min(len(f), TABLE_ROWS)
    rows = [
        [esc(f"{i:,}"), esc(iso_ns(int(f.ts[i]))), esc(str(f.symbol[i])), "BUY" if f.side[i] > 0 else "SELL",
         esc(formatted(f.qty[i], ",.10g")), esc(formatted(f.price[i], ",.10g")), esc(formatted(f.fee[i], ",.10g"))]
        for i in range(n)
    ]  # fmt: skip
    shown = f"<p>{len(f):,} fill(s)" + (f", the first {TABLE_ROWS} shown" if len(f) > TABLE_ROWS else "")
    fees = f"; fees {money(np.nansum(f.fee))}; traded notional {money(np.nansum(f.qty * f.price))}.</p>"
    return shown + fees + html_table(["#", "time", "symbol", "side", "qty", "price", "fee"], rows)


def _calibration_caption(data: RunReportData) -> str:
    live, shadow = live_and_shadow(data)
    parts = [
        f"{c.label}: Brier {_dec4(c.brier)}, ECE {_dec4(c.ece)} on {c.n:,} matured signals"
        for c in (live, shadow)
        if c is not None
    ]
    horizon = f" {data.horizon_ns / 1e9:,.3g} s" if data.horizon_ns > 0 else ""
    what = (f"Observed share of signals whose mid rose over the{horizon} horizon, per {N_BUCKETS} equal-width buckets "
            "of predicted p_up (labels: signals per bucket; the ECE weights the gaps by these counts). ")  # fmt: skip
    return what + ("; ".join(parts) + "." if parts else "No matured signals.")


def _latency_caption(data: RunReportData) -> str:
    us = latency_us(data)
    budget = data.latency_budget_ns / 1e3
    if us.shape[0] == 0:
        return f"No decisions; the budget is p99 < {dec1(budget)} µs."
    p50, p99 = (float(q) for q in np.percentile(us, [50, 99]))
    return (f"Compute time of each decision as the runner measured it: p50 {dec1(p50)} µs, p99 {dec1(p99)} µs, "
            f"max {dec1(float(us.max()))} µs; budget p99 < {dec1(budget)} µs.")  # fmt: skip


def _figures(data: RunReportData) -> list[tuple[str, str, str]]:
    return [
        ("equity", "Equity", "Equity of the run total (or of each risk budget) over time; below, each series' PnL "
         "since its start."),
        ("drawdown", "Drawdown", "Fall from the running peak of equity, in currency and in percent of the peak."),
        ("calibration", "Calibration of the live p_up", _calibration_caption(data)),
        ("utility", "Utility", "Histogram of U of the entered and the skipped signals; skips decided before the "
         "costs (gates, rules) have no U and are only counted."),
        ("latency", "Decision latency", _latency_caption(data)),
        ("rejections", "Rejections by reason", "Count of each reason code: skipped signals (decision stage) and "
         "orders refused by the risk engine (risk stage)."),
    ]  # fmt: skip


def render_html(data: RunReportData) -> str:
    """The report page; it references the PNGs by file name (``equity.png`` …) in the same folder."""
    figures = figures_html(_figures(data))
    sections = [
        ("Run summary", kv_table(summary_rows(data))),
        ("Plots", figures),
        ("Decisions by strategy", f'<div class="scroll">{_decisions_html(data)}</div>'),
        ("Rejections by reason", f'<div class="scroll">{_rejections_html(data)}</div>'),
        ("Model versions", f'<div class="scroll">{_models_html(data)}</div>'),
        ("Rollouts", f'<div class="scroll">{_rollouts_html(data)}</div>'),
        ("Fills", f'<div class="scroll">{_fills_html(data)}</div>'),
    ]
    generated = f"Generated by tradeplane {__version__} (tradeplane.workloads.local.report)."
    return report_page(_title(data), generated, sections)


def write_run_report(out_dir: Path, data: RunReportData) -> list[Path]:
    """Write ``report.html`` and the PNGs of :data:`PLOTS` into ``out_dir`` (created; files overwritten) and return
    their paths, the HTML first, then the PNGs in :data:`PLOTS` order."""
    figures = {
        "equity": _equity_figure(data),
        "drawdown": _drawdown_figure(data),
        "calibration": _calibration_figure(data),
        "utility": _utility_figure(data),
        "latency": _latency_figure(data),
        "rejections": _rejections_figure(data),
    }
    paths = write_report_files(out_dir, figures, render_html(data))
    return [paths["html"], *(paths[key] for key in PLOTS)]
