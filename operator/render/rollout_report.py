"""The ``<modelversion>-rollout-report`` ConfigMap: a rollout's comparison report (every analysis, bounded),
as ``report.json`` (engine/rollout/report's document) and ``report.md`` (its Markdown).

Why a ConfigMap of its own, owned by the ModelVersion: the status holds only the latest analysis, and a
report of 100 analyses does not belong in an object every reconcile reads and patches; owned, it goes with
the version. The renderer takes the two texts already rendered, so the operator's import stays numpy-free
(the engine's report module is imported lazily by the reconciler).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from ..naming import COMPONENT_LABEL, MODEL_LABEL, MODEL_VERSION_LABEL, common_labels
from .common import Manifest, metadata, owner_reference

REPORT_JSON_KEY: Final = "report.json"
REPORT_MD_KEY: Final = "report.md"
COMPONENT: Final = "rollout-report"


def report_config_map_name(model_version: str) -> str:
    """``<modelversion>-rollout-report`` (the CLI's ``tradeplane rollout report`` reads it by this name)."""
    return f"{model_version}-rollout-report"


def stored_report(configmap: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The ``report.json`` document of a live report ConfigMap; None when absent or unreadable (a report
    that cannot be read starts over rather than blocking the rollout)."""
    if configmap is None:
        return None
    try:
        doc = json.loads((configmap.get("data") or {}).get(REPORT_JSON_KEY, ""))
    except (ValueError, TypeError, AttributeError):
        return None
    return doc if isinstance(doc, dict) else None


def render_report_configmap(mv: Mapping[str, Any], report_json: Mapping[str, Any], report_md: str) -> Manifest:
    """The report ConfigMap of ``mv`` (a ModelVersion as read from the API server, owner of the map)."""
    md = mv["metadata"]
    name, namespace = str(md["name"]), str(md["namespace"])
    labels = common_labels() | {
        MODEL_LABEL: str(mv["spec"]["model"]),
        MODEL_VERSION_LABEL: name,
        COMPONENT_LABEL: COMPONENT,
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(report_config_map_name(name), namespace, labels, [owner_reference(mv)]),
        "data": {
            REPORT_JSON_KEY: json.dumps(report_json, sort_keys=True, separators=(",", ":"), ensure_ascii=False),
            REPORT_MD_KEY: report_md,
        },
    }
