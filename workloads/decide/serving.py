"""decide's Ray Serve clients: one per model family, made on first use, shared by every desk of the process.

Why a template and not one URL: each family is its own RayService (``<family>-serve``, rendered by the
operator), so each has its own Serve proxy Service; ``{family}`` in the template names it. The route prefix
is the family router's (``/models/<family>``, :func:`~tradeplane.workloads.serve.config.default_route_prefix`).

The clients are built lazily because only families with a ``rayserve`` version need one: the models loader
asks for a family's client the first time it meets such a version. Each client carries the decide
process's deadline and breaker (docs/dataplane.md, Ray Serve), and reports into the process's ``/readyz``
(a degraded client keeps the check passing with the details: decisions fall back to rules meanwhile).
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry

from ..serve.client import ClientOptions, HttpTransport, ServeClient
from ..serve.config import default_route_prefix
from ..service.health import CheckResult


def family_url(template: str, family: str) -> str:
    """The family router's URL: the template with ``{family}`` filled, plus the router's route prefix."""
    if "{family}" not in template and template.count("{") != 0:
        raise ValueError(f"serve_url_template: only {{family}} may be substituted, got {template!r}")
    return template.replace("{family}", family).rstrip("/") + default_route_prefix(family)


class ServeClients:
    """``family → ServeClient`` for :func:`~tradeplane.workloads.local.runner.build_desk`, plus the check."""

    def __init__(self, template: str, options: ClientOptions, registry: CollectorRegistry | None = None) -> None:
        HttpTransport(family_url(template, "probe"))  # refuse a bad template before any model is loaded
        self.template, self.options, self.registry = template, options, registry
        self.clients: dict[str, ServeClient] = {}

    def __call__(self, family: str) -> ServeClient:
        client = self.clients.get(family)
        if client is None:
            client = ServeClient(HttpTransport(family_url(self.template, family)), options=self.options,
                                 registry=self.registry)  # fmt: skip
            self.clients[family] = client
        return client

    def check(self) -> CheckResult:
        """``serve`` readiness: passed while every client answers; degraded (not failed) while one does not."""
        if not self.clients:
            return CheckResult.passed("no family is scored through Serve")
        down = {f: c.health() for f, c in self.clients.items() if c.degraded}
        if down:
            # still ready: decisions fall back to the rules-only score while Serve is away (not a reason to
            # take the desk out of service); the details say which family and since when
            return CheckResult.passed(f"degraded: scoring falls back to rules for {sorted(down)}", degraded=down)
        return CheckResult.passed(f"{len(self.clients)} Serve client(s) answering: {sorted(self.clients)}")

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


ClientFactory = Callable[[str], ServeClient]
