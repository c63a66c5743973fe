"""The backtest report: one self-contained ``report.html`` and four PNG plots next to it.

:func:`write_report` draws, from a finished :class:`~tradeplane.engine.sim.result.BacktestResult`,

- ``equity.png``: the equity curve, and below it the gross PnL (realized + unrealized) with the cumulative
  fees and funding paid, all since the curve's first row (the same window as the metrics);
- ``drawdown.png``: the drawdown from the running peak, in settlement currency and in percent of the peak;
- ``fills.png``: per symbol, the mid price of the marks with every fill at its exchange time and price
  (buys ▲ green, sells ▼ red; maker fills filled, taker fills hollow);
- ``slippage.png``: the distribution of the parents' ``cost_bps``, one histogram per executor style, with
  mean and median;

and writes the HTML around them: run summary, configuration and metadata from ``result.meta``, the metrics,
a per-style executor summary and the first :data:`TABLE_ROWS` fills and parents. It reuses the training
report's conventions and helpers (``Figure`` on the Agg canvas, never pyplot; no matplotlib version in the
PNGs; every string escaped; nothing about the time of writing), so the same result always gives
byte-identical files. A run without fills, parents or curve rows renders, with a note in place of the plot.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from tradeplane import __version__
from tradeplane.engine.sim.executors import PARENT_STATUS_NAMES, STYLE_NAMES
from tradeplane.engine.sim.portfolio import EquityCurve, PerformanceMetrics
from tradeplane.engine.sim.result import BacktestResult
from tradeplane.workloads.reporting import (
    date_axis,
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
    span,
    tex_safe,
    write_report_files,
)

from .tables import SIDE_NAMES, check_result, enum_name, enum_names, symbol_names

PLOTS: Final = ("equity", "drawdown", "fills", "slippage")
"""Keys of the PNGs in :func:`write_report`'s result; each is written as ``<key>.png``."""

TABLE_ROWS: Final = 200
"""Rows shown of the fills and parents tables (the Parquet tables hold them all)."""

MAX_SYMBOL_PANELS: Final = 6
"""Symbols drawn in ``fills.png`` (those with the most fills); the figure says how many are left out."""


# ``result.meta`` keys the summary reads (as ``engine.sim.runner.run_backtest`` writes them); every key is also
# listed in the run metadata table, whatever it is.
META_CONFIG: Final = "config"
"""The run configuration (a mapping), shown as its own table."""
META_SEED: Final = "seed"
META_EVENTS: Final = "events"
"""Number of market-data events replayed."""
META_WALL: Final = "wall_s"
"""Wall-clock duration of the run in seconds."""
META_START: Final = "t_start_ns"
META_END: Final = "t_end_ns"
"""First and last event time (local ns) of the data: the data span."""

_COLORS: Final = {
    "equity": "#1f77b4",
    "gross": "#2ca02c",
    "fees": "#d62728",
    "funding": "#9467bd",
    "drawdown": "#d62728",
    "mid": "#555555",
    "buy": "#1a9641",
    "sell": "#d7191c",
}
_STYLE_COLORS: Final = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2")

FloatArray = npt.NDArray[np.float64]


def write_report(result: BacktestResult, out_dir: Path) -> dict[str, Path]:
    """Write ``report.html`` and the PNGs of :data:`PLOTS` into ``out_dir`` (created if missing, files overwritten).

    Returns the paths under ``html`` and the :data:`PLOTS` keys. A malformed result (wrong dtypes, symbol ids
    without a name) raises ``ValueError`` before anything is written.
    """
    check_result(result)
    figures = {
        "equity": _equity_figure(result),
        "drawdown": _drawdown_figure(result),
        "fills": _fills_figure(result),
        "slippage": _slippage_figure(result),
    }
    return write_report_files(out_dir, figures, render_html(result))


# ---------------------------------------------------------------------------------------------------- data


def equity_curve(result: BacktestResult) -> EquityCurve:
    """``result.curve`` in an :class:`EquityCurve`, so drawdowns come from :meth:`EquityCurve.drawdown` as in
    the metrics rather than from a second formula."""
    n = result.curve.shape[0]
    curve = EquityCurve(max(n, 1), name="backtest equity curve")
    curve.rows[:n] = result.curve
    curve.length[0] = n
    return curve


def _since_start(values: FloatArray) -> FloatArray:
    return values - values[0] if values.shape[0] else values


def _title(result: BacktestResult) -> str:
    if not result.symbols:
        return "Backtest"
    if len(result.symbols) <= 5:
        return "Backtest: " + ", ".join(result.symbols)
    return f"Backtest: {len(result.symbols)} symbols"


# ---------------------------------------------------------------------------------------------------- plots


def _equity_figure(result: BacktestResult) -> Figure:
    fig, ax_eq, ax_pnl = equity_figure(_title(result), "Equity (settlement currency, all symbols summed)")
    c = result.curve
    if c.shape[0] == 0:
        no_data(ax_eq, "no equity curve rows")
        no_data(ax_pnl, "")
        return fig
    t = datetimes(c["ts"])
    equity = np.asarray(c["equity"], dtype=np.float64)
    ax_eq.plot(t, equity, color=_COLORS["equity"], linewidth=1.4,
               label=f"equity (end {_money(equity[-1])}, PnL {_money(result.metrics.total_pnl)})")  # fmt: skip
    gross = _since_start(np.asarray(c["realized"] + c["unrealized"], dtype=np.float64))
    fees = _since_start(np.asarray(c["fees"], dtype=np.float64))
    funding = _since_start(np.asarray(c["funding"], dtype=np.float64))
    ax_pnl.plot(t, gross, color=_COLORS["gross"], linewidth=1.3, label=f"realized + unrealized ({_money(gross[-1])})")
    ax_pnl.plot(t, fees, color=_COLORS["fees"], linewidth=1.3, label=f"fees paid ({_money(fees[-1])})")
    ax_pnl.plot(t, funding, color=_COLORS["funding"], linewidth=1.3, label=f"funding paid ({_money(funding[-1])})")
    finish_equity_axes(ax_eq, ax_pnl, pnl_label="since start", xlabel="local time (UTC)")
    return fig


def _drawdown_figure(result: BacktestResult) -> Figure:
    fig, ax_abs, ax_pct = drawdown_figure(_title(result))
    curve = equity_curve(result)
    if len(curve) == 0:
        no_data(ax_abs, "no equity curve rows")
        no_data(ax_pct, "")
        return fig
    t = datetimes(curve.column("ts"))
    dd, dd_frac = curve.drawdown()
    m = result.metrics
    labels = (f"max {_money(m.max_drawdown)}", f"max {percent(m.max_drawdown_frac)}")
    plot_drawdown(ax_abs, ax_pct, t, dd, -100.0 * dd_frac, color=_COLORS["drawdown"], labels=labels)
    finish_drawdown_axes(ax_abs, ax_pct, xlabel="local time (UTC)")
    return fig


def _panel_symbols(result: BacktestResult) -> tuple[list[int], int]:
    """Symbol ids for ``fills.png`` (most fills first, then by id) and how many symbols were left out."""
    ids = np.concatenate([result.fills["symbol"], result.marks["symbol"]]).astype(np.int64)
    present = np.unique(ids)
    n_fills = np.bincount(result.fills["symbol"].astype(np.int64), minlength=len(result.symbols))
    ranked = sorted(present.tolist(), key=lambda s: (-int(n_fills[s]), s))
    return ranked[:MAX_SYMBOL_PANELS], max(0, len(ranked) - MAX_SYMBOL_PANELS)


def _fills_figure(result: BacktestResult) -> Figure:
    shown, omitted = _panel_symbols(result)
    fig = new_figure(9.0, max(4.0, 0.5 + 3.2 * max(1, len(shown))))
    axes: list[Axes] = list(fig.subplots(max(1, len(shown)), 1, sharex=True, squeeze=False)[:, 0])
    title = "Mid price and fills (▲ buy, ▼ sell; filled = maker, hollow = taker)"
    if omitted:
        title += f"; {omitted} more symbol(s) not drawn"
    fig.suptitle(title, fontsize=12)
    if not shown:
        no_data(axes[0], "no marks and no fills")
        return fig
    fills, marks = result.fills, result.marks
    for ax, sym in zip(axes, shown, strict=True):
        ax.set_title(tex_safe(result.symbols[sym]), fontsize=11)
        mk = marks[marks["symbol"] == sym]
        if mk.shape[0]:
            ax.plot(datetimes(mk["ts"]), mk["mid"], color=_COLORS["mid"], linewidth=1.0, drawstyle="steps-post",
                    label="mid (local time)")  # fmt: skip
        f = fills[fills["symbol"] == sym]
        for side, name, marker in ((1, "buy", "^"), (-1, "sell", "v")):
            for maker, liquidity in ((1, "maker"), (0, "taker")):
                sel = f[(f["side"] == side) & ((f["maker"] != 0) == bool(maker))]
                if sel.shape[0] == 0:
                    continue
                color = _COLORS[name]
                ax.scatter(datetimes(sel["exch_ts"]), sel["px"], marker=marker, s=46, linewidths=1.3,
                           facecolors=color if maker else "none", edgecolors=color, zorder=3,
                           label=f"{name} {liquidity} ({sel.shape[0]:,})")  # fmt: skip
        if f.shape[0] == 0:
            ax.text(0.99, 0.02, "no fills", transform=ax.transAxes, ha="right", va="bottom", fontsize=10,
                    color="#777777")  # fmt: skip
        ax.set_ylabel("price", fontsize=10)
        ax.ticklabel_format(axis="y", style="plain", useOffset=False)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize=8)
        date_axis(ax)
    axes[-1].set_xlabel("time (UTC): fills at exchange time", fontsize=11)
    return fig


def _cost_by_style(result: BacktestResult) -> list[tuple[int, FloatArray]]:
    """Finite ``cost_bps`` of the parents per style code (parents without fills have none), by style code."""
    p = result.parents
    ok = np.isfinite(p["cost_bps"])
    return [(int(s), np.asarray(p["cost_bps"][ok & (p["style"] == s)], dtype=np.float64))
            for s in np.unique(p["style"][ok]).tolist()]  # fmt: skip


def _slippage_figure(result: BacktestResult) -> Figure:
    fig = new_figure(8.0, 5.0)
    ax = fig.subplots()
    ax.set_title("Parent order cost versus mid at send (bps, > 0 = paid)", fontsize=13)
    fig.suptitle(tex_safe(_title(result)), fontsize=10, color="#444444")
    if result.parents.shape[0] == 0:
        no_data(ax, "no parent orders")
        return fig
    groups = _cost_by_style(result)
    if not groups:
        no_data(ax, f"no filled parent orders (of {result.parents.shape[0]:,})")
        return fig
    every = np.concatenate([v for _, v in groups])
    bins: list[float] = np.histogram_bin_edges(every, bins=int(np.clip(np.sqrt(every.shape[0]), 10, 60))).tolist()
    several = len(groups) > 1
    for i, (style, values) in enumerate(groups):
        color = _STYLE_COLORS[i % len(_STYLE_COLORS)]
        name = tex_safe(enum_name(style, STYLE_NAMES, "style_"))
        mean, median = float(values.mean()), float(np.median(values))
        ax.hist(values, bins=bins, histtype="step" if several else "stepfilled", color=color, linewidth=1.6,
                alpha=1.0 if several else 0.55, label=f"{name} (n={values.shape[0]:,})")  # fmt: skip
        ax.axvline(mean, color=color, linestyle="--", linewidth=1.4, label=f"{name} mean {_dec2(mean)} bps")
        ax.axvline(median, color=color, linestyle=":", linewidth=1.6, label=f"{name} median {_dec2(median)} bps")
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("cost_bps = side × (vwap − mid at send) / mid at send × 10⁴", fontsize=10)
    ax.set_ylabel("parent orders", fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return fig


# ---------------------------------------------------------------------------------------------------- formats


def _money(x: Any) -> str:
    """Money: two decimals with thousands separators, or 4 significant digits below 1 (coin-settled PnL)."""
    v = float(x)
    return formatted(v, ",.2f" if not math.isfinite(v) or abs(v) >= 1 or v == 0 else ".4g")


def _num(x: Any) -> str:
    """Prices and quantities: up to 10 significant digits, so ticks and lots show exactly."""
    return formatted(x, ",.10g")


def _dec2(x: Any) -> str:
    """Two decimals (basis points, Sharpe ratios)."""
    return formatted(x, ",.2f")


def _ratio(x: Any) -> str:
    return formatted(x, ".3g")


def _count(n: int) -> str:
    return f"{int(n):,}"


def _meta_value(value: Any) -> str:
    """A metadata value as text: numbers exactly (``repr``), strings as they are, anything else as JSON."""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        v = float(value)
        return repr(v) if math.isfinite(v) else formatted(v, "")
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str, ensure_ascii=False, sort_keys=True)


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested mappings as ``(dotted.key, leaf)`` pairs in insertion order; lists stay leaves."""
    if isinstance(value, Mapping) and (value or not prefix):
        out: list[tuple[str, Any]] = []
        for k, v in value.items():
            out += _flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    return [(prefix, value)]


# ---------------------------------------------------------------------------------------------------- HTML


def _summary_html(result: BacktestResult) -> str:
    meta = result.meta
    wall, events = meta.get(META_WALL), meta.get(META_EVENTS)
    rate = "—"
    if isinstance(wall, numbers.Real) and isinstance(events, numbers.Real) and float(wall) > 0:
        rate = f"{float(events) / float(wall):,.0f} events/s"
    start, end = meta.get(META_START), meta.get(META_END)
    data_span = "—"
    if isinstance(start, numbers.Integral) and isinstance(end, numbers.Integral):
        data_span = span(np.array([start, end], dtype=np.int64))
    pairs = [
        ("symbols", ", ".join(result.symbols) or "—"),
        ("data span (local time)", data_span),
        ("equity curve span (local time)", span(result.curve["ts"])),
        ("fills span (exchange time)", span(result.fills["exch_ts"])),
        ("events", _meta_value(events) if events is not None else "—"),
        ("wall time", f"{float(wall):,.3f} s" if isinstance(wall, numbers.Real) else "—"),
        ("throughput", rate),
        ("seed", _meta_value(meta[META_SEED]) if META_SEED in meta else "—"),
        ("fills", _count(result.fills.shape[0])),
        ("order reports", _count(result.reports.shape[0])),
        ("parent orders", _count(result.parents.shape[0])),
        ("equity curve rows", _count(result.curve.shape[0])),
        ("result digest (sha256)", result.digest()),
    ]
    config = meta.get(META_CONFIG)
    config_pairs = [(k, _meta_value(v)) for k, v in _flatten(config)] if isinstance(config, Mapping) else []
    other = {k: v for k, v in meta.items() if not (k == META_CONFIG and isinstance(v, Mapping))}
    meta_pairs = [(k, _meta_value(v)) for k, v in _flatten(other)]
    return (
        kv_table(pairs, "")
        + "<h3>Configuration</h3>\n"
        + kv_table(config_pairs, f'No "{META_CONFIG}" mapping in the run metadata.')
        + "<h3>Run metadata</h3>\n"
        + kv_table(meta_pairs, "No further run metadata.")
    )


def metric_rows(m: PerformanceMetrics) -> list[tuple[str, str, str]]:
    """(label, formatted value, meaning) of every metric, as the report shows them."""
    return [
        ("PnL", _money(m.total_pnl), "equity change over the curve"),
        ("gross PnL", _money(m.gross_pnl), "realized + unrealized change: trading PnL before fees and funding"),
        ("fees", _money(m.fees), "paid (rebates negative)"),
        ("funding", _money(m.funding), "paid (received negative)"),
        ("Sharpe", _dec2(m.sharpe), "annualized, per curve row, risk-free rate 0"),
        ("max drawdown", _money(m.max_drawdown), "largest fall from a running peak of equity"),
        ("max drawdown %", percent(m.max_drawdown_frac), "of that peak"),
        ("trades", _count(m.n_trades), "reducing fills"),
        ("win rate", percent(m.win_rate), "share of trades with realized PnL > 0, gross of fees"),
        ("profit factor", _ratio(m.profit_factor), "Σ winning / |Σ losing| realized PnL"),
        ("turnover", _ratio(m.turnover), "traded notional / mean equity"),
        ("fee share", percent(m.fee_share), "fees / gross PnL when gross PnL > 0"),
        ("fills", _count(m.n_fills), ""),
        ("maker share", percent(m.maker_share), "maker fills / fills, by count"),
    ]


def _metrics_html(result: BacktestResult) -> str:
    rows = [[esc(label), esc(value), esc(meaning)] for label, value, meaning in metric_rows(result.metrics)]
    return html_table(["metric", "value", "meaning"], rows)


def _executor_html(result: BacktestResult) -> str:
    p = result.parents
    if p.shape[0] == 0:
        return '<p class="muted">No parent orders.</p>'
    rows = []
    for style in np.unique(p["style"]).tolist():
        g = p[p["style"] == style]
        cost = np.asarray(g["cost_bps"][np.isfinite(g["cost_bps"])], dtype=np.float64)
        qty, filled, maker = float(g["qty"].sum()), float(g["filled"].sum()), float(g["maker_qty"].sum())
        stats = (cost.mean(), np.median(cost), np.percentile(cost, 95)) if cost.shape[0] else (np.nan,) * 3
        rows.append([
            esc(enum_name(style, STYLE_NAMES, "style_")),
            esc(_count(g.shape[0])),
            esc(_count(cost.shape[0])),
            esc(percent(filled / qty if qty > 0 else np.nan)),
            *(esc(_dec2(s)) for s in stats),
            esc(percent(maker / filled if filled > 0 else np.nan)),
            esc(_money(g["fees"].sum())),
            esc(_count(int(g["degraded"].astype(bool).sum()))),
        ])  # fmt: skip
    header = ["style", "parents", "with fills", "filled (qty)", "mean cost bps", "median cost bps",
              "p95 cost bps", "maker share (qty)", "fees", "degraded"]  # fmt: skip
    return html_table(header, rows)


def _done(ts: int) -> str:
    return iso_ns(ts) if ts else "working"


def _fills_html(result: BacktestResult) -> str:
    f = result.fills
    if f.shape[0] == 0:
        return '<p class="muted">No fills.</p>'
    head = f[:TABLE_ROWS]
    names, sides = symbol_names(result, head["symbol"]), enum_names(head["side"], SIDE_NAMES, "SIDE_")
    rows = [
        [esc(_count(i)), esc(iso_ns(int(r["exch_ts"]))), esc(iso_ns(int(r["local_ts"]))), esc(str(names[i])),
         esc(str(int(r["order_id"]))), esc(str(sides[i])), "maker" if r["maker"] else "taker", esc(_num(r["px"])),
         esc(_num(r["qty"])), esc(_num(r["fee"])), esc(_num(r["mid_at_send"]))]
        for i, r in enumerate(head)
    ]  # fmt: skip
    header = ["#", "exchange time", "local time", "symbol", "order", "side", "liquidity", "price", "qty", "fee",
              "mid at send"]  # fmt: skip
    return _shown(f.shape[0]) + html_table(header, rows)


def _parents_html(result: BacktestResult) -> str:
    p = result.parents
    if p.shape[0] == 0:
        return '<p class="muted">No parent orders.</p>'
    head = p[:TABLE_ROWS]
    names, sides = symbol_names(result, head["symbol"]), enum_names(head["side"], SIDE_NAMES, "SIDE_")
    styles = enum_names(head["style"], STYLE_NAMES, "style_")
    statuses = enum_names(head["status"], PARENT_STATUS_NAMES, "status_")
    rows = [
        [esc(str(int(r["parent_id"]))), esc(str(names[i])), esc(str(sides[i])), esc(str(styles[i])),
         esc(str(statuses[i])), "yes" if r["degraded"] else "", esc(_num(r["qty"])), esc(_num(r["filled"])),
         esc(_num(r["maker_qty"])), esc(_num(r["taker_qty"])), esc(_num(r["vwap"])), esc(_num(r["mid_at_send"])),
         esc(_dec2(r["cost_bps"])), esc(_num(r["fees"])), esc(_count(int(r["n_children"]))),
         esc(iso_ns(int(r["send_ts"]))), esc(_done(int(r["done_ts"])))]
        for i, r in enumerate(head)
    ]  # fmt: skip
    header = ["parent", "symbol", "side", "style", "status", "degraded", "qty", "filled", "maker qty", "taker qty",
              "vwap", "mid at send", "cost bps", "fees", "children", "sent", "done"]  # fmt: skip
    return _shown(p.shape[0]) + html_table(header, rows)


def _shown(n: int) -> str:
    if n <= TABLE_ROWS:
        return f"<p>{_count(n)} row(s).</p>"
    return f"<p>The first {TABLE_ROWS} of {_count(n)} rows (all of them are in the Parquet tables).</p>"


_FIGURES: Final[Sequence[tuple[str, str, str]]] = (
    ("equity", "Equity", "Equity over local time; below, gross PnL and the fees and funding paid since the start."),
    ("drawdown", "Drawdown", "Fall from the running peak of equity, in currency and in percent of the peak."),
    (
        "fills",
        "Fills on the mid price",
        "Mid of the marks per symbol with every fill at its exchange time and price: buys ▲ green, sells ▼ red, "
        "maker fills filled, taker fills hollow.",
    ),
    (
        "slippage",
        "Parent order cost",
        "Histogram of the parents' cost versus the mid at send in basis points (> 0 means paid), per executor "
        "style, with mean (dashed) and median (dotted).",
    ),
)


def render_html(result: BacktestResult) -> str:
    """The report page; it references the PNGs by file name (``equity.png`` …) in the same folder."""
    check_result(result)
    figures = figures_html(_FIGURES)
    sections = [
        ("Run summary", _summary_html(result)),
        ("Metrics", _metrics_html(result)),
        ("Plots", figures),
        ("Executors", f'<div class="scroll">{_executor_html(result)}</div>'),
        ("Fills", f'<div class="scroll">{_fills_html(result)}</div>'),
        ("Parent orders", f'<div class="scroll">{_parents_html(result)}</div>'),
    ]
    generated = f"Generated by tradeplane {__version__} (tradeplane.workloads.backtest.report)."
    return report_page(_title(result), generated, sections)
