"""The JSON edge of the report: dataclasses → plain values, schema validation.

Files are written by :mod:`sdaudit.outputs` (all outputs of a run committed together)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any

from sdaudit.outputs import write_atomic
from sdaudit.report.model import AuditReport, Curve

__all__ = ["dumps", "load_schema", "report_to_dict", "to_json", "write_atomic"]

SCHEMA_PATH = Path(__file__).with_name("schema.json")
_DIGITS = 7  # significant digits: stable bytes, and small settings (ε = 1e-7) survive


def _plain(value: Any) -> Any:
    """JSON-safe values: NaN/inf → null, floats to 7 significant digits, tuples → lists."""
    if isinstance(value, float):
        return float(f"{value:.{_DIGITS}g}") if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if is_dataclass(value) and not isinstance(value, type):
        return _plain(asdict(value))
    if hasattr(value, "item"):  # numpy scalars
        return _plain(value.item())
    return value


def _curve(curve: Curve | None, x_name: str) -> dict[str, Any] | None:
    if curve is None:
        return None
    data = {f.name: getattr(curve, f.name) for f in fields(curve)}
    data[x_name] = data.pop("x")
    return data


def report_to_dict(report: AuditReport) -> dict[str, Any]:
    ablation = None
    if report.ablation is not None:
        result = report.ablation
        ablation = {
            **(_curve(result.joint, "fractions") or {}),
            "per_layer": {k: _curve(v, "fractions") for k, v in result.per_layer.items()},
            "ordered": {k: _curve(v, "fractions") for k, v in result.ordered.items()},
        }
    data: dict[str, Any] = {
        "schema_version": report.schema_version,
        "sdaudit_version": report.sdaudit_version,
        "model": report.model,
        "data": report.data,
        "runtime": report.runtime,
        "config": report.config,
        "settings": report.settings,
        "unablated": report.unablated,
        "baseline": report.unablated,  # deprecated since 1.3: the same figures under their old name
        "layers": [asdict(layer) for layer in report.layers],
        "ablation": ablation,
        "noise": _curve(report.noise, "levels"),
        "importance": report.importance,
        "summary": asdict(report.summary),
        "gate": asdict(report.gate),
        "run": report.run,
    }
    return _plain(data)


def to_json(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n"


def dumps(report: AuditReport) -> str:
    return to_json(report_to_dict(report))


def load_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())
