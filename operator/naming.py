"""Every name, label and selector of the objects the operator creates, in one place.

Renderers, reconcilers, cleanup and tests all find children through these functions, so they agree by
construction (KubeRay keeps the same kind of module, ``common/association.go``). Names are built from parent
names that the CRD limits to 40 characters, so every child name stays a valid 63-character DNS label.
"""

from __future__ import annotations

from typing import Final

from ..api.v1alpha1 import GROUP

MANAGED_BY: Final = "tradeplane-operator"
FINALIZER: Final = f"{GROUP}/finalizer"
#: Canonical hash of what was rendered; on every child and on the Deployments' pod templates.
CONFIG_REV: Final = f"{GROUP}/config-rev"
STRATEGY_LABEL: Final = f"{GROUP}/strategy"
MODEL_LABEL: Final = f"{GROUP}/model"
MODEL_VERSION_LABEL: Final = f"{GROUP}/model-version"
COMPONENT_LABEL: Final = "app.kubernetes.io/component"
MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"

#: The workloads of a Strategy, in the order they are created (ingest first: decide waits for md topics).
WORKLOADS: Final = ("ingest", "decide", "execute", "sink")
#: Port of every workload's /healthz, /readyz and /metrics.
HTTP_PORT: Final = 8080
#: Where the rendered desk manifests are mounted in workload pods (the decide/execute ``manifests`` option).
DESK_DIR: Final = "/etc/tradeplane/desk"
#: The tradeplane home in pods: model artifacts (``local://`` URIs), spill segments.
HOME_DIR: Final = "/var/lib/tradeplane"
#: Where decide finds each family's routes: ``<ROUTES_DIR>/<family>/routes.json`` (the ``<family>-routes``
#: ConfigMap, an optional projected volume; workloads/decide/routes.py has the same default, a test keeps them equal).
ROUTES_DIR: Final = "/etc/tradeplane/routes"
#: The manual rollout command on a ModelVersion (promote | abort | retry) and who gave it; the operator
#: applies it once and removes both (``tradeplane rollout promote|abort|retry`` sets them).
ROLLOUT_COMMAND: Final = f"{GROUP}/rollout-command"
ROLLOUT_COMMAND_BY: Final = f"{GROUP}/rollout-command-by"


def common_labels() -> dict[str, str]:
    """Labels on every object the operator creates (the selector of ``kubectl get all -l``)."""
    return {MANAGED_BY_LABEL: MANAGED_BY, "app.kubernetes.io/part-of": "tradeplane"}


# --- Strategy children -----------------------------------------------------------------------------------------


def strategy_selector(strategy: str) -> dict[str, str]:
    """Labels that select every child of one Strategy."""
    return {MANAGED_BY_LABEL: MANAGED_BY, STRATEGY_LABEL: strategy}


def strategy_labels(strategy: str, component: str) -> dict[str, str]:
    return common_labels() | {
        STRATEGY_LABEL: strategy,
        "app.kubernetes.io/instance": strategy,
        "app.kubernetes.io/name": "tradeplane",
        COMPONENT_LABEL: component,
    }


def workload_selector(strategy: str, workload: str) -> dict[str, str]:
    """The pod selector of one workload Deployment (immutable once created: keep it minimal)."""
    return {STRATEGY_LABEL: strategy, COMPONENT_LABEL: workload}


def config_map_name(strategy: str) -> str:
    return f"{strategy}-config"


def deployment_name(strategy: str, workload: str) -> str:
    return f"{strategy}-{workload}"


def pdb_name(strategy: str, workload: str) -> str:
    return f"{strategy}-{workload}"


def metrics_service_name(strategy: str) -> str:
    return f"{strategy}-metrics"


def account_name(strategy: str) -> str:
    """The paper account of a Strategy: its topics ``venue.<account>``, ``orders.<account>``, ``fills.<account>``."""
    return strategy


# --- ModelVersion children -----------------------------------------------------------------------------------


def model_selector(family: str) -> dict[str, str]:
    return {MANAGED_BY_LABEL: MANAGED_BY, MODEL_LABEL: family}


def rayservice_name(family: str) -> str:
    """One RayService per model family; KubeRay names its head service ``<name>-head-svc``."""
    return f"{family}-serve"


def serve_url_template(ray_namespace: str) -> str:
    """decide's ``serve_url_template``: the HTTP proxy Service KubeRay creates for a family's RayService
    (``<rayservice>-serve-svc``, port 8000), ``{family}`` left for decide to fill per family."""
    return f"http://{rayservice_name('{family}')}-serve-svc.{ray_namespace}.svc:8000"


def routes_config_map_name(family: str) -> str:
    """The family's routes (weights and roles) for the in-process scorers: ``<family>-routes``."""
    return f"{family}-routes"


def rayjob_name(model_version: str) -> str:
    return f"{model_version}-train"


def strategy_topics(strategy: str, account: str) -> list[str]:
    """The stored topics a Strategy's desk writes (workloads/bus/topics.py builds the same names; a unit test
    keeps the two equal — the operator image does not carry the bus package)."""
    return [f"signals.{strategy}", f"intents.{strategy}", f"audit.{strategy}", f"audit.ingest-{strategy}",
            f"fills.{account}", f"desk.{account}"]  # fmt: skip
