"""Manifest validation: precise locations, every class of mistake, cross-field rules, and the examples."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from tradeplane.api.validation import ValidationReport, format_loc, validate_files, validate_object, validate_text

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
THREE_ERRORS = REPO / "tests" / "fixtures" / "manifests" / "invalid-three-errors.yaml"


def _example(kind: str) -> dict[str, Any]:
    for path in EXAMPLES:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == kind:
                return dict(doc)
    raise LookupError(kind)


def test_examples_form_a_complete_valid_desk() -> None:
    report = validate_files(str(p) for p in EXAMPLES)
    assert report.ok, [str(e) for e in report.errors]
    kinds = sorted(k for _, _, k, _ in report.valid)
    assert kinds == ["ModelVersion", "ModelVersion", "RiskBudget", "Strategy", "Strategy"]
    assert not [n for n in report.notes if "is not in these files" in n or "no ModelVersion" in n]
    venues = {
        _d["spec"]["venue"] for p in EXAMPLES for _d in yaml.safe_load_all(p.read_text()) if _d["kind"] == "Strategy"
    }
    assert venues == {"binance-spot", "binance-usdm"}


def test_three_mistakes_give_three_precise_messages() -> None:
    report = validate_files([str(THREE_ERRORS)])
    got = [(e.path, e.line, e.document, e.kind, e.name) for e in report.errors]
    assert got == [
        ("spec.limits.maxGrossNotionalUsdt", 8, 1, "RiskBudget", "bad-budget"),
        ("spec.limits.maxDailyLossUsdt", 9, 1, "RiskBudget", "bad-budget"),
        ("spec.haltPolicy", 10, 1, "RiskBudget", "bad-budget"),
    ]
    messages = [e.message for e in report.errors]
    assert "valid number" in messages[0] and "'a lot'" in messages[0]
    assert "greater than 0" in messages[1] and "-250" in messages[1]
    assert "'cancel-only' or 'flatten'" in messages[2] and "panic-sell" in messages[2]


def _mutated(kind: str, path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(_example(kind))
    node: Any = doc
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
    if value is _DELETE:
        del node[parts[-1]]
    else:
        node[int(parts[-1]) if parts[-1].isdigit() else parts[-1]] = value
    return doc


_DELETE = object()

# (kind, field path to change, new value, expected error path, expected message fragment)
INVALID = {
    "string-for-int": ("RiskBudget", "spec.limits.maxOrdersPerMinute", "60", "spec.limits.maxOrdersPerMinute", "integer"),
    "float-for-int": ("RiskBudget", "spec.limits.maxOrdersPerMinute", 1.5, "spec.limits.maxOrdersPerMinute", "integer"),
    "string-for-bool": ("RiskBudget", "spec.halt", "yes", "spec.halt", "boolean"),
    "pct-above-100": ("RiskBudget", "spec.limits.maxDrawdownPct", 150, "spec.limits.maxDrawdownPct", "less than or equal"),
    "unknown-field": ("RiskBudget", "spec.limits.maxGrossNotional", 1, "spec.limits.maxGrossNotional", "unknown field"),
    "bad-symbol": ("Strategy", "spec.symbols", ["btc-usdt"], "spec.symbols[0]", "pattern"),
    "no-symbols": ("Strategy", "spec.symbols", [], "spec.symbols", "at least 1"),
    "unknown-venue": ("Strategy", "spec.venue", "kraken", "spec.venue", "binance-spot"),
    "missing-budget-ref": ("Strategy", "spec.riskBudgetRef", _DELETE, "spec.riskBudgetRef", "required"),
    "tau-below-half": ("Strategy", "spec.decision.tau", 0.3, "spec.decision.tau", "greater than or equal to 0.5"),
    "leverage-200": ("Strategy", "spec.sizing.leverage", 200, "spec.sizing.leverage", "125"),
    "rule-bad-op": ("Strategy", "spec.rules.0.when.0.op", "between", "spec.rules[0].when[0].op", "'lt'"),
    "bad-quantity": ("Strategy", "spec.resources.decide.cpu", "lots", "spec.resources.decide.cpu", "pattern"),
    "bad-sha": ("ModelVersion", "spec.artifact.sha256", "abc", "spec.artifact.sha256", "pattern"),
    "bad-uri": ("ModelVersion", "spec.artifact.uri", "ftp://x", "spec.artifact.uri", "pattern"),
    "unknown-rollout": ("ModelVersion", "spec.rollout.strategy", "bluegreen", "spec.rollout.strategy", "canary"),
    "name-uppercase": ("RiskBudget", "metadata.name", "Desk", "metadata.name", "pattern"),
    "name-too-long": ("RiskBudget", "metadata.name", "d" * 41, "metadata.name", "at most 40"),
    "wrong-api-version": ("RiskBudget", "apiVersion", "tradeplane.io/v1alpha2", "apiVersion", "v1alpha1"),
}  # fmt: skip


@pytest.mark.parametrize(("kind", "field", "value", "path", "fragment"), INVALID.values(), ids=INVALID.keys())
def test_each_mistake_is_located(kind: str, field: str, value: Any, path: str, fragment: str) -> None:
    report = ValidationReport()
    validate_text(yaml.safe_dump(_mutated(kind, field, value)), "m.yaml", report)
    assert [e.path for e in report.errors] == [path], [str(e) for e in report.errors]
    assert fragment in report.errors[0].message


CROSS_FIELD = {
    "live-on-paper": ("Strategy", {"venue": "paper", "mode": "live"}, "mode live needs a real venue"),
    "repeated-symbols": ("Strategy", {"symbols": ["BTCUSDT", "BTCUSDT"]}, "must not repeat"),
    "futures-stream-on-spot": ("Strategy", {"marketData": {"streams": ["markPrice"]}}, "only on futures"),
    "clamp-inverted": ("Strategy", {"sizing": {"minSizeMult": 3, "maxSizeMult": 1}}, "must not exceed"),
    "rl-without-model": ("Strategy", {"execution": {"policy": "rl-policy"}}, "policyModel"),
    "step-with-both": ("ModelVersion", {"rollout": {"strategy": "canary", "steps": [{"weightPct": 5, "cohortPct": 5}]}},
                       "exactly one of weightPct or cohortPct"),
    "canary-without-steps": ("ModelVersion", {"rollout": {"strategy": "canary", "steps": []}}, "at least one step"),
    "signature-hash-mismatch": ("ModelVersion", {"featureSignature": {"names": ["a", "b"], "hash": "0" * 64}},
                                "hash does not match"),
    "neither-artifact-nor-training": ("ModelVersion", {"artifact": None}, "set `artifact`"),
}  # fmt: skip


@pytest.mark.parametrize(("kind", "patch", "fragment"), CROSS_FIELD.values(), ids=CROSS_FIELD.keys())
def test_cross_field_rules(kind: str, patch: dict[str, Any], fragment: str) -> None:
    doc = copy.deepcopy(_example(kind))
    doc["spec"].update(patch)
    doc["spec"] = {k: v for k, v in doc["spec"].items() if v is not None}
    problems = validate_object(doc)
    assert len(problems) == 1 and fragment in problems[0][1], problems
    assert format_loc(problems[0][0]).startswith("spec")


def test_other_kinds_are_skipped_with_a_note_and_bad_yaml_names_the_line(tmp_path: Path) -> None:
    f = tmp_path / "mixed.yaml"
    f.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n---\nkind: [unclosed\n")
    report = validate_files([str(f)])
    assert len(report.errors) == 1 and report.errors[0].line == 6 and "not valid YAML" in report.errors[0].message
    ok = tmp_path / "cm.yaml"
    ok.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    report = validate_files([str(ok)])
    assert report.ok and any("ConfigMap" in n and "skipped" in n for n in report.notes)


def test_unknown_kind_in_our_group_and_missing_file_are_errors(tmp_path: Path) -> None:
    f = tmp_path / "k.yaml"
    f.write_text("apiVersion: tradeplane.io/v1alpha1\nkind: Portfolio\nmetadata: {name: x}\nspec: {}\n")
    report = validate_files([str(f), str(tmp_path / "missing.yaml")])
    assert [e.path for e in report.errors] == ["kind", ""]
    assert "unknown kind 'Portfolio'" in report.errors[0].message and "cannot read" in report.errors[1].message


def test_multi_document_indices_and_dangling_references(tmp_path: Path) -> None:
    strategy = _example("Strategy")
    broken = copy.deepcopy(strategy)
    broken["spec"]["symbols"] = ["bad"]
    f = tmp_path / "two.yaml"
    f.write_text(yaml.safe_dump_all([strategy, broken]))
    report = validate_files([str(f)])
    assert [(e.document, e.path) for e in report.errors] == [(2, "spec.symbols[0]")]
    assert any("RiskBudget 'desk-default' is not in these files" in n for n in report.notes)
