"""One decision for one symbol at one tick: features → Signal (always) and Intent (when entering).

Order (each step can skip with exactly one reason code, engine/decision/reasons.py):

1. **score** — the ModelRouter (stable or canary by symbol cohort, or by decision keyed by (symbol,
   exchange_ts) so a replay routes identically; shadows recorded). When there is no router, the runtime
   says the model is degraded (``model_ok=False``), the routed model raises or returns something that is
   not a probability, or the data is degraded, the rules-only fallback scores instead
   (``engine/decision/fallback.py``; model_version ``rules-fallback``, quality flag 2) if the strategy allows
   it (``model.degradeToRules``); otherwise NO_MODEL. (With degraded data and no fallback the model still
   scores and the data-quality gate decides.)
2. **direction** — long when p_up ≥ 0.5, else short; p_dir = max(p_up, 1 − p_up). A short on a spot venue
   skips (NO_SHORT_ON_SPOT): a spot account buys and sells what it holds.
3. **L0 gates** — funding, spread, depth, data quality, risk headroom (first failure wins).
4. **rules** — multipliers, or RULE_SKIP with the rule's name.
5. **size multiplier** — probability bucket of p_dir (0 → SIZE_ZERO) × rules' size_mult, clamped.
6. **cost C** in bps of notional, engine/costs.py's C(s, t):
   - *fees*: entry and exit legs via ``round_trip_cost`` (priced once per config revision, it is linear):
     a maker-first execution policy (maker-then-taker) pays maker on entry, every other policy taker; the
     exit is always a taker leg (a stop or take-profit that triggers, or a flatten, takes liquidity);
   - *slippage*, per taker leg: the fitted one-way slippage of the order's notional bucket at the strategy's
     ``slippageQuantile`` (``MarketState.slippage_edges_usdt``/``slippage_bps``, fitted online from the
     feed's taker orders against the mid before them, engine/runtime/slippage.py). The notional is estimated
     as sizing does before rounding: ``marginBaseUsdt`` × the step-5 multiplier × leverage (1 on spot). When
     the bucket is not trusted (NaN: too few samples, nothing fitted yet, or below the first edge), half the
     quoted spread is charged instead, the cost of crossing the touch, and the signal carries
     ``QUALITY_SLIPPAGE_PROXY``; a state without a table (no edges) charges the same proxy unflagged. The
     lookup is a ``bisect`` on a tuple of floats;
   - *funding*: futures with ``includeFunding`` only, ``funding_cost_bps`` over the horizon in the entry
     direction (a receipt is a negative cost; its per-unit-rate value is priced once per revision);
     nothing when the rate is unknown (NaN).
7. **expected excess return** — ``expected_excess_return_bps``'s formula with symmetric barriers u = d =
   the typical move over the holding horizon, ``1e4·ATR/mid``. ``MarketState.atr`` is that move: the
   runtime scales the bar ATR of the feature clock to the horizon (×√(H / bar), a random walk's range grows
   with √time), and sizing places the stop in the same units, so E and the stop describe the same trade.
   ATR not warmed up (NaN) → E is NaN and the utility filter skips (BELOW_KAPPA): no volatility estimate,
   no expectation.
8. **utility filter** — p_dir ≥ τ else BELOW_TAU; U = E / C (``utility``'s definition, ±inf for C ≤ 0)
   ≥ κ else BELOW_KAPPA.

9. **sizing** — quantity on the step grid, stop and take-profit on the tick grid (engine/decision/sizing.py);
   the take-profit nets the target after the round-trip fees *and* the slippage charged above; None →
   QTY_BELOW_MIN.
10. **idempotency** — intent_id from (strategy, symbol, side, exchange_ts, config_rev); already issued →
    DUPLICATE; inside the cooldown of (symbol, side) → COOLDOWN; otherwise the entry is recorded.

Steps 7 and 8 evaluate engine/costs.py's formulas on Python floats instead of calling its array functions:
on one row those cost ~10 µs of numpy dispatch per decision, a quarter of the pipeline without the model.
A property test holds the two bit for bit (tests/unit/engine/decision/test_pipeline.py).

A skip carries everything computed up to the skip and NaN for what was not reached. Nothing here reads a
clock: ``now`` is the decision time and ``clock`` (perf_counter_ns in the runtime) only measures latency.
Hot configuration: the caller passes one DecisionConfig snapshot, so a swap mid-decision cannot mix
revisions.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Mapping

from . import reasons
from .config import DecisionConfig
from .cooldown import Cooldowns
from .fallback import rules_only_p_up
from .gates import failed_gate
from .router import ModelRouter
from .sizing import probability_mult, size_entry
from .types import (
    ENTER_LONG,
    ENTER_SHORT,
    LONG,
    QUALITY_DATA_DEGRADED,
    QUALITY_MODEL_DEGRADED,
    QUALITY_SHADOW_ERROR,
    QUALITY_SLIPPAGE_PROXY,
    RULES_FALLBACK,
    SHORT,
    SKIP,
    Intent,
    MarketState,
    Signal,
    intent_id,
    signal_id,
)

_NAN = math.nan
_BPS = 1e4
#: Book features the fallback reads (engine/features BOOK_FEATURE_DTYPE names).
FALLBACK_OFI = "ofi1"  #: base units; divided by the mean touch queue here (depth-scaled OFI)
FALLBACK_QI = "qi1"
FALLBACK_DMICRO = "dmicro_bps"
#: The feature that sets the regime: percentile rank of realized volatility among recent bars, (0, 1].
REGIME_FEATURE = "rv_pct"
#: rv percentile at or above which the regime is "volatile" (the top fifth of recent volatility).
VOLATILE_RV_PCT = 0.8
MAX_CONTRIBUTIONS = 5

Contributions = Callable[[Mapping[str, float]], tuple[tuple[str, float], ...]]


def _zero_clock() -> int:
    return 0


class _Work:
    """What one decision has computed so far (NaN/empty until reached); becomes the Signal."""

    __slots__ = (
        "contributions",
        "cooldown_until",
        "cost",
        "expected",
        "fee",
        "flags",
        "funding",
        "model_version",
        "p_high",
        "p_low",
        "p_up",
        "regime",
        "rules_fired",
        "shadow",
        "size_mult",
        "sl_mult",
        "slippage",
        "tp_mult",
        "u",
    )

    def __init__(self, flags: int) -> None:
        self.flags = flags
        self.p_up = self.p_low = self.p_high = self.expected = self.cost = self.u = _NAN
        self.fee = self.slippage = self.funding = _NAN
        self.size_mult = self.tp_mult = self.sl_mult = _NAN
        self.regime = "unknown"
        self.model_version = ""
        self.contributions: tuple[tuple[str, float], ...] = ()
        self.shadow: tuple[tuple[str, float], ...] = ()
        self.rules_fired: tuple[str, ...] = ()
        self.cooldown_until = 0


def decide(
    cfg: DecisionConfig,
    state: MarketState,
    features: Mapping[str, float],
    router: ModelRouter | None,
    cooldowns: Cooldowns,
    *,
    now: int,
    risk_headroom: bool,
    model_ok: bool = True,
    contributions: Contributions | None = None,
    clock: Callable[[], int] = _zero_clock,
) -> tuple[Signal, Intent | None]:
    """Decide for one symbol at one tick. Always a Signal; an Intent only for an entry (see module doc)."""
    t0 = clock()
    w = _Work(0 if state.data_ok else QUALITY_DATA_DEGRADED)
    sid = signal_id(cfg.strategy, state.symbol, state.exchange_ts)
    reason, detail, side, intent = _run(
        cfg, state, features, router, cooldowns, w, sid, now, risk_headroom, model_ok, contributions
    )
    latency = clock() - t0
    return (
        Signal(
            id=sid,
            strategy=cfg.strategy,
            symbol=state.symbol,
            venue=state.venue,
            exchange_ts=state.exchange_ts,
            ingest_ts=state.ingest_ts,
            infer_ts=now,
            p_up=w.p_up,
            p_low=w.p_low,
            p_high=w.p_high,
            expected_return_bps=w.expected,
            cost_bps=w.cost,
            utility=w.u,
            fee_bps=w.fee,
            slippage_bps=w.slippage,
            funding_bps=w.funding,
            decision=SKIP if intent is None else ENTER_LONG if side == LONG else ENTER_SHORT,
            reason=reason,
            reason_detail=detail,
            regime=w.regime,
            contributions=w.contributions,
            model_version=w.model_version,
            shadow=w.shadow,
            config_rev=cfg.config_rev,
            cooldown_until=w.cooldown_until,
            latency_ns=latency,
            size_mult=w.size_mult,
            tp_mult=w.tp_mult,
            sl_mult=w.sl_mult,
            rules_fired=w.rules_fired,
            quality_flags=w.flags,
        ),
        intent,
    )


def _run(
    cfg: DecisionConfig,
    state: MarketState,
    features: Mapping[str, float],
    router: ModelRouter | None,
    cooldowns: Cooldowns,
    w: _Work,
    sid: str,
    now: int,
    risk_headroom: bool,
    model_ok: bool,
    contributions: Contributions | None,
) -> tuple[str, str, int, Intent | None]:
    """The pipeline proper: (reason, detail, side, intent); fills ``w`` as it goes."""
    # 1. score
    p, note = _score(cfg, state, features, router, model_ok, contributions, w)
    if p is None:
        return reasons.NO_MODEL, note, 0, None
    w.p_up = p
    w.regime = _regime(features)

    # 2. direction
    side = LONG if p >= 0.5 else SHORT
    p_dir = p if side == LONG else 1.0 - p

    if side == SHORT and not cfg.futures:  # spot entries are purchases; a short needs a margin account
        return reasons.NO_SHORT_ON_SPOT, _join(f"p_up={p:.4f}<0.5", note), side, None

    # 3. gates
    failed = failed_gate(state, cfg.gates, risk_headroom=risk_headroom)
    if failed is not None:
        return failed[0], _join(failed[1], note), side, None

    # 4. rules
    rules = cfg.rules.apply(features)
    w.rules_fired = rules.fired
    w.tp_mult = rules.tp_mult
    w.sl_mult = rules.sl_mult
    if rules.skip:
        return reasons.RULE_SKIP, _join(rules.skipped_by, note), side, None

    # 5. size multiplier
    sizing = cfg.sizing
    p_mult = probability_mult(p_dir, sizing.buckets)
    product = p_mult * rules.size_mult
    if not product > 0:
        what = (
            f"p_bucket_mult={p_mult:g} at p_dir={p_dir:.4f}"
            if not p_mult > 0
            else f"rules_size_mult={rules.size_mult:g}"
        )
        w.size_mult = 0.0
        return reasons.SIZE_ZERO, _join(what, note), side, None
    mult = min(max(product, sizing.min_size_mult), sizing.max_size_mult)
    w.size_mult = mult

    # 6. cost
    w.fee = cfg.round_trip_fee_bps
    edges = state.slippage_edges_usdt
    one_way = _NAN
    if edges:  # the fitted quantile of this order's notional bucket, NaN when the bucket is not trusted
        i = bisect_right(edges, sizing.margin_base_usdt * mult * sizing.leverage) - 1
        one_way = state.slippage_bps[i] if i >= 0 else _NAN
        if one_way != one_way:
            w.flags |= QUALITY_SLIPPAGE_PROXY
    w.slippage = cfg.taker_legs * (one_way if one_way == one_way else 0.5 * state.spread_bps)
    rate = state.next_funding_rate
    w.funding = side * rate * cfg.funding_bps_per_rate if rate == rate and cfg.funding_bps_per_rate else 0.0
    w.cost = cost = w.fee + w.slippage + w.funding

    # 7. expected excess return and 8. utility filter (engine/costs.py formulas on floats, see module doc)
    mid = state.mid
    move = _BPS * state.atr / mid
    long_e = p * move - (1.0 - p) * move
    w.expected = e = long_e if side == LONG else -long_e
    w.u = e / cost if cost > 0 else (math.inf if e > 0 else -math.inf)
    if not p_dir >= cfg.tau:
        return reasons.BELOW_TAU, _join(f"p_dir={p_dir:.4f}<tau={cfg.tau:g}", note), side, None
    if not w.u >= cfg.kappa:
        why = f"U={w.u:.4g}<kappa={cfg.kappa:g} (E={w.expected:.4g}bps C={w.cost:.4g}bps)"
        if state.atr != state.atr:
            why = f"atr=nan (not warmed up), kappa={cfg.kappa:g}"
        return reasons.BELOW_KAPPA, _join(why, note), side, None

    # 9. sizing
    size = size_entry(
        side,
        mult,
        state,
        sizing,
        tp_mult=rules.tp_mult,
        sl_mult=rules.sl_mult,
        round_trip_fee_bps=w.fee + w.slippage,
    )
    if size is None:
        why = (
            f"mult={mult:.4g} mid={mid:.10g} step={state.step_size:g} "
            f"min_qty={state.min_qty:g} min_notional={state.min_notional:g}"
        )
        return reasons.QTY_BELOW_MIN, _join(why, note), side, None

    # 10. idempotency and cooldown
    iid = intent_id(cfg.strategy, state.symbol, side, state.exchange_ts, cfg.config_rev)
    if cooldowns.is_duplicate(iid):
        w.cooldown_until = cooldowns.blocked_until(state.symbol, side, now)
        return reasons.DUPLICATE, _join(f"intent_id={iid}", note), side, None
    until = cooldowns.blocked_until(state.symbol, side, now)
    if until:
        w.cooldown_until = until
        return reasons.COOLDOWN, _join(f"until={until}", note), side, None
    w.cooldown_until = cooldowns.record(state.symbol, side, iid, now)
    intent = Intent(
        intent_id=iid,
        signal_id=sid,
        strategy=cfg.strategy,
        symbol=state.symbol,
        venue=state.venue,
        side=side,
        qty=size.qty,
        notional_usdt=size.notional_usdt,
        price=mid,
        stop_price=size.stop_price,
        take_profit_price=size.take_profit_price,
        leverage=sizing.leverage if cfg.futures else 1,
        oco=not cfg.futures,
        exchange_ts=state.exchange_ts,
        config_rev=cfg.config_rev,
    )
    return "", note, side, intent


def _score(
    cfg: DecisionConfig,
    state: MarketState,
    features: Mapping[str, float],
    router: ModelRouter | None,
    model_ok: bool,
    contributions: Contributions | None,
    w: _Work,
) -> tuple[float | None, str]:
    """(p_up, note) from the router or the fallback; p_up None when neither may score (NO_MODEL)."""
    why = ""
    if router is None:
        why = "no model router"
    elif not model_ok:
        why = "model degraded"
    elif not state.data_ok and cfg.degrade_to_rules:
        why = "data degraded"
    else:
        try:
            routed = router.score(state.symbol, features, state.exchange_ts)  # the decision: weight canaries
        except Exception as exc:  # a failing model degrades the decision, it does not stop the strategy
            why = f"model error: {type(exc).__name__}: {exc}"
        else:
            p = routed.p_up
            if 0.0 <= p <= 1.0:
                w.model_version = routed.version
                w.shadow = routed.shadow
                w.p_low, w.p_high = routed.p_low, routed.p_high
                note = ""
                if routed.error:
                    w.flags |= QUALITY_SHADOW_ERROR
                    note = f"shadow error: {routed.error}"
                if contributions is not None:
                    w.contributions = tuple(contributions(features))[:MAX_CONTRIBUTIONS]
                return p, note
            why = f"model {routed.version} returned p_up={p!r}"
    if not cfg.degrade_to_rules:
        return None, why
    w.flags |= QUALITY_MODEL_DEGRADED
    w.model_version = RULES_FALLBACK
    queue = 0.5 * (state.bid_qty + state.ask_qty)
    ofi = features.get(FALLBACK_OFI, _NAN)
    p = rules_only_p_up(
        ofi / queue if queue > 0 else _NAN,
        features.get(FALLBACK_QI, _NAN),
        features.get(FALLBACK_DMICRO, _NAN),
    )
    return p, f"fallback: {why}"


def _regime(features: Mapping[str, float]) -> str:
    x = features.get(REGIME_FEATURE, _NAN)
    if x != x:  # NaN or missing: not warmed up
        return "unknown"
    return "volatile" if x >= VOLATILE_RV_PCT else "calm"


def _join(primary: str, note: str) -> str:
    return f"{primary}; {note}" if note and primary else primary or note
