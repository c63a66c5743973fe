"""Build and deploy a model family's Serve applications from the configs rendered by config.py.

Entry points, one shape:

* :func:`build_model_app` / :func:`build_router_app` — the ``import_path`` targets. Serve (a RayService, or
  :func:`deploy`) calls them with the application's ``args`` and then applies the config's ``deployments``
  overrides (``user_config``, replicas, actor options) itself.
* :func:`build_from_config` — the same application with the overrides applied here, for ``serve.run``
  (:func:`run`: imperative, for notebooks or a process that owns its Ray).
* :func:`deploy` — a whole multi-application config applied the way a RayService applies ``serveConfigV2``
  (KubeRay → dashboard ``PUT /api/serve/applications/`` → Serve controller ``apply_config``), then waited on.
  Re-applying a config whose only changes are ``user_config`` is Serve's lightweight update: the replicas'
  ``reconfigure`` runs, nothing restarts. That is how canary weights and batching move.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from typing import Any, Final

from ray import serve

from .config import ROUTER_DEPLOYMENT, model_deployment_name, parse_model_args, parse_router_args
from .deployments import ModelDeployment, RouterDeployment

#: DeploymentSchema keys this module passes through to ``Deployment.options`` (the rest is Serve-only).
_OPTION_KEYS: Final = (
    "num_replicas",
    "max_ongoing_requests",
    "max_queued_requests",
    "user_config",
    "ray_actor_options",
    "max_constructor_retry_count",
    "health_check_period_s",
    "health_check_timeout_s",
    "graceful_shutdown_wait_loop_s",
    "graceful_shutdown_timeout_s",
)


class ServeDeployError(RuntimeError):
    """An application did not reach RUNNING; the message carries Serve's own status messages."""


def build_model_app(args: dict[str, Any]) -> Any:
    """A version's application (``import_path`` target): its model deployment."""
    return _model(args, None)


def build_router_app(args: dict[str, Any]) -> Any:
    """A family's router application (``import_path`` target)."""
    return _router(args, None)


def build_from_config(app_config: Mapping[str, Any]) -> Any:
    """The application of one rendered app config, with its ``deployments`` overrides applied."""
    deployments = list(app_config.get("deployments", ()))
    override = deployments[0] if deployments else None
    if app_config["import_path"].endswith(":build_router_app"):
        return _router(app_config["args"], override)
    return _model(app_config["args"], override)


def _options(override: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: override[k] for k in _OPTION_KEYS if override is not None and k in override}


def _model(args: Mapping[str, Any], override: Mapping[str, Any] | None) -> Any:
    spec = parse_model_args(args)
    name = model_deployment_name(spec.version)
    return ModelDeployment.options(name=name, **_options(override)).bind(spec.model_dump())


def _router(args: Mapping[str, Any], override: Mapping[str, Any] | None) -> Any:
    spec = parse_router_args(args)
    return RouterDeployment.options(name=ROUTER_DEPLOYMENT, **_options(override)).bind(spec.model_dump())


def run(serve_config: Mapping[str, Any]) -> None:
    """``serve.run`` of every application of a rendered config (imperative), version applications first so
    the router finds them; Serve must be started already if the config's HTTP options matter."""
    apps = sorted(serve_config["applications"], key=lambda a: a["import_path"].endswith(":build_router_app"))
    for app in apps:
        serve.run(build_from_config(app), name=app["name"], route_prefix=app.get("route_prefix"))


def deploy(serve_config: Mapping[str, Any], *, timeout_s: float = 120.0, wait: bool = True) -> None:
    """Apply a multi-application config (``ServeDeploySchema``) as a RayService would; with ``wait``, return
    when every application in it is RUNNING on this config, raise :class:`ServeDeployError` if one fails.

    Starts Serve (controller, proxies with the config's ``http_options``) if it is not running. Applications
    absent from the config are deleted, as with ``serveConfigV2``.
    """
    from ray.serve._private.api import serve_start
    from ray.serve.schema import ServeDeploySchema

    schema = ServeDeploySchema.model_validate(dict(serve_config))
    client = serve_start(
        http_options=schema.http_options.model_dump(),
        grpc_options=schema.grpc_options.model_dump(),
        proxy_location=schema.proxy_location,
    )
    began = time.time()
    client.deploy_apps(schema)
    if wait:
        wait_running((a.name for a in schema.applications), since=began, timeout_s=timeout_s)


_EXCEPTION_LINE = re.compile(r"^(?:[\w.]+\.)?(\w+(?:Error|Exception)): (.*)$")


def _root_cause(message: str) -> str:
    """The last ``SomeError: text`` line of a Serve status message (a replica's traceback), module path
    dropped; the message's first line when it holds no exception."""
    for line in reversed(message.strip().splitlines()):
        m = _EXCEPTION_LINE.match(line.strip())
        if m:
            return f"{m.group(1)}: {m.group(2)}"
    return message.strip().splitlines()[0] if message.strip() else ""


def wait_running(names: Iterable[str], *, since: float = 0.0, timeout_s: float = 120.0) -> None:
    """Wait until each named application is RUNNING with a deployment no older than ``since`` (a Unix time);
    raise :class:`ServeDeployError` with Serve's messages on DEPLOY_FAILED/UNHEALTHY or at the timeout."""
    pending = set(names)
    deadline = time.monotonic() + timeout_s
    last: dict[str, str] = {}
    while pending:
        apps = serve.status().applications
        for name in sorted(pending):
            app = apps.get(name)
            if app is None:
                last[name] = "not deployed yet"
                continue
            status = str(app.status.value if hasattr(app.status, "value") else app.status)
            last[name] = f"{status}: {app.message}".rstrip(": ")
            fresh = app.last_deployed_time_s >= since - 1.0
            if status == "RUNNING" and fresh:
                pending.discard(name)
            elif status in ("DEPLOY_FAILED", "UNHEALTHY") and fresh:
                causes = "; ".join(
                    f"{d}: {_root_cause(s.message)}" for d, s in sorted(app.deployments.items()) if s.message
                )
                raise ServeDeployError(f"Serve application {name!r} is {status}: {causes or app.message}")
        if not pending:
            return
        if time.monotonic() > deadline:
            raise ServeDeployError(f"Serve applications not RUNNING after {timeout_s:.0f}s: {last}")
        time.sleep(0.2)
