"""Shared building blocks of the v1alpha1 types.

Every spec model derives from :class:`ApiModel`: camelCase on the wire (Kubernetes convention), snake_case
in Python, unknown fields rejected (a typo in a manifest is an error, not a silently ignored field), and
every field documented, because the documentation is generated into the CRD and into docs/crds.md.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "tradeplane.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

#: A Binance-style symbol: upper-case letters and digits, e.g. ``BTCUSDT``.
SYMBOL_PATTERN = r"^[A-Z0-9]{2,20}$"
#: A Kubernetes object name usable as a prefix of child names (DNS-1123 label, short enough for suffixes).
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
#: A Kubernetes resource quantity such as ``500m``, ``2``, ``512Mi``.
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$"

Symbol = Annotated[str, Field(pattern=SYMBOL_PATTERN)]
Quantity = Annotated[str, Field(pattern=QUANTITY_PATTERN)]


class ApiModel(BaseModel):
    """Base of every spec/status model: camelCase aliases, no unknown fields, documented fields."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=False,
        validate_default=True,
        use_attribute_docstrings=False,
    )


class ConditionType(StrEnum):
    """The three standard conditions every tradeplane resource reports."""

    READY = "Ready"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(ApiModel):
    """A standard Kubernetes condition (the shape `kubectl describe` and `kubectl wait` understand)."""

    type: ConditionType = Field(description="Which aspect of the resource this condition reports.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(
        default="",
        max_length=128,
        description="A CamelCase machine-readable reason, e.g. `RiskBudgetHalted`; tests and alerts match on it.",
    )
    message: str = Field(default="", max_length=4096, description="Human-readable detail of the reason.")
    last_transition_time: str | None = Field(
        default=None, description="RFC 3339 time the status last changed (not when it was last checked)."
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="`metadata.generation` of the spec this condition was computed from."
    )


class ResourceStatusBase(ApiModel):
    """Fields shared by all three statuses, written only by the operator."""

    observed_generation: int | None = Field(
        default=None, ge=0, description="The `metadata.generation` the operator last reconciled."
    )
    conditions: list[Condition] = Field(
        default_factory=list, description="Ready, Progressing and Degraded, each with a reason."
    )


class ObjectMeta(BaseModel):
    """The subset of Kubernetes ObjectMeta the CLI checks; the API server owns the rest."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str = Field(
        pattern=NAME_PATTERN,
        max_length=40,
        description="Object name; at most 40 characters so that child object names stay within 63.",
    )
    namespace: str | None = Field(default=None, description="Namespace; the current one when omitted.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Annotations.")
