"""The data of the run report (:mod:`tradeplane.workloads.local.report`): what the runner hands over after a run
(:class:`RunReportData` and its column dataclasses), the live outcomes of the signals (:func:`live_outcomes`) and the
statistics the page and the plots show (:func:`model_stats`, :func:`rejection_counts`, :func:`summary_rows`,
:func:`reason_descriptions`).

The metrics are ``engine.metrics``' (the same functions score training folds and canary windows), so the numbers
are comparable with the training report. The ECE uses the same equal-width buckets as the diagram, so the ECE is
the count-weighted mean vertical gap of the diagram's points.
"""

from __future__ import annotations

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

from tradeplane.engine.metrics import brier, ece
from tradeplane.workloads.reporting import formatted, span

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
StrArray = npt.NDArray[np.str_]

N_BUCKETS: Final = 10
"""Equal-width probability buckets of the reliability diagram and of the ECE."""

LATENCY_BUDGET_NS: Final = 250_000
"""In-process decision budget (p99, features → score → gates → sizing → intent), from the architecture."""

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
class Calibration:
    label: str
    n: int
    p: FloatArray
    y: FloatArray
    brier: float
    ece: float


def _calibration(label: str, p: FloatArray, y: FloatArray) -> Calibration | None:
    ok = np.isfinite(p) & np.isfinite(y)
    if not ok.any():
        return None
    pm, ym = p[ok], y[ok]
    return Calibration(label, int(pm.shape[0]), pm, ym, brier(ym, pm), ece(ym, pm, N_BUCKETS))


def live_and_shadow(data: RunReportData) -> tuple[Calibration | None, Calibration | None]:
    s = data.signals
    versions = np.unique(s.shadow_version[np.isfinite(s.shadow_p_up) & (s.shadow_version != "")]).tolist()
    name = f"shadow {versions[0]}" if len(versions) == 1 else f"shadow ({len(versions)} versions)"
    return (
        _calibration("live p_up", s.p_up, data.outcomes),
        _calibration(name if versions else "shadow", s.shadow_p_up, data.outcomes),
    )


def latency_us(data: RunReportData) -> FloatArray:
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


def rejection_counts(data: RunReportData) -> list[tuple[str, str, int]]:
    """(stage, reason, count): decision stage first, then risk; within a stage by count descending, then code."""
    r = data.rejections
    out: list[tuple[str, str, int]] = []
    for stage in STAGES:
        codes, counts = np.unique(r.reason[r.stage == stage], return_counts=True)
        ranked = sorted(zip(codes.tolist(), counts.tolist(), strict=True), key=lambda cc: (-cc[1], cc[0]))
        out += [(stage, code, int(n)) for code, n in ranked]
    return out


# ---------------------------------------------------------------------------------------------------- formats


def _is_real(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool | np.bool_)


def money(x: Any) -> str:
    """Money: two decimals with thousands separators."""
    return formatted(x, ",.2f")


def dec1(x: Any) -> str:
    """One decimal (µs)."""
    return formatted(x, ",.1f")


def _text(value: Any) -> str:
    """A summary value as text: counts with separators, floats to 6 significant digits, lists joined."""
    if value is None:
        return "—"
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        return formatted(value, ",.6g")
    if isinstance(value, str | Path):
        return str(value)
    if isinstance(value, Sequence | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else list(value)
        return ", ".join(_text(v) for v in items) if items else "—"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {_text(v)}" for k, v in value.items()) or "—"
    return json.dumps(value, default=str, ensure_ascii=False, sort_keys=True)


_SUMMARY_FORMATS: Final = {
    WALL_S: lambda v: f"{formatted(v, ',.3f')} s",
    EVENTS_PER_S: lambda v: f"{formatted(v, ',.0f')} events/s",
    PNL: money,
    MAX_DRAWDOWN: money,
}


# ---------------------------------------------------------------------------------------------------- summary


#: summary keys the page shows in sections of their own, not as raw rows of the summary table
OWN_SECTIONS: Final = frozenset({"rollouts"})


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
    us = latency_us(data)
    p50, p99 = (float(q) for q in np.percentile(us, [50, 99])) if us.shape[0] else (math.nan, math.nan)
    rows += [
        ("signal span (exchange time)", span(s.ts)),
        ("matured signals (mid moved)", f"{matured:,} of {len(s):,}{horizon}"),
        ("decision latency p50 / p99", f"{dec1(p50)} / {dec1(p99)} µs"),
        ("decisions over the latency budget", f"{int((us > data.latency_budget_ns / 1e3).sum()):,}"),
    ]
    rows += [(str(k), _text(v)) for k, v in data.summary.items() if k not in SUMMARY_LABELS and k not in OWN_SECTIONS]
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
