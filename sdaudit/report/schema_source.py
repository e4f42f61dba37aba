"""The JSON Schema of the report, as code: ``python -m sdaudit.report.schema_source`` writes
``sdaudit/report/schema.json`` and ``docs/report-schema.json``; a test checks both match."""

# ruff: noqa: E501
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

num = {"type": ["number", "null"]}
numarr = {"type": "array", "items": num}
intarr = {"type": "array", "items": {"type": "integer"}}
curve_props = {
    "units_ablated": intarr, "accuracy_mean": numarr, "accuracy_std": numarr,
    "accuracy_ci_low": numarr, "accuracy_ci_high": numarr, "normalized_mean": numarr,
    "loss_mean": numarr, "agreement_mean": numarr, "kl_mean": numarr, "draws": {"type": "integer", "minimum": 1},
    "auc": num, "auc_ci_low": num, "auc_ci_high": num, "class_auc": numarr,
    # 1.3: the AUC of each draw, the two parts of its variance, what the intervals cover
    "auc_draws": numarr, "auc_draw_se": num, "auc_image_se": num, "interval": {"type": "string"},
}
CURVE_13 = ("auc_draws", "auc_draw_se", "auc_image_se", "interval")
def curve(xname: str) -> dict[str, Any]:
    props = {xname: {"type": "array", "items": {"type": "number"}, "minItems": 1}, **curve_props}
    required = [k for k in props if k not in CURVE_13]  # reports of 1.2 lack them
    return {"type": "object", "required": required, "properties": props, "additionalProperties": False}
tensor = {"type": "object", "required": ["name", "dtype", "shape"], "properties": {
    "name": {"type": "string"}, "dtype": {"type": "string"},
    "shape": {"type": "array", "items": {"type": ["integer", "string", "null"]}}}}
opt_numarr = {"type": ["array", "null"], "items": num}
units = {"type": "object", "required": ["mean", "sd", "noise_sd", "selectivity", "preferred_class",
         "mutual_information", "importance", "importance_loss"], "properties": {
    "mean": numarr, "sd": numarr, "noise_sd": numarr, "selectivity": opt_numarr,
    "preferred_class": {"type": ["array", "null"], "items": {"type": "integer"}},
    "mutual_information": opt_numarr, "importance": opt_numarr, "importance_loss": opt_numarr,
    # 1.3: the uncertainty of importance measured on a sample of the data
    "importance_se": opt_numarr, "importance_loss_se": opt_numarr,
    "importance_loss_ci_low": opt_numarr, "importance_loss_ci_high": opt_numarr},
    "additionalProperties": False}
layer = {"type": "object", "required": ["name", "op_type", "kind", "shape", "channel_axis", "channels",
         "depth", "dead_units", "selectivity_mean", "selectivity_median", "selectivity_max",
         "mutual_information_mean", "importance_selectivity_spearman", "units"], "properties": {
    "name": {"type": "string"}, "op_type": {"type": "string"},
    "kind": {"enum": ["activation", "linear"]},
    "shape": {"type": "array", "items": {"type": ["integer", "string", "null"]}},
    "channel_axis": {"type": "integer"}, "channels": {"type": "integer", "minimum": 1},
    "depth": {"type": "integer"}, "dead_units": {"type": "integer", "minimum": 0},
    "selectivity_mean": num, "selectivity_median": num, "selectivity_max": num,
    "mutual_information_mean": num, "importance_selectivity_spearman": num, "units": units},
    "additionalProperties": False}
joint = curve("fractions")
ablation = {"type": ["object", "null"], "required": ["per_layer", "ordered"], "properties": {
    **{k: {} for k in joint["properties"]},
    "fractions": joint["properties"]["fractions"],
    "accuracy_mean": numarr, "auc": num,
    "per_layer": {"type": "object", "additionalProperties": curve("fractions")},
    "ordered": {"type": "object", "properties": {"high_to_low": curve("fractions"),
                "low_to_high": curve("fractions")}, "additionalProperties": False}}}
check = {"type": "object", "required": ["name", "passed", "value", "threshold", "message"],
         "properties": {"name": {"enum": ["fail_under", "max_drop"]}, "passed": {"type": "boolean"},
                        "value": num, "threshold": num, "message": {"type": "string"},
                        "interval": {"type": ["array", "null"], "items": num},
                        "mode": {"enum": ["point", "significant"]}}}
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://sdaudit.dev/schema/report-1.0.json",
    "title": "sdaudit scan report",
    "description": "The JSON report of `sdaudit scan`. Numbers carry 7 significant digits; NaN and "
                   "infinities are null. Only `run` differs between two runs of the same command.",
    "type": "object",
    "required": ["schema_version", "sdaudit_version", "model", "data", "runtime", "config",
                 "baseline", "layers", "ablation", "noise", "importance", "summary", "gate", "run"],
    "additionalProperties": False,
    "properties": {
        "schema_version": {"type": "string", "pattern": "^1\\.[0-9]+$"},
        "sdaudit_version": {"type": "string"},
        "model": {"type": "object", "required": ["path", "sha256", "inputs", "outputs", "output_used",
                  "output_kind", "opset", "ir_version"], "properties": {
            "path": {"type": "string"}, "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "converted_onnx": {"type": ["string", "null"]},
            "inputs": {"type": "array", "items": tensor, "minItems": 1},
            "outputs": {"type": "array", "items": tensor, "minItems": 1},
            "output_used": {"type": "string"}, "output_kind": {"enum": ["logits", "probabilities"]},
            "output_choice": {"type": "string", "description": "Why output_used was audited: --output, or the rule that chose it (since 1.3)."},
            "metric": {"type": "object", "required": ["kind"], "description": "What accuracy means for the audited output (since 1.3): classification, per-position (class_axis, positions per sample, class_channels where a detector's scores are part of the axis), relative or cosine.", "properties": {
                "kind": {"enum": ["classification", "per-position", "relative", "cosine"]},
                "class_axis": {"type": "integer"}, "positions": {"type": "integer"},
                "class_channels": {"type": "array", "items": {"type": "integer"}}}},
            "opset": {"type": "integer"}, "ir_version": {"type": "integer"}}},
        "data": {"type": "object", "required": ["path", "kind", "samples", "classes", "class_names",
                 "skipped", "labels"], "properties": {
            "path": {"type": "string"}, "kind": {"type": "string"},
            "samples": {"type": "integer", "minimum": 1}, "classes": {"type": "integer", "minimum": 1},
            "class_names": {"type": ["array", "null"], "items": {"type": "string"}},
            "classes_present": {"type": "integer"}, "skipped": {"type": "integer", "minimum": 0},
            "skipped_examples": {"type": "array", "items": {"type": "string"}},
            "selectivity_data": {"type": ["string", "null"]},
            "fingerprint": {"type": "string"},
            "labels": {"enum": ["given", "predicted"]}}},
        "runtime": {"type": "object", "required": ["device", "provider", "threads", "onnxruntime_version"],
                    "properties": {"device": {"enum": ["auto", "cpu", "cuda"]},
                                   "provider": {"type": "string"},
                                   "threads": {"type": "integer", "minimum": 1},
                                   "onnxruntime_version": {"type": "string"},
                                   "cut": {"type": "array", "items": {"type": "string"}},
                                   "precision": {"enum": ["fp32", "fp16"]},
                                   "io_binding": {"type": "boolean"},
                                   "prune": {"type": "boolean"},
                                   "pruned_configurations": {"type": "integer", "minimum": 0},
                                   "fp16_prediction_change": {"type": "number", "minimum": 0,
                                                              "maximum": 1}}},
        "config": {"type": "object", "required": ["layers", "measures", "fractions", "draws", "seed",
                   "noise_levels", "ablation_value"]},
        "baseline": {"type": "object", "required": ["accuracy", "loss", "per_class_accuracy"],
                     "properties": {"accuracy": {"type": "number", "minimum": 0, "maximum": 1},
                                    "loss": num, "per_class_accuracy": numarr}},
        "layers": {"type": "array", "items": layer, "minItems": 1},
        "ablation": ablation,
        "noise": {"oneOf": [{"type": "null"}, curve("levels")]},
        "importance": {"type": ["object", "null"], "required": ["metric", "per_layer", "spearman_all"],
                       "properties": {"metric": {"type": "string"}, "spearman_all": num,
                                      "per_layer": {"type": "array", "items": {"type": "object",
                                        "required": ["layer", "spearman"],
                                        "properties": {"layer": {"type": "string"}, "spearman": num}}},
                                      # 1.3: how each layer's importance was measured, on how many samples
                                      "method": {"type": "object", "additionalProperties": {"type": "string"}},
                                      "samples": {"type": "integer", "minimum": 1},
                                      "population": {"type": "integer", "minimum": 1},
                                      "sample": {"type": "string"}, "interval": {"type": "string"}}},
        "summary": {"type": "object", "required": ["ablation_auc", "ablation_auc_ci", "noise_auc", "risk",
                    "risk_thresholds", "per_layer_auc", "notes"], "properties": {
            "ablation_auc": num, "ablation_auc_ci": {"type": ["array", "null"], "items": num},
            "noise_auc": num, "risk": {"enum": ["low", "medium", "high", None]},
            "risk_thresholds": {"type": "object", "required": ["low", "medium"]},
            "per_layer_auc": {"type": "object", "additionalProperties": num},
            "notes": {"type": "array", "items": {"type": "string"}},
            "draws": {"type": "object", "properties": {
                "mode": {"enum": ["auto", "fixed"]}, "used": {"type": "integer", "minimum": 1},
                "first": {"type": "integer"}, "max": {"type": "integer"}, "target": num,
                "half_width": num, "passes": {"type": "integer"},
                "stopped": {"enum": ["fixed", "target", "images", "max_draws", "passes"]}}},
            "risk_basis": {"enum": ["absolute", "baseline"]},
            "baseline_difference": {"type": ["object", "null"], "properties": {
                "difference": num, "ci": {"type": "array", "items": num},
                "paired": {"type": "boolean"}, "significant": {"type": "boolean"}}}}},
        "gate": {"type": "object", "required": ["passed", "checks", "verdict"], "properties": {
            "passed": {"type": "boolean"}, "checks": {"type": "array", "items": check},
            "verdict": {"type": "string"}}},
        "run": {"type": "object", "required": ["started", "finished", "duration_s"]},
    },
}


def schema_text() -> str:
    return json.dumps(SCHEMA, indent=2) + "\n"


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[2]
    for target in (root / "sdaudit" / "report" / "schema.json", root / "docs" / "report-schema.json"):
        target.write_text(schema_text())
