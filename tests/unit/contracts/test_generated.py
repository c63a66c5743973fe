"""signal.proto and its committed generated code stay in step, field numbers never change, and the schema
covers every field of the engine's Signal and Intent dataclasses."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
from google.protobuf.descriptor import FieldDescriptor

from tradeplane.contracts import generate
from tradeplane.contracts import signal_pb2 as pb
from tradeplane.engine.decision.types import Intent, Signal

# The frozen wire contract: (field number, type, repeated). Changing a number or a type here is never
# allowed (docs/data-contracts.md, "Compatibility rules"); adding a field means adding a row.
T = FieldDescriptor
FROZEN: dict[str, dict[str, tuple[int, int, bool]]] = {
    "Signal": {
        "schema_version": (1, T.TYPE_UINT32, False),
        "id": (2, T.TYPE_STRING, False),
        "strategy": (3, T.TYPE_STRING, False),
        "symbol": (4, T.TYPE_STRING, False),
        "venue": (5, T.TYPE_STRING, False),
        "exchange_ts": (6, T.TYPE_INT64, False),
        "ingest_ts": (7, T.TYPE_INT64, False),
        "infer_ts": (8, T.TYPE_INT64, False),
        "p_up": (9, T.TYPE_DOUBLE, False),
        "p_low": (10, T.TYPE_DOUBLE, False),
        "p_high": (11, T.TYPE_DOUBLE, False),
        "expected_return_bps": (12, T.TYPE_DOUBLE, False),
        "cost_bps": (13, T.TYPE_DOUBLE, False),
        "utility": (14, T.TYPE_DOUBLE, False),
        "fee_bps": (15, T.TYPE_DOUBLE, False),
        "slippage_bps": (16, T.TYPE_DOUBLE, False),
        "funding_bps": (17, T.TYPE_DOUBLE, False),
        "decision": (18, T.TYPE_STRING, False),
        "reason": (19, T.TYPE_STRING, False),
        "reason_detail": (20, T.TYPE_STRING, False),
        "regime": (21, T.TYPE_STRING, False),
        "contributions": (22, T.TYPE_MESSAGE, True),
        "model_version": (23, T.TYPE_STRING, False),
        "shadow": (24, T.TYPE_MESSAGE, True),
        "config_rev": (25, T.TYPE_STRING, False),
        "cooldown_until": (26, T.TYPE_INT64, False),
        "latency_ns": (27, T.TYPE_INT64, False),
        "size_mult": (28, T.TYPE_DOUBLE, False),
        "tp_mult": (29, T.TYPE_DOUBLE, False),
        "sl_mult": (30, T.TYPE_DOUBLE, False),
        "rules_fired": (31, T.TYPE_STRING, True),
        "quality_flags": (32, T.TYPE_UINT32, False),
    },
    "Intent": {
        "schema_version": (1, T.TYPE_UINT32, False),
        "intent_id": (2, T.TYPE_STRING, False),
        "signal_id": (3, T.TYPE_STRING, False),
        "strategy": (4, T.TYPE_STRING, False),
        "symbol": (5, T.TYPE_STRING, False),
        "venue": (6, T.TYPE_STRING, False),
        "side": (7, T.TYPE_SINT32, False),
        "qty": (8, T.TYPE_DOUBLE, False),
        "notional_usdt": (9, T.TYPE_DOUBLE, False),
        "price": (10, T.TYPE_DOUBLE, False),
        "stop_price": (11, T.TYPE_DOUBLE, False),
        "take_profit_price": (12, T.TYPE_DOUBLE, False),
        "leverage": (13, T.TYPE_INT32, False),
        "oco": (14, T.TYPE_BOOL, False),
        "exchange_ts": (15, T.TYPE_INT64, False),
        "config_rev": (16, T.TYPE_STRING, False),
    },
    "Contribution": {"name": (1, T.TYPE_STRING, False), "value": (2, T.TYPE_DOUBLE, False)},
    "ShadowScore": {"version": (1, T.TYPE_STRING, False), "p_up": (2, T.TYPE_DOUBLE, False)},
}


def test_the_committed_generated_files_match_a_fresh_generation() -> None:
    assert generate.stale_files() == [], "run: .venv/bin/python -m tradeplane.contracts.generate"
    assert generate.main(["--check"]) == 0


def test_generated_files_carry_the_regeneration_header() -> None:
    for name in generate.OUTPUTS:
        text = (generate.PACKAGE_DIR / name).read_text(encoding="utf-8")
        assert text.startswith(generate.HEADER)
        assert "python -m tradeplane.contracts.generate" in text.splitlines()[1]


def _fake_repo(tmp_path: Path) -> Path:
    """A copy of the proto and the committed outputs under tmp_path, laid out like the repository."""
    pkg = tmp_path / "tradeplane" / "contracts"
    pkg.mkdir(parents=True)
    shutil.copy(generate.REPO_ROOT / generate.PROTO, pkg / "signal.proto")
    for name in generate.OUTPUTS:
        shutil.copy(generate.PACKAGE_DIR / name, pkg / name)
    return pkg


def test_the_check_fails_when_the_proto_changed_and_regeneration_fixes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pkg = _fake_repo(tmp_path)
    monkeypatch.setattr(generate, "REPO_ROOT", tmp_path)
    monkeypatch.setattr(generate, "PACKAGE_DIR", pkg)
    assert generate.main(["--check"]) == 0
    proto = pkg / "signal.proto"
    proto.write_text(
        proto.read_text().replace("uint32 quality_flags = 32;", "uint32 quality_flags = 32;\n  int64 x = 33;")
    )
    assert sorted(p.name for p in generate.stale_files()) == ["signal_pb2.py", "signal_pb2.pyi"]
    assert generate.main(["--check"]) == 1
    assert "stale: tradeplane/contracts/signal_pb2.py" in capsys.readouterr().err
    assert generate.main([]) == 0
    assert generate.stale_files() == []


def test_the_check_fails_when_a_generated_file_was_edited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = _fake_repo(tmp_path)
    monkeypatch.setattr(generate, "REPO_ROOT", tmp_path)
    monkeypatch.setattr(generate, "PACKAGE_DIR", pkg)
    (pkg / "signal_pb2.py").write_text((pkg / "signal_pb2.py").read_text() + "# hand edit\n")
    assert [p.name for p in generate.stale_files()] == ["signal_pb2.py"]
    (pkg / "signal_pb2.pyi").unlink()
    assert generate.main(["--check"]) == 1


def test_usage_error() -> None:
    assert generate.main(["--bogus"]) == 2


@pytest.mark.parametrize("message", sorted(FROZEN))
def test_field_numbers_and_types_are_frozen(message: str) -> None:
    desc = pb.DESCRIPTOR.message_types_by_name[message]
    got = {f.name: (f.number, f.type, f.is_repeated) for f in desc.fields}
    assert got == FROZEN[message]


def test_package_name() -> None:
    assert pb.DESCRIPTOR.package == "tradeplane.contracts.v1"
    assert pb.DESCRIPTOR.name == "tradeplane/contracts/signal.proto"


@pytest.mark.parametrize(("message", "cls"), [("Signal", Signal), ("Intent", Intent)])
def test_the_schema_covers_every_dataclass_field(message: str, cls: type) -> None:
    proto_fields = set(FROZEN[message]) - {"schema_version"}
    assert proto_fields == {f.name for f in dataclasses.fields(cls)}
