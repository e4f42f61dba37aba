"""The JSON Schema of the report, as code: ``python -m sdaudit.report.schema_source`` writes
``sdaudit/report/schema.json`` and ``docs/report-schema.json``; a test checks both match.

Types and bounds are declared here; every property's ``description`` is the docstring of the
field that holds it (the report dataclasses in :mod:`sdaudit.report.model`, the dict blocks in
:mod:`sdaudit.report.blocks`, the settings in :mod:`sdaudit.config`), so the two cannot drift:
building the schema fails on a property without a documented field, and on a field without a
property.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sdaudit.config import AuditConfig, Gate, RiskThresholds
from sdaudit.report import blocks
from sdaudit.report.fielddocs import field_docs, field_names
from sdaudit.report.model import (
    SCHEMA_VERSION,
    AblationResult,
    AuditReport,
    Curve,
    GateCheck,
    GateResult,
    LayerReport,
    Summary,
    UnitArrays,
)


class UndocumentedFieldError(ValueError):
    """A report property without a documented field, or a field the schema leaves out."""


def documented(cls: type, props: dict[str, Any], renamed: dict[str, str] | None = None,
               complete: bool = True) -> dict[str, Any]:
    """``props`` with each property's description taken from ``cls``'s field docstrings.

    ``renamed`` maps a JSON name to its field (``fractions`` → ``x``); ``complete``: every field
    of ``cls`` must appear among the properties."""
    renamed = renamed or {}
    docs = field_docs(cls)
    out: dict[str, Any] = {}
    for key, spec in props.items():
        name = renamed.get(key, key)
        if name not in docs:
            raise UndocumentedFieldError(
                f"report property {key!r} has no documented field {cls.__module__}."
                f"{cls.__qualname__}.{name} (add the field with a docstring under it)")
        out[key] = {**spec, "description": docs[name]}
    if complete:
        missing = [n for n in field_names(cls) if n not in {renamed.get(k, k) for k in props}]
        if missing:
            raise UndocumentedFieldError(
                f"{cls.__qualname__}.{missing[0]} has no property in the report schema "
                "(add it in sdaudit/report/schema_source.py)")
    return out


def obj(cls: type, props: dict[str, Any], required: list[str] | None = None, *,
        closed: bool = False, nullable: bool = False, renamed: dict[str, str] | None = None,
        complete: bool = True) -> dict[str, Any]:
    """An object schema whose properties are described by ``cls``'s field docs."""
    schema: dict[str, Any] = {"type": ["object", "null"] if nullable else "object"}
    if cls.__doc__:
        schema["description"] = " ".join(cls.__doc__.split("\n\n")[0].split())
    if required is not None:
        schema["required"] = required
    schema["properties"] = documented(cls, props, renamed, complete)
    if closed:
        schema["additionalProperties"] = False
    return schema


num = {"type": ["number", "null"]}
numarr = {"type": "array", "items": num}
intarr = {"type": "array", "items": {"type": "integer"}}
opt_numarr = {"type": ["array", "null"], "items": num}
string = {"type": "string"}
opt_string = {"type": ["string", "null"]}
dims = {"type": "array", "items": {"type": ["integer", "string", "null"]}}

curve_types = {
    "units_ablated": intarr, "accuracy_mean": numarr, "accuracy_std": numarr,
    "accuracy_ci_low": numarr, "accuracy_ci_high": numarr, "normalized_mean": numarr,
    "loss_mean": numarr, "agreement_mean": numarr, "kl_mean": numarr,
    "draws": {"type": "integer", "minimum": 1}, "auc": num, "auc_ci_low": num, "auc_ci_high": num,
    "class_auc": numarr,
    "auc_draws": numarr, "auc_draw_se": num, "auc_image_se": num, "interval": {"type": "string"},
}
CURVE_13 = ("auc_draws", "auc_draw_se", "auc_image_se", "interval")  # reports of 1.2 lack them


def curve(xname: str, nullable: bool = False) -> dict[str, Any]:
    props = {xname: {"type": "array", "items": {"type": "number"}, "minItems": 1}, **curve_types}
    required = [k for k in props if k not in CURVE_13]
    return obj(Curve, props, required, closed=True, nullable=nullable, renamed={xname: "x"})


tensor = obj(blocks.TensorBlock, {"name": string, "dtype": string, "shape": dims},
             ["name", "dtype", "shape"])
units = obj(UnitArrays, {
    "mean": numarr, "sd": numarr, "noise_sd": numarr, "selectivity": opt_numarr,
    "preferred_class": {"type": ["array", "null"], "items": {"type": "integer"}},
    "mutual_information": opt_numarr, "importance": opt_numarr, "importance_loss": opt_numarr,
    "importance_se": opt_numarr, "importance_loss_se": opt_numarr,
    "importance_loss_ci_low": opt_numarr, "importance_loss_ci_high": opt_numarr},
    ["mean", "sd", "noise_sd", "selectivity", "preferred_class", "mutual_information",
     "importance", "importance_loss"], closed=True)
layer_props = {
    "name": string, "op_type": string, "kind": {"enum": ["activation", "linear"]}, "shape": dims,
    "channel_axis": {"type": "integer"}, "channels": {"type": "integer", "minimum": 1},
    "depth": {"type": "integer"}, "dead_units": {"type": "integer", "minimum": 0},
    "selectivity_mean": num, "selectivity_median": num, "selectivity_max": num,
    "mutual_information_mean": num, "importance_selectivity_spearman": num, "units": units}
layer = obj(LayerReport, layer_props, list(layer_props), closed=True)

# The joint curve's fields sit at the top of `ablation`, beside per_layer and ordered.
joint = curve("fractions")["properties"]
ablation = obj(AblationResult, {
    "per_layer": {"type": "object", "additionalProperties": curve("fractions")},
    "ordered": {"type": "object", "properties": {"high_to_low": curve("fractions"),
                "low_to_high": curve("fractions")}, "additionalProperties": False}},
    ["per_layer", "ordered"], nullable=True, complete=False)
ablation["properties"] = {**joint, **ablation["properties"]}
ablation["description"] += " " + field_docs(AblationResult)["joint"]

check = obj(GateCheck, {"name": {"enum": ["fail_under", "max_drop"]},
                        "passed": {"type": "boolean"}, "value": num, "threshold": num,
                        "message": string, "interval": {"type": ["array", "null"], "items": num},
                        "mode": {"enum": ["point", "significant"]}},
            ["name", "passed", "value", "threshold", "message"])
gate = obj(GateResult, {"passed": {"type": "boolean"},
                        "checks": {"type": "array", "items": check}, "verdict": string},
           ["passed", "checks", "verdict"])
summary = obj(Summary, {
    "ablation_auc": num, "ablation_auc_ci": {"type": ["array", "null"], "items": num},
    "noise_auc": num, "risk": {"enum": ["low", "medium", "high", None]},
    "risk_thresholds": obj(RiskThresholds, {"low": {"type": "number"}, "medium": {"type": "number"}},
                           ["low", "medium"]),
    "per_layer_auc": {"type": "object", "additionalProperties": num},
    "notes": {"type": "array", "items": string},
    "draws": obj(blocks.DrawsBlock, {
        "mode": {"enum": ["auto", "fixed"]}, "used": {"type": "integer", "minimum": 1},
        "first": {"type": "integer"}, "max": {"type": "integer"}, "target": num,
        "half_width": num, "passes": {"type": "integer"},
        "stopped": {"enum": ["fixed", "target", "images", "max_draws", "passes"]}}),
    "risk_basis": {"enum": ["absolute", "baseline"]},
    "baseline_difference": obj(blocks.BaselineDifferenceBlock, {
        "difference": num, "ci": {"type": "array", "items": num},
        "paired": {"type": "boolean"}, "significant": {"type": "boolean"}}, nullable=True)},
    ["ablation_auc", "ablation_auc_ci", "noise_auc", "risk", "risk_thresholds", "per_layer_auc",
     "notes"])

model = obj(blocks.ModelBlock, {
    "path": string, "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
    "converted_onnx": opt_string,
    "inputs": {"type": "array", "items": tensor, "minItems": 1},
    "outputs": {"type": "array", "items": tensor, "minItems": 1},
    "output_used": string, "output_kind": {"enum": ["logits", "probabilities"]},
    "output_choice": string,
    "metric": obj(blocks.MetricBlock, {
        "kind": {"enum": ["classification", "per-position", "relative", "cosine"]},
        "class_axis": {"type": "integer"}, "positions": {"type": "integer"},
        "class_channels": {"type": "array", "items": {"type": "integer"}}}, ["kind"]),
    "opset": {"type": "integer"}, "ir_version": {"type": "integer"}},
    ["path", "sha256", "inputs", "outputs", "output_used", "output_kind", "opset", "ir_version"])
preprocess = obj(blocks.PreprocessBlock, {
    "preset": string, "scale": {"type": "number"}, "mean": numarr, "std": numarr,
    "resize": {"type": ["integer", "null"]}, "crop": {"type": ["integer", "null"]},
    "bgr": {"type": "boolean"}, "interpolation": string})
data = obj(blocks.DataBlock, {
    "path": string, "kind": string, "samples": {"type": "integer", "minimum": 1},
    "classes": {"type": "integer", "minimum": 1},
    "class_names": {"type": ["array", "null"], "items": string},
    "classes_present": {"type": "integer"}, "skipped": {"type": "integer", "minimum": 0},
    "skipped_examples": {"type": "array", "items": string}, "selectivity_data": opt_string,
    "fingerprint": string, "labels": {"enum": ["given", "predicted"]}, "preprocess": preprocess,
    "classes_matched_by": string},
    ["path", "kind", "samples", "classes", "class_names", "skipped", "labels"])
runtime = obj(blocks.RuntimeBlock, {
    "device": {"enum": ["auto", "cpu", "cuda"]}, "provider": string,
    "threads": {"type": "integer", "minimum": 1}, "onnxruntime_version": string,
    "cut": {"type": "array", "items": string}, "precision": {"enum": ["fp32", "fp16"]},
    "io_binding": {"type": "boolean"}, "prune": {"type": "boolean"},
    "pruned_configurations": {"type": "integer", "minimum": 0},
    "fp16_prediction_change": {"type": "number", "minimum": 0, "maximum": 1},
    "executor": {"enum": ["local", "ray"]}, "workers": {"type": "integer", "minimum": 1},
    "chunk_size": {"type": "integer", "minimum": 1},
    "units_run": {"type": "integer", "minimum": 0},
    "units_resumed": {"type": "integer", "minimum": 0}},
    ["device", "provider", "threads", "onnxruntime_version"])
opt_bool = {"type": ["boolean", "null"]}
config = obj(AuditConfig, {
    "layers": string, "measures": {"type": "array", "items": string}, "fractions": numarr,
    "draws": {"oneOf": [{"type": "integer", "minimum": 1}, {"const": "auto"}]},
    "seed": {"type": "integer"}, "ci_target": {"type": "number"}, "max_draws": {"type": "integer"},
    "noise_levels": numarr, "ablation_value": {"enum": ["zero", "mean"]},
    "per_layer": {"type": "boolean"}, "mi_bins": {"type": "integer"},
    "selectivity_eps": {"type": "number"}, "chunk_size": {"type": ["integer", "null"]},
    "precision": {"enum": ["fp32", "fp16"]}, "io_binding": opt_bool, "prune": opt_bool,
    "importance_samples": {"type": "integer", "minimum": 0}, "closed_form": {"type": "boolean"},
    "metric": {"enum": ["auto", "classification", "per-position", "relative", "cosine"]},
    "class_axis": {"type": ["integer", "null"]},
    "risk": obj(RiskThresholds, {"low": {"type": "number"}, "medium": {"type": "number"}}),
    "gate": obj(Gate, {"fail_under": num, "baseline_report": opt_string, "max_drop": num,
                       "mode": {"enum": ["point", "significant"]}})},
    ["layers", "measures", "fractions", "draws", "seed", "noise_levels", "ablation_value"],
    complete=False)  # device and threads are recorded in runtime
unablated = obj(blocks.UnablatedBlock, {
    "accuracy": {"type": "number", "minimum": 0, "maximum": 1}, "loss": num,
    "per_class_accuracy": numarr}, ["accuracy", "loss", "per_class_accuracy"])
importance = obj(blocks.ImportanceBlock, {
    "metric": string, "spearman_all": num,
    "method": {"type": "object", "additionalProperties": string},
    "samples": {"type": "integer", "minimum": 1}, "population": {"type": "integer", "minimum": 1},
    "sample": string, "interval": string,
    "per_layer": {"type": "array", "items": obj(blocks.ImportanceCorrelation, {
        "layer": string, "spearman": num}, ["layer", "spearman"])}},
    ["metric", "per_layer", "spearman_all"], nullable=True)
settings = obj(blocks.SettingsBlock, {
    "config": opt_string, "sources": {"type": "object", "additionalProperties": string}})
run = obj(blocks.RunBlock, {"started": string, "finished": string,
                            "duration_s": {"type": "number"},
                            "forward_passes": {"type": "integer"},
                            "estimate": obj(blocks.EstimateBlock, {
                                "total_s": {"type": "number"}, "setup_s": {"type": "number"},
                                "by_measure": {"type": "object",
                                               "additionalProperties": {"type": "number"}},
                                "calibrated_on": {"type": "integer"}}),
                            "time_budget": obj(blocks.TimeBudgetBlock, {
                                "budget_s": {"type": "number"}, "calibration_s": {"type": "number"},
                                "images": {"type": "integer"}, "of": {"type": "integer"},
                                "draws": {"type": "integer"}, "predicted_s": {"type": "number"},
                                "fits": {"type": "boolean"}})},
          ["started", "finished", "duration_s"])

top = documented(AuditReport, {
    "schema_version": {"type": "string", "pattern": "^1\\.[0-9]+$"},
    "sdaudit_version": string, "model": model, "data": data, "runtime": runtime,
    "config": config, "settings": settings, "unablated": unablated,
    "layers": {"type": "array", "items": layer, "minItems": 1},
    "ablation": ablation, "noise": {"oneOf": [{"type": "null"}, curve("levels")]},
    "importance": importance, "summary": summary, "gate": gate, "run": run})
# Schema 1.3 renamed `baseline` (it read as the --baseline report) to `unablated`; 1.x reports
# keep the old name too, with the same figures.
top["baseline"] = {**unablated, "deprecated": True,
                   "description": " ".join(str(AuditReport.baseline.__doc__).split())}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": f"https://sdaudit.dev/schema/report-{SCHEMA_VERSION}.json",
    "title": "sdaudit scan report",
    "description": "The JSON report of `sdaudit scan`. Numbers carry 7 significant digits; NaN and "
                   "infinities are null. Only `run` differs between two runs of the same command.",
    "type": "object",
    "required": ["schema_version", "sdaudit_version", "model", "data", "runtime", "config",
                 "unablated", "baseline", "layers", "ablation", "noise", "importance", "summary",
                 "gate", "run"],
    "additionalProperties": False,
    "properties": top,
}


def schema_text() -> str:
    return json.dumps(SCHEMA, indent=2) + "\n"


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[2]
    for target in (root / "sdaudit" / "report" / "schema.json", root / "docs" / "report-schema.json"):
        target.write_text(schema_text())
