"""What decide reports into its Strategy's status: net positions of open trades, PnL, the last signal."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from tradeplane.engine.runtime.outbox import Outbox
from tradeplane.workloads.decide.report import StatusBook


def _row(intent: str, symbol: str, qty: float, entry: float, realized: float, unrealized: float,
         state: str = "OPEN", strategy: str = "s1") -> dict[str, Any]:  # fmt: skip
    return {"strategy": strategy, "symbol": symbol, "intent_id": intent, "qty": qty, "avg_entry": entry,
            "realized": realized, "unrealized": unrealized, "state": state}  # fmt: skip


def _signal(sid: str, p_up: float, strategy: str = "s1") -> Any:
    return SimpleNamespace(id=sid, strategy=strategy, symbol="BTCUSDT", exchange_ts=1_722_000_000_000_000_000,
                           decision="ENTER_LONG", p_up=p_up)  # fmt: skip


def test_positions_are_net_per_symbol_over_open_trades_and_pnl_sums_every_trade() -> None:
    book = StatusBook("s1")
    book.observe(Outbox(positions=[_row("a", "BTCUSDT", 0.01, 60_000, 0, 1.5), _row("b", "BTCUSDT", 0.02, 61_000, 0, -0.5),
                                   _row("c", "ETHUSDT", -1.0, 3_000, 0, 2.0), _row("x", "BTCUSDT", 5, 1, 9, 9, strategy="other")]))  # fmt: skip
    # a later row of the same trade replaces the earlier one; a closed trade keeps only its realized PnL
    book.observe(Outbox(positions=[_row("c", "ETHUSDT", 0.0, 3_000, -4.0, 0.0, state="CLOSED")]))
    status = book.status()
    [btc] = status["positions"]
    assert btc["symbol"] == "BTCUSDT" and btc["quantity"] == pytest.approx(0.03)
    assert btc["notionalUsdt"] == pytest.approx(0.01 * 60_000 + 0.02 * 61_000)
    assert btc["averageEntry"] == pytest.approx((600 + 1_220) / 0.03)
    assert status["pnl"] == {"realizedUsdt": -4.0, "unrealizedUsdt": 1.0, "drawdownPct": 0.0}
    assert "lastSignal" not in status


def test_the_accounts_latest_drawdown_is_reported() -> None:
    """The desk's equity rows (account level) carry the drawdown from the running peak: the latest one is what
    the RiskBudget's usage (and a canary's drawdown guard) reads."""
    book = StatusBook("s1")
    equity = [{"budget": "", "strategy": "", "ts": t, "equity": e, "drawdown_pct": d}
              for t, e, d in ((1, 100.0, 0.0), (2, 90.0, 10.0), (3, 95.0, 5.0))]  # fmt: skip
    book.observe(Outbox(equity=equity[:2]))
    assert book.status()["pnl"]["drawdownPct"] == 10.0
    book.observe(Outbox(equity=equity[2:]))
    assert book.status()["pnl"]["drawdownPct"] == 5.0


def test_the_last_signal_of_the_strategy_is_reported_without_a_missing_score() -> None:
    book = StatusBook("s1")
    book.observe(Outbox(signals=[_signal("one", 0.7), _signal("two", float("nan")), _signal("z", 0.9, "other")]))
    last = book.status()["lastSignal"]
    assert last == {"id": "two", "symbol": "BTCUSDT", "time": "2024-07-26T13:20:00.000000Z", "decision": "ENTER_LONG"}
    book.observe(Outbox(signals=[_signal("three", 0.61)]))
    assert book.status()["lastSignal"]["pUp"] == 0.61
