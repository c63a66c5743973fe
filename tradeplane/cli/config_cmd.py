"""`tradeplane config`: inspect the effective settings (secrets masked)."""

from __future__ import annotations

import json

import typer

from ..settings import load_settings

config_app = typer.Typer(help="Inspect settings.", no_args_is_help=True)


@config_app.command("show")
def show() -> None:
    """Print the effective settings as JSON, with every secret shown as **********."""
    typer.echo(json.dumps(load_settings().redacted(), indent=2, default=str))
