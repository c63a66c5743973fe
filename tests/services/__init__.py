"""Real services for integration and end-to-end tests: Kafka (Tansu), ClickHouse, Kubernetes, Ray.

Importing this package is cheap (stdlib only); client libraries are imported when a service is used.
Run one outside pytest with ``python -m tests.services start|stop|status kafka|clickhouse|kubernetes``.
"""

from tests.services._process import ServiceError, free_port, free_ports
from tests.services.clickhouse import ClickHouseServer
from tests.services.kafka import KafkaBroker
from tests.services.kubernetes import KubectlError, KubernetesCluster
from tests.services.ray_cluster import RayRuntime

__all__ = [
    "ClickHouseServer",
    "KafkaBroker",
    "KubectlError",
    "KubernetesCluster",
    "RayRuntime",
    "ServiceError",
    "free_port",
    "free_ports",
]
