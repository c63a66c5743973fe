"""Suite-wide fixtures: real services started once per session, only when a test asks for one.

A service that cannot start fails the tests that need it (a fixture error), never skips them: a silently
skipped Kafka test is a test that never ran. Each ``TRADEPLANE_TEST_*`` variable points a fixture at an
already running service instead (CI sidecars, or ``python -m tests.services start ...``).
Tests that use a service fixture get its marker automatically, so ``-m "not k8s"`` deselects them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.services import ClickHouseServer, KafkaBroker, KubernetesCluster, RayRuntime
from tests.services._process import REPO_ROOT
from tests.services._process import shared_dir as _shared_dir

if TYPE_CHECKING:
    from tests.services._process import Service

#: marker -> what it means; registered here so ``--strict-markers`` passes whatever pyproject declares.
MARKERS = {
    "kafka": "needs a Kafka-protocol broker (Tansu, or TRADEPLANE_TEST_KAFKA_BOOTSTRAP)",
    "clickhouse": "needs a ClickHouse server (18.16 local, or TRADEPLANE_TEST_CLICKHOUSE_HOST/_PORT)",
    "k8s": "needs a Kubernetes API server (etcd+apiserver+controller-manager, or TRADEPLANE_TEST_KUBECONFIG)",
    "ray": "needs a local Ray runtime (ray.init in the test process)",
}
#: service fixture -> marker added to every test that uses it (directly or through another fixture).
FIXTURE_MARKERS = {
    "kafka_broker": "kafka",
    "clickhouse_server": "clickhouse",
    "k8s_cluster": "k8s",
    "ray_runtime": "ray",
}


def pytest_configure(config: pytest.Config) -> None:
    for name, doc in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {doc}")
    # The test API server's cert is self-signed by design (kubeconfig has insecure-skip-tls-verify).
    config.addinivalue_line("filterwarnings", "ignore::urllib3.exceptions.InsecureRequestWarning")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for fixture in getattr(item, "fixturenames", ()):
            marker = FIXTURE_MARKERS.get(fixture)
            if marker and item.get_closest_marker(marker) is None:
                item.add_marker(marker)


def _run(service: Service, timeout: float) -> Iterator[Any]:
    """Start, wait for readiness, yield, stop; a failed start stops whatever did start and re-raises."""
    try:
        service.start().wait_ready(timeout)
    except BaseException:
        service.stop()
        raise
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root, for tests that read committed files (crds/, examples/, charts)."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared (real market data, KubeRay CRDs); TRADEPLANE_SHARED_DIR overrides. Fails if missing."""
    path = _shared_dir()
    if not path.is_dir():
        pytest.fail(
            f"shared dir {path} not found: check out ../shared next to the repo or set TRADEPLANE_SHARED_DIR",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """A Kafka-protocol broker for the session; ``.bootstrap_servers``. Topics persist across tests, so
    each test should create uniquely named topics (e.g. with a uuid suffix)."""
    external = os.environ.get("TRADEPLANE_TEST_KAFKA_BOOTSTRAP")
    broker = KafkaBroker.attach(external) if external else KafkaBroker(tmp_path_factory.mktemp("kafka"))
    yield from _run(broker, timeout=30)


@pytest.fixture(scope="session")
def clickhouse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseServer]:
    """A ClickHouse server for the session; ``.host``, ``.port``, ``.client()``, ``.server_version``.
    Shared by all tests: create uniquely named databases or tables."""
    host = os.environ.get("TRADEPLANE_TEST_CLICKHOUSE_HOST")
    if host:
        server = ClickHouseServer.attach(host, int(os.environ.get("TRADEPLANE_TEST_CLICKHOUSE_PORT", "9000")))
    else:
        server = ClickHouseServer(tmp_path_factory.mktemp("clickhouse"))
    yield from _run(server, timeout=60)


@pytest.fixture
def chdb_session(tmp_path: Path) -> Iterator[Any]:
    """A fresh embedded chDB ``Session`` persisted under ``tmp_path/chdb`` (closed after the test).
    chDB runs in-process, so no server and no marker; the path is the test's own."""
    from chdb import session as chs

    sess = chs.Session(str(tmp_path / "chdb"))  # type: ignore[no-untyped-call]
    try:
        yield sess
    finally:
        sess.close()  # type: ignore[no-untyped-call]


@pytest.fixture(scope="session")
def k8s_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubernetesCluster]:
    """A real API server (+etcd, +controller-manager) for the session; ``.kubeconfig_path``, ``.kubectl()``,
    ``.api_client()``, ``.apply_crds()``, ``.install_kuberay_crds()``. Shared: use your own namespace."""
    external = os.environ.get("TRADEPLANE_TEST_KUBECONFIG")
    if external:
        cluster = KubernetesCluster.attach(Path(external))
    else:
        cluster = KubernetesCluster(tmp_path_factory.mktemp("k8s"))
    yield from _run(cluster, timeout=120)


@pytest.fixture(scope="session")
def ray_runtime() -> Iterator[RayRuntime]:
    """A local Ray runtime (``ray.init(num_cpus=2)``) in the test process for the session; ``ray.shutdown``
    at the end."""
    runtime = RayRuntime(num_cpus=2)
    try:
        runtime.start().wait_ready(120)
    except BaseException:
        runtime.stop()
        raise
    try:
        yield runtime
    finally:
        runtime.stop()
