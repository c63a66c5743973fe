"""Builders shared by the risk tests: a configuration from the example desk with overrides, orders, fills."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from tradeplane.api.v1alpha1.riskbudget import RiskBudgetSpec
from tradeplane.engine.risk.config import RiskConfig
from tradeplane.engine.risk.engine import OrderRequest, RiskEngine

REPO = Path(__file__).resolve().parents[4]
EXAMPLE = REPO / "examples" / "00-riskbudget.yaml"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
S = 1_000_000_000
USDM, SPOT, PAPER = "binance-usdm", "binance-spot", "paper"


def ns(text: str) -> int:
    """ISO-8601 UTC text → int64 ns."""
    return (datetime.fromisoformat(text).replace(tzinfo=UTC) - EPOCH) // timedelta(microseconds=1) * 1000


T0 = ns("2024-03-01T10:00:00")


def example_spec() -> RiskBudgetSpec:
    """The spec of ``examples/00-riskbudget.yaml`` (gross 20000, net 8000, order 1500, margin 4000, spot 8000,
    1 entry per market, 60 orders/min, daily loss 400, drawdown 8 %, 5 losses, reduce at 80 %, cooldown 60 s)."""
    return RiskBudgetSpec.model_validate(yaml.safe_load(EXAMPLE.read_text())["spec"])


def config(*, limits: dict[str, Any] | None = None, breakers: dict[str, Any] | None = None, **top: Any) -> RiskConfig:
    """The example desk with overrides (snake_case field names)."""
    spec = example_spec()
    data = spec.model_dump()
    data["limits"].update(limits or {})
    data["breakers"].update(breakers or {})
    data.update(top)
    return RiskConfig.from_spec(RiskBudgetSpec.model_validate(data))


def engine(cfg: RiskConfig | None = None, *, equity: float = 1_000_000.0) -> RiskEngine:
    """A fresh engine on ``cfg`` (default: the example desk) with a large equity, so drawdown stays far away."""
    return RiskEngine("desk-default", cfg or config(), initial_equity=equity)


def order(
    notional: float = 100.0,
    *,
    strategy: str = "s1",
    venue: str = USDM,
    symbol: str = "BTCUSDT",
    side: int = 1,
    price: float = 100.0,
    reduce_only: bool = False,
    is_entry: bool = True,
    leverage: int = 10,
    ts: int = T0,
) -> OrderRequest:
    """An order of ``notional`` USDT at ``price`` (qty = notional / price)."""
    return OrderRequest(strategy, venue, symbol, side, notional / price, price, reduce_only, is_entry, leverage, ts)


def fill(
    eng: RiskEngine,
    notional: float,
    *,
    strategy: str = "s1",
    venue: str = USDM,
    symbol: str = "BTCUSDT",
    side: int = 1,
    price: float = 100.0,
    fee: float = 0.0,
    leverage: int = 10,
    ts: int = T0,
) -> None:
    """Book a fill of ``notional`` USDT at ``price``."""
    eng.on_fill(strategy, venue, symbol, side, notional / price, price, fee, ts, leverage=leverage)
