"""Signals and intents to and from their Protobuf bytes, and the JSON audit record of a decision.

The dataclasses of :mod:`tradeplane.engine.decision.types` are the in-process form (what the engine
produces and the runtime passes around); ``signal.proto`` is the wire form for anything that leaves the
process (Kafka topics ``signals.<strategy>`` and ``intents.<strategy>``), because Protobuf gives compact
bytes and explicit, checked compatibility rules (docs/data-contracts.md, "Signals"). The audit record is
the human- and ClickHouse-readable form: JSON, one object per decision, with what the signal alone does not
say (the cost breakdown in quote currency, the decoded quality flags, where the data and the model came
from, the intent).

Round trip: every field of a Signal or Intent survives ``*_to_proto`` → ``*_from_proto`` exactly, including
NaN (stays NaN), ±inf and −0.0 (floats are IEEE doubles on the wire). The audit record is JSON, which has
no NaN: non-finite floats become ``null`` there (see :func:`json_safe`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

from google.protobuf.message import DecodeError

from tradeplane.contracts import signal_pb2 as pb
from tradeplane.engine.decision.types import (
    QUALITY_DATA_DEGRADED,
    QUALITY_MODEL_DEGRADED,
    QUALITY_SHADOW_ERROR,
    QUALITY_SLIPPAGE_PROXY,
    Intent,
    Signal,
)

SIGNAL_SCHEMA_VERSION: Final = 1
"""Written in ``schema_version`` of every Signal and Intent message. Bump it when the meaning of a field
changes (unit, sign, semantics), never for an added field; readers reject versions above theirs."""

AUDIT_SCHEMA_VERSION: Final = 1
"""``schema_version`` of every audit record (:func:`audit_record`). Bump it when a key is renamed or
removed or its meaning changes; adding a key does not bump it (readers ignore keys they do not know)."""

QUALITY_FLAG_NAMES: Final[Mapping[int, str]] = {
    QUALITY_DATA_DEGRADED: "DATA_DEGRADED",
    QUALITY_MODEL_DEGRADED: "MODEL_DEGRADED",
    QUALITY_SHADOW_ERROR: "SHADOW_ERROR",
    QUALITY_SLIPPAGE_PROXY: "SLIPPAGE_PROXY",
}
"""Name of each ``Signal.quality_flags`` bit; an unknown bit ``b`` reads ``BIT_<b>`` (never an error)."""

_BPS: Final = 1e4


class ContractError(ValueError):
    """Bytes that are not a message of a known schema version, or a value the schema cannot carry."""


def quality_flag_names(flags: int) -> list[str]:
    """The names of the bits set in ``flags``, lowest bit first (``[]`` for 0)."""
    if flags < 0:
        raise ContractError(f"quality_flags must be >= 0, got {flags}")
    names = []
    bit = 1
    while bit <= flags:
        if flags & bit:
            names.append(QUALITY_FLAG_NAMES.get(bit, f"BIT_{bit}"))
        bit <<= 1
    return names


def _signal_message(signal: Signal) -> pb.Signal:
    return pb.Signal(
        schema_version=SIGNAL_SCHEMA_VERSION,
        id=signal.id,
        strategy=signal.strategy,
        symbol=signal.symbol,
        venue=signal.venue,
        exchange_ts=signal.exchange_ts,
        ingest_ts=signal.ingest_ts,
        infer_ts=signal.infer_ts,
        p_up=signal.p_up,
        p_low=signal.p_low,
        p_high=signal.p_high,
        expected_return_bps=signal.expected_return_bps,
        cost_bps=signal.cost_bps,
        utility=signal.utility,
        fee_bps=signal.fee_bps,
        slippage_bps=signal.slippage_bps,
        funding_bps=signal.funding_bps,
        decision=signal.decision,
        reason=signal.reason,
        reason_detail=signal.reason_detail,
        regime=signal.regime,
        contributions=[pb.Contribution(name=n, value=v) for n, v in signal.contributions],
        model_version=signal.model_version,
        shadow=[pb.ShadowScore(version=ver, p_up=p) for ver, p in signal.shadow],
        config_rev=signal.config_rev,
        cooldown_until=signal.cooldown_until,
        latency_ns=signal.latency_ns,
        size_mult=signal.size_mult,
        tp_mult=signal.tp_mult,
        sl_mult=signal.sl_mult,
        rules_fired=list(signal.rules_fired),
        quality_flags=signal.quality_flags,
    )


def signal_to_proto(signal: Signal) -> bytes:
    """The Signal as ``tradeplane.contracts.v1.Signal`` bytes (with :data:`SIGNAL_SCHEMA_VERSION`).

    Raises :class:`ContractError` naming the signal when a value does not fit its field (an int outside
    int64, negative quality flags, a string that is not valid UTF-8).
    """
    try:
        return bytes(_signal_message(signal).SerializeToString())
    except (ValueError, TypeError) as exc:
        raise ContractError(f"signal {signal.id!r} cannot be encoded: {exc}") from exc


def _parse(message: Any, data: bytes, what: str) -> None:
    try:
        message.ParseFromString(data)
    except DecodeError as exc:
        raise ContractError(f"not a {what} message: {exc}") from exc
    version = message.schema_version
    if version == 0:
        raise ContractError(f"not a {what} message: schema_version is missing (0)")
    if version > SIGNAL_SCHEMA_VERSION:
        raise ContractError(f"{what} schema_version {version} is newer than this reader's {SIGNAL_SCHEMA_VERSION}")


def signal_from_proto(data: bytes) -> Signal:
    """The Signal encoded by :func:`signal_to_proto` (or any writer of a known schema version).

    Raises :class:`ContractError` for bytes that do not parse, lack ``schema_version`` or carry a version
    newer than :data:`SIGNAL_SCHEMA_VERSION`.
    """
    m = pb.Signal()
    _parse(m, data, "Signal")
    return Signal(
        id=m.id,
        strategy=m.strategy,
        symbol=m.symbol,
        venue=m.venue,
        exchange_ts=m.exchange_ts,
        ingest_ts=m.ingest_ts,
        infer_ts=m.infer_ts,
        p_up=m.p_up,
        p_low=m.p_low,
        p_high=m.p_high,
        expected_return_bps=m.expected_return_bps,
        cost_bps=m.cost_bps,
        utility=m.utility,
        fee_bps=m.fee_bps,
        slippage_bps=m.slippage_bps,
        funding_bps=m.funding_bps,
        decision=m.decision,
        reason=m.reason,
        reason_detail=m.reason_detail,
        regime=m.regime,
        contributions=tuple((c.name, c.value) for c in m.contributions),
        model_version=m.model_version,
        shadow=tuple((s.version, s.p_up) for s in m.shadow),
        config_rev=m.config_rev,
        cooldown_until=m.cooldown_until,
        latency_ns=m.latency_ns,
        size_mult=m.size_mult,
        tp_mult=m.tp_mult,
        sl_mult=m.sl_mult,
        rules_fired=tuple(m.rules_fired),
        quality_flags=m.quality_flags,
    )


def intent_to_proto(intent: Intent) -> bytes:
    """The Intent as ``tradeplane.contracts.v1.Intent`` bytes; :class:`ContractError` when a value does not fit."""
    try:
        m = pb.Intent(
            schema_version=SIGNAL_SCHEMA_VERSION,
            intent_id=intent.intent_id,
            signal_id=intent.signal_id,
            strategy=intent.strategy,
            symbol=intent.symbol,
            venue=intent.venue,
            side=intent.side,
            qty=intent.qty,
            notional_usdt=intent.notional_usdt,
            price=intent.price,
            stop_price=intent.stop_price,
            take_profit_price=intent.take_profit_price,
            leverage=intent.leverage,
            oco=intent.oco,
            exchange_ts=intent.exchange_ts,
            config_rev=intent.config_rev,
        )
        return bytes(m.SerializeToString())
    except (ValueError, TypeError) as exc:
        raise ContractError(f"intent {intent.intent_id!r} cannot be encoded: {exc}") from exc


def intent_from_proto(data: bytes) -> Intent:
    """The Intent encoded by :func:`intent_to_proto`; :class:`ContractError` as :func:`signal_from_proto`."""
    m = pb.Intent()
    _parse(m, data, "Intent")
    return Intent(
        intent_id=m.intent_id,
        signal_id=m.signal_id,
        strategy=m.strategy,
        symbol=m.symbol,
        venue=m.venue,
        side=m.side,
        qty=m.qty,
        notional_usdt=m.notional_usdt,
        price=m.price,
        stop_price=m.stop_price,
        take_profit_price=m.take_profit_price,
        leverage=m.leverage,
        oco=m.oco,
        exchange_ts=m.exchange_ts,
        config_rev=m.config_rev,
    )


def json_safe(value: object, path: str = "value") -> Any:
    """A copy of ``value`` that ``json.dumps(..., allow_nan=False)`` accepts.

    Non-finite floats (NaN, ±inf) become ``None`` (JSON ``null``: JSON has no NaN, and a reader must not
    mistake a missing value for a number); mappings become dicts (keys must be ``str``), lists and tuples
    become lists, numpy scalars become Python numbers. Anything else (bytes, objects) raises ``TypeError``
    naming ``path``, e.g. ``lineage.model.sha256``, so a bad lineage entry is found at its source.
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{path}: keys must be str, got {type(key).__name__} {key!r}")
            out[key] = json_safe(item, f"{path}.{key}")
        return out
    if isinstance(value, list | tuple):
        return [json_safe(item, f"{path}[{i}]") for i, item in enumerate(value)]
    item = getattr(value, "item", None)  # numpy scalars (np.float64, np.int64, np.bool_)
    if callable(item) and type(value).__module__ == "numpy":
        return json_safe(item(), path)
    raise TypeError(f"{path}: {type(value).__name__} is not JSON-serialisable")


def _num(x: float) -> float | None:
    return x if math.isfinite(x) else None


def signal_dict(signal: Signal) -> dict[str, Any]:
    """Every Signal field by name, JSON-safe: NaN → ``None``; contributions as ``[{"name", "value"}]``,
    shadow scores as ``[{"version", "p_up"}]``, rules_fired as a list."""
    out: dict[str, Any] = {
        "id": signal.id,
        "strategy": signal.strategy,
        "symbol": signal.symbol,
        "venue": signal.venue,
        "exchange_ts": signal.exchange_ts,
        "ingest_ts": signal.ingest_ts,
        "infer_ts": signal.infer_ts,
        "p_up": _num(signal.p_up),
        "p_low": _num(signal.p_low),
        "p_high": _num(signal.p_high),
        "expected_return_bps": _num(signal.expected_return_bps),
        "cost_bps": _num(signal.cost_bps),
        "utility": _num(signal.utility),
        "fee_bps": _num(signal.fee_bps),
        "slippage_bps": _num(signal.slippage_bps),
        "funding_bps": _num(signal.funding_bps),
        "decision": signal.decision,
        "reason": signal.reason,
        "reason_detail": signal.reason_detail,
        "regime": signal.regime,
        "contributions": [{"name": n, "value": _num(v)} for n, v in signal.contributions],
        "model_version": signal.model_version,
        "shadow": [{"version": ver, "p_up": _num(p)} for ver, p in signal.shadow],
        "config_rev": signal.config_rev,
        "cooldown_until": signal.cooldown_until,
        "latency_ns": signal.latency_ns,
        "size_mult": _num(signal.size_mult),
        "tp_mult": _num(signal.tp_mult),
        "sl_mult": _num(signal.sl_mult),
        "rules_fired": list(signal.rules_fired),
        "quality_flags": signal.quality_flags,
    }
    return out


def intent_dict(intent: Intent) -> dict[str, Any]:
    """Every Intent field by name, JSON-safe (NaN → ``None``)."""
    return {
        "intent_id": intent.intent_id,
        "signal_id": intent.signal_id,
        "strategy": intent.strategy,
        "symbol": intent.symbol,
        "venue": intent.venue,
        "side": intent.side,
        "qty": _num(intent.qty),
        "notional_usdt": _num(intent.notional_usdt),
        "price": _num(intent.price),
        "stop_price": _num(intent.stop_price),
        "take_profit_price": _num(intent.take_profit_price),
        "leverage": intent.leverage,
        "oco": intent.oco,
        "exchange_ts": intent.exchange_ts,
        "config_rev": intent.config_rev,
    }


def audit_record(signal: Signal, intent: Intent | None, *, lineage: Mapping[str, object]) -> dict[str, Any]:
    """The audit record of one decision: a JSON-safe dict (one line of the JSONL audit log, and the ``json``
    column of the ``audit`` table).

    Keys: ``schema_version`` (:data:`AUDIT_SCHEMA_VERSION`), ``signal_schema_version``, ``ts`` (the signal's
    ``exchange_ts``, the same ``ts`` as its row in the ``signals`` table), ``signal_id``, ``strategy``,
    ``symbol``, ``decision``, ``reason``; ``signal`` (:func:`signal_dict`); ``costs`` (``fee_bps``,
    ``slippage_bps``, ``funding_bps``, ``total_bps`` and, when there is an intent, ``notional_usdt`` and
    ``total_usdt`` = notional × total_bps / 10⁴, else ``None``); ``quality`` (``flags``, the bit field, and
    ``names``, e.g. ``["DATA_DEGRADED"]``); ``lineage`` (a JSON-safe copy of the caller's mapping — by
    convention ``source`` ("synth" or a file path), ``source_sha256`` or ``synth_seed``, ``model_sha256``
    and ``config_rev``; ``config_rev`` is filled from the signal when absent); ``intent`` (:func:`intent_dict`
    or ``None``).

    NaN and ±inf become ``None`` everywhere (JSON has no NaN). ``TypeError`` naming the key when the lineage
    holds something that is not JSON (bytes, objects); ``ValueError`` when the intent belongs to another
    signal.
    """
    if intent is not None and intent.signal_id != signal.id:
        raise ValueError(f"intent {intent.intent_id!r} belongs to signal {intent.signal_id!r}, not {signal.id!r}")
    lineage_out: dict[str, Any] = json_safe(lineage, "lineage")
    lineage_out.setdefault("config_rev", signal.config_rev)
    notional = intent.notional_usdt if intent is not None else math.nan
    total_usdt = notional * signal.cost_bps / _BPS
    return {
        "schema_version": AUDIT_SCHEMA_VERSION,
        "signal_schema_version": SIGNAL_SCHEMA_VERSION,
        "ts": signal.exchange_ts,
        "signal_id": signal.id,
        "strategy": signal.strategy,
        "symbol": signal.symbol,
        "decision": signal.decision,
        "reason": signal.reason,
        "signal": signal_dict(signal),
        "costs": {
            "fee_bps": _num(signal.fee_bps),
            "slippage_bps": _num(signal.slippage_bps),
            "funding_bps": _num(signal.funding_bps),
            "total_bps": _num(signal.cost_bps),
            "notional_usdt": _num(notional),
            "total_usdt": _num(total_usdt),
        },
        "quality": {"flags": signal.quality_flags, "names": quality_flag_names(signal.quality_flags)},
        "lineage": lineage_out,
        "intent": intent_dict(intent) if intent is not None else None,
    }
