"""The pydantic → structural OpenAPI conversion: structural rules, bounds, nullability and defaults."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, Field

from tradeplane.api.openapi import UnsupportedSchemaError, assert_structural, structural_schema
from tradeplane.api.v1alpha1 import RESOURCES
from tradeplane.api.v1alpha1.strategy import StrategySpec


def _walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = [(path, node)]
    for name, sub in node.get("properties", {}).items():
        out += _walk(sub, f"{path}.{name}")
    if "items" in node:
        out += _walk(node["items"], f"{path}[]")
    return out


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.kind)
@pytest.mark.parametrize("part", ["spec_model", "status_model"])
def test_every_node_is_typed_and_ref_free(resource: Any, part: str) -> None:
    schema = structural_schema(getattr(resource, part))
    for path, node in _walk(schema):
        assert "type" in node, path
        assert not {"$ref", "anyOf", "allOf", "oneOf", "title", "const"} & set(node), path
        if node.get("type") == "object" and path and not path.endswith("[]"):
            assert "description" in node, f"{path} is undocumented"


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.kind)
def test_every_spec_field_is_documented(resource: Any) -> None:
    for path, node in _walk(structural_schema(resource.spec_model)):
        if path and not path.endswith("[]"):
            assert node.get("description"), f"{resource.kind} spec{path} has no description"


def test_exclusive_bounds_use_openapi_3_0_booleans() -> None:
    node = structural_schema(StrategySpec)["properties"]["sizing"]["properties"]["marginBaseUsdt"]
    assert node["minimum"] == 0 and node["exclusiveMinimum"] is True


def test_optional_fields_are_nullable_without_a_null_default() -> None:
    node = structural_schema(StrategySpec)["properties"]["execution"]["properties"]["policyModel"]
    assert node["type"] == "string" and node["nullable"] is True and "default" not in node


def test_list_factories_become_defaults_with_camel_case_keys() -> None:
    node = structural_schema(StrategySpec)["properties"]["execution"]["properties"]["routing"]
    assert node["default"][1] == {"minNotionalUsdt": 200.0, "waitMs": 2000, "slices": 2, "sliceIntervalMs": 600}


def test_free_unions_are_refused() -> None:
    class Bad(BaseModel):
        x: int | str = Field(description="a union the API server cannot check")

    with pytest.raises(UnsupportedSchemaError, match="unions"):
        structural_schema(Bad)


def test_assert_structural_rejects_untyped_nodes() -> None:
    with pytest.raises(UnsupportedSchemaError, match="needs a type"):
        assert_structural({"type": "object", "properties": {"a": {"description": "no type"}}})


def apply_defaults(schema: dict[str, Any], obj: Any) -> Any:
    """Kubernetes' structural defaulting, written independently: absent fields with a default get it, and
    objects (present or just defaulted) are descended into."""
    if schema.get("type") == "object" and isinstance(obj, dict):
        out = dict(obj)
        for name, sub in schema.get("properties", {}).items():
            if name not in out and "default" in sub:
                out[name] = sub["default"]
            if name in out:
                out[name] = apply_defaults(sub, out[name])
        return out
    if schema.get("type") == "array" and isinstance(obj, list):
        return [apply_defaults(schema.get("items", {}), x) for x in obj]
    return obj


MINIMAL_SPECS = {
    "RiskBudget": {},
    "ModelVersion": {"model": "fam", "training": {"data": ["file:///d"]}},
    "Strategy": {"riskBudgetRef": {"name": "b"}, "venue": "paper", "symbols": ["BTCUSDT"], "model": {"family": "f"}},
}


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.kind)
def test_schema_defaulting_equals_pydantic_defaulting(resource: Any) -> None:
    minimal = MINIMAL_SPECS[resource.kind]
    by_schema = apply_defaults(structural_schema(resource.spec_model), minimal)
    by_pydantic = resource.spec_model.model_validate(minimal).model_dump(by_alias=True, exclude_none=True, mode="json")
    assert by_schema == by_pydantic
