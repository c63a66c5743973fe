"""Validate manifests against the v1alpha1 types, with error locations a person can act on.

Shared by ``tradeplane validate``, the operator's admission checks and tests. Every error names the file,
the document index, kind/name, the JSON path of the field and its line, so a bad manifest is fixed in one
pass. Validation is strict (no type coercion): a string where a number belongs is an error here exactly as
it is for the API server.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import ValidationError

from .v1alpha1 import GROUP, RESOURCES_BY_KIND, VERSION

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class FieldError:
    """One problem in one document, located as precisely as possible."""

    source: str
    document: int  #: 1-based position of the document in its file
    kind: str | None
    name: str | None
    path: str  #: JSON path inside the document, e.g. ``spec.symbols[0]``
    message: str
    line: int | None = None  #: 1-based line in the file

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        obj = f"{self.kind or '?'}/{self.name or '?'}"
        return f"{where}: document {self.document} {obj}: {self.path or '<document>'}: {self.message}"


@dataclass
class ValidationReport:
    errors: list[FieldError] = field(default_factory=list)
    valid: list[tuple[str, int, str, str]] = field(default_factory=list)  #: (source, doc, kind, name)
    notes: list[str] = field(default_factory=list)  #: skipped documents and cross-reference hints

    @property
    def ok(self) -> bool:
        return not self.errors


def format_loc(loc: Loc) -> str:
    """``('spec', 'symbols', 0)`` → ``spec.symbols[0]``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _describe(err: Any) -> str:
    msg = str(err["msg"]).removeprefix("Value error, ")
    value = err.get("input")
    if err["type"] == "missing":
        return "required field is missing"
    if err["type"] == "extra_forbidden":
        return "unknown field (check the spelling; fields are camelCase)"
    if isinstance(value, (str, int, float, bool)) or value is None:
        return f"{msg} (got {value!r})"
    return msg


def validate_object(obj: Any) -> list[tuple[Loc, str]]:
    """Validate one decoded document of a tradeplane kind; return (location, message) pairs."""
    if not isinstance(obj, dict):
        return [((), f"a document must be a mapping, got {type(obj).__name__}")]
    kind = obj.get("kind")
    resource = RESOURCES_BY_KIND.get(kind) if isinstance(kind, str) else None
    if resource is None:
        known = ", ".join(sorted(RESOURCES_BY_KIND))
        return [(("kind",), f"unknown kind {kind!r} in group {GROUP} (known: {known})")]
    try:
        # JSON round trip + strict: YAML scalars keep their types, and dates stay strings as in Kubernetes.
        resource.model.model_validate_json(json.dumps(obj, default=str), strict=True)
    except ValidationError as exc:
        return [(tuple(e["loc"]), _describe(e)) for e in exc.errors()]
    return []


def _is_ours(obj: Any) -> bool:
    api = obj.get("apiVersion") if isinstance(obj, dict) else None
    return isinstance(api, str) and api.split("/")[0] == GROUP


def _line_of(node: yaml.Node | None, loc: Loc) -> int | None:
    """Line (1-based) of the deepest node on ``loc`` that exists in the YAML node tree."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in loc:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            child = next((v for k, v in node.value if getattr(k, "value", None) == part), None)
            if child is None:
                key = next((k for k, _ in node.value if getattr(k, "value", None) == part), None)
                return key.start_mark.line + 1 if key is not None else line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
        if child is None:
            return line
        node, line = child, child.start_mark.line + 1
    return line


def _documents(text: str) -> Iterator[tuple[int, Any, yaml.Node | None]]:
    nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    datas = list(yaml.safe_load_all(text))
    for i, (data, node) in enumerate(zip(datas, nodes, strict=True), start=1):
        if data is not None:
            yield i, data, node


def validate_text(text: str, source: str, report: ValidationReport) -> None:
    """Validate every document of one multi-document YAML text into ``report``."""
    try:
        docs = list(_documents(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        report.errors.append(FieldError(source, 0, None, None, "", f"not valid YAML: {exc}", line))
        return
    for index, obj, node in docs:
        if not _is_ours(obj):
            kind = obj.get("kind") if isinstance(obj, dict) else type(obj).__name__
            report.notes.append(f"{source}: document {index} ({kind}) skipped: not a {GROUP} kind")
            continue
        kind = obj.get("kind")
        meta = obj.get("metadata")
        name = meta.get("name") if isinstance(meta, dict) else None
        version = str(obj.get("apiVersion")).split("/", 1)[-1]
        problems = validate_object(obj)
        if version != VERSION:
            problems = [(("apiVersion",), f"unsupported version {version!r}; this release serves {VERSION}")]
        for loc, message in problems:
            report.errors.append(FieldError(source, index, kind, name, format_loc(loc), message, _line_of(node, loc)))
        if not problems:
            report.valid.append((source, index, str(kind), str(name)))


def cross_reference_notes(objects: Iterable[dict[str, Any]]) -> list[str]:
    """Hints about references to objects not among the validated ones (they may exist in the cluster)."""
    objs = list(objects)
    names = {(o.get("kind"), (o.get("metadata") or {}).get("name")) for o in objs}
    families = {(o.get("spec") or {}).get("model") for o in objs if o.get("kind") == "ModelVersion"}
    notes = []
    for o in objs:
        if o.get("kind") != "Strategy":
            continue
        spec, name = o.get("spec") or {}, (o.get("metadata") or {}).get("name")
        budget = (spec.get("riskBudgetRef") or {}).get("name")
        if budget and ("RiskBudget", budget) not in names:
            notes.append(f"Strategy/{name}: RiskBudget {budget!r} is not in these files (must exist in the cluster)")
        family = (spec.get("model") or {}).get("family")
        if family and family not in families:
            notes.append(f"Strategy/{name}: no ModelVersion of family {family!r} in these files")
    return notes


def validate_files(paths: Iterable[str]) -> ValidationReport:
    """Validate files; unreadable files are errors, never silently skipped."""
    report = ValidationReport()
    ours: list[dict[str, Any]] = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            report.errors.append(FieldError(path, 0, None, None, "", f"cannot read file: {exc.strerror}"))
            continue
        validate_text(text, path, report)
        with contextlib.suppress(yaml.YAMLError):  # already reported by validate_text
            ours += [d for _, d, _ in _documents(text) if _is_ours(d)]
    report.notes += cross_reference_notes(ours)
    return report
