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

import html
import importlib
import json
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

from tradeplane import __version__
from tradeplane.engine.metrics import brier, calibration_table, ece
from tradeplane.workloads.reporting import CSS, html_table, iso_ns, new_figure, no_data, tex_safe, write_report_files

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
StrArray = npt.NDArray[np.str_]

PLOTS: Final = ("equity", "drawdown", "calibration", "utility", "latency", "rejections")
"""The PNGs :func:`write_run_report` writes, as ``<key>.png``, in this order after ``report.html``."""

N_BUCKETS: Final = 10
"""Equal-width probability buckets of the reliability diagram and of the ECE."""

LATENCY_BUDGET_NS: Final = 250_000
"""In-process decision budget (p99, features → score → gates → sizing → intent), from the architecture."""

TABLE_ROWS: Final = 200
"""Fills shown in the HTML (the store holds them all)."""

TOTAL: Final = "total"
"""Key of the whole-run series in :attr:`RunReportData.equity`; PnL and drawdown of the summary come from it."""

SKIP: Final = "skip"
ENTER_LONG: Final = "enter-long"
ENTER_SHORT: Final = "enter-short"
STAGES: Final = ("decision", "risk")
"""Where a rejection happened: the decision pipeline (a skipped signal) or the risk engine (a refused order)."""

_REASON_MODULES: Final = {"decision": "tradeplane.engine.decision.reasons", "risk": "tradeplane.engine.risk.reasons"}

# Summary keys the report knows (labels in this order); any other key of ``summary`` follows them as it is.
RUN_ID: Final = "run_id"
MANIFESTS: Final = "manifests"
SOURCE: Final = "source"
WALL_S: Final = "wall_s"
EVENTS: Final = "events"
EVENTS_PER_S: Final = "events_per_s"
DECISIONS: Final = "decisions"
ENTRIES: Final = "entries"
FILLS: Final = "fills"
PNL: Final = "pnl"
MAX_DRAWDOWN: Final = "max_drawdown"
CONFIG_REVS: Final = "config_revs"
MODEL_VERSIONS: Final = "model_versions"
STORE_PATH: Final = "store_path"
AUDIT_PATH: Final = "audit_path"
SUMMARY_LABELS: Final[Mapping[str, str]] = {
    RUN_ID: "run id",
    MANIFESTS: "manifests",
    SOURCE: "source",
    WALL_S: "wall time",
    EVENTS: "events",
    EVENTS_PER_S: "throughput",
    DECISIONS: "decisions",
    ENTRIES: "entries",
    FILLS: "fills",
    PNL: "PnL",
    MAX_DRAWDOWN: "max drawdown",
    CONFIG_REVS: "config revisions",
    MODEL_VERSIONS: "model versions",
    STORE_PATH: "store",
    AUDIT_PATH: "audit log",
}
"""Summary keys in display order with their labels. Missing counts, PnL, drawdown, throughput and model versions
are derived from the arrays; a value given in ``summary`` wins."""

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


# ---------------------------------------------------------------------------------------------------- outcomes


def live_outcomes(
    signal_ts: npt.ArrayLike,
    signal_symbol: npt.ArrayLike,
    mark_ts: npt.ArrayLike,
    mark_symbol: npt.ArrayLike,
    mark_mid: npt.ArrayLike,
    horizon_ns: int,
    *,
    end_ns: int | None = None,
) -> FloatArray:
    """What each signal's ``p_up`` predicted, as it turned out: 1.0 if the mid at ``ts + horizon_ns`` is above the
    mid at ``ts``, 0.0 if below, NaN if equal, unknown or not matured.

    "The mid at t" is the last mark of the signal's symbol at or before t (marks at equal times: the last one given),
    so both sides use only what was known at that moment. A signal has matured when ``ts + horizon_ns`` is at or
    before the end of the run, ``end_ns`` (default: the last mark of any symbol, the latest moment the run saw).
    A signal before its symbol's first mark is NaN. Marks need not be sorted; ``ts`` and the marks must be on the
    same clock (the runner records marks at the exchange time of the book top the decision used).

    Vectorised per symbol: one stable sort of the symbol's marks and two ``searchsorted`` over its signals.
    """
    sts = np.asarray(signal_ts, dtype=np.int64)
    ssym = _strs(signal_symbol)
    mts = np.asarray(mark_ts, dtype=np.int64)
    msym = _strs(mark_symbol)
    mmid = np.asarray(mark_mid, dtype=np.float64)
    if sts.ndim != 1 or ssym.shape != sts.shape:
        raise ValueError(f"signal_ts and signal_symbol must be 1-D and equally long, got {sts.shape} and {ssym.shape}")
    if mts.ndim != 1 or msym.shape != mts.shape or mmid.shape != mts.shape:
        raise ValueError(
            f"mark_ts, mark_symbol and mark_mid must be 1-D and equally long, got {mts.shape}, {msym.shape}, "
            f"{mmid.shape}"
        )
    if horizon_ns <= 0:
        raise ValueError(f"horizon_ns must be > 0, got {horizon_ns}")
    out = np.full(sts.shape[0], np.nan)
    if sts.shape[0] == 0 or mts.shape[0] == 0:
        return out
    target = sts + np.int64(horizon_ns)
    matured = target <= (int(mts.max()) if end_ns is None else int(end_ns))
    for symbol in np.unique(ssym[matured]).tolist():
        sel = np.flatnonzero(matured & (ssym == symbol))
        own = np.flatnonzero(msym == symbol)
        if own.shape[0] == 0:
            continue
        order = own[np.argsort(mts[own], kind="stable")]
        t, mid = mts[order], mmid[order]
        i0 = np.searchsorted(t, sts[sel], side="right") - 1
        i1 = np.searchsorted(t, target[sel], side="right") - 1
        known = i0 >= 0  # then i1 >= i0 >= 0 too
        m0, m1 = mid[i0[known]], mid[i1[known]]
        out[sel[known]] = np.where(m1 > m0, 1.0, np.where(m1 < m0, 0.0, np.nan))  # NaN mids compare False: NaN
    return out


# ---------------------------------------------------------------------------------------------------- data


def _strs(values: npt.ArrayLike) -> StrArray:
    return np.asarray(values, dtype=np.str_)


def _columns(obj: object, spec: Mapping[str, npt.DTypeLike]) -> None:
    """Coerce the named attributes of a frozen dataclass to 1-D arrays of their dtype, all equally long."""
    n: int | None = None
    for name, dtype in spec.items():
        value = np.asarray(getattr(obj, name), dtype=dtype)
        if value.ndim != 1:
            raise ValueError(f"{type(obj).__name__}.{name} must be 1-D, got shape {value.shape}")
        if n is not None and value.shape[0] != n:
            raise ValueError(f"{type(obj).__name__}.{name} has {value.shape[0]} rows, the columns before it {n}")
        n = value.shape[0]
        object.__setattr__(obj, name, value)


@dataclass(frozen=True)
class EquitySeries:
    """One equity curve: times (ns), equity (settlement currency) and drawdown = running peak − equity (≥ 0)."""

    ts: IntArray
    equity: FloatArray
    drawdown: FloatArray

    def __post_init__(self) -> None:
        _columns(self, {"ts": np.int64, "equity": np.float64, "drawdown": np.float64})
        if np.any(self.drawdown < 0):
            raise ValueError("EquitySeries.drawdown must be running peak − equity (≥ 0), found a negative value")

    @classmethod
    def from_equity(cls, ts: npt.ArrayLike, equity: npt.ArrayLike) -> EquitySeries:
        """The series with its drawdown derived as ``EquityCurve.drawdown`` does."""
        eq = np.asarray(equity, dtype=np.float64)
        peak = np.fmax.accumulate(eq) if eq.shape[0] else eq
        return cls(np.asarray(ts, dtype=np.int64), eq, peak - eq)

    def __len__(self) -> int:
        return int(self.ts.shape[0])


class SignalLike(Protocol):
    """The fields of ``engine.decision.types.Signal`` the report reads (so this module does not import it)."""

    @property
    def exchange_ts(self) -> int: ...
    @property
    def strategy(self) -> str: ...
    @property
    def symbol(self) -> str: ...
    @property
    def p_up(self) -> float: ...
    @property
    def decision(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def utility(self) -> float: ...
    @property
    def latency_ns(self) -> int: ...
    @property
    def model_version(self) -> str: ...
    @property
    def shadow(self) -> tuple[tuple[str, float], ...]: ...


_SIGNAL_COLUMNS: Final[Mapping[str, npt.DTypeLike]] = {
    "ts": np.int64,
    "strategy": np.str_,
    "symbol": np.str_,
    "p_up": np.float64,
    "decision": np.str_,
    "reason": np.str_,
    "utility": np.float64,
    "latency_ns": np.int64,
    "model_version": np.str_,
    "shadow_p_up": np.float64,
    "shadow_version": np.str_,
}


@dataclass(frozen=True)
class SignalColumns:
    """Every signal of the run (taken or not), one row each. ``ts`` is the signal's exchange time (ns);
    ``shadow_p_up`` / ``shadow_version`` are the first shadow model's (NaN / "" when none scored)."""

    ts: IntArray
    strategy: StrArray
    symbol: StrArray
    p_up: FloatArray
    decision: StrArray
    reason: StrArray
    utility: FloatArray
    latency_ns: IntArray
    model_version: StrArray
    shadow_p_up: FloatArray
    shadow_version: StrArray

    def __post_init__(self) -> None:
        _columns(self, _SIGNAL_COLUMNS)

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    @property
    def entered(self) -> npt.NDArray[np.bool_]:
        return np.char.startswith(self.decision, "enter")

    @classmethod
    def empty(cls) -> SignalColumns:
        return cls(**{name: np.empty(0, dtype=dtype) for name, dtype in _SIGNAL_COLUMNS.items()})

    @classmethod
    def from_signals(cls, signals: Iterable[SignalLike]) -> SignalColumns:
        """Columns of ``Signal`` objects (``ts`` = ``exchange_ts``)."""
        rows = list(signals)
        if not rows:
            return cls.empty()
        return cls(
            ts=np.array([s.exchange_ts for s in rows], dtype=np.int64),
            strategy=_strs([s.strategy for s in rows]),
            symbol=_strs([s.symbol for s in rows]),
            p_up=np.array([s.p_up for s in rows], dtype=np.float64),
            decision=_strs([s.decision for s in rows]),
            reason=_strs([s.reason for s in rows]),
            utility=np.array([s.utility for s in rows], dtype=np.float64),
            latency_ns=np.array([s.latency_ns for s in rows], dtype=np.int64),
            model_version=_strs([s.model_version for s in rows]),
            shadow_p_up=np.array([s.shadow[0][1] if s.shadow else math.nan for s in rows], dtype=np.float64),
            shadow_version=_strs([s.shadow[0][0] if s.shadow else "" for s in rows]),
        )


@dataclass(frozen=True)
class RejectionColumns:
    """Every rejection: ``stage`` in :data:`STAGES` and its reason code (one row per skipped signal or refused
    order)."""

    stage: StrArray
    reason: StrArray

    def __post_init__(self) -> None:
        _columns(self, {"stage": np.str_, "reason": np.str_})
        bad = sorted(set(np.unique(self.stage).tolist()) - set(STAGES))
        if bad:
            raise ValueError(f"RejectionColumns.stage must be one of {STAGES}, got {bad}")

    def __len__(self) -> int:
        return int(self.stage.shape[0])

    @classmethod
    def empty(cls) -> RejectionColumns:
        return cls(np.empty(0, dtype=np.str_), np.empty(0, dtype=np.str_))

    @classmethod
    def from_reasons(cls, decision: Iterable[str], risk: Iterable[str]) -> RejectionColumns:
        """Decision-stage codes (the ``reason`` of skipped signals) followed by risk-stage codes."""
        d, r = _strs(list(decision)), _strs(list(risk))
        stage = np.concatenate([np.full(d.shape[0], "decision"), np.full(r.shape[0], "risk")]).astype(np.str_)
        return cls(stage, np.concatenate([d, r]).astype(np.str_))


_FILL_COLUMNS: Final[Mapping[str, npt.DTypeLike]] = {
    "ts": np.int64,
    "symbol": np.str_,
    "side": np.int64,
    "qty": np.float64,
    "price": np.float64,
    "fee": np.float64,
}


@dataclass(frozen=True)
class FillColumns:
    """Every fill: exchange time (ns), symbol, side (+1 buy / −1 sell), base quantity, price, fee (settlement)."""

    ts: IntArray
    symbol: StrArray
    side: IntArray
    qty: FloatArray
    price: FloatArray
    fee: FloatArray

    def __post_init__(self) -> None:
        _columns(self, _FILL_COLUMNS)

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    @classmethod
    def empty(cls) -> FillColumns:
        return cls(**{name: np.empty(0, dtype=dtype) for name, dtype in _FILL_COLUMNS.items()})


@dataclass(frozen=True)
class RunReportData:
    """What the runner hands over after a run.

    ``equity``: one series per risk budget and/or a :data:`TOTAL` series. ``outcomes``: one per signal, from
    :func:`live_outcomes`. ``summary``: the run facts under the :data:`SUMMARY_LABELS` keys (others are listed
    too). ``model_roles``: version → role ("stable", "canary", "shadow"); a version missing there reads "live" if
    it decided and "shadow" if it only shadowed. ``horizon_ns``: the outcome horizon, for the captions (0 =
    not given).
    """

    equity: Mapping[str, EquitySeries] = field(default_factory=dict)
    signals: SignalColumns = field(default_factory=SignalColumns.empty)
    outcomes: FloatArray = field(default_factory=lambda: np.empty(0))
    rejections: RejectionColumns = field(default_factory=RejectionColumns.empty)
    fills: FillColumns = field(default_factory=FillColumns.empty)
    summary: Mapping[str, Any] = field(default_factory=dict)
    model_roles: Mapping[str, str] = field(default_factory=dict)
    horizon_ns: int = 0
    latency_budget_ns: int = LATENCY_BUDGET_NS

    def __post_init__(self) -> None:
        outcomes = np.asarray(self.outcomes, dtype=np.float64)
        if outcomes.shape != (len(self.signals),):
            raise ValueError(f"outcomes must hold one value per signal ({len(self.signals)}), got {outcomes.shape}")
        if not np.all(np.isnan(outcomes) | (outcomes == 0) | (outcomes == 1)):
            raise ValueError("outcomes must be 0, 1 or NaN")
        object.__setattr__(self, "outcomes", outcomes)


# ---------------------------------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class ModelStats:
    """Live quality of one model version on the run's matured signals (NaN when none matured).

    ``hit_rate``: share of matured signals whose predicted direction (up when p ≥ 0.5, as the decision picks the
    side) matched the outcome.
    """

    version: str
    role: str
    signals: int
    matured: int
    mean_p: float
    brier: float
    ece: float
    hit_rate: float


def _model_stats(version: str, role: str, p: FloatArray, y: FloatArray) -> ModelStats:
    ok = np.isfinite(p) & np.isfinite(y)
    pm, ym = p[ok], y[ok]
    if pm.shape[0] == 0:
        return ModelStats(version, role, int(p.shape[0]), 0, _mean(p), math.nan, math.nan, math.nan)
    hit = float(np.mean((pm >= 0.5) == (ym == 1.0)))
    return ModelStats(version, role, int(p.shape[0]), int(pm.shape[0]), _mean(p), brier(ym, pm), ece(ym, pm), hit)


def model_stats(data: RunReportData) -> list[ModelStats]:
    """One row per deciding version (by name), then one per shadow version (by name)."""
    s, y = data.signals, data.outcomes
    rows = []
    for v in np.unique(s.model_version).tolist():
        m = s.model_version == v
        rows.append(_model_stats(v, data.model_roles.get(v, "live"), s.p_up[m], y[m]))
    for v in np.unique(s.shadow_version[s.shadow_version != ""]).tolist():
        m = (s.shadow_version == v) & np.isfinite(s.shadow_p_up)
        rows.append(_model_stats(v, data.model_roles.get(v, "shadow"), s.shadow_p_up[m], y[m]))
    return rows


@dataclass(frozen=True)
class _Calibration:
    label: str
    n: int
    p: FloatArray
    y: FloatArray
    brier: float
    ece: float


def _calibration(label: str, p: FloatArray, y: FloatArray) -> _Calibration | None:
    ok = np.isfinite(p) & np.isfinite(y)
    if not ok.any():
        return None
    pm, ym = p[ok], y[ok]
    return _Calibration(label, int(pm.shape[0]), pm, ym, brier(ym, pm), ece(ym, pm, N_BUCKETS))


def _live_and_shadow(data: RunReportData) -> tuple[_Calibration | None, _Calibration | None]:
    s = data.signals
    versions = np.unique(s.shadow_version[np.isfinite(s.shadow_p_up) & (s.shadow_version != "")]).tolist()
    name = f"shadow {versions[0]}" if len(versions) == 1 else f"shadow ({len(versions)} versions)"
    return (
        _calibration("live p_up", s.p_up, data.outcomes),
        _calibration(name if versions else "shadow", s.shadow_p_up, data.outcomes),
    )


def _latency_us(data: RunReportData) -> FloatArray:
    return np.asarray(data.signals.latency_ns, dtype=np.float64) / 1e3


def _mean(x: FloatArray) -> float:
    finite = x[np.isfinite(x)]
    return float(finite.mean()) if finite.shape[0] else math.nan


def _pnl_and_drawdown(data: RunReportData) -> tuple[float, float]:
    """PnL and max drawdown of the :data:`TOTAL` series, else of the only series, else the sum of the series'
    PnLs and the largest of their drawdowns."""
    chosen = [data.equity[TOTAL]] if TOTAL in data.equity else list(data.equity.values())
    series = [s for s in chosen if len(s)]
    if not series:
        return math.nan, math.nan
    pnl = sum(float(s.equity[-1] - s.equity[0]) for s in series)
    return pnl, max(float(np.nanmax(s.drawdown)) for s in series)


def _derived_summary(data: RunReportData) -> dict[str, Any]:
    s = data.signals
    pnl, dd = _pnl_and_drawdown(data)
    out: dict[str, Any] = {
        DECISIONS: len(s),
        ENTRIES: int(s.entered.sum()),
        FILLS: len(data.fills),
        PNL: pnl,
        MAX_DRAWDOWN: dd,
        MODEL_VERSIONS: [f"{m.version} ({m.role})" for m in model_stats(data)],
    }
    wall, events = data.summary.get(WALL_S), data.summary.get(EVENTS)
    if isinstance(wall, numbers.Real) and isinstance(events, numbers.Real) and float(wall) > 0:
        out[EVENTS_PER_S] = float(events) / float(wall)
    return out


# ---------------------------------------------------------------------------------------------------- plots


def _times(ns: npt.ArrayLike) -> npt.NDArray[np.datetime64]:
    return np.asarray(ns, dtype=np.int64).astype("datetime64[ns]")


def _date_axis(ax: Axes) -> None:
    locator = AutoDateLocator()  # type: ignore[no-untyped-call]  # matplotlib.dates is unannotated
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]


def _title(data: RunReportData) -> str:
    run_id = data.summary.get(RUN_ID)
    return f"Run report: {run_id}" if run_id not in (None, "") else "Run report"


def _series(data: RunReportData) -> list[tuple[str, EquitySeries]]:
    """Non-empty series, :data:`TOTAL` first, then the budgets by name."""
    return sorted(((k, v) for k, v in data.equity.items() if len(v)), key=lambda kv: (kv[0] != TOTAL, kv[0]))


def _equity_figure(data: RunReportData) -> Figure:
    fig = new_figure(9.0, 6.5)
    ax_eq, ax_pnl = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    fig.suptitle(tex_safe(_title(data)), fontsize=10, color="#444444")
    ax_eq.set_title("Equity (settlement currency)", fontsize=13)
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
        t = _times(s.ts)
        if i < len(headline):
            label = f"{name} (end {_money(s.equity[-1])})"
            ax_eq.plot(t, s.equity, color=color, linewidth=1.4, label=tex_safe(label))
        ax_pnl.plot(t, pnl, color=color, linewidth=1.8 if name == TOTAL else 1.2,
                    label=tex_safe(f"{name} ({_money(pnl[-1])})"))  # fmt: skip
    ax_eq.set_ylabel("equity", fontsize=11)
    ax_eq.ticklabel_format(axis="y", style="plain", useOffset=False)
    ax_pnl.axhline(0.0, color="black", linewidth=0.8)
    ax_pnl.set_ylabel("PnL since start", fontsize=11)
    ax_pnl.set_xlabel("time (UTC)", fontsize=11)
    for ax in (ax_eq, ax_pnl):
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize=9)
    _date_axis(ax_pnl)
    return fig


def _drawdown_figure(data: RunReportData) -> Figure:
    fig = new_figure(9.0, 5.5)
    ax_abs, ax_pct = fig.subplots(2, 1, sharex=True)
    fig.suptitle(tex_safe(_title(data)), fontsize=10, color="#444444")
    ax_abs.set_title("Drawdown from the running peak of equity", fontsize=13)
    series = _series(data)
    if not series:
        no_data(ax_abs, "no equity rows")
        no_data(ax_pct, "")
        return fig
    for i, (name, s) in enumerate(series):
        color = _COLORS["drawdown"] if len(series) == 1 else _SERIES_COLORS[i % len(_SERIES_COLORS)]
        t = _times(s.ts)
        peak = s.equity + s.drawdown
        with np.errstate(divide="ignore", invalid="ignore"):
            pct = np.where(peak > 0, -100.0 * s.drawdown / peak, np.nan)
        if len(series) == 1:
            ax_abs.fill_between(t, -s.drawdown, 0.0, color=color, alpha=0.35, linewidth=0)
            ax_pct.fill_between(t, pct, 0.0, where=np.isfinite(pct), color=color, alpha=0.35, linewidth=0)
        ax_abs.plot(t, -s.drawdown, color=color, linewidth=1.0,
                    label=tex_safe(f"{name} (max {_money(np.nanmax(s.drawdown))})"))  # fmt: skip
        ax_pct.plot(t, pct, color=color, linewidth=1.0, label=tex_safe(f"{name} (max {_pct(-np.nanmin(pct) / 100)})"))
    ax_abs.set_ylabel("drawdown (currency)", fontsize=11)
    ax_pct.set_ylabel("drawdown (% of peak)", fontsize=11)
    ax_pct.set_xlabel("time (UTC)", fontsize=11)
    for ax in (ax_abs, ax_pct):
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower left", fontsize=9)
    _date_axis(ax_pct)
    return fig


def _calibration_figure(data: RunReportData) -> Figure:
    fig = new_figure(7.5, 7.5)
    ax, ax_n = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    fig.suptitle(tex_safe(_title(data)), fontsize=10, color="#444444")
    ax.set_title(f"Reliability of the live p_up on matured signals ({N_BUCKETS} equal-width buckets)", fontsize=12)
    live, shadow = _live_and_shadow(data)
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
    us = _latency_us(data)
    if us.shape[0] == 0:
        no_data(ax, "no decisions")
        return fig
    budget = data.latency_budget_ns / 1e3
    p50, p99 = (float(q) for q in np.percentile(us, [50, 99]))
    hi = max(float(np.percentile(us, 99.9)) * 1.05, budget * 1.2)
    over = int((us > budget).sum())
    ax.hist(np.clip(us, 0.0, hi), bins=np.linspace(0.0, hi, 61).tolist(), color=_COLORS["latency"], alpha=0.6,
            label=f"decisions (n={us.shape[0]:,}; {over:,} over budget)")  # fmt: skip
    ax.axvline(p50, color=_COLORS["p50"], linestyle="--", linewidth=1.5, label=f"p50 {_dec1(p50)} µs")
    ax.axvline(p99, color=_COLORS["p99"], linestyle="--", linewidth=1.5, label=f"p99 {_dec1(p99)} µs")
    ax.axvline(budget, color=_COLORS["budget"], linewidth=2.0, label=f"budget (p99) {_dec1(budget)} µs")
    ax.set_xlabel("µs (slower than the plot's range drawn at the right edge)", fontsize=10)
    ax.set_ylabel("decisions", fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    return fig


def rejection_counts(data: RunReportData) -> list[tuple[str, str, int]]:
    """(stage, reason, count): decision stage first, then risk; within a stage by count descending, then code."""
    r = data.rejections
    out: list[tuple[str, str, int]] = []
    for stage in STAGES:
        codes, counts = np.unique(r.reason[r.stage == stage], return_counts=True)
        ranked = sorted(zip(codes.tolist(), counts.tolist(), strict=True), key=lambda cc: (-cc[1], cc[0]))
        out += [(stage, code, int(n)) for code, n in ranked]
    return out


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


def _is_real(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool | np.bool_)


def _formatted(x: Any, spec: str) -> str:
    v = float(x)
    if math.isnan(v):
        return "—"
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    return format(v, spec)


def _money(x: Any) -> str:
    return _formatted(x, ",.2f")


def _pct(x: Any) -> str:
    return _formatted(x, ".2%")


def _dec1(x: Any) -> str:
    return _formatted(x, ",.1f")


def _dec4(x: Any) -> str:
    """Four decimals: Brier, ECE, probabilities."""
    return _formatted(x, ".4f")


def _text(value: Any) -> str:
    """A summary value as text: counts with separators, floats to 6 significant digits, lists joined."""
    if value is None:
        return "—"
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        return _formatted(value, ",.6g")
    if isinstance(value, str | Path):
        return str(value)
    if isinstance(value, Sequence | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else list(value)
        return ", ".join(_text(v) for v in items) if items else "—"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {_text(v)}" for k, v in value.items()) or "—"
    return json.dumps(value, default=str, ensure_ascii=False, sort_keys=True)


_SUMMARY_FORMATS: Final = {
    WALL_S: lambda v: f"{_formatted(v, ',.3f')} s",
    EVENTS_PER_S: lambda v: f"{_formatted(v, ',.0f')} events/s",
    PNL: _money,
    MAX_DRAWDOWN: _money,
}


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _kv_table(pairs: Iterable[tuple[str, str]]) -> str:
    return html_table(["key", "value"], [[_e(k), _e(v)] for k, v in pairs])


def _span(ts: IntArray) -> str:
    if ts.shape[0] == 0:
        return "—"
    lo, hi = int(ts.min()), int(ts.max())
    return f"{iso_ns(lo)} → {iso_ns(hi)} ({(hi - lo) / 1e9:,.3f} s)"


# ---------------------------------------------------------------------------------------------------- HTML


def summary_rows(data: RunReportData) -> list[tuple[str, str]]:
    """(label, text) of the summary table: the known keys in :data:`SUMMARY_LABELS` order (given or derived),
    facts derived from the arrays, then every other ``summary`` key as given."""
    values = {**_derived_summary(data), **data.summary}
    rows = []
    for key, label in SUMMARY_LABELS.items():
        value = values.get(key)
        fmt = _SUMMARY_FORMATS.get(key)
        rows.append((label, fmt(value) if fmt is not None and _is_real(value) else _text(value)))
    s = data.signals
    matured = int(np.isfinite(data.outcomes).sum())
    horizon = f" at a {data.horizon_ns / 1e9:,.3g} s horizon" if data.horizon_ns > 0 else ""
    us = _latency_us(data)
    p50, p99 = (float(q) for q in np.percentile(us, [50, 99])) if us.shape[0] else (math.nan, math.nan)
    rows += [
        ("signal span (exchange time)", _span(s.ts)),
        ("matured signals (mid moved)", f"{matured:,} of {len(s):,}{horizon}"),
        ("decision latency p50 / p99", f"{_dec1(p50)} / {_dec1(p99)} µs"),
        ("decisions over the latency budget", f"{int((us > data.latency_budget_ns / 1e3).sum()):,}"),
    ]
    rows += [(str(k), _text(v)) for k, v in data.summary.items() if k not in SUMMARY_LABELS]
    return rows


def reason_descriptions() -> dict[str, dict[str, str]]:
    """Stage → {code: one-line description} from the reason modules that can be imported (lazily: the report
    must render even where the decision or risk package is absent); a code without a description shows itself."""
    out: dict[str, dict[str, str]] = {}
    for stage, module in _REASON_MODULES.items():
        try:
            descriptions = getattr(importlib.import_module(module), "DESCRIPTIONS", None)
        except ImportError:
            descriptions = None
        out[stage] = {str(k): str(v) for k, v in descriptions.items()} if isinstance(descriptions, Mapping) else {}
    return out


def _rejections_html(data: RunReportData) -> str:
    counts = rejection_counts(data)
    if not counts:
        return '<p class="muted">No rejections.</p>'
    descriptions = reason_descriptions()
    per_stage = {stage: sum(n for st, _, n in counts if st == stage) for stage in STAGES}
    rows = [
        [_e(stage), _e(code), _e(f"{n:,}"), _e(_pct(n / per_stage[stage])),
         _e(descriptions.get(stage, {}).get(code, code))]
        for stage, code, n in counts
    ]  # fmt: skip
    return html_table(["stage", "reason", "count", "share of stage", "description"], rows)


def _models_html(data: RunReportData) -> str:
    stats = model_stats(data)
    if not stats:
        return '<p class="muted">No signals: no model decided.</p>'
    rows = [
        [_e(m.version), _e(m.role), _e(f"{m.signals:,}"), _e(f"{m.matured:,}"), _e(_dec4(m.mean_p)),
         _e(_dec4(m.brier)), _e(_dec4(m.ece)), _e(_pct(m.hit_rate))]
        for m in stats
    ]  # fmt: skip
    header = ["version", "role", "signals", "matured", "mean p_up", "Brier", "ECE", "hit rate"]
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
        cells = [_e(f"{int(x.sum()):,}") for x in counted]
        rows.append([_e(strategy), *cells, _e(f"{matured_entries:,}"), _e(_pct(hit))])
    header = ["strategy", "signals", "enter-long", "enter-short", "skip", "matured", "matured entries",
              "entry hit rate"]  # fmt: skip
    return html_table(header, rows)


def _fills_html(data: RunReportData) -> str:
    f = data.fills
    if len(f) == 0:
        return '<p class="muted">No fills.</p>'
    n = min(len(f), TABLE_ROWS)
    rows = [
        [_e(f"{i:,}"), _e(iso_ns(int(f.ts[i]))), _e(str(f.symbol[i])), "BUY" if f.side[i] > 0 else "SELL",
         _e(_formatted(f.qty[i], ",.10g")), _e(_formatted(f.price[i], ",.10g")), _e(_formatted(f.fee[i], ",.10g"))]
        for i in range(n)
    ]  # fmt: skip
    shown = f"<p>{len(f):,} fill(s)" + (f", the first {TABLE_ROWS} shown" if len(f) > TABLE_ROWS else "")
    fees = f"; fees {_money(np.nansum(f.fee))}; traded notional {_money(np.nansum(f.qty * f.price))}.</p>"
    return shown + fees + html_table(["#", "time", "symbol", "side", "qty", "price", "fee"], rows)


def _calibration_caption(data: RunReportData) -> str:
    live, shadow = _live_and_shadow(data)
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
    us = _latency_us(data)
    budget = data.latency_budget_ns / 1e3
    if us.shape[0] == 0:
        return f"No decisions; the budget is p99 < {_dec1(budget)} µs."
    p50, p99 = (float(q) for q in np.percentile(us, [50, 99]))
    return (f"Compute time of each decision as the runner measured it: p50 {_dec1(p50)} µs, p99 {_dec1(p99)} µs, "
            f"max {_dec1(float(us.max()))} µs; budget p99 < {_dec1(budget)} µs.")  # fmt: skip


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
    figures = "".join(
        f'<figure><img src="{key}.png" alt="{_e(alt)}">'
        f"<figcaption><b>{_e(alt)}.</b> {_e(caption)}</figcaption></figure>\n"
        for key, alt, caption in _figures(data)
    )
    sections = [
        ("Run summary", _kv_table(summary_rows(data))),
        ("Plots", figures),
        ("Decisions by strategy", f'<div class="scroll">{_decisions_html(data)}</div>'),
        ("Rejections by reason", f'<div class="scroll">{_rejections_html(data)}</div>'),
        ("Model versions", f'<div class="scroll">{_models_html(data)}</div>'),
        ("Fills", f'<div class="scroll">{_fills_html(data)}</div>'),
    ]
    body = "".join(f"<section>\n<h2>{_e(h)}</h2>\n{content}\n</section>\n" for h, content in sections)
    title = _e(_title(data))
    generated = f"Generated by tradeplane {__version__} (tradeplane.workloads.local.report)."
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f'<h1>{title}</h1>\n<p class="generated">{_e(generated)}</p>\n{body}\n</body>\n</html>\n'
    )


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
