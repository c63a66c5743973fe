"""Converge a parent's children to the rendered set: create what is missing, re-apply what drifted, delete
what is no longer rendered. A second pass over an unchanged cluster makes no write at all."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import reasons
from ..kube import KubeClient


@dataclass
class Changes:
    """What a pass did: the live children after it, and one Event per write (type, reason, message)."""

    live: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    writes: int = 0


def contains(live: object, desired: object) -> bool:
    """Whether every field of ``desired`` has the same value in ``live``. Fields the server adds (defaults,
    status, managedFields) are ignored; a field someone changed by hand, or removed, is a difference.
    Lists compare element-wise and must be equally long (an extra container or env var is drift too)."""
    if isinstance(desired, Mapping):
        return isinstance(live, Mapping) and all(k in live and contains(live[k], v) for k, v in desired.items())
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(live) == len(desired)
            and all(contains(a, b) for a, b in zip(live, desired, strict=True))
        )
    return live == desired


def converge(
    kube: KubeClient,
    desired: Sequence[Mapping[str, Any]],
    existing: Iterable[Mapping[str, Any]],
) -> Changes:
    """Create / apply / delete so the children equal ``desired`` (in order: the ConfigMap before the pods
    that mount it). ``existing``: the parent's children found by label."""
    changes = Changes()
    have = {(str(o["kind"]), str(o["metadata"]["name"])): o for o in existing}
    for obj in desired:
        key = (str(obj["kind"]), str(obj["metadata"]["name"]))
        live = have.pop(key, None)
        if live is None:
            # created by server-side apply too: one field manager owns every rendered field from the start, so a
            # field (a ConfigMap key) that stops being rendered is removed by the next apply
            changes.live[key] = kube.apply(obj)
            changes.events.append(("Normal", reasons.CREATED, f"created {key[0]} {key[1]}"))
            changes.writes += 1
        elif contains(live, obj):
            changes.live[key] = dict(live)
        else:
            changes.live[key] = kube.apply(obj)
            changes.writes += 1
            changes.events.append(("Normal", reasons.UPDATED, f"updated {key[0]} {key[1]} to the rendered spec"))
    for (kind, name), obj in have.items():  # rendered no more (budget missing, workload removed)
        if kube.delete(str(obj["apiVersion"]), kind, str(obj["metadata"]["namespace"]), name):
            changes.writes += 1
            changes.events.append(("Normal", reasons.DELETED, f"deleted {kind} {name}"))
    return changes
