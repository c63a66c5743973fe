"""The signal codec: every Signal and Intent field survives the Protobuf round trip (NaN, ±inf and −0.0
included), malformed or too-new bytes are refused, unknown (future) fields are skipped, and the audit record
is JSON without NaN and carries the cost breakdown, the quality flags, the lineage and the intent."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeplane.contracts import signal_pb2 as pb
from tradeplane.engine.decision.types import Intent, Signal
from tradeplane.workloads.codec import (
    AUDIT_SCHEMA_VERSION,
    SIGNAL_SCHEMA_VERSION,
    ContractError,
    audit_record,
    intent_from_proto,
    intent_to_proto,
    json_safe,
    quality_flag_names,
    signal_from_proto,
    signal_to_proto,
)

NS = 1_000_000_000
T0 = 1_722_470_400 * NS
NAN = math.nan
I64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
FLOATS = st.floats(allow_nan=True, allow_infinity=True)
TEXT = st.text(max_size=40)

SIGNAL = Signal(
    id="0123456789abcdef",
    strategy="usdm-btc",
    symbol="BTCUSDT",
    venue="binance-usdm",
    exchange_ts=T0,
    ingest_ts=T0 + 1_000_000,
    infer_ts=T0 + 2_000_000,
    p_up=0.71,
    p_low=0.64,
    p_high=0.78,
    expected_return_bps=9.8,
    cost_bps=7.0,
    utility=1.4,
    fee_bps=7.0,
    slippage_bps=0.0,
    funding_bps=0.0,
    decision="enter-long",
    reason="",
    reason_detail="",
    regime="calm",
    contributions=(("ofi1", 0.21), ("qi1", -0.05)),
    model_version="ofi-lgbm-v1",
    shadow=(("ofi-lgbm-v2", 0.69),),
    config_rev="a1b2c3d4e5f6",
    cooldown_until=T0 + 60 * NS,
    latency_ns=41_000,
    size_mult=1.0,
    tp_mult=1.0,
    sl_mult=1.0,
    rules_fired=("wide-spread-smaller",),
    quality_flags=0,
)
SKIPPED = dataclasses.replace(
    SIGNAL,
    decision="skip",
    reason="BELOW_KAPPA",
    reason_detail="U=nan<1",
    expected_return_bps=NAN,
    cost_bps=NAN,
    utility=NAN,
    size_mult=NAN,
    contributions=(),
    shadow=(("ofi-lgbm-v2", NAN),),
    cooldown_until=0,
    quality_flags=1 | 4,
)
INTENT = Intent(
    intent_id="00112233445566778899",
    signal_id=SIGNAL.id,
    strategy=SIGNAL.strategy,
    symbol=SIGNAL.symbol,
    venue=SIGNAL.venue,
    side=1,
    qty=0.005,
    notional_usdt=300.0,
    price=60_000.05,
    stop_price=59_900.0,
    take_profit_price=60_150.0,
    leverage=3,
    oco=False,
    exchange_ts=T0,
    config_rev=SIGNAL.config_rev,
)


def same(a: Any, b: Any) -> bool:
    """Equality where NaN equals NaN and −0.0 differs from 0.0 (the bits that matter), through tuples."""
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)


def assert_same_record(a: Any, b: Any) -> None:
    assert type(a) is type(b)
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        assert same(x, y), f"{f.name}: {x!r} != {y!r}"


signals = st.builds(
    Signal,
    id=TEXT,
    strategy=TEXT,
    symbol=TEXT,
    venue=TEXT,
    exchange_ts=I64,
    ingest_ts=I64,
    infer_ts=I64,
    p_up=FLOATS,
    p_low=FLOATS,
    p_high=FLOATS,
    expected_return_bps=FLOATS,
    cost_bps=FLOATS,
    utility=FLOATS,
    fee_bps=FLOATS,
    slippage_bps=FLOATS,
    funding_bps=FLOATS,
    decision=st.sampled_from(["enter-long", "enter-short", "skip"]),
    reason=TEXT,
    reason_detail=TEXT,
    regime=st.sampled_from(["calm", "volatile", "unknown"]),
    contributions=st.lists(st.tuples(TEXT, FLOATS), max_size=5).map(tuple),
    model_version=TEXT,
    shadow=st.lists(st.tuples(TEXT, FLOATS), max_size=3).map(tuple),
    config_rev=TEXT,
    cooldown_until=I64,
    latency_ns=I64,
    size_mult=FLOATS,
    tp_mult=FLOATS,
    sl_mult=FLOATS,
    rules_fired=st.lists(TEXT, max_size=4).map(tuple),
    quality_flags=st.integers(min_value=0, max_value=2**32 - 1),
)

intents = st.builds(
    Intent,
    intent_id=TEXT,
    signal_id=TEXT,
    strategy=TEXT,
    symbol=TEXT,
    venue=TEXT,
    side=st.sampled_from([1, -1]),
    qty=FLOATS,
    notional_usdt=FLOATS,
    price=FLOATS,
    stop_price=FLOATS,
    take_profit_price=FLOATS,
    leverage=st.integers(min_value=-(2**31), max_value=2**31 - 1),
    oco=st.booleans(),
    exchange_ts=I64,
    config_rev=TEXT,
)


@settings(max_examples=300, deadline=None)
@given(signals)
def test_every_signal_field_survives_the_round_trip(signal: Signal) -> None:
    assert_same_record(signal_from_proto(signal_to_proto(signal)), signal)


@settings(max_examples=200, deadline=None)
@given(intents)
def test_every_intent_field_survives_the_round_trip(intent: Intent) -> None:
    assert_same_record(intent_from_proto(intent_to_proto(intent)), intent)


@pytest.mark.parametrize(
    ("value", "check"),
    [
        pytest.param(NAN, math.isnan, id="nan-stays-nan"),
        pytest.param(-NAN, math.isnan, id="negative-nan-stays-nan"),
        pytest.param(math.inf, lambda x: x == math.inf, id="inf"),
        pytest.param(-math.inf, lambda x: x == -math.inf, id="minus-inf"),
        pytest.param(-0.0, lambda x: x == 0 and math.copysign(1, x) < 0, id="minus-zero-keeps-its-sign"),
        pytest.param(5e-324, lambda x: x == 5e-324, id="subnormal"),
    ],
)
def test_special_floats_survive(value: float, check: Any) -> None:
    sig = dataclasses.replace(SIGNAL, p_up=value, contributions=(("f", value),), shadow=(("v2", value),))
    back = signal_from_proto(signal_to_proto(sig))
    assert check(back.p_up) and check(back.contributions[0][1]) and check(back.shadow[0][1])


def test_a_skipped_signal_with_nans_round_trips_and_types_are_exact() -> None:
    back = signal_from_proto(signal_to_proto(SKIPPED))
    assert_same_record(back, SKIPPED)
    assert isinstance(back.contributions, tuple) and isinstance(back.rules_fired, tuple)
    assert isinstance(back.shadow[0], tuple) and isinstance(back.exchange_ts, int)


def test_the_bytes_carry_the_schema_version() -> None:
    m = pb.Signal()
    m.ParseFromString(signal_to_proto(SIGNAL))
    assert m.schema_version == SIGNAL_SCHEMA_VERSION == 1
    i = pb.Intent()
    i.ParseFromString(intent_to_proto(INTENT))
    assert i.schema_version == SIGNAL_SCHEMA_VERSION


def _future_field(number: int, value: int) -> bytes:
    """A varint field a newer writer might add (wire type 0)."""

    def varint(x: int) -> bytes:
        out = bytearray()
        while True:
            b = x & 0x7F
            x >>= 7
            out.append(b | (0x80 if x else 0))
            if not x:
                return bytes(out)

    return varint(number << 3) + varint(value)


def test_fields_added_by_a_newer_writer_are_skipped() -> None:
    data = signal_to_proto(SIGNAL) + _future_field(99, 12345) + _future_field(1000, 7)
    assert_same_record(signal_from_proto(data), SIGNAL)
    assert_same_record(intent_from_proto(intent_to_proto(INTENT) + _future_field(77, 1)), INTENT)


def _newer_version() -> bytes:
    m = pb.Signal()
    m.ParseFromString(signal_to_proto(SIGNAL))
    m.schema_version = SIGNAL_SCHEMA_VERSION + 1
    return bytes(m.SerializeToString())


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(b"", "schema_version is missing", id="empty-bytes"),
        pytest.param(pb.Signal(id="x").SerializeToString(), "schema_version is missing", id="no-version"),
        pytest.param(b"\xff\xff\xff", "not a Signal message", id="garbage"),
        pytest.param(b"\x12\x05ab", "not a Signal message", id="truncated-string"),
        pytest.param(_newer_version(), "newer than this reader", id="newer-schema"),
    ],
)
def test_bad_bytes_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(ContractError, match=message):
        signal_from_proto(data)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        pytest.param({"exchange_ts": 2**63}, "cannot be encoded", id="ts-beyond-int64"),
        pytest.param({"quality_flags": -1}, "cannot be encoded", id="negative-flags"),
        pytest.param({"symbol": "\ud800"}, "cannot be encoded", id="lone-surrogate"),
    ],
)
def test_values_the_schema_cannot_carry_are_refused_naming_the_signal(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ContractError, match=f"signal '{SIGNAL.id}' {message}"):
        signal_to_proto(dataclasses.replace(SIGNAL, **changes))


@pytest.mark.parametrize(
    ("flags", "names"),
    [
        pytest.param(0, [], id="none"),
        pytest.param(1, ["DATA_DEGRADED"], id="data"),
        pytest.param(2, ["MODEL_DEGRADED"], id="model"),
        pytest.param(4, ["SHADOW_ERROR"], id="shadow"),
        pytest.param(7, ["DATA_DEGRADED", "MODEL_DEGRADED", "SHADOW_ERROR"], id="all-three"),
        pytest.param(8, ["SLIPPAGE_PROXY"], id="slippage-proxy"),
        pytest.param(5 | 16, ["DATA_DEGRADED", "SHADOW_ERROR", "BIT_16"], id="unknown-bit-named-not-fatal"),
    ],
)
def test_quality_flag_names(flags: int, names: list[str]) -> None:
    assert quality_flag_names(flags) == names


LINEAGE = {
    "source": "usdm_btcusdt_20240808.jsonl.gz",
    "source_sha256": "ab" * 32,
    "model_sha256": {"ofi-lgbm-v1": "cd" * 32},
}


def test_audit_record_of_an_entry() -> None:
    rec = audit_record(SIGNAL, INTENT, lineage=LINEAGE)
    text = json.dumps(rec, allow_nan=False)  # JSON-safe: no NaN, only JSON types
    assert json.loads(text) == rec
    assert rec["schema_version"] == AUDIT_SCHEMA_VERSION == 1
    assert rec["signal_schema_version"] == SIGNAL_SCHEMA_VERSION
    assert (rec["ts"], rec["signal_id"], rec["strategy"], rec["symbol"]) == (T0, SIGNAL.id, "usdm-btc", "BTCUSDT")
    assert (rec["decision"], rec["reason"]) == ("enter-long", "")
    assert rec["costs"] == {
        "fee_bps": 7.0,
        "slippage_bps": 0.0,
        "funding_bps": 0.0,
        "total_bps": 7.0,
        "notional_usdt": 300.0,
        "total_usdt": pytest.approx(0.21),
    }
    assert rec["quality"] == {"flags": 0, "names": []}
    assert rec["lineage"] == {**LINEAGE, "config_rev": SIGNAL.config_rev}
    assert rec["intent"]["intent_id"] == INTENT.intent_id and rec["intent"]["leverage"] == 3
    assert rec["intent"]["oco"] is False
    sig = rec["signal"]
    assert set(sig) == {f.name for f in dataclasses.fields(Signal)}
    assert sig["contributions"] == [{"name": "ofi1", "value": 0.21}, {"name": "qi1", "value": -0.05}]
    assert sig["shadow"] == [{"version": "ofi-lgbm-v2", "p_up": 0.69}]
    assert sig["rules_fired"] == ["wide-spread-smaller"]


def test_audit_record_of_a_skip_turns_nan_into_null() -> None:
    rec = audit_record(SKIPPED, None, lineage={"source": "synth", "synth_seed": 7, "config_rev": "override"})
    json.dumps(rec, allow_nan=False)
    assert rec["intent"] is None
    assert rec["signal"]["utility"] is None and rec["signal"]["expected_return_bps"] is None
    assert rec["signal"]["shadow"] == [{"version": "ofi-lgbm-v2", "p_up": None}]
    assert rec["costs"]["total_bps"] is None and rec["costs"]["notional_usdt"] is None
    assert rec["costs"]["total_usdt"] is None
    assert rec["quality"] == {"flags": 5, "names": ["DATA_DEGRADED", "SHADOW_ERROR"]}
    assert rec["lineage"] == {"source": "synth", "synth_seed": 7, "config_rev": "override"}  # caller's wins
    assert (rec["reason"], rec["signal"]["reason_detail"]) == ("BELOW_KAPPA", "U=nan<1")


def test_audit_record_refuses_an_intent_of_another_signal() -> None:
    with pytest.raises(ValueError, match="belongs to signal"):
        audit_record(SIGNAL, dataclasses.replace(INTENT, signal_id="other"), lineage={})


@pytest.mark.parametrize(
    ("lineage", "path"),
    [
        pytest.param({"source_sha256": b"\x00"}, "lineage.source_sha256", id="bytes"),
        pytest.param({"model": {"sha": object()}}, "lineage.model.sha", id="nested-object"),
        pytest.param({"files": ["a", {1: "b"}]}, r"lineage.files\[1\]", id="non-str-key"),
    ],
)
def test_lineage_that_is_not_json_is_refused_naming_the_key(lineage: dict[str, Any], path: str) -> None:
    with pytest.raises(TypeError, match=path):
        audit_record(SIGNAL, None, lineage=lineage)


def test_json_safe_converts_numpy_scalars_and_non_finite_floats() -> None:
    value = {"n": np.int64(3), "x": np.float64("nan"), "ok": np.bool_(True), "l": (1.5, math.inf, -math.inf)}
    out = json_safe(value)
    assert out == {"n": 3, "x": None, "ok": True, "l": [1.5, None, None]}
    assert type(out["n"]) is int and type(out["ok"]) is bool


@settings(max_examples=200, deadline=None)
@given(signals)
def test_every_audit_record_is_strict_json(signal: Signal) -> None:
    rec = audit_record(signal, None, lineage={"source": "synth", "synth_seed": 1})
    assert json.loads(json.dumps(rec, allow_nan=False))["signal_id"] == signal.id
