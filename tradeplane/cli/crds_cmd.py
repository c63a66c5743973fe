"""`tradeplane crds`: write (or check) the generated CRDs and the field reference."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..api.crds import crd_files
from ..api.docs import crd_reference_markdown
from . import exit_codes


def generated_files(crds_dir: Path, docs_file: Path) -> dict[Path, str]:
    """Every file derived from the API types: path → expected text."""
    files = {crds_dir / name: text for name, text in crd_files().items()}
    files[docs_file] = crd_reference_markdown()
    return files


def crds(
    out: Annotated[Path, typer.Option("--out", help="Directory for the CRD YAML files.")] = Path("crds"),
    docs: Annotated[Path, typer.Option("--docs", help="Markdown field reference to write.")] = Path("docs/crds.md"),
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 if any generated file is missing or stale.")
    ] = False,
) -> None:
    """Generate crds/*.yaml and docs/crds.md from the v1alpha1 API types."""
    files = generated_files(out, docs)
    stale = [p for p, text in files.items() if not p.is_file() or p.read_text(encoding="utf-8") != text]
    if out.is_dir():
        expected = {p.name for p in files if p.parent == out}
        stale += [p for p in sorted(out.glob("*.yaml")) if p.name not in expected]
    if check:
        if stale:
            for path in stale:
                typer.echo(f"stale: {path}", err=True)
            typer.echo("generated files are out of date: run `make crds` (tradeplane crds)", err=True)
            raise typer.Exit(exit_codes.INVALID)
        typer.echo(f"{len(files)} generated files are up to date")
        return
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for path in stale:
        if path not in files and path.exists():
            path.unlink()
            typer.echo(f"removed {path} (no longer generated)")
    typer.echo(f"wrote {len(files)} files ({len(stale)} changed)")
