"""Fixtures shared by the integration tests that run a desk: trained models and the demo's manifests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.services import KubernetesCluster
from tradeplane.workloads.local.demo import DemoConfig, demo_manifests, train_models

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A home with a baseline and a candidate trained on a synthetic hour; the demo desk's manifests."""
    home = tmp_path_factory.mktemp("home")
    cfg = DemoConfig(examples=REPO / "examples", home=home, train_hours=1.0, trials=2, seed=3)
    manifests = demo_manifests(cfg, train_models(cfg, lambda _: None))
    return home, manifests


def usdm_only(manifests: Path) -> Path:
    """A copy of the manifests without the strategies of other venues (for the USD-M capture)."""
    out = manifests.parent / "usdm-only"
    out.mkdir(exist_ok=True)
    for f in manifests.glob("*.yaml"):
        docs = list(yaml.safe_load_all(f.read_text()))
        if not any(d.get("kind") == "Strategy" and d["spec"]["venue"] != "binance-usdm" for d in docs):
            (out / f.name).write_text(f.read_text())
    return out


@pytest.fixture
def namespace(k8s_cluster: KubernetesCluster) -> Iterator[str]:
    """A namespace of the test's own on the session's API server (tests share it), deleted in the background."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    k8s_cluster.kubectl("create", "namespace", name)
    yield name
    k8s_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
