"""What every rendered child shares: owner references, labels, the config-rev hash and pod hardening."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from ..naming import CONFIG_REV

Manifest = dict[str, Any]


def owner_reference(owner: Mapping[str, Any], *, controller: bool = True) -> dict[str, Any]:
    """The ownerReference to ``owner`` (an object as read from the API server): garbage collection deletes
    the child with its owner, and ``blockOwnerDeletion`` keeps a foreground delete waiting for it."""
    md = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": md["name"],
        "uid": md["uid"],
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def canonical_hash(value: object) -> str:
    """sha256 (first 16 hex digits) of canonical JSON — sorted keys, no spaces — so equal content gives
    an equal hash whatever the dict order (hashing ``str(spec)`` would not be stable)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def metadata(
    name: str, namespace: str, labels: Mapping[str, str], owners: list[dict[str, Any]], rev: str | None = None
) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name, "namespace": namespace, "labels": dict(labels), "ownerReferences": owners}
    if rev is not None:
        md["annotations"] = {CONFIG_REV: rev}
    return md


def stamp_rev(manifest: Manifest) -> Manifest:
    """Set ``tradeplane.io/config-rev`` to the hash of the manifest itself (without that annotation), so
    "does the live child still match what we render" is one string compare."""
    md = manifest["metadata"]
    annotations = {k: v for k, v in md.get("annotations", {}).items() if k != CONFIG_REV}
    md["annotations"] = annotations
    annotations[CONFIG_REV] = canonical_hash(manifest)
    return manifest


POD_SECURITY_CONTEXT: Mapping[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "fsGroup": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY_CONTEXT: Mapping[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


def pod_security_context() -> dict[str, Any]:
    """Non-root (the image's uid 10001), seccomp on: what the restricted Pod Security Standard requires."""
    return copy.deepcopy(dict(POD_SECURITY_CONTEXT))  # a fresh copy: callers may edit theirs


def container_security_context() -> dict[str, Any]:
    """No privilege escalation, no capabilities, read-only root filesystem (writes go to mounted volumes)."""
    return copy.deepcopy(dict(CONTAINER_SECURITY_CONTEXT))
