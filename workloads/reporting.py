"""What every HTML report of the platform shares: the page style, table and time formatting, matplotlib
figure conventions, and writing the PNGs and the page.

Why one module: the training report and the backtest report must look alike and stay deterministic the same
way (Figure on the Agg canvas, never pyplot, so no global figure state or display; no matplotlib version in
the PNGs), and a fix to escaping or time formatting belongs in one place.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

DPI: Final = 100
PNG_METADATA: Final[dict[str, str | None]] = {"Software": None}  # no matplotlib version string in the files

CSS: Final = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; line-height: 1.4; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
h3 { font-size: 1em; margin: 0.5em 0; }
.muted, .generated { color: #777; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.85em; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; white-space: nowrap; }
th { background: #f4f4f4; }
td:first-child, th:first-child { text-align: left; }
tr.best { background: #fff6d5; font-weight: bold; }
.scroll { overflow-x: auto; }
.pos { color: #1a7f37; } .neg { color: #c62828; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
.examples { display: flex; flex-wrap: wrap; gap: 1.5em; }
pre { background: #f7f7f7; padding: 1em; overflow-x: auto; font-size: 0.85em; }
"""


def new_figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def tex_safe(text: str) -> str:
    """Plain text for matplotlib: a ``$`` would otherwise start mathtext."""
    return text.replace("$", r"\$")


def no_data(ax: Axes, message: str) -> None:
    """An empty panel that says why it is empty (every plot is always written)."""
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, fontsize=12, color="#777777")
    ax.set_xticks([])
    ax.set_yticks([])


def datetimes(ns: npt.ArrayLike) -> npt.NDArray[np.datetime64]:
    """ns since the epoch as ``datetime64[ns]`` (matplotlib draws them on a UTC date axis)."""
    return np.asarray(ns, dtype=np.int64).astype("datetime64[ns]")


def date_axis(ax: Axes) -> None:
    locator = AutoDateLocator()  # type: ignore[no-untyped-call]  # matplotlib.dates is unannotated
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]


def stacked_figure(
    height: float, suptitle: str, title: str, *, height_ratios: Sequence[float] | None = None
) -> tuple[Figure, Axes, Axes]:
    """A 9-inch-wide figure of two panels sharing the time axis, ``suptitle`` (plain text) small on top and
    ``title`` over the upper panel: the layout of the equity and drawdown plots."""
    fig = new_figure(9.0, height)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=height_ratios)
    fig.suptitle(tex_safe(suptitle), fontsize=10, color="#444444")
    top.set_title(title, fontsize=13)
    return fig, top, bottom


def equity_figure(suptitle: str, title: str) -> tuple[Figure, Axes, Axes]:
    """The equity figure: equity above, PnL since the start below."""
    return stacked_figure(6.5, suptitle, title, height_ratios=(3, 2))


def finish_equity_axes(ax_eq: Axes, ax_pnl: Axes, *, pnl_label: str, xlabel: str) -> None:
    """Labels, zero line, grid, legends and date axis of :func:`equity_figure`'s panels, once their lines are drawn."""
    ax_eq.set_ylabel("equity", fontsize=11)
    ax_eq.ticklabel_format(axis="y", style="plain", useOffset=False)
    ax_pnl.axhline(0.0, color="black", linewidth=0.8)
    ax_pnl.set_ylabel(pnl_label, fontsize=11)
    ax_pnl.set_xlabel(xlabel, fontsize=11)
    for ax in (ax_eq, ax_pnl):
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize=9)
    date_axis(ax_pnl)


def drawdown_figure(suptitle: str) -> tuple[Figure, Axes, Axes]:
    """The drawdown figure: in currency above, in percent of the peak below."""
    return stacked_figure(5.5, suptitle, "Drawdown from the running peak of equity")


def plot_drawdown(
    ax_abs: Axes,
    ax_pct: Axes,
    t: npt.ArrayLike,
    drawdown: npt.NDArray[np.float64],
    pct: npt.NDArray[np.float64],
    *,
    color: str,
    labels: tuple[str, str],
    fill: bool = True,
) -> None:
    """One drawdown series (running peak − equity ≥ 0, and ``pct`` = −100 × drawdown / peak) drawn downwards on
    both panels of :func:`drawdown_figure`, filled to zero when ``fill``; ``labels`` = (currency, percent)."""
    if fill:
        ax_abs.fill_between(t, -drawdown, 0.0, color=color, alpha=0.35, linewidth=0)
        ax_pct.fill_between(t, pct, 0.0, where=np.isfinite(pct), color=color, alpha=0.35, linewidth=0)
    ax_abs.plot(t, -drawdown, color=color, linewidth=1.0, label=labels[0])
    ax_pct.plot(t, pct, color=color, linewidth=1.0, label=labels[1])


def finish_drawdown_axes(ax_abs: Axes, ax_pct: Axes, *, xlabel: str) -> None:
    """Labels, grid, legends and date axis of :func:`drawdown_figure`'s panels, once the series are drawn."""
    ax_abs.set_ylabel("drawdown (currency)", fontsize=11)
    ax_pct.set_ylabel("drawdown (% of peak)", fontsize=11)
    ax_pct.set_xlabel(xlabel, fontsize=11)
    for ax in (ax_abs, ax_pct):
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower left", fontsize=9)
    date_axis(ax_pct)


def formatted(x: Any, spec: str) -> str:
    """``format(x, spec)`` for a finite number; "—" for NaN or a missing value (None), "∞"/"−∞" for
    infinities."""
    if x is None:
        return "—"
    v = float(x)
    if math.isnan(v):
        return "—"
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    return format(v, spec)


def percent(x: Any) -> str:
    """A fraction as a percentage with two decimals."""
    return formatted(x, ".2%")


def esc(text: str) -> str:
    """HTML-escaped text, quotes included."""
    return html.escape(text, quote=True)


def iso_ns(ns: int) -> str:
    """UTC ISO-8601 of ns since the epoch: seconds, with the fraction only when there is one."""
    seconds, rem = divmod(int(ns), 1_000_000_000)
    text = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{rem:09d}".rstrip("0") + "Z" if rem else text + "Z"


def html_table(header: Sequence[str], rows: Iterable[Sequence[str]], row_classes: Sequence[str | None] = ()) -> str:
    """An HTML table; header cells are escaped here, body cells must already be HTML."""
    head = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"
    body = []
    for i, row in enumerate(rows):
        cls = row_classes[i] if i < len(row_classes) else None
        attr = f' class="{html.escape(cls)}"' if cls else ""
        body.append(f"<tr{attr}>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>\n")
    return f"<table>\n<thead>{head}</thead>\n<tbody>\n{''.join(body)}</tbody>\n</table>\n"


def span(ts: npt.NDArray[np.int64]) -> str:
    """First → last time of ``ts`` (ns) with the duration, or "—" when empty."""
    if ts.shape[0] == 0:
        return "—"
    lo, hi = int(ts.min()), int(ts.max())
    return f"{iso_ns(lo)} → {iso_ns(hi)} ({(hi - lo) / 1e9:,.3f} s)"


def kv_table(pairs: Iterable[tuple[str, str]], empty: str = "") -> str:
    """A key/value table of plain text (escaped here), or ``empty`` as a note when there are no pairs."""
    rows = [[esc(k), esc(v)] for k, v in pairs]
    if not rows:
        return f'<p class="muted">{esc(empty)}</p>'
    return html_table(["key", "value"], rows)


def figures_html(figures: Iterable[tuple[str, str, str]]) -> str:
    """``<figure>`` elements for (PNG key, alt text, caption), referencing ``<key>.png`` in the same folder."""
    return "".join(
        f'<figure><img src="{key}.png" alt="{esc(alt)}">'
        f"<figcaption><b>{esc(alt)}.</b> {esc(caption)}</figcaption></figure>\n"
        for key, alt, caption in figures
    )


def report_page(title: str, generated: str, sections: Iterable[tuple[str, str]]) -> str:
    """The whole page: ``title`` and ``generated`` as plain text, then each (heading, HTML content) section."""
    body = "".join(f"<section>\n<h2>{esc(h)}</h2>\n{content}\n</section>\n" for h, content in sections)
    title = esc(title)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f'<h1>{title}</h1>\n<p class="generated">{esc(generated)}</p>\n{body}\n</body>\n</html>\n'
    )


def write_report_files(out_dir: Path, figures: Mapping[str, Figure], page: str) -> dict[str, Path]:
    """Write each figure as ``<key>.png`` and the page as ``report.html`` into ``out_dir`` (created);
    returns the paths under ``html`` and the figure keys."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for key, fig in figures.items():
        path = out_dir / f"{key}.png"
        fig.savefig(path, dpi=DPI, format="png", metadata=PNG_METADATA)
        paths[key] = path
    html_path = out_dir / "report.html"
    html_path.write_text(page, encoding="utf-8")
    return {"html": html_path, **paths}
