"""The sink's disk: spill segments (rows kept while ClickHouse is down) and the durable marks.

**Segments.** A segment is a directory ``seg-<number>-<random>/`` holding one ``<table>.npz`` per table and a
``manifest.json``; it is written under a temporary name, every file fsynced, then renamed into place (and the
directory fsynced), so a segment either exists whole or not at all. Numbers increase, so replaying in number
order is replaying oldest first. The random part makes the segment's name — and the insert de-duplication
token derived from it — unique across restarts and sink replicas. Deleting unlinks the manifest first: a
crash half-way through leaves a directory without a manifest, which the next start removes.

**Columns round-trip exactly.** Numeric, bool and fixed-width string columns are stored as ``.npy`` arrays
(int64 nanoseconds, NaN and every float bit pattern as they are); object columns (strings from the market
rows, lists for ``Array`` columns, mixed values) as JSON (``NaN`` tokens allowed; floats by ``repr``, which is
exact; ints of any size). Nothing is pickled.

**Durable marks** (:class:`Marks`): per (topic, partition) the offset up to which every record's rows are
durable (stored or in a segment), and per (topic, key) the last accepted ``tp-seq``. Each segment's manifest
carries the marks of the moment it was written, and ``state.json`` those of the last checkpoint (written
before the Kafka commit). A sink that dies after making rows durable but before committing gets those
records again; it skips every record below its marks, so neither a replayed segment nor a re-consumed
record is stored twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

Columns = dict[str, npt.NDArray[Any]]
MarkKey = tuple[str, Any]

SEGMENT_PREFIX: Final = "seg-"
MANIFEST: Final = "manifest.json"
STATE: Final = "state.json"
REJECTED: Final = "rejected"
FORMAT: Final = 1


# -- marks -----------------------------------------------------------------------------------------


@dataclass
class Marks:
    """What is durable: ``offsets[(topic, partition)]`` = the first offset *not* known durable;
    ``seq[(topic, key)]`` = the last accepted sequence. Both only move up (:meth:`merge`).

    ``market`` is the market rows' state (volume buckets, last prices, ingest positions:
    :meth:`~tradeplane.workloads.store.market.MarketRows.state`) as it was when exactly these offsets had been
    taken; ``market_at`` numbers those snapshots, so a merge keeps the newest (it is not a per-key maximum)."""

    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    seq: dict[MarkKey, int] = field(default_factory=dict)
    market: dict[str, Any] = field(default_factory=dict)
    market_at: int = 0

    def merge(self, other: Marks) -> None:
        """Raise these marks to at least ``other``'s."""
        for k, v in other.offsets.items():
            if v > self.offsets.get(k, -1):
                self.offsets[k] = v
        for sk, s in other.seq.items():
            if s > self.seq.get(sk, -(2**63)):
                self.seq[sk] = s
        if other.market_at > self.market_at:
            self.market, self.market_at = other.market, other.market_at

    def copy(self) -> Marks:
        return Marks(dict(self.offsets), dict(self.seq), self.market, self.market_at)

    def to_json(self) -> dict[str, Any]:
        return {
            "offsets": [[t, p, o] for (t, p), o in sorted(self.offsets.items())],
            # keys are symbols (str); a bytes or None key is kept as None only when it was None
            "seq": [[t, k, s] for (t, k), s in self.seq.items() if k is None or isinstance(k, str)],
            "market": self.market,
            "market_at": self.market_at,
        }

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Marks:
        return cls(
            {(str(t), int(p)): int(o) for t, p, o in body.get("offsets", [])},
            {(str(t), k): int(s) for t, k, s in body.get("seq", [])},
            dict(body.get("market", {})),  # absent in marks written before buckets were kept
            int(body.get("market_at", 0)),
        )


# -- segments --------------------------------------------------------------------------------------


@dataclass
class Segment:
    """One spill segment on disk: its tables' row counts in write order, and the marks it was written with."""

    number: int
    name: str
    path: Path
    tables: dict[str, int]
    marks: Marks
    done: set[str] = field(default_factory=set)  #: tables already re-inserted (this process)

    @property
    def rows(self) -> int:
        return sum(self.tables.values())

    def token(self, table: str) -> str:
        """The insert de-duplication token of ``table``'s block: the same on every replay of this segment."""
        return f"tp-sink-spill:{self.name}:{table}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray | tuple):
        return value.tolist() if isinstance(value, np.ndarray) else list(value)
    raise TypeError(f"cannot spill a value of type {type(value).__name__}")


def encode_columns(columns: Mapping[str, npt.NDArray[Any]]) -> tuple[dict[str, npt.NDArray[Any]], list[list[str]]]:
    """Arrays for ``np.savez`` (``c0``, ``c1``, …) and the column list ``[[name, "npy"|"json"], …]``."""
    arrays: dict[str, npt.NDArray[Any]] = {}
    layout: list[list[str]] = []
    for i, (name, col) in enumerate(columns.items()):
        arr = np.asarray(col)
        if arr.dtype == object or arr.dtype.hasobject:
            text = json.dumps(arr.tolist(), default=_json_default, allow_nan=True, separators=(",", ":"))
            arrays[f"c{i}"] = np.frombuffer(text.encode("utf-8", "surrogatepass"), dtype=np.uint8)
            layout.append([name, "json"])
        else:
            arrays[f"c{i}"] = arr
            layout.append([name, "npy"])
    return arrays, layout


def decode_columns(data: Mapping[str, npt.NDArray[Any]], layout: Iterable[list[str]]) -> Columns:
    """The inverse of :func:`encode_columns`."""
    out: Columns = {}
    for i, (name, kind) in enumerate(layout):
        arr = data[f"c{i}"]
        if kind == "json":
            items = json.loads(arr.tobytes().decode("utf-8", "surrogatepass"))
            out[name] = np.fromiter(items, dtype=object, count=len(items))  # lists stay lists (no 2-D)
        else:
            out[name] = arr
    return out


def _write_npz(path: Path, columns: Mapping[str, npt.NDArray[Any]]) -> list[list[str]]:
    arrays, layout = encode_columns(columns)
    with path.open("wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]
        f.flush()
        os.fsync(f.fileno())
    return layout


def _write_json(path: Path, body: Mapping[str, Any]) -> None:
    with path.open("wb") as f:
        f.write(json.dumps(body, separators=(",", ":")).encode())
        f.flush()
        os.fsync(f.fileno())


class SpillDir:
    """Segments, the state file and the rejected blocks under ``root`` (created if missing). One sink
    process per directory. Opening it removes the leftovers of a crash: unfinished segment writes (their
    rows were never reported durable) and half-deleted segments (their rows were stored)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        for entry in self.root.iterdir():
            if entry.name.startswith(".tmp-") or (
                entry.name.startswith(SEGMENT_PREFIX) and entry.is_dir() and not (entry / MANIFEST).exists()
            ):
                shutil.rmtree(entry, ignore_errors=True)
        self._next = max((s.number for s in self.segments()), default=0) + 1

    # -- segments ----------------------------------------------------------------------------------

    def segments(self) -> list[Segment]:
        """The complete segments on disk, oldest first."""
        found = []
        for entry in self.root.iterdir():
            manifest = entry / MANIFEST
            if not (entry.name.startswith(SEGMENT_PREFIX) and manifest.is_file()):
                continue
            body = json.loads(manifest.read_text())
            found.append(
                Segment(
                    number=int(body["number"]),
                    name=entry.name,
                    path=entry,
                    tables={str(t): int(n) for t, n in body["tables"]},
                    marks=Marks.from_json(body.get("marks", {})),
                )
            )
        return sorted(found, key=lambda s: s.number)

    def write(self, tables: Mapping[str, Columns], marks: Marks) -> Segment:
        """Write one segment of ``tables`` (each a block of columns) carrying ``marks``; returns it once it is
        on disk (fsynced, renamed, directory fsynced)."""
        number = self._next
        self._next += 1
        name = f"{SEGMENT_PREFIX}{number:010d}-{secrets.token_hex(4)}"
        tmp = self.root / f".tmp-{name}"
        tmp.mkdir()
        counts: list[list[Any]] = []
        layouts: dict[str, list[list[str]]] = {}
        for table, columns in tables.items():
            n = len(next(iter(columns.values()))) if columns else 0
            layouts[table] = _write_npz(tmp / f"{table}.npz", columns)
            counts.append([table, n])
        body = {
            "format": FORMAT,
            "number": number,
            "created_ns": time.time_ns(),
            "tables": counts,
            "columns": layouts,
            "marks": marks.to_json(),
        }
        _write_json(tmp / MANIFEST, body)
        _fsync_dir(tmp)
        final = self.root / name
        tmp.rename(final)
        _fsync_dir(self.root)
        return Segment(number, name, final, {t: n for t, n in counts}, marks.copy())

    def read(self, segment: Segment, table: str) -> Columns:
        """The columns of ``table`` in ``segment``, exactly as written."""
        body = json.loads((segment.path / MANIFEST).read_text())
        with np.load(segment.path / f"{table}.npz", allow_pickle=False) as data:
            return decode_columns({k: data[k] for k in data.files}, body["columns"][table])

    def remove(self, segment: Segment) -> None:
        """Delete a replayed segment (manifest first: see the module docstring)."""
        with contextlib.suppress(FileNotFoundError):
            (segment.path / MANIFEST).unlink()
        shutil.rmtree(segment.path, ignore_errors=True)

    # -- state ---------------------------------------------------------------------------------------

    def load_marks(self) -> Marks:
        """The durable marks: ``state.json`` merged with every segment's (segments may be newer)."""
        marks = Marks()
        state = self.root / STATE
        if state.is_file():
            marks.merge(Marks.from_json(json.loads(state.read_text())))
        for seg in self.segments():
            marks.merge(seg.marks)
        return marks

    def save_marks(self, marks: Marks) -> None:
        """Replace ``state.json`` atomically (write, fsync, rename, fsync the directory)."""
        tmp = self.root / f".tmp-{STATE}"
        _write_json(tmp, {"format": FORMAT, "saved_ns": time.time_ns(), **marks.to_json()})
        tmp.replace(self.root / STATE)
        _fsync_dir(self.root)

    # -- rejected blocks -------------------------------------------------------------------------------

    def reject(self, table: str, columns: Columns, reason: str) -> Path:
        """Keep a block the store refused for good under ``rejected/`` (with the reason), so it is neither
        retried forever nor lost; an operator inspects and re-inserts it."""
        folder = self.root / REJECTED
        folder.mkdir(exist_ok=True)
        stem = f"{time.time_ns()}-{table}-{secrets.token_hex(3)}"
        layout = _write_npz(folder / f"{stem}.npz", columns)
        _write_json(folder / f"{stem}.json", {"table": table, "reason": reason, "columns": layout})
        _fsync_dir(folder)
        return folder / f"{stem}.npz"


def read_rejected(path: Path) -> tuple[str, Columns]:
    """The table and columns of a rejected block written by :meth:`SpillDir.reject`."""
    body = json.loads(path.with_suffix(".json").read_text())
    with np.load(path, allow_pickle=False) as data:
        return str(body["table"]), decode_columns({k: data[k] for k in data.files}, body["columns"])
