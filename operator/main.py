"""Run the operator: register the handlers and hand the namespace and the leader-election mode to kopf.

The ``tradeplane operator`` command calls :func:`run_operator`; only this layer imports kopf."""

from __future__ import annotations

import kopf


def run_operator(*, namespace: str, peering: str | None, liveness: str | None, verbose: bool) -> None:
    """Reconcile ``namespace`` until SIGTERM. ``peering``: the KopfPeering object replicas elect a leader
    through (None: standalone, the only replica)."""
    from . import handlers  # noqa: F401  (the decorators register the handlers)

    kopf.configure(verbose=verbose)
    kopf.run(namespaces=[namespace], standalone=peering is None, peering_name=peering, liveness_endpoint=liveness)
