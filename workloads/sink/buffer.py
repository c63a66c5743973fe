"""What stands between the sink's TableWriters and the store: insert now, or keep the rows through an outage.

The sink's :class:`~..store.writer.TableWriter` s batch rows per table and call ``insert`` on an
:class:`OutageBuffer` instead of on the store. The buffer

* inserts the block when the store is up and nothing older is waiting;
* otherwise keeps it, in arrival order, in memory (the store raised ``StoreUnavailableError`` after its own
  bounded retries, or older rows are still waiting: nothing may overtake them);
* spills the memory blocks to a segment on disk when the sink asks (:meth:`spill`: past ``max_buffer_rows``,
  or at shutdown), so memory stays bounded however long the outage lasts;
* catches up when the store answers again (:meth:`recover`, a bounded slice per loop step): segments oldest
  first, each table's block with a de-duplication token derived from the segment's name (a crash between
  the insert and the segment's deletion re-inserts nothing), then the memory blocks, then direct inserts;
* keeps a block the store refuses for good (a permanent ``StoreError``: the rows can never go in as they
  are) under ``rejected/`` in the spill directory and counts it, instead of retrying it forever or
  stopping the stream.

Time is a parameter (``clock``), so probing and budgets are testable without sleeping.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from ..store.base import Column, Columns, Store, StoreError, StoreUnavailableError
from ..store.writer import as_column
from .spill import Marks, Segment, SpillDir

log = logging.getLogger(__name__)

InsertObserver = Callable[[str, int, float], None]
"""Called after each insert that reached the store: (table, rows, seconds)."""


@dataclass
class BufferStats:
    """Counters read at scrape time (plain ints: nothing on the hot path)."""

    written: dict[str, int] = field(default_factory=dict)  #: table → rows inserted into the store
    spilled_rows: int = 0
    spill_segments: int = 0  #: segments written
    replayed_rows: int = 0  #: rows inserted from segments
    replayed_segments: int = 0
    rejected: dict[str, int] = field(default_factory=dict)  #: table → rows refused for good
    outages: int = 0
    max_buffered: int = 0  #: the most rows ever held in memory at once


def concat_blocks(blocks: list[Columns]) -> Columns:
    """One block of several with the same columns (object dtype where their dtypes differ)."""
    if len(blocks) == 1:
        return blocks[0]
    out: Columns = {}
    for name in blocks[0]:
        parts = [b[name] for b in blocks]
        try:
            if len({p.dtype.kind for p in parts}) > 1 and any(p.dtype == object for p in parts):
                raise TypeError("mixed object and typed parts")
            out[name] = np.concatenate(parts)
        except (TypeError, ValueError):
            merged = np.empty(sum(len(p) for p in parts), dtype=object)
            i = 0
            for p in parts:
                merged[i : i + len(p)] = list(p)
                i += len(p)
            out[name] = merged
    return out


class OutageBuffer:
    """A :class:`~..store.base.Store` for the sink's TableWriters; see the module docstring.

    ``max_buffer_rows`` is advisory here (the sink decides when to :meth:`spill`; :attr:`over_bound` says
    when it should). ``probe_interval_s``: how often a down store is tried again. ``migrate`` runs the
    store's migrations before the first insert (and on the first probe that reaches it).
    """

    def __init__(
        self,
        store: Store,
        spill: SpillDir,
        *,
        max_buffer_rows: int,
        probe_interval_s: float = 2.0,
        on_insert: InsertObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.spill_dir = spill
        self.max_buffer_rows = max_buffer_rows
        self.probe_interval_s = probe_interval_s
        self._on_insert = on_insert
        self._clock = clock
        self._token_ok = "dedup_token" in inspect.signature(store.insert).parameters
        self.blocks: deque[tuple[str, Columns, int]] = deque()
        self.rows = 0  #: rows held in memory
        self.segments: list[Segment] = spill.segments()  #: on disk, not yet replayed (oldest first)
        self.available = False  #: the last store operation succeeded (and migrations are applied)
        self.migrated = False
        self.down_since: float | None = None
        self.last_error: str | None = None
        self.last_insert_at: float | None = None
        self._next_probe = 0.0
        self.stats = BufferStats()

    # -- state -----------------------------------------------------------------------------------------

    @property
    def backlog(self) -> bool:
        """Rows wait in memory or on disk (new blocks queue behind them)."""
        return bool(self.blocks or self.segments)

    @property
    def over_bound(self) -> bool:
        return self.rows > self.max_buffer_rows

    @property
    def segment_rows(self) -> int:
        return sum(s.rows - sum(s.tables[t] for t in s.done) for s in self.segments)

    # -- the Store protocol (what TableWriter calls) ---------------------------------------------------

    def insert(self, table: str, columns: Mapping[str, Column]) -> int:
        """Insert now or keep the block; never raises ``StoreUnavailableError`` (the rows are kept)."""
        cols = {name: as_column(v) for name, v in columns.items()}
        n = len(next(iter(cols.values()))) if cols else 0
        if n == 0:
            return 0
        if self.backlog or not self.available or not self._insert_now(table, cols, n, None):
            self._hold(table, cols, n)
        return n

    def migrate(self) -> list[str]:
        return self.store.migrate()

    def execute(self, sql: str) -> None:
        self.store.execute(sql)

    def query(self, sql: str) -> Columns:
        return self.store.query(sql)

    def close(self) -> None:
        self.store.close()

    # -- going up and down -----------------------------------------------------------------------------

    def start(self) -> bool:
        """Migrate now if the store answers (a sink starts even when it does not); True when up."""
        return self._probe()

    def _probe(self) -> bool:
        try:
            if not self.migrated:
                applied = self.store.migrate()
                if applied:
                    log.info("store migrated", extra={"applied": applied})
                self.migrated = True
            else:
                ping = getattr(self.store, "ping", None)
                if ping is not None and not ping():
                    raise StoreUnavailableError(str(getattr(self.store, "last_error", "ping failed")))
        except StoreUnavailableError as exc:
            self._went_down(exc)
            return False
        if not self.available:
            if self.down_since is not None:
                log.info(
                    "store reachable again",
                    extra={"down_s": round(self._clock() - self.down_since, 3), "buffered_rows": self.rows,
                           "segments": len(self.segments)},
                )  # fmt: skip
            self.available = True
            self.down_since = None
        return True

    def _went_down(self, exc: BaseException) -> None:
        now = self._clock()
        self.last_error = f"{type(exc).__name__}: {exc}"
        self._next_probe = now + self.probe_interval_s
        if self.available or self.down_since is None:
            self.stats.outages += 1
            self.down_since = now
            log.warning("store unavailable: keeping rows", extra={"error": self.last_error})
        self.available = False

    def _insert_now(self, table: str, cols: Columns, n: int, token: str | None) -> bool:
        """True when the block is dealt with (stored, or rejected for good); False when the store is down."""
        started = time.perf_counter()
        try:
            if token is not None and self._token_ok:
                self.store.insert(table, cols, dedup_token=token)  # type: ignore[call-arg]
            else:
                self.store.insert(table, cols)
        except StoreUnavailableError as exc:
            self._went_down(exc)
            return False
        except StoreError as exc:
            where = self.spill_dir.reject(table, cols, str(exc))
            self.stats.rejected[table] = self.stats.rejected.get(table, 0) + n
            log.error("store refused a block for good; kept on disk", extra={"table": table, "rows": n,
                      "path": str(where), "error": str(exc)})  # fmt: skip
            return True
        seconds = time.perf_counter() - started
        self.stats.written[table] = self.stats.written.get(table, 0) + n
        self.last_insert_at = self._clock()
        if self._on_insert is not None:
            self._on_insert(table, n, seconds)
        return True

    def _hold(self, table: str, cols: Columns, n: int) -> None:
        self.blocks.append((table, cols, n))
        self.rows += n
        self.stats.max_buffered = max(self.stats.max_buffered, self.rows)

    # -- catching up -------------------------------------------------------------------------------------

    def recover(self, budget_s: float) -> int:
        """Insert what waits — segments oldest first, then memory — for up to about ``budget_s`` seconds, if
        the store answers (a down store is probed every ``probe_interval_s``). Returns the rows inserted."""
        if self.available and not self.backlog:
            return 0
        now = self._clock()
        if not self.available and (now < self._next_probe or not self._probe()):
            return 0
        deadline = now + budget_s
        done = 0
        while self.segments and self._clock() < deadline:
            seg = self.segments[0]
            for table, n in seg.tables.items():
                if table in seg.done:
                    continue
                if n and not self._insert_now(table, self.spill_dir.read(seg, table), n, seg.token(table)):
                    return done
                seg.done.add(table)
                done += n
                self.stats.replayed_rows += n
            self.spill_dir.remove(seg)
            self.segments.pop(0)
            self.stats.replayed_segments += 1
            log.info("spill segment replayed", extra={"segment": seg.name, "rows": seg.rows})
        while not self.segments and self.blocks and self._clock() < deadline:
            table, cols, n = self.blocks[0]
            if not self._insert_now(table, cols, n, None):
                return done
            self.blocks.popleft()
            self.rows -= n
            done += n
        return done

    def spill(self, marks: Marks) -> Segment | None:
        """Write every memory block to one new segment carrying ``marks`` (fsynced before this returns) and
        free the memory; ``None`` when nothing is held."""
        if not self.blocks:
            return None
        by_table: dict[str, list[Columns]] = {}
        for table, cols, _ in self.blocks:
            by_table.setdefault(table, []).append(cols)
        seg = self.spill_dir.write({t: concat_blocks(b) for t, b in by_table.items()}, marks)
        self.segments.append(seg)
        self.stats.spilled_rows += self.rows
        self.stats.spill_segments += 1
        log.info("rows spilled to disk", extra={"segment": seg.name, "rows": self.rows, "tables": seg.tables})
        self.blocks.clear()
        self.rows = 0
        return seg
