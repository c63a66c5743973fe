"""SQL for the ClickHouse a store talks to: the migrations are written once, for a current ClickHouse (and
chDB), and rewritten here for an older server.

Why rewrite rather than keep two schemas: the local runner (chDB) and the cluster (a ClickHouse server) must
write the same tables so their results compare, and a schema kept twice drifts. Production runs a current
ClickHouse, where :func:`rewrite` changes nothing; the tests' Debian server is 18.16 (2018), which lacks
column codecs, TTL, DateTime64, ``Bool``, the ``*UnixTimestamp64Nano`` functions and the
``non_replicated_deduplication_window`` table setting, and has ``LowCardinality`` only as an experiment.

What an old server gets instead (each gated on the version that introduced the feature, :class:`Dialect`):

- ``CODEC(...)`` and ``TTL ...`` clauses are left out (storage and retention only, no effect on results);
- table ``SETTINGS`` the server does not know are left out; an ``ALTER TABLE ... MODIFY SETTING`` with
  nothing left (or on a server without ``MODIFY SETTING``) is skipped (``rewrite`` returns ``None``);
- ``LowCardinality(T)`` becomes ``T`` (same values; 18.16's experimental type is not worth the risk);
- ``DateTime64(p, tz)`` becomes ``Int64`` holding ``10**-p`` s units (the engine's int64 ns for p = 9), and a
  table column so mapped gets ``COMMENT 'tp:DateTime64(p)'``: the store reads the marker back from
  ``system.columns`` to convert on insert and to return ``datetime64`` from queries, as on chDB;
- ``fromUnixTimestamp64Nano(x)`` and ``toUnixTimestamp64Nano(x)`` become ``(x)`` (a DateTime64(9) *is* its ns
  there), so portable SQL converts with them; date functions of a mapped column (``toDate(ts)`` in a
  ``PARTITION BY``) get ``toDateTime(intDiv(ts, 10**p))`` as argument;
- ``Bool`` becomes ``UInt8``.

Pure functions on text: a small tokenizer keeps strings, quoted identifiers and comments intact.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

Version = tuple[int, ...]

MODERN: Final[Version] = (26, 9)
"""The version chDB 4.4 embeds (ClickHouse 26.9): everything in the migrations is native there."""

# First version with each feature (ClickHouse release notes).
CODECS: Final[Version] = (19, 1)
TTL: Final[Version] = (19, 6)
LOW_CARDINALITY: Final[Version] = (19, 0)  # experimental (behind a setting) before
MODIFY_SETTING: Final[Version] = (19, 11)
DATETIME64: Final[Version] = (20, 1)
UNIX_TS64_FUNCTIONS: Final[Version] = (20, 5)
DEDUP_WINDOW: Final[Version] = (20, 11)  # non_replicated_deduplication_window (MergeTree setting)
BOOL: Final[Version] = (21, 12)
INSERT_DEDUP_TOKEN: Final[Version] = (22, 2)  # insert_deduplication_token (query setting)

#: Table settings and the version that introduced them; settings not listed are kept as written.
TABLE_SETTINGS: Final[Mapping[str, Version]] = {"non_replicated_deduplication_window": DEDUP_WINDOW}

#: A comment marking an Int64 column that stands for ``DateTime64(p)`` on an old server.
DATETIME64_MARKER: Final = re.compile(r"tp:DateTime64\((\d)\)")

#: Functions of a date/time whose argument, if a mapped DateTime64 column, is converted to a DateTime.
DATE_FUNCTIONS: Final = frozenset(
    {
        "toDate",
        "toDateTime",
        "toStartOfDay",
        "toStartOfHour",
        "toStartOfMinute",
        "toStartOfFiveMinute",
        "toStartOfFifteenMinutes",
        "toStartOfMonth",
        "toStartOfWeek",
        "toMonday",
        "toYYYYMM",
        "toYYYYMMDD",
        "toYYYYMMDDhhmmss",
        "toHour",
        "toMinute",
        "toSecond",
        "toUnixTimestamp",
    }
)


def parse_version(text: str) -> Version:
    """``SELECT version()`` as ints: ``"18.16.1"`` → ``(18, 16, 1)`` (non-numeric parts end the tuple)."""
    parts: list[int] = []
    for part in text.strip().split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    if not parts:
        raise ValueError(f"not a ClickHouse version: {text!r}")
    return tuple(parts)


@dataclass(frozen=True)
class Dialect:
    """What the server of ``version`` supports; :meth:`modern` for chDB and current servers."""

    version: Version

    @classmethod
    def modern(cls) -> Dialect:
        return cls(MODERN)

    def has(self, since: Version) -> bool:
        """True when this server is at least version ``since``."""
        return self.version >= since

    @property
    def codecs(self) -> bool:
        return self.has(CODECS)

    @property
    def ttl(self) -> bool:
        return self.has(TTL)

    @property
    def low_cardinality(self) -> bool:
        return self.has(LOW_CARDINALITY)

    @property
    def datetime64(self) -> bool:
        return self.has(DATETIME64)

    @property
    def unix_ts64_functions(self) -> bool:
        return self.has(UNIX_TS64_FUNCTIONS)

    @property
    def dedup_window(self) -> bool:
        """Non-replicated MergeTree tables can drop a re-inserted block (``non_replicated_deduplication_window``)."""
        return self.has(DEDUP_WINDOW)

    @property
    def insert_dedup_token(self) -> bool:
        return self.has(INSERT_DEDUP_TOKEN)

    @property
    def native(self) -> bool:
        """Everything the migrations use exists: :func:`rewrite` returns statements unchanged."""
        return all(self.has(v) for v in (CODECS, TTL, LOW_CARDINALITY, DATETIME64, UNIX_TS64_FUNCTIONS, BOOL)) and all(
            self.has(v) for v in TABLE_SETTINGS.values()
        )

    def __str__(self) -> str:
        return "ClickHouse " + ".".join(str(p) for p in self.version)


# --- tokens ----------------------------------------------------------------------------------------------

_TOKEN: Final = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<comment>--[^\n]*|/\*.*?\*/)
  | (?P<string>'(?:[^'\\]|\\.|'')*')
  | (?P<quoted>`(?:[^`\\]|\\.|``)*`|"(?:[^"\\]|\\.|"")*")
  | (?P<number>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>.)
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass
class _Tok:
    kind: str
    text: str

    def is_word(self, *words: str) -> bool:
        return self.kind == "word" and self.text.upper() in words

    @property
    def blank(self) -> bool:
        return self.kind in ("ws", "comment")


def tokenize(sql: str) -> list[_Tok]:
    """The statement as tokens whose texts join back to ``sql`` exactly."""
    out: list[_Tok] = []
    pos = 0
    while pos < len(sql):
        m = _TOKEN.match(sql, pos)
        if m is None or m.lastgroup is None:  # an unterminated quote: the rest is one token
            out.append(_Tok("punct", sql[pos:]))
            break
        out.append(_Tok(m.lastgroup, m.group()))
        pos = m.end()
    return out


def _next(toks: list[_Tok], i: int) -> int:
    """Index of the first non-blank token at or after ``i`` (``len(toks)`` if none)."""
    while i < len(toks) and toks[i].blank:
        i += 1
    return i


def _close(toks: list[_Tok], i: int) -> int:
    """Index of the ``)`` matching the ``(`` at ``i``."""
    depth = 0
    for j in range(i, len(toks)):
        if toks[j].text == "(":
            depth += 1
        elif toks[j].text == ")":
            depth -= 1
            if depth == 0:
                return j
    raise ValueError("unbalanced parentheses")


def _join(toks: list[_Tok]) -> str:
    return "".join(t.text for t in toks)


# --- rewrites ----------------------------------------------------------------------------------------------


def rewrite(sql: str, dialect: Dialect, datetime_columns: Mapping[str, int] | None = None) -> str | None:
    """``sql`` for the server of ``dialect``, or ``None`` when nothing of the statement applies there.

    ``datetime_columns``: names of DateTime64 columns (→ precision) the statement refers to besides the ones
    it creates (a store passes the columns its server marks; see the module docstring). On a server that
    has every feature (:attr:`Dialect.native`) the text is returned unchanged.
    """
    if dialect.native:
        return sql
    toks = tokenize(sql)
    if _is_alter_modify_setting(toks):
        return _rewrite_modify_setting(toks, dialect)
    if not dialect.ttl and _is_alter_ttl(toks):
        return None
    dt_cols = dict(datetime_columns or {})
    if not dialect.datetime64:
        dt_cols.update(_mark_datetime64_columns(toks))
    if not dialect.codecs:
        toks = _drop_calls(toks, "CODEC")
    if not dialect.ttl:
        toks = _drop_ttl(toks)
    toks = _filter_table_settings(toks, dialect)
    if not dialect.low_cardinality:
        toks = _unwrap(toks, "LowCardinality")
    if not dialect.datetime64:
        toks = _map_datetime64_types(toks)
        toks = _wrap_date_function_args(toks, dt_cols)
    if not dialect.unix_ts64_functions:
        toks = _unwrap(toks, "fromUnixTimestamp64Nano", keep_parens=True)
        toks = _unwrap(toks, "toUnixTimestamp64Nano", keep_parens=True)
    if not dialect.has(BOOL):
        for t in toks:
            if t.kind == "word" and t.text == "Bool":
                t.text = "UInt8"
    return _join(toks)


def _words(toks: list[_Tok]) -> list[str]:
    return [t.text.upper() for t in toks if t.kind == "word"]


def _is_alter_modify_setting(toks: list[_Tok]) -> bool:
    words = _words(toks)
    return (
        words[:2] == ["ALTER", "TABLE"] and "MODIFY" in words and words[words.index("MODIFY") + 1 :][:1] == ["SETTING"]
    )


def _is_alter_ttl(toks: list[_Tok]) -> bool:
    words = _words(toks)
    return words[:2] == ["ALTER", "TABLE"] and any(
        a in ("MODIFY", "REMOVE", "MATERIALIZE") and b == "TTL" for a, b in itertools.pairwise(words)
    )


def _split_settings(toks: list[_Tok]) -> list[list[_Tok]]:
    """``a = 1, b = 2`` → the tokens of each assignment (commas inside parentheses do not split)."""
    parts: list[list[_Tok]] = [[]]
    depth = 0
    for t in toks:
        if t.text == "(":
            depth += 1
        elif t.text == ")":
            depth -= 1
        if t.text == "," and depth == 0:
            parts.append([])
        else:
            parts[-1].append(t)
    return parts


def _setting_supported(assignment: list[_Tok], dialect: Dialect) -> bool:
    name = next((t.text for t in assignment if t.kind == "word"), "")
    since = TABLE_SETTINGS.get(name)
    return since is None or dialect.has(since)


def _rewrite_modify_setting(toks: list[_Tok], dialect: Dialect) -> str | None:
    if not dialect.has(MODIFY_SETTING):
        return None
    i = next(k for k, t in enumerate(toks) if t.is_word("SETTING"))
    kept = [a for a in _split_settings(toks[i + 1 :]) if _setting_supported(a, dialect)]
    if not kept:
        return None
    body = ",".join(_join(a) for a in kept)
    return _join(toks[: i + 1]) + (body if body.startswith((" ", "\n")) else " " + body.lstrip())


def _filter_table_settings(toks: list[_Tok], dialect: Dialect) -> list[_Tok]:
    """Leave out the ``SETTINGS`` (depth 0) assignments this server lacks; the keyword too if none remain."""
    depth = 0
    for i, t in enumerate(toks):
        if t.text == "(":
            depth += 1
        elif t.text == ")":
            depth -= 1
        elif depth == 0 and t.is_word("SETTINGS"):
            # the clause runs to the end of the statement (a trailing ';' stays)
            end = len(toks)
            while end > i + 1 and (toks[end - 1].blank or toks[end - 1].text == ";"):
                end -= 1
            parts = _split_settings(toks[i + 1 : end])
            kept = [a for a in parts if _setting_supported(a, dialect)]
            if len(kept) == len(parts):
                return toks
            start = i
            while start > 0 and toks[start - 1].kind == "ws":
                start -= 1
            if not kept:
                return toks[:start] + toks[end:]
            body = ",".join(_join(a) for a in kept)
            return [*toks[: i + 1], _Tok("ws", " "), _Tok("punct", body.strip()), *toks[end:]]
    return toks


def _drop_calls(toks: list[_Tok], name: str) -> list[_Tok]:
    """Remove every ``NAME(...)`` (and the blanks before it)."""
    out: list[_Tok] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        j = _next(toks, i + 1)
        if t.is_word(name.upper()) and j < len(toks) and toks[j].text == "(":
            while out and out[-1].kind == "ws":
                out.pop()
            i = _close(toks, j) + 1
            continue
        out.append(t)
        i += 1
    return out


def _drop_ttl(toks: list[_Tok]) -> list[_Tok]:
    """Remove ``TTL`` clauses: a table's (to ``SETTINGS`` or the end) and a column's (to its ``,`` or ``)``)."""
    out: list[_Tok] = []
    depth = 0
    i = 0
    while i < len(toks):
        t = toks[i]
        if t.is_word("TTL"):
            while out and out[-1].kind == "ws":
                out.pop()
            rel = 0
            j = i + 1
            while j < len(toks):
                u = toks[j]
                if u.text == "(":
                    rel += 1
                elif u.text == ")":
                    if rel == 0:
                        break
                    rel -= 1
                elif rel == 0 and (u.text == "," if depth > 0 else u.is_word("SETTINGS") or u.text == ";"):
                    break
                j += 1
            if j < len(toks) and toks[j].kind != "ws":
                out.append(_Tok("ws", "\n" if depth == 0 else ""))
            i = j
            continue
        if t.text == "(":
            depth += 1
        elif t.text == ")":
            depth -= 1
        out.append(t)
        i += 1
    return out


def _unwrap(toks: list[_Tok], name: str, *, keep_parens: bool = False) -> list[_Tok]:
    """``name(x)`` → ``x`` (or ``(x)`` with ``keep_parens``), innermost calls included."""
    changed = True
    while changed:
        changed = False
        for i, t in enumerate(toks):
            j = _next(toks, i + 1)
            if t.kind == "word" and t.text == name and j < len(toks) and toks[j].text == "(":
                k = _close(toks, j)
                inner = toks[j : k + 1] if keep_parens else toks[j + 1 : k]
                toks = toks[:i] + inner + toks[k + 1 :]
                changed = True
                break
    return toks


def _column_list(toks: list[_Tok]) -> tuple[int, int] | None:
    """(open, close) token indices of a ``CREATE TABLE name (...)`` column list, if the statement has one."""
    words = [(i, t) for i, t in enumerate(toks) if not t.blank]
    if len(words) < 3 or not words[0][1].is_word("CREATE"):
        return None
    k = 1
    if words[k][1].is_word("OR"):  # OR REPLACE
        k += 2
    if not words[k][1].is_word("TABLE"):
        return None
    k += 1
    if words[k][1].is_word("IF"):  # IF NOT EXISTS
        k += 3
    k += 1  # the name
    while k < len(words) and words[k][1].text == ".":
        k += 2
    if k < len(words) and words[k][1].is_word("ON"):  # ON CLUSTER x
        k += 3
    if k >= len(words) or words[k][1].text != "(":
        return None
    start = words[k][0]
    return start, _close(toks, start)


def _column_defs(toks: list[_Tok], start: int, end: int) -> list[tuple[int, int]]:
    """[first, last) token ranges of the entries of the column list between ``start`` and ``end``."""
    out: list[tuple[int, int]] = []
    depth = 0
    first = start + 1
    for i in range(start + 1, end):
        if toks[i].text == "(":
            depth += 1
        elif toks[i].text == ")":
            depth -= 1
        elif toks[i].text == "," and depth == 0:
            out.append((first, i))
            first = i + 1
    out.append((first, end))
    return out


def _mark_datetime64_columns(toks: list[_Tok]) -> dict[str, int]:
    """Add ``COMMENT 'tp:DateTime64(p)'`` to each column of a CREATE TABLE typed ``DateTime64(p, ...)`` (in
    place; before the types are mapped) and return ``{name: p}``."""
    span = _column_list(toks)
    if span is None:
        return {}
    found: dict[str, int] = {}
    inserts: list[tuple[int, str]] = []
    for first, last in _column_defs(toks, *span):
        i = _next(toks, first)
        if i >= last or toks[i].is_word("INDEX", "CONSTRAINT", "PROJECTION", "PRIMARY"):
            continue
        name = toks[i].text.strip('`"')
        j = _next(toks, i + 1)
        if j >= last or not (toks[j].kind == "word" and toks[j].text == "DateTime64"):
            continue
        p = _next(toks, j + 1)
        precision = 3  # ClickHouse's default precision
        if p < last and toks[p].text == "(":
            q = _next(toks, p + 1)
            if toks[q].kind == "number":
                precision = int(toks[q].text)
        found[name] = precision
        if not any(t.is_word("COMMENT") for t in toks[j:last]):
            # COMMENT goes before CODEC and TTL (the grammar's order), else at the end of the definition
            end = next((k for k in range(j, last) if toks[k].is_word("CODEC", "TTL")), last)
            while end > j and toks[end - 1].blank:
                end -= 1
            inserts.append((end, f" COMMENT 'tp:DateTime64({precision})'"))
    for pos, text in sorted(inserts, reverse=True):
        toks.insert(pos, _Tok("comment", text))  # "comment" kind: never matched as a word again
    return found


def _map_datetime64_types(toks: list[_Tok]) -> list[_Tok]:
    """``DateTime64(...)`` (a type) → ``Int64``."""
    out: list[_Tok] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        if t.kind == "word" and t.text == "DateTime64":
            out.append(_Tok("word", "Int64"))
            j = _next(toks, i + 1)
            i = _close(toks, j) + 1 if j < len(toks) and toks[j].text == "(" else i + 1
            continue
        out.append(t)
        i += 1
    return out


def _wrap_date_function_args(toks: list[_Tok], columns: Mapping[str, int]) -> list[_Tok]:
    """``toDate(ts)`` → ``toDate(toDateTime(intDiv(ts, 10**p)))`` for each mapped column ``ts``."""
    if not columns:
        return toks
    out = list(toks)
    i = 0
    while i < len(out):
        t = out[i]
        j = _next(out, i + 1)
        if t.kind == "word" and t.text in DATE_FUNCTIONS and j < len(out) and out[j].text == "(":
            a = _next(out, j + 1)
            b = _next(out, a + 1)
            if a < len(out) and b < len(out) and out[b].text == ")" and out[a].text.strip('`"') in columns:
                name = out[a].text
                scale = 10 ** columns[name.strip('`"')]
                out[a] = _Tok("punct", f"toDateTime(intDiv({name}, {scale}))")
        i += 1
    return out


def datetime64_columns(create_sql: str) -> dict[str, int]:
    """``{column: precision}`` of the DateTime64 columns a ``CREATE TABLE`` statement defines."""
    return _mark_datetime64_columns(tokenize(create_sql))


def marked_precision(comment: str) -> int | None:
    """The precision a column comment marks as a mapped DateTime64 (see the module docstring), else ``None``."""
    m = DATETIME64_MARKER.search(comment)
    return int(m.group(1)) if m else None
