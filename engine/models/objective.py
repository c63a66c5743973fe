"""Evaluation of scored samples as trading signals, and the search objective J.

J = α·PR-AUC + β·Hit@TopK + γ·Avg(U) − δ·FPR

Why these four: PR-AUC and Hit@TopK reward ranking the rare good entries first (only the most confident
signals are traded); Avg(U) is the realized utility of the signals the decision rule would actually take
(after fees, slippage and funding), so a model that ranks well but only where moves are too small to pay
for themselves scores low; FPR at τ penalizes taking losing trades. U is *realized*: the long position's
return at the label's outcome divided by the round-trip cost (the same scale as the ex-ante U = E/C, so
U ≥ 1 means the move paid for its costs), and J cannot be gamed by an over-confident probability.
Formulas: ``docs/research.md``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from .. import metrics
from ..costs import expected_excess_return_bps, fee_schedule, round_trip_cost, utility

FloatArray = npt.NDArray[np.float64]

#: Metric names in the order reports list them.
METRIC_NAMES: Final = (
    "objective",
    "pr_auc",
    "roc_auc",
    "brier",
    "ece",
    "max_calibration_error_pp",
    "hit_at_top_k",
    "avg_utility",
    "avg_expected_utility",
    "information_coefficient",
    "rank_information_coefficient",
    "false_positive_rate",
    "base_rate",
    "taken",
    "samples",
)


@dataclass(frozen=True)
class ObjectiveWeights:
    """Weights of J and the decision rule it is evaluated under.

    ``top_k_frac``: K of Hit@TopK as a share of the samples. ``tau``: probability threshold τ. ``kappa``:
    utility threshold κ on the ex-ante U = E[excess return] / C (1: the expected move covers its cost).
    ``min_taken``: Avg(U) enters J only when at
    least this many signals were taken (the mean of a handful of trades is noise the search would chase).
    """

    alpha: float = 1.0
    beta: float = 0.5
    gamma: float = 0.1
    delta: float = 0.5
    top_k_frac: float = 0.05
    tau: float = 0.5
    kappa: float = 1.0
    min_taken: int = 20

    def __post_init__(self) -> None:
        if not 0 < self.top_k_frac <= 1:
            raise ValueError(f"top_k_frac must be in (0, 1], got {self.top_k_frac}")
        if not 0 <= self.tau <= 1:
            raise ValueError(f"tau must be in [0, 1], got {self.tau}")

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class SignalCosts:
    """Round-trip cost assumptions for a long signal held over the label horizon.

    Klines carry no book, so slippage is a fixed one-way taker estimate (bps); with a capture, fit it with
    ``engine.costs.fit_slippage_quantiles``. ``entry_maker``/``exit_maker`` choose the fee of each leg.
    """

    venue: str = "binance-usdm"
    tier: str = "vip0"
    slippage_bps: float = 1.0
    entry_maker: bool = False
    exit_maker: bool = False
    horizon_s: float = 1800.0

    def as_dict(self) -> dict[str, float | str | bool]:
        return asdict(self)


def signal_metrics(
    y: npt.ArrayLike,
    p: npt.ArrayLike,
    *,
    forward_ret_bps: npt.ArrayLike,
    up_move_bps: npt.ArrayLike,
    down_move_bps: npt.ArrayLike,
    funding_rate: npt.ArrayLike,
    costs: SignalCosts,
    weights: ObjectiveWeights,
) -> dict[str, float]:
    """Every metric of :data:`METRIC_NAMES` for calibrated probabilities ``p`` of the up outcome.

    A signal is taken when p ≥ τ and its ex-ante U ≥ κ. With no signal taken, Avg(U) enters J as 0 (no
    trades, no utility) and is reported as NaN.
    """
    yy = np.asarray(y, dtype=np.float64)
    pp = np.asarray(p, dtype=np.float64)
    if yy.shape != pp.shape or yy.ndim != 1 or yy.shape[0] < 2:
        raise ValueError(f"y and p must be 1-D, equally long and hold ≥ 2 samples, got {yy.shape}, {pp.shape}")
    if np.any(~np.isfinite(pp)):
        raise ValueError(f"p holds {int(np.sum(~np.isfinite(pp)))} non-finite values")
    fwd = np.asarray(forward_ret_bps, dtype=np.float64)
    cost = round_trip_cost(
        fees=fee_schedule(costs.venue, costs.tier),
        entry_maker=costs.entry_maker,
        exit_maker=costs.exit_maker,
        slippage_bps=costs.slippage_bps,
        funding_rate=np.asarray(funding_rate, dtype=np.float64),
        horizon_s=costs.horizon_s,
        direction=1,
    ).total_bps
    cost = np.broadcast_to(cost, pp.shape)
    ex_ante = utility(expected_excess_return_bps(pp, up_move_bps, down_move_bps, 1), cost)
    realized = utility(fwd, cost)
    taken = (pp >= weights.tau) & (ex_ante >= weights.kappa)
    both = 0 < yy.sum() < yy.shape[0]
    k = max(1, round(weights.top_k_frac * yy.shape[0]))
    out = {
        "pr_auc": metrics.pr_auc(yy, pp) if both else float("nan"),
        "roc_auc": metrics.roc_auc(yy, pp) if both else float("nan"),
        "brier": metrics.brier(yy, pp),
        "ece": metrics.ece(yy, pp),
        "max_calibration_error_pp": metrics.calibration_table(yy, pp, 10).max_error_pp,
        "hit_at_top_k": metrics.hit_at_top_k(yy, pp, k),
        "avg_utility": metrics.average_utility(realized, taken),
        "avg_expected_utility": metrics.average_utility(ex_ante, taken),
        "information_coefficient": metrics.information_coefficient(pp, fwd),
        "rank_information_coefficient": metrics.rank_information_coefficient(pp, fwd),
        "false_positive_rate": metrics.false_positive_rate(yy, pp, weights.tau),
        "base_rate": float(yy.mean()),
        "taken": float(taken.sum()),
        "samples": float(yy.shape[0]),
    }
    out["objective"] = objective(out, weights)
    return {name: out[name] for name in METRIC_NAMES}


def objective(m: dict[str, float], w: ObjectiveWeights) -> float:
    """J from a metrics dict; NaN terms count as 0 (an undefined AUC or no taken trade earns nothing), and
    Avg(U) counts only with at least ``min_taken`` taken signals."""

    def term(name: str) -> float:
        v = m[name]
        return 0.0 if not np.isfinite(v) else float(v)

    utility_term = term("avg_utility") if m.get("taken", 0.0) >= w.min_taken else 0.0
    return (
        w.alpha * term("pr_auc")
        + w.beta * term("hit_at_top_k")
        + w.gamma * utility_term
        - w.delta * term("false_positive_rate")
    )
