"""Pydantic JSON Schema → Kubernetes *structural* OpenAPI v3 schema.

Kubernetes accepts only a subset of JSON Schema in a CRD (no ``$ref``, no free ``anyOf``, a ``type`` on every
node, OpenAPI 3.0's boolean ``exclusiveMinimum``, ``nullable`` instead of a null type). Converting here,
once, lets the pydantic models stay the single source of truth while the API server enforces the same
ranges, enums, patterns and required fields as ``tradeplane validate``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema, to_jsonable_python

_DROP_KEYS = {"title", "additionalProperties", "discriminator", "examples"}
_ALLOWED_KEYS = {
    "type", "description", "properties", "required", "items", "enum", "default", "nullable", "format",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "pattern",
    "minItems", "maxItems", "additionalProperties", "x-kubernetes-preserve-unknown-fields",
}  # fmt: skip


class UnsupportedSchemaError(ValueError):
    """A model uses a construct that has no structural-schema equivalent (e.g. a free union)."""


class _DefaultsFromFactories(GenerateJsonSchema):
    """Emit defaults for ``default_factory`` fields, so the API server applies the same defaults as pydantic.

    A nested model factory becomes ``{}``: the server then fills that object's own field defaults, which is
    exactly what constructing the model does.
    """

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        factory = schema.get("default_factory")
        if factory is None or schema.get("default_factory_takes_data"):
            return super().default_schema(schema)
        inner = self.generate_inner(schema["schema"])
        value = factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):
            default: Any = {}
        else:
            default = to_jsonable_python(value, by_alias=True, exclude_none=True)
        return {**inner, "default": default}


def structural_schema(model: type[BaseModel]) -> dict[str, Any]:
    """Return the structural OpenAPI v3 schema of ``model`` (camelCase field names)."""
    raw = model.model_json_schema(by_alias=True, mode="validation", schema_generator=_DefaultsFromFactories)
    defs = raw.pop("$defs", {})
    out = _convert(raw, defs, path=model.__name__)
    assert_structural(out)
    return out


def _convert(node: dict[str, Any], defs: dict[str, Any], path: str) -> dict[str, Any]:
    node = dict(node)
    ref = node.pop("$ref", None)
    if ref is None and len(node.get("allOf", [])) == 1:
        ref = node.pop("allOf")[0]["$ref"]
    if ref is not None:
        # Siblings of a $ref (description, default) describe the field and win over the referenced type's.
        target = defs[ref.rsplit("/", 1)[-1]]
        node = {**target, **node}
    nullable = False
    if "anyOf" in node:
        options = node.pop("anyOf")
        non_null = [o for o in options if o.get("type") != "null"]
        if len(non_null) != 1 or len(options) != 2:
            raise UnsupportedSchemaError(f"{path}: unions other than `X | None` cannot be expressed in a CRD")
        nullable = True
        inner = _convert(non_null[0], defs, path)
        node = {**inner, **{k: v for k, v in node.items() if k in ("description", "default")}}
    if "const" in node:
        node["enum"] = [node.pop("const")]
    for bound in ("Minimum", "Maximum"):
        excl = node.get(f"exclusive{bound}")
        if isinstance(excl, (int, float)) and not isinstance(excl, bool):
            node[bound.lower()] = excl
            node[f"exclusive{bound}"] = True
    if node.get("default", 0) is None or node.get("default", 0) == "":
        # No null defaults in a structural schema; and Kubernetes 1.20 rejects an empty-string default as
        # "null" (a round trip through omitempty), so "" is left to the reader, where it means the same.
        del node["default"]
    if "properties" in node:
        node["properties"] = {name: _convert(sub, defs, f"{path}.{name}") for name, sub in node["properties"].items()}
        node["type"] = "object"
    elif isinstance(node.get("additionalProperties"), dict):
        node["additionalProperties"] = _convert(node["additionalProperties"], defs, f"{path}.*")
        node = {k: v for k, v in node.items() if k not in _DROP_KEYS - {"additionalProperties"}}
        return _finish(node, nullable)
    if "items" in node:
        node["items"] = _convert(node["items"], defs, f"{path}[]")
    node = {k: v for k, v in node.items() if k not in _DROP_KEYS}
    return _finish(node, nullable)


_KEY_ORDER = (
    "type", "nullable", "description", "default", "enum", "format", "pattern", "minLength", "maxLength",
    "minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum", "minItems", "maxItems", "required",
)  # fmt: skip


def _finish(node: dict[str, Any], nullable: bool) -> dict[str, Any]:
    """Add ``nullable`` and put keys in a fixed, readable order (type and description first, children last)."""
    if nullable:
        node["nullable"] = True
    if "required" in node:
        node["required"] = sorted(node["required"])
    rank = {k: i for i, k in enumerate(_KEY_ORDER)}
    return dict(sorted(node.items(), key=lambda kv: rank.get(kv[0], len(rank))))


def assert_structural(node: dict[str, Any], path: str = "") -> None:
    """Raise if ``node`` breaks the structural-schema rules the API server enforces."""
    unknown = set(node) - _ALLOWED_KEYS
    if unknown:
        raise UnsupportedSchemaError(f"{path or '<root>'}: keys not allowed in a CRD schema: {sorted(unknown)}")
    if "type" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        raise UnsupportedSchemaError(f"{path or '<root>'}: every node needs a type")
    if "properties" in node and "additionalProperties" in node:
        raise UnsupportedSchemaError(f"{path}: properties and additionalProperties are mutually exclusive")
    for name, sub in node.get("properties", {}).items():
        assert_structural(sub, f"{path}.{name}" if path else name)
    if isinstance(node.get("additionalProperties"), dict):
        assert_structural(node["additionalProperties"], f"{path}.*")
    if "items" in node:
        assert_structural(node["items"], f"{path}[]")
