"""Numbered SQL migrations (``sql/runtime/NNN_description.sql``), applied in order and recorded.

Why a runner and not ``CREATE ... IF NOT EXISTS`` at every start: a schema changes over time (a column
added in ``002_...``), and a store must know which changes it has, so an old store is brought up to date
and a new one gets every step, in order, once. Each applied file is recorded in :data:`MIGRATIONS_TABLE`
with the sha256 of its text; a recorded file whose text changed afterwards is an error (a migration is
immutable once applied: write a new one). Statements must be idempotent (``IF NOT EXISTS``), because a
file that failed half-way is not recorded and runs again from its first statement.

The runner needs only ``execute``, ``query`` and ``insert``, so it works for any :class:`~.base.Store`.
Both backends apply the same directory (the local runner's chDB store and the cluster's ClickHouse server
write the same tables, so their results compare). A store on an older server passes its
:class:`~.dialect.Dialect`: each statement is rewritten for that server (codecs, TTL and settings it lacks
left out, DateTime64 stored as Int64 nanoseconds; see :mod:`.dialect`) and a statement with nothing left
for it is skipped. The sha256 recorded is always the file's own text, so the immutability check does not
depend on the server a store runs on.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from .base import Column, Columns, StoreError
from .dialect import Dialect, rewrite

SQL_DIR: Final = Path(__file__).resolve().parents[2] / "sql" / "runtime"
"""The runtime migrations of this checkout (``sql/runtime``), applied by every store backend."""

MIGRATIONS_TABLE: Final = "schema_migrations"

_FILE_RE: Final = re.compile(r"(\d{3,})_([A-Za-z0-9_]+)\.sql")

_CREATE_TABLE: Final = f"""CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE}
(
    version     String,
    name        String,
    sha256      String,
    applied_ns  Int64
)
ENGINE = MergeTree
ORDER BY version"""


class MigrationError(StoreError):
    """A migration file is malformed, changed after it was applied, or failed (the message names the file)."""


class Executor(Protocol):
    """The part of a store the runner uses."""

    def execute(self, sql: str) -> None: ...

    def query(self, sql: str) -> Columns: ...

    def insert(self, table: str, columns: Mapping[str, Column]) -> int: ...


@dataclass(frozen=True)
class Migration:
    version: str  #: the number as written, e.g. "001"
    name: str  #: the description, e.g. "runtime_tables"
    path: Path
    sql: str
    sha256: str

    @property
    def statements(self) -> list[str]:
        return split_statements(self.sql)


def discover(sql_dir: Path = SQL_DIR) -> list[Migration]:
    """The migrations in ``sql_dir``, ordered by number. A ``.sql`` file not named ``NNN_name.sql`` or two
    files with the same number are a :class:`MigrationError`."""
    if not Path(sql_dir).is_dir():
        raise MigrationError(f"{sql_dir}: no such migrations directory")
    found: dict[int, Migration] = {}
    for path in sorted(Path(sql_dir).glob("*.sql")):
        m = _FILE_RE.fullmatch(path.name)
        if m is None:
            raise MigrationError(f"{path}: migration files are named NNN_description.sql")
        number = int(m.group(1))
        if number in found:
            raise MigrationError(f"{path} and {found[number].path} have the same number {number}")
        text = path.read_text(encoding="utf-8")
        found[number] = Migration(m.group(1), m.group(2), path, text, hashlib.sha256(text.encode()).hexdigest())
    return [found[n] for n in sorted(found)]


def split_statements(sql: str) -> list[str]:
    """Split a script on ``;`` outside strings, quoted identifiers and comments; comments are dropped and
    empty statements skipped (chDB runs one statement per call)."""
    statements: list[str] = []
    buf: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end
            continue
        if c == "/" and sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            if end < 0:
                raise MigrationError("unterminated /* comment")
            i = end + 2
            buf.append(" ")
            continue
        if c in "'\"`":
            j = i + 1
            while j < n:
                if sql[j] == "\\":
                    j += 2
                    continue
                if sql[j] == c:
                    if j + 1 < n and sql[j + 1] == c:  # doubled quote inside the literal
                        j += 2
                        continue
                    break
                j += 1
            if j >= n:
                raise MigrationError(f"unterminated {c} quote starting at character {i}")
            buf.append(sql[i : j + 1])
            i = j + 1
            continue
        if c == ";":
            stmt = "".join(buf).strip()
            if stmt:
                statements.append(stmt)
            buf = []
        else:
            buf.append(c)
        i += 1
    stmt = "".join(buf).strip()
    if stmt:
        statements.append(stmt)
    return statements


def applied_versions(store: Executor) -> dict[str, str]:
    """Recorded versions → sha256 (creates :data:`MIGRATIONS_TABLE` when missing)."""
    store.execute(_CREATE_TABLE)
    cols = store.query(f"SELECT version, sha256 FROM {MIGRATIONS_TABLE} ORDER BY version")
    return dict(zip(cols["version"].tolist(), cols["sha256"].tolist(), strict=True))


def migrate(store: Executor, sql_dir: Path = SQL_DIR, *, dialect: Dialect | None = None) -> list[str]:
    """Apply the migrations of ``sql_dir`` not recorded yet, in order; returns the versions applied.

    ``dialect``: the server's (:func:`~.dialect.rewrite` adapts each statement to it); ``None`` runs the
    statements as written (chDB, a current ClickHouse).

    Raises :class:`MigrationError` naming the file when a recorded file changed, or when a statement fails
    (earlier files stay applied and recorded; the failed one is not recorded).
    """
    done = applied_versions(store)
    applied: list[str] = []
    for mig in discover(sql_dir):
        if mig.version in done:
            if done[mig.version] != mig.sha256:
                raise MigrationError(
                    f"{mig.path} changed after it was applied (recorded sha256 {done[mig.version][:12]}…, "
                    f"now {mig.sha256[:12]}…): applied migrations are immutable, add a new file instead"
                )
            continue
        for k, stmt in enumerate(mig.statements, start=1):
            text = stmt if dialect is None else rewrite(stmt, dialect)
            if text is None:  # nothing of it exists on this server (e.g. a setting it lacks)
                continue
            try:
                store.execute(text)
            except StoreError as exc:
                head = " ".join(stmt.split())[:80]
                raise MigrationError(f"{mig.path}: statement {k} failed ({head}…): {exc}") from exc
        store.insert(
            MIGRATIONS_TABLE,
            {"version": [mig.version], "name": [mig.name], "sha256": [mig.sha256], "applied_ns": [time.time_ns()]},
        )
        applied.append(mig.version)
    return applied
