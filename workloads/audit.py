"""The JSONL audit log: one JSON object per line, appended, never rewritten.

Audit records (:func:`tradeplane.workloads.codec.audit_record`) go to ClickHouse and to a JSONL file; the
file is the copy a human can ``grep`` and that survives a broken store. Durability is graded by cost:
every record is flushed to the OS as soon as it is written (a crash of *this process* loses nothing that
:meth:`AuditWriter.write` returned from), and the file is fsynced on :meth:`~AuditWriter.close` (a crash
of the *machine* can lose what the OS had not written yet; call :meth:`~AuditWriter.sync` for a barrier).

Every line must carry ``schema_version`` (readers dispatch on it). Encoding is orjson: compact, UTF-8,
keys in insertion order; NaN and ±inf, which JSON lacks, are written as ``null`` (``audit_record`` already
returns them as ``None``).

A process that died in the middle of a line leaves a torn last line. Appending starts on a fresh line
(a newline is written first when the file does not end with one), so only the torn record is lost, and
:func:`read_audit` reports it by line number.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import orjson

SCHEMA_KEY = "schema_version"


class AuditWriter:
    """Append audit records to ``path`` (created with its parent directories). Single-threaded: one writer
    per file, owned by the runtime's event loop."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: BinaryIO | None = self.path.open("ab")
        self.lines = 0
        """Records written by this writer."""
        if self._file.tell() > 0:
            with self.path.open("rb") as f:
                f.seek(-1, os.SEEK_END)
                torn = f.read(1) != b"\n"
            if torn:
                self._file.write(b"\n")
                self._file.flush()

    @property
    def closed(self) -> bool:
        return self._file is None

    def write(self, record: Mapping[str, Any]) -> None:
        """Append one record as one line and flush it to the OS.

        ``ValueError`` when the record has no ``schema_version``; ``TypeError`` when it is not JSON
        (orjson's message names the offending type); ``ValueError`` after :meth:`close`.
        """
        if self._file is None:
            raise ValueError(f"audit writer for {self.path} is closed")
        if SCHEMA_KEY not in record:
            raise ValueError(f"audit record without {SCHEMA_KEY!r} (keys: {sorted(record)[:8]})")
        try:
            line = orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
        except orjson.JSONEncodeError as exc:
            raise TypeError(f"audit record for {self.path} is not JSON: {exc}") from exc
        self._file.write(line)
        self._file.flush()
        self.lines += 1

    def sync(self) -> None:
        """fsync: everything written so far is on disk when this returns."""
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        """Flush, fsync and close (idempotent)."""
        if self._file is None:
            return
        try:
            self.sync()
        finally:
            self._file.close()
            self._file = None

    def __enter__(self) -> AuditWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def read_audit(path: Path, *, skip_torn: bool = False) -> Iterator[dict[str, Any]]:
    """The records of an audit log, in file order. Empty lines are skipped. A line that is not a JSON object
    with ``schema_version`` raises ``ValueError`` naming the file and line number, unless ``skip_torn``
    (then it is skipped: the torn tail a crashed writer leaves behind)."""
    with Path(path).open("rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                record = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                if skip_torn:
                    continue
                raise ValueError(f"{path}:{number}: not JSON ({exc})") from exc
            if not isinstance(record, dict) or SCHEMA_KEY not in record:
                if skip_torn:
                    continue
                raise ValueError(f"{path}:{number}: not an audit record (no {SCHEMA_KEY!r})")
            yield record
