"""The only module of the operator that talks to the API server: a small typed client over the
``kubernetes`` package's transport (auth, TLS, kubeconfig or in-cluster config).

Why not the generated per-kind APIs: the operator handles its own CRs, KubeRay's CRs and four built-in
kinds the same way — get, list by label, create, server-side apply, delete, status merge patch — on plain
dicts, which is what the renderers produce and the tests compare. One generic path, one set of errors.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

from ..api.v1alpha1 import API_VERSION

#: The field manager of every server-side apply: ``kubectl get -o yaml --show-managed-fields`` names us.
FIELD_MANAGER: Final = "tradeplane-operator"


@dataclass(frozen=True)
class Kind:
    api_version: str
    kind: str
    plural: str
    namespaced: bool = True

    @property
    def base(self) -> str:
        return "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"


KINDS: Final[dict[tuple[str, str], Kind]] = {
    (k.api_version, k.kind): k
    for k in (
        Kind("v1", "ConfigMap", "configmaps"),
        Kind("v1", "Service", "services"),
        Kind("v1", "Event", "events"),
        Kind("apps/v1", "Deployment", "deployments"),
        Kind("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets"),
        Kind("policy/v1beta1", "PodDisruptionBudget", "poddisruptionbudgets"),
        Kind("ray.io/v1", "RayService", "rayservices"),
        Kind("ray.io/v1", "RayJob", "rayjobs"),
        Kind(API_VERSION, "Strategy", "strategies"),
        Kind(API_VERSION, "ModelVersion", "modelversions"),
        Kind(API_VERSION, "RiskBudget", "riskbudgets"),
    )
}


class KubeError(RuntimeError):
    """The API server refused a request; ``status`` is the HTTP status, ``reason`` its StatusReason."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status, self.reason, self.message = status, reason, message


def kind_of(api_version: str, kind: str) -> Kind:
    try:
        return KINDS[(api_version, kind)]
    except KeyError:
        raise ValueError(f"the operator does not manage {kind} ({api_version})") from None


class KubeClient:
    """Blocking client, safe to share between kopf's handler threads (urllib3's pool is thread-safe)."""

    def __init__(self, api_client: Any, *, timeout_s: float = 30.0) -> None:
        self._api = api_client
        self._timeout = timeout_s
        self._lock = threading.Lock()
        self._versions: dict[str, list[str]] = {}

    @classmethod
    def from_config(cls, kubeconfig: str | None = None) -> KubeClient:
        """In-cluster config when running in a pod, else the kubeconfig (``KUBECONFIG`` or the given file)."""
        from kubernetes import client, config

        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
            return cls(client.ApiClient())
        except config.ConfigException:
            return cls(config.new_client_from_config(config_file=kubeconfig))  # type: ignore[no-untyped-call]

    def close(self) -> None:
        self._api.close()

    # --- transport ----------------------------------------------------------------------------------------------

    def _request(
        self, method: str, path: str, *, body: object = None, content_type: str = "application/json",
        query: Mapping[str, str] | None = None,
    ) -> Any:  # fmt: skip
        headers = {"Accept": "application/json", "Content-Type": content_type}
        params = list((query or {}).items())
        m, url, hdrs, _, _ = self._api.param_serialize(method, path, query_params=params, header_params=headers,
                                                       auth_settings=["BearerToken"])  # fmt: skip
        # the transport serializes JSON (and apply-patch YAML, which JSON is) bodies itself
        resp = self._api.call_api(m, url, header_params=hdrs, body=body, _request_timeout=self._timeout)
        resp.read()
        data = resp.data
        payload = json.loads(data) if data else {}
        if resp.status >= 400:
            reason = payload.get("reason", "") if isinstance(payload, dict) else ""
            message = payload.get("message", data.decode(errors="replace")) if isinstance(payload, dict) else ""
            raise KubeError(resp.status, reason, message)
        return payload

    @staticmethod
    def _path(kind: Kind, namespace: str | None, name: str | None = None, sub: str | None = None) -> str:
        path = kind.base
        if kind.namespaced and namespace:
            path += f"/namespaces/{quote(namespace)}"
        path += f"/{kind.plural}"
        if name:
            path += f"/{quote(name)}"
        if sub:
            path += f"/{sub}"
        return path

    # --- verbs --------------------------------------------------------------------------------------------------

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            obj: dict[str, Any] = self._request("GET", self._path(kind_of(api_version, kind), namespace, name))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        return obj

    def list_objects(
        self, api_version: str, kind: str, namespace: str | None, labels: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """Objects of a kind in a namespace (every namespace for None), filtered by labels; each item gets
        its apiVersion and kind back (list items come without them)."""
        query = {"labelSelector": ",".join(f"{k}={v}" for k, v in labels.items())} if labels else None
        out = self._request("GET", self._path(kind_of(api_version, kind), namespace), query=query)
        items: list[dict[str, Any]] = out.get("items", [])
        for item in items:
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        return items

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        md = obj["metadata"]
        created: dict[str, Any] = self._request(
            "POST", self._path(kind_of(obj["apiVersion"], obj["kind"]), md.get("namespace")), body=obj
        )
        return created

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply as the operator's field manager, forcing conflicts: the operator owns every field
        it renders, so a hand edit of one of those fields is reverted (drift repair); fields it does not render
        (another controller's, kubectl annotations) are left alone."""
        md = obj["metadata"]
        kind = kind_of(obj["apiVersion"], obj["kind"])
        applied: dict[str, Any] = self._request(
            "PATCH", self._path(kind, md.get("namespace"), md["name"]), body=obj,
            content_type="application/apply-patch+yaml", query={"fieldManager": FIELD_MANAGER, "force": "true"},
        )  # fmt: skip
        return applied

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        """Delete in the background (owned children follow); False when it was already gone."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        try:
            self._request("DELETE", self._path(kind_of(api_version, kind), namespace, name), body=body)
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def patch_status(
        self, api_version: str, kind: str, namespace: str, name: str, status: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Merge-patch ``.status`` through the status subresource (never bumps ``metadata.generation``)."""
        patched: dict[str, Any] = self._request(
            "PATCH", self._path(kind_of(api_version, kind), namespace, name, "status"), body={"status": status},
            content_type="application/merge-patch+json",
        )  # fmt: skip
        return patched

    def patch(self, api_version: str, kind: str, namespace: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Merge-patch the object itself (e.g. remove an annotation with ``None``); never used for fields the
        operator owns by server-side apply."""
        patched: dict[str, Any] = self._request(
            "PATCH", self._path(kind_of(api_version, kind), namespace, name), body=dict(body),
            content_type="application/merge-patch+json",
        )  # fmt: skip
        return patched

    def served_versions(self, group: str) -> list[str]:
        """API versions the server serves for ``group`` (cached): e.g. whether ``policy/v1`` exists yet."""
        with self._lock:
            if group not in self._versions:
                try:
                    out = self._request("GET", f"/apis/{group}")
                    self._versions[group] = [v["version"] for v in out.get("versions", [])]
                except KubeError as exc:
                    if exc.status != 404:
                        raise
                    self._versions[group] = []
            return self._versions[group]

    def pdb_api_version(self) -> str:
        """``policy/v1`` where served (Kubernetes ≥ 1.21; v1beta1 is gone from 1.25), else ``policy/v1beta1``."""
        return "policy/v1" if "v1" in self.served_versions("policy") else "policy/v1beta1"
