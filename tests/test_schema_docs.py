"""Every field of the JSON report is described in its schema, from the code's own field docs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import jsonschema
import models
import pytest
from test_ci_output import sdaudit

from sdaudit.report.json_io import load_schema
from sdaudit.report.model import SCHEMA_VERSION
from sdaudit.report.schema_source import UndocumentedFieldError, documented


def described_nodes(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """(path, schema) of every property at any depth."""
    found = []
    for key, sub in schema.get("properties", {}).items():
        found.append((f"{path}.{key}", sub))
        found += described_nodes(sub, f"{path}.{key}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            found += described_nodes(schema[key], f"{path}[]")
    for option in schema.get("oneOf", []):
        found += described_nodes(option, path)
    return found


def node_for(schema: dict[str, Any], key: str) -> dict[str, Any] | None:
    """The schema of property ``key`` of an object schema (through oneOf and maps)."""
    for option in [schema, *schema.get("oneOf", [])]:
        if key in option.get("properties", {}):
            return option["properties"][key]
        extra = option.get("additionalProperties")
        if isinstance(extra, dict):
            return extra
    return None


def undocumented_keys(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Keys of a real report that have no described property in the schema."""
    missing = []
    if isinstance(value, dict):
        for key, sub in value.items():
            node = node_for(schema, key)
            is_map_entry = node is not None and key not in schema.get("properties", {}) and \
                not any(key in o.get("properties", {}) for o in schema.get("oneOf", []))
            if node is None or (not is_map_entry and not node.get("description")):
                missing.append(f"{path}.{key}")
                continue
            missing += undocumented_keys(sub, node, f"{path}.{key}")
    elif isinstance(value, list):
        items = schema.get("items")
        for option in [schema, *schema.get("oneOf", [])]:
            items = items or option.get("items")
        for i, sub in enumerate(value[:3]):
            missing += undocumented_keys(sub, items or {}, f"{path}[{i}]")
    return missing


def test_every_schema_property_is_described():
    nodes = described_nodes(load_schema())
    assert len(nodes) > 150
    bare = [path for path, node in nodes if not node.get("description", "").strip()
            and not path.endswith("[]")]
    assert bare == []


def test_the_schema_id_names_the_version_reports_carry():
    schema = load_schema()
    assert schema["$id"] == f"https://sdaudit.dev/schema/report-{SCHEMA_VERSION}.json"
    assert schema["properties"]["baseline"]["deprecated"] is True


def test_every_field_of_a_real_report_is_documented(tmp_path):
    """A full scan through the entry point (gate and all measures): each key it writes, at any
    depth, has a described schema property. A field added to the report without a docstring
    fails here."""
    model = models.save(models.counting_net(), tmp_path / "m.onnx")
    data = models.counting_data(tmp_path / "d.npz")
    first = tmp_path / "first.json"
    assert sdaudit("scan", str(model), "--data", str(data), "--draws", "2", "-q", "--json",
                   str(first)).returncode == 0
    out = tmp_path / "r.json"
    result = sdaudit("scan", str(model), "--data", str(data), "--draws", "2", "-q", "--json",
                     str(out), "--baseline", str(first), "--max-drop", "0.01", "--fail-under",
                     "0.1")
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    schema = load_schema()
    jsonschema.validate(report, schema)
    assert undocumented_keys(report, schema) == []
    # --time-budget adds its choice to the run block.
    budgeted = tmp_path / "budget.json"
    assert sdaudit("scan", str(model), "--data", str(data), "--time-budget", "30s", "-q",
                   "--json", str(budgeted)).returncode == 0
    assert undocumented_keys(json.loads(budgeted.read_text()), schema) == []
    # The renamed block: the new name and the deprecated one hold the same figures.
    assert report["unablated"] == report["baseline"]
    assert report["unablated"]["accuracy"] == 1.0  # the counting net is right on every sample


def test_an_undocumented_field_stops_the_schema_build():
    @dataclass(frozen=True)
    class Block:
        documented_one: int
        """A field with its docstring."""
        forgotten: int

    props = {"documented_one": {"type": "integer"}}
    with pytest.raises(UndocumentedFieldError, match="forgotten has no property"):
        documented(Block, props)
    with pytest.raises(UndocumentedFieldError, match=r"'forgotten' has no documented field"):
        documented(Block, {**props, "forgotten": {"type": "integer"}})
    assert documented(Block, props, complete=False)["documented_one"]["description"] == (
        "A field with its docstring.")


def test_the_undocumented_key_walk_sees_a_new_key():
    schema = load_schema()
    assert undocumented_keys({"runtime": {"provider": "x", "a_new_key": 1}}, schema) == [
        ".runtime.a_new_key"]
