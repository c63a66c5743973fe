"""Queue-position models for resting orders in an L2 replay (numba-friendly: an int id plus one float).

Why a model at all: L2 data shows only the total quantity at a price, never where an own order sits in it.
A resting order starts behind everything displayed at its price when it arrives (``queue_ahead``); trades at
its price consume the queue in front (exactly: price-time priority). Depth decreases that trades do not
explain are cancellations, and L2 cannot tell whether they happened ahead of the order or behind it — that
is the modelling choice made here, as in hftbacktest's ``RiskAverseQueueModel`` / ``ProbQueueModel``.

Why an int id and not a class hierarchy: the matching kernel dispatches on ``model`` inside nopython code,
so a model is ``(QUEUE_*, param)`` and adding one means one more branch in :func:`on_cancel`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from numba import njit

QUEUE_RISK_AVERSE: Final = 0  #: cancellations never advance the queue; it is only clipped to the displayed qty
QUEUE_POWER_PROB: Final = 1  #: a cancel is ahead with probability f(front)/(f(front)+f(back)), f(x) = x**n


@dataclass(frozen=True, slots=True)
class QueueModel:
    """A queue model as the kernel reads it: ``model`` (``QUEUE_*``) and its parameter (``n`` of the power
    function; unused by the risk-averse model)."""

    model: int = QUEUE_RISK_AVERSE
    param: float = 1.0

    def __post_init__(self) -> None:
        if self.model not in (QUEUE_RISK_AVERSE, QUEUE_POWER_PROB):
            raise ValueError(f"unknown queue model {self.model}")
        if not self.param > 0.0:
            raise ValueError(f"queue model parameter must be > 0, got {self.param}")

    @classmethod
    def risk_averse(cls) -> QueueModel:
        """Only trades advance the queue (pessimistic about cancellations)."""
        return cls(QUEUE_RISK_AVERSE, 1.0)

    @classmethod
    def power_prob(cls, n: float = 2.0) -> QueueModel:
        """hftbacktest's PowerProbQueueFunc: the larger the part of the level in front of the order, the more
        of a cancellation is assumed to come from there (n = 1: proportional)."""
        return cls(QUEUE_POWER_PROB, float(n))


@njit(cache=True, inline="always")
def on_cancel(model: int, param: float, front: float, level_before: float, level_after: float, cancel: float) -> float:
    """New ``queue_ahead`` after the level went from ``level_before`` (already net of trades since the last
    observation) to ``level_after`` with ``cancel`` units cancelled (``cancel <= level_before - level_after``
    when the decrease is partly explained by trades; 0 for an increase).

    Whatever the model, the result is clipped to ``[0, level_after]``: no more can be ahead than is shown.
    Power model (hftbacktest ProbQueueModel): with ``back = level_before − front`` the share of the cancel
    taken from the front is ``f(front) / (f(front) + f(back))``; a back share larger than ``back`` spills over
    to the front.
    """
    if model == QUEUE_POWER_PROB and cancel > 0.0 and front > 0.0:
        back = level_before - front
        if back < 0.0:
            back = 0.0
        ff = front**param
        fb = back**param
        ahead_share = ff / (ff + fb) if ff + fb > 0.0 else 0.0
        behind = cancel * (1.0 - ahead_share)
        front = front - cancel * ahead_share
        if behind > back:
            front -= behind - back
    if front > level_after:
        front = level_after
    if front < 0.0:
        front = 0.0
    return front
