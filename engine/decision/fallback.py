"""Degrade mode: a rules-only P(up) from the order book when the model (or its input data) cannot be trusted.

When the ModelRouter has no healthy model, or the features the model needs are degraded, a strategy with
``model.degradeToRules`` keeps deciding on the three signals that need nothing but the live book and that
the microstructure literature documents best at short horizons:

- **order-flow imbalance (OFI)** — the net change of best-level queues (bid additions and ask removals minus
  the opposite). Cont, Kukanov & Stoikov, "The Price Impact of Order Book Events" (J. Financial
  Econometrics 12(1), 2014) show that mid-price changes over short intervals are close to linear in OFI
  scaled by the depth at the touch, with a high R², across stocks. The input here is that depth-scaled OFI
  (e.g. ``ofi1`` divided by the average level-1 queue in base units), so ``ofi_scale`` = 1 means "one
  touch-queue worth of net flow".
- **queue imbalance (QI)** — ``(q_bid − q_ask) / (q_bid + q_ask)`` in [−1, 1] at the best level. Gould &
  Bonart, "Queue Imbalance as a One-Tick-Ahead Price Predictor in a Limit Order Book" (Market
  Microstructure and Liquidity 2(2), 2016) find the probability that the next mid move is up rises close to
  linearly with QI, reaching roughly 0.7–0.8 at extreme imbalance for large-tick assets.
- **Δmicroprice** (bps) — the change of the size-weighted mid; it moves before the mid does, and carries
  what QI changes and touch-price changes imply together.

p_up = clip(σ(w_ofi·tanh(ofi / ofi_scale) + w_qi·qi + w_dm·tanh(dmicro_bps / dm_scale)), p_min, p_max).

Why these defaults: w_qi = 1.0 puts p at σ(1) ≈ 0.73 for a fully one-sided touch, the middle of Gould &
Bonart's 0.7–0.8; w_ofi = 0.8 makes one touch-queue of net flow (tanh(1) ≈ 0.76) worth about 0.6 in
logit, a little less than a one-sided queue because flow over one book update is noisier than the standing
imbalance; w_dm = 0.4 is smaller because Δmicroprice largely
re-expresses QI changes (the terms are correlated, and double counting would overstate confidence).
tanh keeps one outsized print from dominating. All three agreeing at full strength gives σ(2.2) ≈ 0.90; a
single signal alone stays below ~0.75. The clip to [0.05, 0.95] is a guard against over-confidence:
these papers predict the *next tick*, while a strategy's horizon is usually tens of seconds, so the
fallback should rarely clear a high τ on one signal. dm_scale = 0.5 bps is a typical per-update
microprice move for mid-cap pairs; on majors (ticks of ~0.02 bps) the term is small and QI/OFI dominate,
which is the intended order. Tune per market with :class:`FallbackParams`; the fallback is a floor
for staying in the market sensibly, not a model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class FallbackParams:
    """Weights and scales of the rules-only score (see the module docstring for the reasoning)."""

    w_ofi: float = 0.8
    ofi_scale: float = 1.0  #: OFI in touch-queue units that maps to tanh(1)
    w_qi: float = 1.0
    w_dm: float = 0.4
    dm_scale: float = 0.5  #: Δmicroprice (bps) that maps to tanh(1)
    p_min: float = 0.05
    p_max: float = 0.95

    def __post_init__(self) -> None:
        if min(self.w_ofi, self.w_qi, self.w_dm) < 0:
            raise ValueError("fallback weights must be >= 0 (p_up must not fall when buying pressure rises)")
        if not (self.ofi_scale > 0 and self.dm_scale > 0):
            raise ValueError("ofi_scale and dm_scale must be > 0")
        if not 0.0 <= self.p_min <= 0.5 <= self.p_max <= 1.0:
            raise ValueError(f"need 0 <= p_min <= 0.5 <= p_max <= 1, got {self.p_min}, {self.p_max}")


def _finite_or_zero(x: float) -> float:
    """NaN means "no information": it counts as a neutral 0. ±inf is saturated by tanh, so it passes."""
    return 0.0 if x != x else x


#: The documented defaults (immutable, so sharing one instance is safe).
DEFAULT_FALLBACK_PARAMS = FallbackParams()


def rules_only_p_up(
    ofi: float, qi: float, dmicro_bps: float, params: FallbackParams = DEFAULT_FALLBACK_PARAMS
) -> float:
    """P(up) from depth-scaled OFI, queue imbalance and Δmicroprice (bps); NaN inputs count as 0.

    Non-decreasing in each input (weights ≥ 0, tanh and the logistic are increasing) and bounded in
    [p_min, p_max]; all-neutral inputs give exactly 0.5.
    """
    qi_c = min(max(_finite_or_zero(qi), -1.0), 1.0)
    z = (
        params.w_ofi * math.tanh(_finite_or_zero(ofi) / params.ofi_scale)
        + params.w_qi * qi_c
        + params.w_dm * math.tanh(_finite_or_zero(dmicro_bps) / params.dm_scale)
    )
    p = 1.0 / (1.0 + math.exp(-z))
    return min(max(p, params.p_min), params.p_max)
