"""A model family's traffic routes, derived from its ModelVersions' rollout status, and the ``<family>-routes``
ConfigMap that carries them to the in-process scorers (decide).

Why derived from the statuses and not pushed by the rollout step: the status is the rollout's storage (it
survives operator restarts), and every writer of the family's routed objects — the rollout pass, a version's
own reconcile, a deletion — renders the same routes from the same stored phases. Nothing can leave the
RayService's ``user_config`` and the ConfigMap disagreeing with the statuses for longer than one pass.

Rules (docs/rollouts.md, "Traffic"):
- stable: the version most recently promoted (the last ``Promoted`` history record) that is still Promoted;
  without one, the version whose rollout strategy is ``immediate`` (the family's first version);
- Canary: role canary at its ``status.weightPct``, of the unit of its current step
  (``spec.rollout.steps[status.currentStep]``: ``weightPct`` → kind ``weight``, a share of decisions;
  ``cohortPct`` → kind ``cohort``, a share of symbols); Shadow: role shadow (scored, never acted on);
- every other version (rolled back, a previous stable kept for rollback, a canary not started yet): role
  canary at weight 0 (kind ``cohort``) — loaded, never routed, so a rollback or a promotion needs no restart.

Pure: objects in, values out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from ...api.v1alpha1 import ModelVersionPhase
from .. import naming
from .common import Manifest, metadata, owner_reference, stamp_rev

#: The ConfigMap key decide reads (mounted at naming.ROUTES_DIR/<family>/routes.json).
ROUTES_KEY: Final = "routes.json"
STABLE: Final = "stable"
CANARY: Final = "canary"
SHADOW: Final = "shadow"
#: A canary's unit (engine/decision/router.py KINDS; not imported: no numpy in the operator image).
COHORT: Final = "cohort"
WEIGHT: Final = "weight"
_IMMEDIATE: Final = "immediate"


@dataclass(frozen=True)
class FamilyRoutes:
    """Who the family serves: its stable version, every version's role, and the canaries' shares in [0, 1]
    with their units (``kinds``: ``weight`` = share of decisions, ``cohort`` = share of symbols)."""

    family: str
    stable: str | None
    roles: dict[str, str]
    weights: dict[str, float]  #: canary-role versions only (0 for those that must not get traffic)
    kinds: dict[str, str] = field(default_factory=dict)  #: canary-role versions; a missing one means cohort

    def document(self, revision: int) -> dict[str, Any]:
        """The ``routes.json`` content (the contract decide's RoutesWatcher reads). ``kinds`` names only the
        canaries that are not ``cohort`` (absent = cohort), and is left out when none is: a family that never
        uses weight steps renders exactly as before kinds existed (no revision bump on an operator upgrade)."""
        doc: dict[str, Any] = {"family": self.family, "weights": dict(sorted(self.weights.items())),
                               "roles": dict(sorted(self.roles.items())), "revision": revision}  # fmt: skip
        kinds = {v: k for v, k in sorted(self.kinds.items()) if v in self.weights and k != COHORT}
        if kinds:
            doc["kinds"] = kinds
        return doc

    def only(self, names: Sequence[str]) -> tuple[dict[str, float], dict[str, str]]:
        """(weights, roles) restricted to ``names`` (the versions Ray Serve serves): build_family_apps' overrides."""
        keep = set(names)
        weights = {n: w for n, w in self.weights.items() if n in keep}
        return weights, {n: r for n, r in self.roles.items() if n in keep}

    def kinds_of(self, names: Sequence[str]) -> dict[str, str]:
        """The canaries' units restricted to ``names`` (build_family_apps' ``kinds``)."""
        keep = set(names)
        return {n: self.kinds.get(n, COHORT) for n in self.weights if n in keep}


def _name(mv: Mapping[str, Any]) -> str:
    return str(mv["metadata"]["name"])


def _status(mv: Mapping[str, Any]) -> Mapping[str, Any]:
    return mv.get("status") or {}


def _promoted_at(mv: Mapping[str, Any]) -> str:
    """RFC 3339 time of the version's last Promoted history record ('' if none); RFC 3339 UTC sorts as text."""
    times = [str(h.get("time", "")) for h in _status(mv).get("history") or [] if h.get("phase") == "Promoted"]
    return max(times, default="")


def step_kind(mv: Mapping[str, Any]) -> str:
    """The unit of the version's current canary step (``status.currentStep``, clamped to the last step as
    the controller does): ``cohort`` for a ``cohortPct`` step, ``weight`` for a ``weightPct`` step; cohort
    when the spec has no steps."""
    steps = ((mv.get("spec") or {}).get("rollout") or {}).get("steps") or []
    if not steps:
        return COHORT
    i = min(max(int(_status(mv).get("currentStep") or 0), 0), len(steps) - 1)
    return COHORT if steps[i].get("cohortPct") is not None else WEIGHT


def routable(versions: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Versions that can be scored: an artifact exists and the object is not being deleted."""
    return sorted((m for m in versions if (m.get("spec") or {}).get("artifact")
                   and not m["metadata"].get("deletionTimestamp")), key=_name)  # fmt: skip


def stable_version(versions: Sequence[Mapping[str, Any]], *, exclude: str | None = None) -> str | None:
    """The family's stable version (see the module docstring); ``exclude``: a candidate asking who it is
    judged against (it is never its own stable before promotion)."""
    live = [m for m in routable(versions) if _name(m) != exclude]
    promoted = [m for m in live if _status(m).get("phase") == ModelVersionPhase.PROMOTED.value]
    if promoted:
        return _name(max(promoted, key=lambda m: (_promoted_at(m), _name(m))))
    out = (ModelVersionPhase.ROLLED_BACK.value, ModelVersionPhase.FAILED.value)
    immediate = [m for m in live if (m["spec"].get("rollout") or {}).get("strategy") == _IMMEDIATE
                 and _status(m).get("phase") not in out]  # fmt: skip
    if immediate:
        return _name(max(immediate, key=lambda m: (str(m["metadata"].get("creationTimestamp", "")), _name(m))))
    return None


def family_routes(family: str, versions: Sequence[Mapping[str, Any]]) -> FamilyRoutes:
    """The routes of ``family`` from its ModelVersions as read from the API server (other families' ignored)."""
    mine = [m for m in routable(versions) if m["spec"].get("model") == family]
    stable = stable_version(mine)
    roles: dict[str, str] = {}
    weights: dict[str, float] = {}
    kinds: dict[str, str] = {}
    for mv in mine:
        name, st = _name(mv), _status(mv)
        phase = st.get("phase")
        if name == stable:
            roles[name] = STABLE
        elif phase == ModelVersionPhase.SHADOW.value:
            roles[name] = SHADOW
        elif phase == ModelVersionPhase.CANARY.value:
            roles[name], weights[name] = CANARY, round(float(st.get("weightPct") or 0.0) / 100.0, 9)
            kinds[name] = step_kind(mv)
        else:
            roles[name], weights[name], kinds[name] = CANARY, 0.0, COHORT
    return FamilyRoutes(family, stable, roles, weights, kinds)


def stored_revision(configmap: Mapping[str, Any] | None) -> tuple[int, dict[str, Any] | None]:
    """(revision, document) of a live routes ConfigMap; (0, None) when absent or unreadable."""
    if configmap is None:
        return 0, None
    try:
        doc = json.loads((configmap.get("data") or {}).get(ROUTES_KEY, ""))
        return int(doc.get("revision", 0)), doc
    except (ValueError, TypeError, AttributeError):
        return 0, None


def render_routes_configmap(
    routes: FamilyRoutes, namespace: str, *, owners: Sequence[Mapping[str, Any]], live: Mapping[str, Any] | None
) -> Manifest:
    """The ``<family>-routes`` ConfigMap. Its ``revision`` increments whenever the routes change (so decide can
    tell a new routing from a re-read), and stays as it is while they do not (no write on an idle pass)."""
    revision, doc = stored_revision(live)
    unchanged = doc is not None and {k: v for k, v in doc.items() if k != "revision"} == {
        k: v for k, v in routes.document(0).items() if k != "revision"
    }
    if not unchanged:
        revision += 1
    data = {ROUTES_KEY: json.dumps(routes.document(revision), sort_keys=True, separators=(",", ":"))}
    labels = naming.common_labels() | {naming.MODEL_LABEL: routes.family, naming.COMPONENT_LABEL: "routes"}
    refs = [owner_reference(o, controller=False) for o in sorted(owners, key=_name)
            if o["metadata"].get("namespace", namespace) == namespace]  # fmt: skip
    manifest = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(naming.routes_config_map_name(routes.family), namespace, labels, refs),
        "data": data,
    }
    return stamp_rev(manifest)
