"""`tradeplane validate`: check manifests offline with the same rules as the API server and more."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..api.validation import validate_files
from . import exit_codes


def validate(
    files: Annotated[list[Path], typer.Argument(help="YAML files; each may hold several documents.")],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print errors only.")] = False,
) -> None:
    """Validate Strategy, ModelVersion and RiskBudget manifests; other kinds are skipped with a note.

    Every error names the file and line, the document index, kind/name and the field's JSON path.
    Exit code 1 if any document is invalid.
    """
    report = validate_files(str(f) for f in files)
    for err in report.errors:
        typer.echo(f"error: {err}", err=True)
    if not quiet:
        for note in report.notes:
            typer.echo(f"note: {note}")
        for source, index, kind, name in report.valid:
            typer.echo(f"ok: {source}: document {index} {kind}/{name}")
    summary = f"{len(report.valid)} valid, {len(report.errors)} error(s) in {len(files)} file(s)"
    if report.errors:
        typer.echo(summary, err=True)
        raise typer.Exit(exit_codes.INVALID)
    typer.echo(summary)
