"""`tradeplane workload NAME`: run one cluster workload (ingest, decide, execute, sink, noop) in this process.

The container entry point the operator renders. Settings come from ``TRADEPLANE_*`` env variables and the
config file (a ConfigMap); ``--port`` and ``--config`` override them. The process serves /healthz, /readyz
and /metrics, logs JSON lines, and exits after SIGTERM with the code of its shutdown (0 = everything flushed).
The workload code is imported only here, inside the command, so the CLI's other commands stay light.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from ..settings import CONFIG_ENV, SettingsError, load_settings
from . import exit_codes


def workload(
    name: Annotated[str, typer.Argument(help="Workload to run: ingest, decide, execute, sink (or noop).")],
    port: Annotated[
        int | None,
        typer.Option(
            "--port", min=0, max=65535, help="Port of /healthz, /readyz, /metrics (TRADEPLANE_WORKLOAD__HTTP_PORT)."
        ),
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help=f"YAML settings file (same as {CONFIG_ENV}).")] = None,
) -> None:
    """Run a workload until SIGTERM/SIGINT, then flush and exit (0 clean, 4 shutdown incomplete, 5 failed)."""
    from ..workloads.service.main import UnknownWorkloadError, resolve_workload, run_workload

    try:
        resolve_workload(name)
    except UnknownWorkloadError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exit_codes.USAGE) from None
    if config is not None:
        os.environ[CONFIG_ENV] = str(config)
    overrides: dict[str, Any] = {} if port is None else {"workload": {"http_port": port}}
    try:
        settings = load_settings(**overrides)
        code = run_workload(name, settings, freeze_heap=True)
    except SettingsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exit_codes.CONFIG) from None
    except OSError as exc:  # the HTTP port is taken or not allowed
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exit_codes.CONFIG) from None
    raise typer.Exit(code)
