"""The desk the runtime tests drive: the example USD-M strategy with its thresholds opened up (τ 0.5, κ 0, no
depth gate, short cooldown, 1 s time bars, immediate execution), so that it decides and enters every few
seconds on a synthetic market, under the example RiskBudget."""

from __future__ import annotations

from pathlib import Path

import yaml

from tradeplane.api.v1alpha1.riskbudget import RiskBudgetSpec
from tradeplane.api.v1alpha1.strategy import StrategySpec
from tradeplane.engine.risk.config import RiskConfig
from tradeplane.engine.risk.engine import RiskEngine
from tradeplane.engine.runtime.desk import DeskRuntime
from tradeplane.engine.runtime.instruments import Instrument, instrument_table
from tradeplane.engine.runtime.strategy import StrategyRuntime

REPO = Path(__file__).resolve().parents[4]
INSTRUMENTS: list[Instrument] = instrument_table([("binance-usdm", "BTCUSDT")])


def example_spec(name: str) -> dict[str, object]:
    """The ``spec`` of one of examples/'s manifests, as plain data."""
    return yaml.safe_load((REPO / "examples" / name).read_text())["spec"]  # type: ignore[no-any-return]


def budget_spec() -> RiskBudgetSpec:
    return RiskBudgetSpec.model_validate(example_spec("00-riskbudget.yaml"))


def open_desk() -> DeskRuntime:
    """A fresh desk of the opened-up strategy (see the module docstring); its RiskEngine is ``desk-default``."""
    raw = example_spec("21-strategy-btc-usdm.yaml")
    raw["decision"] |= {"tau": 0.5, "kappa": 0.0, "cooldownSeconds": 5, "horizonSeconds": 20}  # type: ignore[operator]
    raw["gates"] |= {"minTop1DepthUsdt": 0, "maxSpreadBps": 50}  # type: ignore[operator]
    raw["features"] = {"set": "microstructure-v1", "clock": "time", "barMs": 1000}
    raw["execution"] = {"policy": "immediate"}
    strategy = StrategyRuntime.build("usdm-btc", StrategySpec.model_validate(raw), INSTRUMENTS, None)
    risk = RiskEngine("desk-default", RiskConfig.from_spec(budget_spec()), initial_equity=10_000.0)
    return DeskRuntime([strategy], {"desk-default": risk}, INSTRUMENTS)
