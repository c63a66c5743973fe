"""What a desk reports into its Strategy's status — live positions, PnL and the last signal — so the operator
can aggregate a RiskBudget's usage from its strategies without touching market data.

:class:`StatusBook` is pure (it folds drained outboxes into the latest state); :class:`StatusReporter` is the
edge that merge-patches ``strategies/<name>/status`` at most every few seconds and only when it changed. A
report that fails (API server down, RBAC missing) is logged and retried later: reporting never stops trading.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ...engine.runtime.outbox import Outbox

log = logging.getLogger("tradeplane.decide.report")

GROUP, VERSION, PLURAL = "tradeplane.io", "v1alpha1", "strategies"
_CLOSED = "CLOSED"  #: TradeState.CLOSED as the position rows carry it


@dataclass
class StatusBook:
    """The latest row of every trade of one strategy, and its latest signal."""

    strategy: str
    trades: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_signal: dict[str, Any] | None = None
    drawdown_pct: float = 0.0  #: the account's equity below its running peak (a cluster desk: one account)

    def observe(self, batch: Outbox) -> None:
        for row in batch.positions:
            if row.get("strategy") == self.strategy:
                self.trades[str(row["intent_id"])] = row
        if batch.equity:  # the account's rows (strategy ""): what the RiskBudget's drawdown guard reads
            self.drawdown_pct = float(batch.equity[-1]["drawdown_pct"])
        mine = [s for s in batch.signals if s.strategy == self.strategy]
        if mine:
            s = mine[-1]
            when = datetime.fromtimestamp(s.exchange_ts / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            self.last_signal = {"id": s.id, "symbol": s.symbol, "time": when, "decision": str(s.decision)}
            if math.isfinite(s.p_up):  # a decision without a model score has none
                self.last_signal["pUp"] = float(s.p_up)

    def status(self) -> dict[str, Any]:
        """``positions`` (net per symbol over open trades, notional at entry), ``pnl`` and ``lastSignal`` in the
        Strategy status schema's camelCase."""
        net: dict[str, list[float]] = {}
        realized = unrealized = 0.0
        for row in self.trades.values():
            realized += float(row.get("realized") or 0.0)
            if str(row.get("state")) == _CLOSED or not float(row.get("qty") or 0.0):
                continue
            unrealized += float(row.get("unrealized") or 0.0)
            qty, entry = float(row["qty"]), float(row.get("avg_entry") or 0.0)
            acc = net.setdefault(str(row["symbol"]), [0.0, 0.0])
            acc[0] += qty
            acc[1] += qty * entry
        positions = [{"symbol": sym, "quantity": round(q, 12), "averageEntry": round(n / q, 8) if q else None,
                      "notionalUsdt": round(abs(n), 6)} for sym, (q, n) in sorted(net.items())]  # fmt: skip
        pnl = {"realizedUsdt": round(realized, 6), "unrealizedUsdt": round(unrealized, 6),
               "drawdownPct": round(max(0.0, self.drawdown_pct), 6)}  # fmt: skip
        out: dict[str, Any] = {"positions": positions, "pnl": pnl}
        if self.last_signal is not None:
            out["lastSignal"] = self.last_signal
        return out


def workload_api_client() -> Any:
    """A ``kubernetes.client.ApiClient``: the pod's ServiceAccount in a cluster, else the kubeconfig (a
    workload run by hand against a cluster). The workload Role allows exactly what decide does with it."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
        return client.ApiClient()
    except config.ConfigException:  # KUBECONFIG read now: the library reads it once, at its import
        return config.new_client_from_config(config_file=os.environ.get("KUBECONFIG"))  # type: ignore[no-untyped-call]


class StatusReporter:
    """Merge-patches the Strategy's status through the API server (in-cluster config in a pod, else the
    kubeconfig); the workload's ServiceAccount may patch ``strategies/status`` and nothing else."""

    def __init__(self, book: StatusBook, namespace: str, *, every_s: float) -> None:
        from kubernetes import client

        api = workload_api_client()
        self._api = client.CustomObjectsApi(api)
        self._client = api
        self.book, self.namespace, self.every_s = book, namespace, every_s
        self._sent: dict[str, Any] | None = None
        self._last = 0.0
        self.failures = 0

    def maybe_report(self, *, force: bool = False) -> bool:
        """Patch when ``every_s`` passed (or ``force``) and the status changed; True when a patch was sent."""
        now = time.monotonic()
        if not force and now - self._last < self.every_s:
            return False
        self._last = now
        status = self.book.status()
        if status == self._sent:
            return False
        try:
            self._api.patch_namespaced_custom_object_status(
                GROUP, VERSION, self.namespace, PLURAL, self.book.strategy, {"status": status},
                _content_type="application/merge-patch+json",
            )  # fmt: skip
        except Exception as exc:  # the API server is not the trading path: log, retry at the next interval
            self.failures += 1
            log.warning("status report of strategy %s failed: %s", self.book.strategy, exc)
            return False
        self._sent = status
        return True

    def close(self) -> None:
        self._client.close()
