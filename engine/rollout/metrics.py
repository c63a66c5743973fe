"""Rollout metrics: pure numpy functions that judge a candidate model against the stable one over a window.

Why a module of its own next to :mod:`tradeplane.engine.metrics`: a live window is messier than an offline fold
(labels that have not matured yet, decisions that were not acted on, latencies, PnL), and every function here
validates its inputs and raises ``ValueError`` naming the offending argument, so a bad ClickHouse query fails
loudly instead of producing a verdict. The scoring formulas themselves (average precision, Brier, the
equal-width calibration table) are the engine's, so offline and live numbers are computed the same way.

Conventions: ``y`` is the binary outcome (1 = the predicted event "up" happened, 0 otherwise), ``p`` the
model's P(up) in [0, 1]; ``label`` is the triple-barrier label (+1 up barrier first, −1 down first, 0 horizon)
or NaN while it has not matured. Everything is deterministic (no sampling, stable sorts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .. import metrics as _engine_metrics

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

#: Default number of equal-width probability buckets for ECE and calibration drift (deciles of [0, 1]).
N_BUCKETS = 10
#: Default minimum count in a bucket (live and offline) before its drift is judged: with n = 30 the standard
#: error of a hit rate near ½ is ≈ 9 pp, so a 5 pp limit is not tripped by one unlucky bucket of 5 samples.
MIN_BUCKET_COUNT = 30


# --------------------------------------------------------------------------------------------- validation


def vector(name: str, x: npt.ArrayLike, *, allow_nan: bool = False) -> FloatArray:
    """``x`` as a 1-D float64 array; ``ValueError`` naming ``name`` if it is not 1-D or holds NaN/inf.

    With ``allow_nan`` NaN is allowed (an unmatured label) but ±inf still is not."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    bad = np.isinf(a) if allow_nan else ~np.isfinite(a)
    if bad.any():
        what = "±inf" if allow_nan else "NaN or ±inf"
        raise ValueError(f"{name} must not hold {what} (first at index {int(np.argmax(bad))})")
    return a


def _same_length(**arrays: npt.NDArray[np.generic]) -> None:
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{' and '.join(lengths)} must be equally long, got {lengths}")


def _probabilities(name: str, p: npt.ArrayLike) -> FloatArray:
    a = vector(name, p)
    if ((a < 0) | (a > 1)).any():
        raise ValueError(f"{name} must lie in [0, 1], got min {a.min():g} max {a.max():g}")
    return a


def _binary(name: str, y: npt.ArrayLike) -> FloatArray:
    a = vector(name, y)
    if not np.all((a == 0) | (a == 1)):
        raise ValueError(f"{name} must hold only 0 and 1")
    return a


def _yp(y: npt.ArrayLike, p: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    yy, pp = _binary("y", y), _probabilities("p", p)
    _same_length(y=yy, p=pp)
    if len(yy) == 0:
        raise ValueError("y and p must not be empty")
    return yy, pp


def labels(name: str, label: npt.ArrayLike) -> FloatArray:
    """Triple-barrier labels as float64: each −1, 0, +1 or NaN (not matured); ``ValueError`` otherwise."""
    a = vector(name, label, allow_nan=True)
    ok = np.isnan(a) | (a == -1) | (a == 0) | (a == 1)
    if not ok.all():
        raise ValueError(f"{name} must hold only -1, 0, 1 or NaN (first bad at index {int(np.argmax(~ok))})")
    return a


def outcome_up(label: npt.ArrayLike) -> FloatArray:
    """The binary event P(up) predicts, for matured labels only: ``y = 1`` iff ``label == +1``.

    A horizon timeout (0) is "not up", so a model that says 0.7 and sees the price drift sideways is penalized
    exactly as the classifier was trained (triple-barrier, positive class = upper barrier first)."""
    lab = labels("label", label)
    if np.isnan(lab).any():
        raise ValueError("label must be matured (no NaN); select the matured rows first")
    y: FloatArray = (lab == 1).astype(np.float64)
    return y


# ---------------------------------------------------------------------------------------- scoring metrics


def brier_score(y: npt.ArrayLike, p: npt.ArrayLike) -> float:
    """Brier score: ``(1/n) Σ (p_i − y_i)²``. 0 is perfect, 0.25 is the constant ½ forecast."""
    yy, pp = _yp(y, p)
    return _engine_metrics.brier(yy, pp)


def expected_calibration_error(y: npt.ArrayLike, p: npt.ArrayLike, n_buckets: int = N_BUCKETS) -> float:
    """ECE over ``n_buckets`` equal-width buckets of [0, 1]: ``Σ_b (n_b / n) · |mean p_b − mean y_b|``.

    Bucket ``b`` holds ``b/B ≤ p < (b+1)/B``; p = 1 falls into the last bucket. Empty buckets weigh 0."""
    yy, pp = _yp(y, p)
    if n_buckets < 1:
        raise ValueError(f"n_buckets must be >= 1, got {n_buckets}")
    return _engine_metrics.ece(yy, pp, n_buckets)


def average_precision(y: npt.ArrayLike, p: npt.ArrayLike) -> float:
    """PR-AUC as average precision (scikit-learn's definition): ``Σ_k (R_k − R_{k−1}) · P_k`` over the
    distinct scores in descending order, ties forming one step. NaN when ``y`` has no positive."""
    yy, pp = _yp(y, p)
    return _engine_metrics.pr_auc(yy, pp)


# ------------------------------------------------------------------------------------ calibration drift


@dataclass(frozen=True)
class OfflineCalibration:
    """The out-of-sample calibration curve from training: per equal-width bucket of p, the observed hit rate
    (share of ``y = 1``) and the count behind it. A bucket with count 0 has hit rate NaN."""

    hit_rate: tuple[float, ...]
    count: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.hit_rate or len(self.hit_rate) != len(self.count):
            raise ValueError(
                f"hit_rate and count must be non-empty and equally long, got {len(self.hit_rate)} and {len(self.count)}"
            )
        for i, (h, c) in enumerate(zip(self.hit_rate, self.count, strict=True)):
            if c < 0:
                raise ValueError(f"count[{i}] must be >= 0, got {c}")
            if c > 0 and not 0.0 <= h <= 1.0:  # also rejects NaN
                raise ValueError(f"hit_rate[{i}] must be in [0, 1] for a non-empty bucket, got {h}")

    @property
    def n_buckets(self) -> int:
        return len(self.count)

    @classmethod
    def from_outcomes(cls, y: npt.ArrayLike, p: npt.ArrayLike, n_buckets: int = N_BUCKETS) -> OfflineCalibration:
        """Build the curve from out-of-sample outcomes and scores (what training writes next to the artifact)."""
        yy, pp = _yp(y, p)
        table = _engine_metrics.calibration_table(yy, pp, n_buckets, by="uniform")
        return cls(tuple(float(h) for h in table.observed), tuple(int(c) for c in table.count))


@dataclass(frozen=True)
class CalibrationDrift:
    """The worst judged bucket: ``drift_pp = 100 · (live hit rate − offline hit rate)``, signed.

    ``judged`` is how many buckets had at least the minimum count live and offline; with 0 nothing was judged
    and the value fields are NaN / −1."""

    drift_pp: float
    bucket: int
    low: float
    high: float
    live_hit_rate: float
    offline_hit_rate: float
    live_count: int
    judged: int

    def describe(self) -> str:
        """The worst bucket in words, with its numbers (used as the analysis reason)."""
        if self.judged == 0:
            return "no bucket had enough samples"
        return (
            f"bucket [{self.low:.2f}, {self.high:.2f}): live hit rate {self.live_hit_rate:.3f} vs offline "
            f"{self.offline_hit_rate:.3f} ({self.drift_pp:+.1f} pp, n={self.live_count})"
        )


def calibration_drift(
    y: npt.ArrayLike, p: npt.ArrayLike, offline: OfflineCalibration, *, min_count: int = MIN_BUCKET_COUNT
) -> CalibrationDrift:
    """Largest |live − offline| hit-rate difference over the buckets of ``offline`` (equal width, same count).

    Per bucket ``b``: ``drift_b = 100 · (mean y_b(live) − hit_rate_b(offline))`` percentage points. Only buckets
    with ``≥ min_count`` samples both live and offline are judged (a bucket of 3 live samples says nothing). Why
    against the offline curve and not against p itself: it separates "the world changed" from "the model was
    never calibrated there", and a candidate that is shifted by +δ moves its samples into buckets whose offline
    hit rate is δ too high, which shows up as a −δ drift."""
    yy, pp = _yp(y, p)
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    b = offline.n_buckets
    live = _engine_metrics.calibration_table(yy, pp, b, by="uniform")
    off_rate = np.asarray(offline.hit_rate, dtype=np.float64)
    off_count = np.asarray(offline.count, dtype=np.int64)
    judged = (live.count >= min_count) & (off_count >= min_count)
    if not judged.any():
        return CalibrationDrift(math.nan, -1, math.nan, math.nan, math.nan, math.nan, 0, 0)
    drift = np.where(judged, (live.observed - off_rate) * 100.0, 0.0)
    worst = int(np.argmax(np.abs(drift)))  # first of equal maxima: deterministic
    return CalibrationDrift(
        drift_pp=float(drift[worst]),
        bucket=worst,
        low=worst / b,
        high=(worst + 1) / b,
        live_hit_rate=float(live.observed[worst]),
        offline_hit_rate=float(off_rate[worst]),
        live_count=int(live.count[worst]),
        judged=int(judged.sum()),
    )


# ------------------------------------------------------------------------------------------ decisions


def decision_side(p_up: npt.ArrayLike) -> FloatArray:
    """The direction a decision on ``p_up`` takes when no side is recorded: +1 (long) if ``p ≥ ½``, else −1."""
    pp = _probabilities("p_up", p_up)
    return np.where(pp >= 0.5, 1.0, -1.0)


def hit_rate(label: npt.ArrayLike, side: npt.ArrayLike, acted: npt.ArrayLike) -> tuple[float, int]:
    """Precision of the decisions that were acted on: ``#(acted ∧ matured ∧ label = side) / #(acted ∧ matured)``.

    ``side`` is the entered direction (+1 long, −1 short); a hit is the barrier in that direction being touched
    first, so a horizon timeout (label 0) is a miss. Unmatured labels (NaN) are left out of both counts.
    Returns ``(hit rate, count acted and matured)``; the rate is NaN when that count is 0."""
    lab = labels("label", label)
    sd = vector("side", side)
    act = np.asarray(acted)
    if act.ndim != 1:
        raise ValueError(f"acted must be 1-D, got shape {act.shape}")
    _same_length(label=lab, side=sd, acted=act)
    if not np.all((sd[act.astype(bool)] == 1) | (sd[act.astype(bool)] == -1)):
        raise ValueError("side must be +1 or -1 where acted")
    m = act.astype(bool) & ~np.isnan(lab)
    n = int(m.sum())
    return (float(np.mean(lab[m] == sd[m])) if n else math.nan), n


def latency_p99(latency_ms: npt.ArrayLike) -> float:
    """99th percentile of the inference latencies, numpy's ``linear`` method (type 7, the default of numpy and
    R): the value at rank ``0.99 · (n − 1)`` of the sorted sample, interpolated between neighbours."""
    lat = vector("latency_ms", latency_ms)
    if len(lat) == 0:
        raise ValueError("latency_ms must not be empty")
    if (lat < 0).any():
        raise ValueError("latency_ms must be >= 0")
    return float(np.percentile(lat, 99.0, method="linear"))


# ----------------------------------------------------------------------------------------------- PnL


def risk_units(risk: npt.ArrayLike | float, n: int | None = None) -> float:
    """The unit of risk a PnL series is divided by.

    An array is the gross notional (USDT) committed by each decision and is *summed*: the notional a model
    deployed over the window, which scales with its traffic share, so a canary at 1 % and the stable at 99 %
    become comparable (PnL per USDT put at risk). A scalar is taken as given (e.g. the capital allocated to
    the candidate). Must be > 0. ``n``, if given, is the PnL series length an array must match."""
    if np.ndim(risk) == 0:
        r = float(risk)  # type: ignore[arg-type]
        if not math.isfinite(r) or r <= 0:
            raise ValueError(f"risk must be a finite number > 0, got {r}")
        return r
    arr = vector("risk", risk)
    if n is not None and len(arr) != n:
        raise ValueError(f"risk must be as long as pnl ({n}), got {len(arr)}")
    if (arr < 0).any():
        raise ValueError("risk must be >= 0")
    total = float(arr.sum())
    if total <= 0:
        raise ValueError("risk must sum to > 0 (no notional was deployed)")
    return total


def pnl_per_risk(pnl: npt.ArrayLike, risk: npt.ArrayLike | float) -> float:
    """Total PnL per unit of risk: ``Σ pnl / R`` with ``R`` from :func:`risk_units` (a return on notional)."""
    p = vector("pnl", pnl)
    return float(p.sum()) / risk_units(risk, len(p))


def max_drawdown(pnl: npt.ArrayLike) -> float:
    """Largest peak-to-trough fall of the cumulative PnL ``E_t = Σ_{i≤t} pnl_i``, starting from ``E_0 = 0``:
    ``max_t (max_{s≤t} E_s − E_t)`` (≥ 0, in the PnL's currency). The start counts as a peak, so a series that
    only loses has drawdown = its total loss."""
    p = vector("pnl", pnl)
    equity = np.concatenate([[0.0], np.cumsum(p)])
    return float(np.max(np.maximum.accumulate(equity) - equity))


def max_drawdown_pct(pnl: npt.ArrayLike, risk: npt.ArrayLike | float) -> float:
    """Max drawdown per unit of risk in percent: ``100 · max_drawdown(pnl) / R`` (same ``R`` as
    :func:`pnl_per_risk`, so PnL and drawdown are in one unit)."""
    p = vector("pnl", pnl)
    return 100.0 * max_drawdown(p) / risk_units(risk, len(p))
