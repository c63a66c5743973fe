"""The ``tradeplane`` command line. Each command lives in its own module; this one only wires them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import __version__
from ..logs import configure_logging
from ..settings import CONFIG_ENV, SettingsError, load_settings
from . import exit_codes
from .backtest_cmd import backtest
from .config_cmd import config_app
from .crds_cmd import crds
from .operator_cmd import operator
from .replay_cmd import replay
from .rollout_cmd import rollout_app
from .run_cmd import demo, run
from .train_cmd import train
from .validate_cmd import validate
from .workload_cmd import workload

app = typer.Typer(
    name="tradeplane",
    help="Kubernetes-native systematic crypto trading: CRDs, operator, engine, workloads.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.command("crds")(crds)
app.command("validate")(validate)
app.command("replay")(replay)
app.command("train")(train)
app.command("backtest")(backtest)
app.command("run")(run)
app.command("demo")(demo)
app.command("workload")(workload)
app.command("operator")(operator)
app.add_typer(config_app, name="config")
app.add_typer(rollout_app, name="rollout")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"tradeplane {__version__}")
        raise typer.Exit(exit_codes.OK)


@app.callback()
def _root(
    config: Annotated[
        Path | None,
        typer.Option("--config", help=f"YAML settings file (same as {CONFIG_ENV}). Secrets are not accepted in it."),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    import os

    if config is not None:
        os.environ[CONFIG_ENV] = str(config)
    try:
        settings = load_settings()
    except SettingsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exit_codes.CONFIG) from None
    configure_logging(settings.log_level, settings.log_format, settings.secret_values())


def main() -> None:
    """Console-script entry point."""
    app(prog_name="tradeplane")


__all__ = ["app", "main"]
