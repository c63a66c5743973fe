"""RiskConfig compiled from the example RiskBudget: every field carried over, isolated from later spec edits."""

from __future__ import annotations

from tradeplane.api.v1alpha1.riskbudget import HaltPolicy, RiskBudgetSpec
from tradeplane.engine.risk.config import RiskConfig

from .support import S, example_spec


def test_from_spec_carries_the_example_desk() -> None:
    cfg = RiskConfig.from_spec(example_spec())
    lim = cfg.limits
    assert (
        lim.max_gross_notional_usdt,
        lim.max_net_notional_per_symbol_usdt,
        lim.max_order_notional_usdt,
        lim.max_futures_margin_usdt,
        lim.max_spot_quote_usdt,
        lim.max_concurrent_entries_per_market,
        lim.max_orders_per_minute,
        lim.max_daily_loss_usdt,
        lim.max_drawdown_pct,
        lim.max_consecutive_losses,
    ) == (20000, 8000, 1500, 4000, 8000, 1, 60, 400, 8, 5)
    b = cfg.breakers
    assert (b.max_ingest_lag_ms, b.max_feed_gap_ratio_pct, b.max_decision_latency_p99_ms) == (500, 0.2, 5)
    assert cfg.cooldown_ns == 60 * S
    assert (cfg.halt, cfg.halt_policy, cfg.flatten, cfg.reduce_fraction) == (False, HaltPolicy.CANCEL_ONLY, False, 0.8)


def test_later_edits_of_the_spec_do_not_leak_into_the_config() -> None:
    spec = example_spec()
    cfg = RiskConfig.from_spec(spec)
    spec.limits.max_gross_notional_usdt = 1.0
    assert cfg.limits.max_gross_notional_usdt == 20000


def test_equal_specs_give_equal_configs_and_any_change_is_visible() -> None:
    a = RiskConfig.from_spec(example_spec())
    assert a == RiskConfig.from_spec(example_spec())
    edited = example_spec()
    edited.breakers.cooldown_seconds = 61
    assert a != RiskConfig.from_spec(edited)
    assert RiskConfig.from_spec(RiskBudgetSpec(halt_policy=HaltPolicy.FLATTEN)).flatten
