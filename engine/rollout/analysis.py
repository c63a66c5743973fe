"""One analysis run: candidate against stable over the same window → PASS, FAIL or INCONCLUSIVE.

Why a verdict has three values: "not enough evidence yet" must never be read as "good" (a candidate with 12
samples would sail through every threshold) nor as "bad" (it would be rolled back for being young). So every
threshold that is set but cannot be judged yet — too few samples, labels not matured, no PnL — keeps the run
INCONCLUSIVE, which the controller neither promotes on nor counts as a failure. A judged breach fails the run
at once, whatever else is still pending.

The function is pure: the caller (the operator from ClickHouse, the local runner from its own buffers) reads
the window and passes arrays; nothing here reads a clock or a database.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from tradeplane.api.v1alpha1.modelversion import AnalysisSpec

from . import metrics as m
from .verdict import AnalysisVerdict, MetricResult, Verdict

__all__ = ["AnalysisVerdict", "MetricResult", "Sample", "Verdict", "analyze", "failing_metrics"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, eq=False)
class Sample:
    """One model's decisions over the analysis window (the candidate's and the stable's windows are the same).

    Per scored decision (length n): ``p_up``; ``label`` −1/0/+1 or NaN while not matured; ``acted`` whether the
    decision was executed (for a shadow: would have been); ``latency_ms`` the inference latency; ``side`` the
    entered direction (+1/−1) where acted, or None to derive it from p_up (≥ ½ → long).
    ``pnl``: the model's PnL series over the window (any length: per fill or per mark), None when it traded
    nothing measurable; ``risk``: per-``pnl``-entry gross notional (USDT, summed) or one risk unit (scalar)."""

    p_up: FloatArray
    label: FloatArray
    acted: BoolArray
    latency_ms: FloatArray
    pnl: FloatArray | None = None
    risk: FloatArray | float | None = None
    side: FloatArray | None = None

    def __post_init__(self) -> None:
        p = m.vector("p_up", self.p_up)
        if ((p < 0) | (p > 1)).any():
            raise ValueError("p_up must lie in [0, 1]")
        lab = m.labels("label", self.label)
        acted = np.asarray(self.acted)
        if acted.ndim != 1 or (acted.size and not np.isin(acted, (0, 1)).all()):
            raise ValueError("acted must be a 1-D array of booleans")
        lat = m.vector("latency_ms", self.latency_ms)
        lengths = {"p_up": len(p), "label": len(lab), "acted": len(acted), "latency_ms": len(lat)}
        side = None
        if self.side is not None:
            side = m.vector("side", self.side)
            lengths["side"] = len(side)
        if len(set(lengths.values())) > 1:
            raise ValueError(f"per-decision arrays must be equally long, got {lengths}")
        pnl = None if self.pnl is None else m.vector("pnl", self.pnl)
        if (pnl is None) != (self.risk is None):
            raise ValueError("pnl and risk must be given together")
        risk: FloatArray | float | None = None
        if pnl is not None and self.risk is not None:
            m.risk_units(self.risk, len(pnl))  # validates
            risk = float(self.risk) if np.ndim(self.risk) == 0 else m.vector("risk", self.risk)
        object.__setattr__(self, "p_up", p)
        object.__setattr__(self, "label", lab)
        object.__setattr__(self, "acted", acted.astype(bool))
        object.__setattr__(self, "latency_ms", lat)
        object.__setattr__(self, "side", side)
        object.__setattr__(self, "pnl", pnl)
        object.__setattr__(self, "risk", risk)

    @property
    def n(self) -> int:
        return len(self.p_up)

    @property
    def matured(self) -> BoolArray:
        return ~np.isnan(self.label)

    def sides(self) -> FloatArray:
        return self.side if self.side is not None else m.decision_side(self.p_up)


#: Stands in for a stable that scored too little to compare with (a 100 % step).
_NO_SAMPLE: Final = Sample(np.zeros(0), np.zeros(0), np.zeros(0, bool), np.zeros(0))


def _num(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _fmt(x: float | None, spec: str = ".4g") -> str:
    return "n/a" if x is None or not math.isfinite(x) else format(x, spec)


class _Judge:
    """Collects results and pending reasons for one run (a small helper, not part of the API)."""

    def __init__(self) -> None:
        self.results: list[MetricResult] = []
        self.pending: list[str] = []
        self.notes: list[str] = []

    def ceiling(self, metric: str, cand: float, stable: float | None, limit: float | None, unit: str = "") -> None:
        """Candidate must be ≤ limit."""
        self._bound(metric, cand, stable, limit, unit, upper=True)

    def floor(self, metric: str, cand: float, stable: float | None, limit: float | None, unit: str = "") -> None:
        """Candidate must be ≥ limit."""
        self._bound(metric, cand, stable, limit, unit, upper=False)

    def _bound(self, metric: str, cand: float, stable: float | None, limit: float | None, unit: str, *,
               upper: bool) -> None:  # fmt: skip
        if limit is None:
            self.info(metric, cand, stable, unit)
            return
        ok = bool(cand <= limit) if upper else bool(cand >= limit)
        rel = ("≤" if ok else ">") if upper else ("≥" if ok else "<")
        kind = "ceiling" if upper else "floor"
        self.results.append(
            MetricResult(
                metric,
                _num(cand),
                _num(stable) if stable is not None else None,
                limit,
                ok,
                f"{metric} {_fmt(cand)}{unit} {rel} {kind} {_fmt(limit)}{unit} (stable {_fmt(stable)}{unit})",
            )
        )

    def info(self, metric: str, cand: float, stable: float | None, unit: str = "") -> None:
        self.results.append(
            MetricResult(
                metric,
                _num(cand),
                _num(stable) if stable is not None else None,
                None,
                True,
                f"{metric} {_fmt(cand)}{unit} (stable {_fmt(stable)}{unit}; no threshold set)",
            )
        )

    def wait(self, metric: str, limit: float | None, why: str) -> None:
        """A metric that cannot be computed yet: pending if a threshold is set, else silently skipped."""
        if limit is not None:
            self.pending.append(f"{metric}: {why}")


def _label_metrics(
    j: _Judge,
    cand: Sample,
    stable: Sample,
    spec: AnalysisSpec,
    offline: m.OfflineCalibration | None,
    min_matured: int,
    min_bucket_count: int,
) -> int:
    th = spec.thresholds
    mc = cand.matured
    n_matured = int(mc.sum())
    label_limits = {
        "brier": th.max_brier,
        "ece": th.max_ece,
        "calibration_drift_pp": th.max_calibration_drift_pp if offline is not None else None,
        "pr_auc": th.min_pr_auc,
        "hit_rate": th.min_hit_rate,
    }
    if offline is None and th.max_calibration_drift_pp is not None:
        j.notes.append("calibration_drift_pp: not judged, no offline calibration curve for this version")
    if n_matured < min_matured:
        for metric, limit in label_limits.items():
            j.wait(metric, limit, f"{n_matured} matured labels < {min_matured} needed")
        return n_matured
    y_c = m.outcome_up(cand.label[mc])
    p_c = cand.p_up[mc]
    ms = stable.matured
    y_s, p_s = (m.outcome_up(stable.label[ms]), stable.p_up[ms]) if ms.any() else (None, None)

    def on_stable(f: object) -> float | None:
        if y_s is None or p_s is None:
            return None
        return f(y_s, p_s)  # type: ignore[operator, no-any-return]

    j.ceiling("brier", m.brier_score(y_c, p_c), on_stable(m.brier_score), th.max_brier)
    j.ceiling("ece", m.expected_calibration_error(y_c, p_c), on_stable(m.expected_calibration_error), th.max_ece)

    if offline is not None:
        drift = m.calibration_drift(y_c, p_c, offline, min_count=min_bucket_count)
        limit = th.max_calibration_drift_pp
        if drift.judged == 0:
            j.wait("calibration_drift_pp", limit, f"no probability bucket has ≥ {min_bucket_count} samples")
        else:
            s_drift = (
                m.calibration_drift(y_s, p_s, offline, min_count=min_bucket_count)
                if y_s is not None and p_s is not None
                else None
            )
            s_val = abs(s_drift.drift_pp) if s_drift is not None and s_drift.judged else None
            value = abs(drift.drift_pp)
            ok = limit is None or value <= limit
            bound = "no threshold set" if limit is None else f"{'within' if ok else 'beyond'} ±{limit:g} pp"
            j.results.append(
                MetricResult(
                    "calibration_drift_pp",
                    value,
                    s_val,
                    limit,
                    ok,
                    f"calibration_drift_pp {value:.1f} pp in {drift.describe()}, {bound} "
                    f"(stable worst {_fmt(s_val, '.1f')} pp)",
                )
            )

    if y_c.any():
        j.floor("pr_auc", m.average_precision(y_c, p_c), on_stable(m.average_precision), th.min_pr_auc)
    else:
        j.wait("pr_auc", th.min_pr_auc, "no positive (up) label among the matured candidate decisions")

    rate_c, n_acted = m.hit_rate(cand.label, cand.sides(), cand.acted)
    if n_acted >= min_bucket_count:
        rate_s, n_s = m.hit_rate(stable.label, stable.sides(), stable.acted)
        j.floor("hit_rate", rate_c, rate_s if n_s else None, th.min_hit_rate)
    else:
        j.wait("hit_rate", th.min_hit_rate, f"{n_acted} acted decisions with matured labels < {min_bucket_count}")
    return n_matured


def _pnl_metrics(j: _Judge, cand: Sample, stable: Sample, spec: AnalysisSpec) -> None:
    th = spec.thresholds
    if cand.pnl is None or cand.risk is None:
        j.wait("pnl_vs_stable_per_risk", th.min_pnl_vs_stable_per_risk, "no candidate PnL in the window")
        j.wait("drawdown_pct", th.max_drawdown_pct, "no candidate PnL in the window")
        return
    c_ppr = m.pnl_per_risk(cand.pnl, cand.risk)
    c_dd = m.max_drawdown_pct(cand.pnl, cand.risk)
    if stable is _NO_SAMPLE:  # no stable traffic at all: nothing to compare with, and nothing to wait for
        s_ppr = s_dd = None
    elif stable.pnl is None or stable.risk is None:
        j.wait("pnl_vs_stable_per_risk", th.min_pnl_vs_stable_per_risk, "no stable PnL in the window")
        s_ppr = s_dd = None
    else:
        s_ppr = m.pnl_per_risk(stable.pnl, stable.risk)
        s_dd = m.max_drawdown_pct(stable.pnl, stable.risk)
        diff = c_ppr - s_ppr
        limit = th.min_pnl_vs_stable_per_risk
        ok = limit is None or diff >= limit
        bound = "no threshold set" if limit is None else f"{'≥' if ok else '<'} floor {limit:.4g}"
        j.results.append(
            MetricResult(
                "pnl_vs_stable_per_risk",
                _num(c_ppr),
                _num(s_ppr),
                limit,
                ok,
                f"pnl_vs_stable_per_risk {diff:.4g} (candidate {c_ppr:.4g} − stable {s_ppr:.4g}), {bound}",
            )
        )
    j.ceiling("drawdown_pct", c_dd, s_dd, th.max_drawdown_pct, unit=" %")


def analyze(
    candidate: Sample,
    stable: Sample,
    spec: AnalysisSpec,
    offline: m.OfflineCalibration | None,
    *,
    min_matured_labels: int | None = None,
    min_bucket_count: int = m.MIN_BUCKET_COUNT,
    paired: bool = False,
) -> AnalysisVerdict:
    """Judge ``candidate`` against ``stable`` over one window.

    - Fewer than ``spec.min_samples`` candidate decisions → INCONCLUSIVE, nothing judged. A stable with fewer
      (a 100 % step leaves it no traffic) is not compared with: the candidate's own limits are judged, the
      comparison with stable (PnL per risk) is skipped and a note says so.
    - Latency p99 is judged from the first run past min_samples.
    - Label-based metrics (Brier, ECE, calibration drift, PR-AUC, hit rate) only once ``min_matured_labels``
      candidate labels have matured (default ``spec.min_samples``); drift buckets and the hit rate each need
      ``min_bucket_count`` samples.
    - PnL per risk against stable and the candidate's drawdown need both PnL series.
    - ``paired``: both models scored the *same* decisions (shadow), so an informational decision agreement
      (share of decisions where both would act the same way) is added to the report.
    Verdict: FAIL if any judged threshold is breached, else INCONCLUSIVE if any set threshold is pending, else
    PASS.
    """
    n_c, n_s = candidate.n, stable.n
    if n_c < spec.min_samples:
        return AnalysisVerdict(
            Verdict.INCONCLUSIVE,
            f"candidate n={n_c} < min_samples={spec.min_samples}",
            n_candidate=n_c,
            n_stable=n_s,
            n_matured=int(candidate.matured.sum()),
        )
    lone = n_s < spec.min_samples  # e.g. a 100 % step: the stable scored (almost) nothing in this window
    if lone:
        stable = _NO_SAMPLE
    if min_bucket_count < 1:
        raise ValueError(f"min_bucket_count must be >= 1, got {min_bucket_count}")
    min_matured = spec.min_samples if min_matured_labels is None else min_matured_labels
    if min_matured < 1:
        raise ValueError(f"min_matured_labels must be >= 1, got {min_matured}")
    th = spec.thresholds
    j = _Judge()
    if lone:
        j.notes.append(
            f"stable n={n_s} < min_samples={spec.min_samples} (no stable traffic to compare): judged on the "
            "candidate's own limits; the comparison with stable is not judged in this window"
        )
    j.ceiling(
        "latency_p99_ms",
        m.latency_p99(candidate.latency_ms),
        m.latency_p99(stable.latency_ms) if stable.n else None,
        th.max_latency_p99_ms,
        unit=" ms",
    )
    n_matured = _label_metrics(j, candidate, stable, spec, offline, min_matured, min_bucket_count)
    _pnl_metrics(j, candidate, stable, spec)
    if paired:
        if n_c != n_s:
            raise ValueError(f"paired samples must be equally long, got candidate {n_c} and stable {n_s}")
        c_pos = np.where(candidate.acted, candidate.sides(), 0.0)
        s_pos = np.where(stable.acted, stable.sides(), 0.0)
        j.info("decision_agreement", float(np.mean(c_pos == s_pos)), None)

    failed = [r for r in j.results if not r.passed]
    if failed:
        verdict, reason = Verdict.FAIL, "; ".join(r.reason for r in failed)
    elif j.pending:
        verdict, reason = Verdict.INCONCLUSIVE, "waiting for " + "; ".join(j.pending)
    else:
        verdict, reason = Verdict.PASS, f"all {sum(r.threshold is not None for r in j.results)} thresholds held"
    return AnalysisVerdict(
        verdict,
        reason,
        tuple(j.results),
        tuple(j.pending),
        n_c,
        n_s,
        n_matured,
        tuple(j.notes),
    )


def failing_metrics(verdict: AnalysisVerdict) -> Sequence[str]:
    """Names of the metrics that failed the run (empty unless FAIL)."""
    return [r.metric for r in verdict.failed]
