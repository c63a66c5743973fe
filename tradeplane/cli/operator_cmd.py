"""`tradeplane operator`: run the kopf operator for one namespace (the Helm chart's container command).

The operator layer (and kopf with it) is imported only inside the command, so the other commands stay light.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ..settings import SettingsError, load_settings
from . import exit_codes


def operator(
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", help="Namespace to reconcile (TRADEPLANE_NAMESPACE).")
    ] = None,
    standalone: Annotated[
        bool, typer.Option("--standalone", help="No leader election: the only replica (the chart's default).")
    ] = False,
    peering: Annotated[
        str | None, typer.Option("--peering", help="KopfPeering object for leader election among replicas.")
    ] = None,
    liveness: Annotated[
        str | None, typer.Option("--liveness", help="Liveness endpoint, e.g. http://0.0.0.0:8080/healthz.")
    ] = None,
) -> None:
    """Reconcile Strategy, ModelVersion and RiskBudget objects until SIGTERM."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exit_codes.CONFIG) from None
    if standalone and peering:
        typer.echo("error: --standalone and --peering exclude each other", err=True)
        raise typer.Exit(exit_codes.USAGE)
    from ..operator.main import run_operator

    run_operator(namespace=namespace or settings.namespace, peering=None if standalone else peering,
                 liveness=liveness, verbose=settings.log_level == "DEBUG")  # fmt: skip
