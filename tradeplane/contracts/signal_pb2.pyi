# Generated from tradeplane/contracts/signal.proto by grpcio-tools' protoc: do not edit.
# Regenerate after changing the .proto: .venv/bin/python -m tradeplane.contracts.generate
# (a test fails while this file and the .proto are out of step).
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Contribution(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: float
    def __init__(self, name: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...

class ShadowScore(_message.Message):
    __slots__ = ("version", "p_up")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    P_UP_FIELD_NUMBER: _ClassVar[int]
    version: str
    p_up: float
    def __init__(self, version: _Optional[str] = ..., p_up: _Optional[float] = ...) -> None: ...

class Signal(_message.Message):
    __slots__ = ("schema_version", "id", "strategy", "symbol", "venue", "exchange_ts", "ingest_ts", "infer_ts", "p_up", "p_low", "p_high", "expected_return_bps", "cost_bps", "utility", "fee_bps", "slippage_bps", "funding_bps", "decision", "reason", "reason_detail", "regime", "contributions", "model_version", "shadow", "config_rev", "cooldown_until", "latency_ns", "size_mult", "tp_mult", "sl_mult", "rules_fired", "quality_flags")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    VENUE_FIELD_NUMBER: _ClassVar[int]
    EXCHANGE_TS_FIELD_NUMBER: _ClassVar[int]
    INGEST_TS_FIELD_NUMBER: _ClassVar[int]
    INFER_TS_FIELD_NUMBER: _ClassVar[int]
    P_UP_FIELD_NUMBER: _ClassVar[int]
    P_LOW_FIELD_NUMBER: _ClassVar[int]
    P_HIGH_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_RETURN_BPS_FIELD_NUMBER: _ClassVar[int]
    COST_BPS_FIELD_NUMBER: _ClassVar[int]
    UTILITY_FIELD_NUMBER: _ClassVar[int]
    FEE_BPS_FIELD_NUMBER: _ClassVar[int]
    SLIPPAGE_BPS_FIELD_NUMBER: _ClassVar[int]
    FUNDING_BPS_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REASON_DETAIL_FIELD_NUMBER: _ClassVar[int]
    REGIME_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SHADOW_FIELD_NUMBER: _ClassVar[int]
    CONFIG_REV_FIELD_NUMBER: _ClassVar[int]
    COOLDOWN_UNTIL_FIELD_NUMBER: _ClassVar[int]
    LATENCY_NS_FIELD_NUMBER: _ClassVar[int]
    SIZE_MULT_FIELD_NUMBER: _ClassVar[int]
    TP_MULT_FIELD_NUMBER: _ClassVar[int]
    SL_MULT_FIELD_NUMBER: _ClassVar[int]
    RULES_FIRED_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FLAGS_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    id: str
    strategy: str
    symbol: str
    venue: str
    exchange_ts: int
    ingest_ts: int
    infer_ts: int
    p_up: float
    p_low: float
    p_high: float
    expected_return_bps: float
    cost_bps: float
    utility: float
    fee_bps: float
    slippage_bps: float
    funding_bps: float
    decision: str
    reason: str
    reason_detail: str
    regime: str
    contributions: _containers.RepeatedCompositeFieldContainer[Contribution]
    model_version: str
    shadow: _containers.RepeatedCompositeFieldContainer[ShadowScore]
    config_rev: str
    cooldown_until: int
    latency_ns: int
    size_mult: float
    tp_mult: float
    sl_mult: float
    rules_fired: _containers.RepeatedScalarFieldContainer[str]
    quality_flags: int
    def __init__(self, schema_version: _Optional[int] = ..., id: _Optional[str] = ..., strategy: _Optional[str] = ..., symbol: _Optional[str] = ..., venue: _Optional[str] = ..., exchange_ts: _Optional[int] = ..., ingest_ts: _Optional[int] = ..., infer_ts: _Optional[int] = ..., p_up: _Optional[float] = ..., p_low: _Optional[float] = ..., p_high: _Optional[float] = ..., expected_return_bps: _Optional[float] = ..., cost_bps: _Optional[float] = ..., utility: _Optional[float] = ..., fee_bps: _Optional[float] = ..., slippage_bps: _Optional[float] = ..., funding_bps: _Optional[float] = ..., decision: _Optional[str] = ..., reason: _Optional[str] = ..., reason_detail: _Optional[str] = ..., regime: _Optional[str] = ..., contributions: _Optional[_Iterable[_Union[Contribution, _Mapping]]] = ..., model_version: _Optional[str] = ..., shadow: _Optional[_Iterable[_Union[ShadowScore, _Mapping]]] = ..., config_rev: _Optional[str] = ..., cooldown_until: _Optional[int] = ..., latency_ns: _Optional[int] = ..., size_mult: _Optional[float] = ..., tp_mult: _Optional[float] = ..., sl_mult: _Optional[float] = ..., rules_fired: _Optional[_Iterable[str]] = ..., quality_flags: _Optional[int] = ...) -> None: ...

class Intent(_message.Message):
    __slots__ = ("schema_version", "intent_id", "signal_id", "strategy", "symbol", "venue", "side", "qty", "notional_usdt", "price", "stop_price", "take_profit_price", "leverage", "oco", "exchange_ts", "config_rev")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    INTENT_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_ID_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    VENUE_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    QTY_FIELD_NUMBER: _ClassVar[int]
    NOTIONAL_USDT_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    STOP_PRICE_FIELD_NUMBER: _ClassVar[int]
    TAKE_PROFIT_PRICE_FIELD_NUMBER: _ClassVar[int]
    LEVERAGE_FIELD_NUMBER: _ClassVar[int]
    OCO_FIELD_NUMBER: _ClassVar[int]
    EXCHANGE_TS_FIELD_NUMBER: _ClassVar[int]
    CONFIG_REV_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    intent_id: str
    signal_id: str
    strategy: str
    symbol: str
    venue: str
    side: int
    qty: float
    notional_usdt: float
    price: float
    stop_price: float
    take_profit_price: float
    leverage: int
    oco: bool
    exchange_ts: int
    config_rev: str
    def __init__(self, schema_version: _Optional[int] = ..., intent_id: _Optional[str] = ..., signal_id: _Optional[str] = ..., strategy: _Optional[str] = ..., symbol: _Optional[str] = ..., venue: _Optional[str] = ..., side: _Optional[int] = ..., qty: _Optional[float] = ..., notional_usdt: _Optional[float] = ..., price: _Optional[float] = ..., stop_price: _Optional[float] = ..., take_profit_price: _Optional[float] = ..., leverage: _Optional[int] = ..., oco: _Optional[bool] = ..., exchange_ts: _Optional[int] = ..., config_rev: _Optional[str] = ...) -> None: ...
