"""Rows of the ``signals``, ``intents`` and ``audit`` tables from the engine's records.

The mapping from a dataclass to its table lives here, next to the DDL's users, so the runtime writes
``writer.append_row(signal_row(signal))`` and a column renamed in ``sql/runtime`` breaks one function (and
its test) rather than every caller. ``ts`` is the record's ``exchange_ts`` (int64 ns; the store converts
it to ``DateTime64(9, 'UTC')``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from tradeplane.engine.decision.types import Intent, Signal


def signal_row(signal: Signal) -> dict[str, Any]:
    """One ``signals`` row: every Signal field (``id`` → ``signal_id``; contributions and shadow scores as
    parallel name/value lists). Floats are kept as they are (NaN stays NaN: ClickHouse stores it)."""
    return {
        "strategy": signal.strategy,
        "symbol": signal.symbol,
        "ts": signal.exchange_ts,
        "signal_id": signal.id,
        "venue": signal.venue,
        "exchange_ts": signal.exchange_ts,
        "ingest_ts": signal.ingest_ts,
        "infer_ts": signal.infer_ts,
        "p_up": signal.p_up,
        "p_low": signal.p_low,
        "p_high": signal.p_high,
        "expected_return_bps": signal.expected_return_bps,
        "cost_bps": signal.cost_bps,
        "utility": signal.utility,
        "fee_bps": signal.fee_bps,
        "slippage_bps": signal.slippage_bps,
        "funding_bps": signal.funding_bps,
        "decision": signal.decision,
        "reason": signal.reason,
        "reason_detail": signal.reason_detail,
        "regime": signal.regime,
        "contribution_names": [n for n, _ in signal.contributions],
        "contribution_values": [v for _, v in signal.contributions],
        "model_version": signal.model_version,
        "shadow_versions": [v for v, _ in signal.shadow],
        "shadow_p_up": [p for _, p in signal.shadow],
        "config_rev": signal.config_rev,
        "cooldown_until": signal.cooldown_until,
        "latency_ns": signal.latency_ns,
        "size_mult": signal.size_mult,
        "tp_mult": signal.tp_mult,
        "sl_mult": signal.sl_mult,
        "rules_fired": list(signal.rules_fired),
        "quality_flags": signal.quality_flags,
    }


def signal_from_row(row: Mapping[str, Any]) -> Signal:
    """The Signal of a ``signals`` row (as :func:`tradeplane.workloads.store.base.rows_of` returns it):
    the inverse of :func:`signal_row`."""
    return Signal(
        id=str(row["signal_id"]),
        strategy=str(row["strategy"]),
        symbol=str(row["symbol"]),
        venue=str(row["venue"]),
        exchange_ts=int(row["exchange_ts"]),
        ingest_ts=int(row["ingest_ts"]),
        infer_ts=int(row["infer_ts"]),
        p_up=float(row["p_up"]),
        p_low=float(row["p_low"]),
        p_high=float(row["p_high"]),
        expected_return_bps=float(row["expected_return_bps"]),
        cost_bps=float(row["cost_bps"]),
        utility=float(row["utility"]),
        fee_bps=float(row["fee_bps"]),
        slippage_bps=float(row["slippage_bps"]),
        funding_bps=float(row["funding_bps"]),
        decision=str(row["decision"]),
        reason=str(row["reason"]),
        reason_detail=str(row["reason_detail"]),
        regime=str(row["regime"]),
        contributions=tuple(
            (str(n), float(v)) for n, v in zip(row["contribution_names"], row["contribution_values"], strict=True)
        ),
        model_version=str(row["model_version"]),
        shadow=tuple((str(v), float(p)) for v, p in zip(row["shadow_versions"], row["shadow_p_up"], strict=True)),
        config_rev=str(row["config_rev"]),
        cooldown_until=int(row["cooldown_until"]),
        latency_ns=int(row["latency_ns"]),
        size_mult=float(row["size_mult"]),
        tp_mult=float(row["tp_mult"]),
        sl_mult=float(row["sl_mult"]),
        rules_fired=tuple(str(r) for r in row["rules_fired"]),
        quality_flags=int(row["quality_flags"]),
    )


def intent_row(intent: Intent) -> dict[str, Any]:
    """One ``intents`` row (``oco`` as 0/1)."""
    return {
        "strategy": intent.strategy,
        "symbol": intent.symbol,
        "ts": intent.exchange_ts,
        "intent_id": intent.intent_id,
        "signal_id": intent.signal_id,
        "venue": intent.venue,
        "side": intent.side,
        "qty": intent.qty,
        "notional_usdt": intent.notional_usdt,
        "price": intent.price,
        "stop_price": intent.stop_price,
        "take_profit_price": intent.take_profit_price,
        "leverage": intent.leverage,
        "oco": int(intent.oco),
        "exchange_ts": intent.exchange_ts,
        "config_rev": intent.config_rev,
    }


def audit_row(record: Mapping[str, Any]) -> dict[str, Any]:
    """One ``audit`` row of an audit record (:func:`tradeplane.workloads.codec.audit_record`): the keys it
    is found by, and the whole record as compact JSON (the same text as its line in the JSONL log)."""
    return {
        "strategy": record["strategy"],
        "symbol": record["symbol"],
        "ts": record["ts"],
        "signal_id": record["signal_id"],
        "schema_version": record["schema_version"],
        "json": orjson.dumps(record).decode(),
    }
