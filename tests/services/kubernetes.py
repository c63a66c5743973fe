"""A real Kubernetes control plane for tests: etcd + kube-apiserver + kube-controller-manager, no kubelet.

The API server is the component the operator talks to, and it is the one that validates our CRDs, KubeRay's
CRDs and every object we render, so tests use the real one (built from Debian's 1.20.2 source by
scripts/build-k8s.sh). The controller-manager adds garbage collection of owned objects, namespace deletion
and default service accounts. With no scheduler or kubelet, pods stay Pending; data-plane tests run the
rendered workloads as local processes instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tests.services._process import (
    LOCALHOST,
    Service,
    ServiceError,
    free_ports,
    port_open,
    shared_dir,
    which,
)

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

#: Where scripts/build-k8s.sh installs the control-plane binaries.
K8S_BIN_DIR = Path(os.environ.get("TRADEPLANE_K8S_BIN_DIR", "/opt/k8sbin"))
#: Machine-wide tools cache (scripts/lib.sh TOOLS_DIR): kubectl and helm live here.
TOOLS_BIN_DIR = Path(os.environ.get("TRADEPLANE_TOOLS_DIR", "/opt/tradeplane-tools")) / "bin"
#: kubectl 1.20.2 matching the API server (not /usr/bin/kubectl, which may be another version).
KUBECTL = TOOLS_BIN_DIR / "kubectl"
#: libyaml's loader when available: KubeRay's CRDs are ~1 MB of YAML each (0.5 s instead of ~10 s).
_YamlLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
#: Bearer token of the test admin (group system:masters) in the API server's static token file.
TOKEN = "testtoken"

KUBECONFIG = """apiVersion: v1
kind: Config
clusters:
- name: tradeplane-test
  cluster:
    server: {server}
    insecure-skip-tls-verify: true
users:
- name: admin
  user:
    token: {token}
contexts:
- name: tradeplane-test
  context:
    cluster: tradeplane-test
    user: admin
    namespace: default
current-context: tradeplane-test
"""


class KubectlError(subprocess.CalledProcessError):
    """kubectl exited non-zero; unlike CalledProcessError, the message includes kubectl's stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstdout: {self.stdout}\nstderr: {self.stderr}"


class KubernetesCluster(Service):
    """etcd, kube-apiserver and kube-controller-manager on free 127.0.0.1 ports, state under the workdir."""

    name = "kubernetes"

    def __init__(self, workdir: Path | None = None) -> None:
        super().__init__(workdir)
        self.etcd_port, self.etcd_peer_port, self.apiserver_port, self.controller_manager_port = free_ports(4)
        self._kubeconfig: Path | None = None

    @property
    def kubeconfig_path(self) -> Path:
        """The kubeconfig (token auth, TLS verification off) that kubectl and the Python client use."""
        return self._kubeconfig or self.workdir / "kubeconfig"

    @classmethod
    def attach(cls, kubeconfig: Path) -> KubernetesCluster:
        """A cluster someone else runs (``TRADEPLANE_TEST_KUBECONFIG``); we only probe and use it."""
        cluster = cls()
        cluster.external = True
        cluster._kubeconfig = Path(kubeconfig)
        return cluster

    @property
    def server(self) -> str:
        """API server URL written into the kubeconfig."""
        return f"https://{LOCALHOST}:{self.apiserver_port}"

    # -- lifecycle ------------------------------------------------------------------------------------------
    def _start(self) -> None:
        """Start etcd, then the API server, then the controller-manager: each needs the previous one up."""
        kube_bin = [K8S_BIN_DIR / "kube-apiserver", K8S_BIN_DIR / "kube-controller-manager"]
        missing = [str(p) for p in kube_bin if not os.access(p, os.X_OK)]
        if missing:
            raise ServiceError(f"missing {missing}: run scripts/build-k8s.sh (~8 min, cached afterwards)")
        self._start_etcd()
        self.poll_until(lambda: port_open(self.etcd_port), 30, "etcd client port")
        self._write_credentials()
        self._start_apiserver(kube_bin[0])
        # The controller-manager's root CA is the API server's self-signed cert, written at API server start.
        self.poll_until(lambda: (self.workdir / "certs" / "apiserver.crt").exists(), 60, "apiserver cert")
        self._start_controller_manager(kube_bin[1])

    def _start_etcd(self) -> None:
        client, peer = f"http://{LOCALHOST}:{self.etcd_port}", f"http://{LOCALHOST}:{self.etcd_peer_port}"
        self.launch(
            "etcd",
            [
                which("etcd"),
                "--name",
                "default",
                "--data-dir",
                self.workdir / "etcd",
                "--listen-client-urls",
                client,
                "--advertise-client-urls",
                client,
                "--listen-peer-urls",
                peer,
                "--initial-advertise-peer-urls",
                peer,
                "--initial-cluster",
                f"default={peer}",
            ],
            env={k: None for k in os.environ if k.startswith("ETCD_")},
        )  # no inherited ETCD_* overrides

    def _write_credentials(self) -> None:
        key = self.workdir / "sa.key"
        subprocess.run([which("openssl"), "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
        (self.workdir / "tokens.csv").write_text(f"{TOKEN},admin,admin,system:masters\n")
        self.kubeconfig_path.write_text(KUBECONFIG.format(server=self.server, token=TOKEN))

    def _start_apiserver(self, binary: Path) -> None:
        key = self.workdir / "sa.key"
        self.launch(
            "kube-apiserver",
            [
                binary,
                f"--etcd-servers=http://{LOCALHOST}:{self.etcd_port}",
                f"--bind-address={LOCALHOST}",
                f"--secure-port={self.apiserver_port}",
                "--insecure-port=0",
                f"--cert-dir={self.workdir / 'certs'}",
                f"--token-auth-file={self.workdir / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={key}",
                f"--service-account-signing-key-file={key}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--disable-admission-plugins=ServiceAccount",
            ],
        )

    def _start_controller_manager(self, binary: Path) -> None:
        self.launch(
            "kube-controller-manager",
            [
                binary,
                f"--kubeconfig={self.kubeconfig_path}",
                "--leader-elect=false",
                f"--service-account-private-key-file={self.workdir / 'sa.key'}",
                f"--root-ca-file={self.workdir / 'certs' / 'apiserver.crt'}",
                f"--bind-address={LOCALHOST}",
                f"--secure-port={self.controller_manager_port}",
                "--port=0",
                f"--cert-dir={self.workdir / 'controller-manager-certs'}",
            ],
        )

    def wait_ready(self, timeout: float = 120.0) -> KubernetesCluster:
        """Ready when /readyz says ok, discovery works, and the controller-manager made the default SA.

        The default service account is created by the controller-manager, so seeing it proves all three
        processes work together (not just that the API server answers).
        """
        deadline = time.monotonic() + timeout

        def left() -> float:
            return max(1.0, deadline - time.monotonic())

        self.poll_until(
            lambda: self.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok",
            left(),
            "apiserver /readyz",
            interval=0.5,
        )
        # Each probe raises KubectlError on failure, so a timeout quotes kubectl's stderr.
        self.poll_until(lambda: bool(self.kubectl("get", "namespace", "default")), left(), "namespace default")
        self.poll_until(
            lambda: "configmaps" in self.kubectl("api-resources", "-o", "name").stdout, left(), "API discovery"
        )
        self.poll_until(
            lambda: bool(self.kubectl("get", "serviceaccount", "default", "-n", "default")),
            left(),
            "default service account (controller-manager)",
            interval=0.5,
        )
        return self

    def stop(self) -> None:
        """Stop our processes, then drop etcd's data (its WAL preallocates 64 MB); logs stay for debugging."""
        super().stop()
        if not self.external:
            shutil.rmtree(self.workdir / "etcd", ignore_errors=True)

    # -- using the cluster ----------------------------------------------------------------------------------
    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl 1.20.2 against this cluster; ``check`` raises :class:`KubectlError` with stderr."""
        if not os.access(KUBECTL, os.X_OK):  # never fall back to $PATH: /usr/bin/kubectl may be another version
            raise ServiceError(f"{KUBECTL} missing: run scripts/install-system.sh")
        argv = [str(KUBECTL), f"--kubeconfig={self.kubeconfig_path}", *args]
        result = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, argv, result.stdout, result.stderr)
        return result

    def api_client(self) -> ApiClient:
        """A ``kubernetes`` Python client built from this cluster's kubeconfig (caller closes it)."""
        from kubernetes import config

        api: ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(self.kubeconfig_path)
        )
        return api

    def apply_crds(
        self, paths: Iterable[Path], timeout: float = 60.0, transform: Callable[[dict[str, Any]], object] | None = None
    ) -> list[str]:
        """Create (or replace) the CRDs in ``paths`` and wait until each is Established; returns CRD names.

        Not ``kubectl apply``: KubeRay's CRDs exceed the 256 KiB last-applied annotation limit. Client-side
        validation is off because kubectl 1.20 does not know newer schema keys (x-kubernetes-validations),
        which the 1.20 API server accepts and ignores. ``transform`` edits each parsed document in place
        before it is sent (see :func:`compat_crd_for_1_20`).
        """
        names: list[str] = []
        for path in paths:
            if transform is None:
                source, stdin = str(path), None
            else:
                docs = [d for d in yaml.load_all(path.read_text(), Loader=_YamlLoader) if d]
                for doc in docs:
                    transform(doc)
                source, stdin = "-", "\n".join(json.dumps(d) for d in docs)
            created = self.kubectl("create", "--validate=false", "-o", "name", "-f", source, input=stdin, check=False)
            if created.returncode != 0:
                if "AlreadyExists" not in created.stderr:
                    raise KubectlError(created.returncode, created.args, created.stdout, created.stderr)
                created = self.kubectl("replace", "--validate=false", "-o", "name", "-f", source, input=stdin)
            names += [line.split("/", 1)[1] for line in created.stdout.split() if line]
        for name in names:
            self.kubectl(
                "wait",
                "--for",
                "condition=established",
                f"--timeout={timeout:.0f}s",
                f"crd/{name}",
                timeout=timeout + 30,
            )
        return names

    def install_kuberay_crds(self) -> list[str]:
        """Install KubeRay's real CRDs (../shared/k8s/kuberay-crds) so rendered RayService/RayJob validate.

        On the local 1.20 API server they need :func:`compat_crd_for_1_20`; an external (modern) cluster
        gets them unchanged.
        """
        crd_dir = shared_dir() / "k8s" / "kuberay-crds"
        paths = sorted(crd_dir.glob("*.yaml"))
        if not paths:
            raise ServiceError(f"no KubeRay CRDs in {crd_dir} (set TRADEPLANE_SHARED_DIR to the shared checkout)")
        return self.apply_crds(paths, transform=None if self.external else compat_crd_for_1_20)

    def connection_info(self) -> dict[str, Any]:
        return {"kubeconfig": str(self.kubeconfig_path), "server": self.server, "etcd_port": self.etcd_port}


def compat_crd_for_1_20(node: object) -> int:
    """Make a CRD generated for a modern Kubernetes acceptable to the local 1.20 API server; returns edits.

    That server rejects ``default: ""`` on string properties ("must be of type string: null"), which
    controller-gen emits for every core ``LocalObjectReference.name``. Those defaults are dropped; where the
    property is a key of an ``x-kubernetes-list-type: map`` list (``imagePullSecrets[].name``), which must
    have a default or be required, it becomes required. Validation is therefore never looser than in
    production; only an omitted reference name, which production would default to "", is rejected here.
    """
    edits = 0
    if isinstance(node, dict):
        items = node.get("items")
        if node.get("x-kubernetes-list-type") == "map" and isinstance(items, dict):
            props = items.get("properties", {})
            for key in node.get("x-kubernetes-list-map-keys", []):
                if props.get(key, {}).get("default") == "" and key not in items.setdefault("required", []):
                    items["required"].append(key)
                    edits += 1
        if node.get("type") == "string" and node.get("default") == "":
            del node["default"]
            edits += 1
        edits += sum(compat_crd_for_1_20(value) for value in node.values())
    elif isinstance(node, list):
        edits += sum(compat_crd_for_1_20(value) for value in node)
    return edits
