"""The JSONL audit log: one object per line with schema_version, each line flushed when written, fsync on
close, appends start on a fresh line after a torn tail, and the reader names bad lines."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from tests.unit.workloads.test_codec import INTENT, SIGNAL, SKIPPED
from tradeplane.workloads.audit import AuditWriter, read_audit
from tradeplane.workloads.codec import audit_record


def test_records_are_lines_readable_before_close_and_fsynced_on_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    path = tmp_path / "run" / "audit.jsonl"
    writer = AuditWriter(path)
    first = audit_record(SIGNAL, INTENT, lineage={"source": "synth", "synth_seed": 7})
    writer.write(first)
    # flushed to the OS at once: another reader sees the whole line while the writer is open
    assert path.read_bytes().endswith(b"\n") and json.loads(path.read_text()) == first
    assert synced == []
    writer.write(audit_record(SKIPPED, None, lineage={}))
    writer.close()
    writer.close()  # idempotent
    assert len(synced) == 1 and writer.closed and writer.lines == 2
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and all(json.loads(line)["schema_version"] == 1 for line in lines)
    assert [r["signal_id"] for r in read_audit(path)] == [SIGNAL.id, SKIPPED.id]


def test_nan_is_written_as_null(tmp_path: Path) -> None:
    with AuditWriter(tmp_path / "a.jsonl") as w:
        w.write({"schema_version": 1, "x": math.nan, "y": [math.inf]})
    assert json.loads((tmp_path / "a.jsonl").read_text()) == {"schema_version": 1, "x": None, "y": [None]}


def test_appending_continues_an_existing_log(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    for i in range(2):
        with AuditWriter(path) as w:
            w.write({"schema_version": 1, "i": i})
    assert [r["i"] for r in read_audit(path)] == [0, 1]


def test_a_torn_tail_costs_only_itself(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"schema_version": 1, "i": 0}\n{"schema_version": 1, "i"')  # crashed mid-line
    with AuditWriter(path) as w:
        w.write({"schema_version": 1, "i": 2})
    with pytest.raises(ValueError, match=r"a.jsonl:2: not JSON"):
        list(read_audit(path))
    assert [r["i"] for r in read_audit(path, skip_torn=True)] == [0, 2]


@pytest.mark.parametrize(
    ("record", "error", "message"),
    [
        pytest.param({"i": 1}, ValueError, "without 'schema_version'", id="no-schema-version"),
        pytest.param({"schema_version": 1, "b": b"\x00"}, TypeError, "not JSON", id="bytes-value"),
        pytest.param({"schema_version": 1, 3: "int key"}, TypeError, "not JSON", id="int-key"),
    ],
)
def test_bad_records_are_refused_and_nothing_is_written(
    tmp_path: Path, record: dict[object, object], error: type[Exception], message: str
) -> None:
    path = tmp_path / "a.jsonl"
    with AuditWriter(path) as w, pytest.raises(error, match=message):
        w.write(record)  # type: ignore[arg-type]
    assert path.read_bytes() == b""


def test_writing_after_close_fails(tmp_path: Path) -> None:
    w = AuditWriter(tmp_path / "a.jsonl")
    w.close()
    with pytest.raises(ValueError, match="closed"):
        w.write({"schema_version": 1})


def test_reader_refuses_lines_that_are_not_audit_records(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"schema_version": 1}\n\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"a.jsonl:3: not an audit record"):
        list(read_audit(path))
    assert len(list(read_audit(path, skip_torn=True))) == 1
