"""What every HTML report of the platform shares: the page style, table and time formatting, matplotlib
figure conventions, and writing the PNGs and the page.

Why one module: the training report and the backtest report must look alike and stay deterministic the same
way (Figure on the Agg canvas, never pyplot, so no global figure state or display; no matplotlib version in
the PNGs), and a fix to escaping or time formatting belongs in one place.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from matplotlib.axes import Axes
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
