"""Rank models by their ablation AUC (``sdaudit compare``): pure functions on JSON reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sdaudit.errors import DataError

# Settings that change what the AUC means; reports that differ in them are not comparable.
COMPARABLE_CONFIG = ("layers", "fractions", "draws", "ablation_value", "seed")


def load_report(path: str | Path) -> dict[str, Any]:
    """A report given to compare (the one reader, shared with ``scan --baseline``)."""
    from sdaudit.report.reader import read_report

    return read_report(path, "report")


def _names(paths: list[Path], reports: list[dict[str, Any]]) -> list[str]:
    names = [Path(str(r["model"]["path"])).name for r in reports]
    if len(set(names)) == len(names):
        return names
    return [f"{Path(str(r['model']['path'])).name} ({p.name})" for p, r in zip(paths, reports,
                                                                              strict=True)]


def _data_key(report: dict[str, Any]) -> tuple[Any, ...]:
    """What identifies the data of a report: its fingerprint where recorded, else path and size."""
    data = report["data"]
    if data.get("fingerprint"):
        return (data["fingerprint"],)
    return (data.get("path"), data.get("samples"))


def compare(paths: list[str | Path]) -> tuple[list[dict[str, Any]], list[str]]:
    """(ranking best first, warnings). Each entry names its model and report."""
    if len(paths) < 1:
        raise DataError("compare needs at least one report", "sdaudit compare A.json B.json ...")
    ps = [Path(p) for p in paths]
    reports = [load_report(p) for p in ps]
    names = _names(ps, reports)
    warnings: list[str] = []
    first = reports[0]
    other_data: list[str] = []
    for p, r in zip(ps[1:], reports[1:], strict=True):
        differ = [k for k in COMPARABLE_CONFIG if r["config"].get(k) != first["config"].get(k)]
        if differ:
            warnings.append(f"{p.name} was made with other settings than {ps[0].name} "
                            f"({', '.join(differ)}): its AUC is not directly comparable")
        if _data_key(r) != _data_key(first):
            other_data.append(p.name)
    if other_data:
        shown = ", ".join(other_data[:3]) + (f" and {len(other_data) - 3} more"
                                             if len(other_data) > 3 else "")
        warnings.append(f"{len(other_data)} of {len(ps)} reports were measured on other data than "
                        f"{ps[0].name} ({shown}); fine if each model was measured on its own "
                        "training data (the paper's protocol), not if they should share a data set")
    entries = []
    for p, r, name in zip(ps, reports, names, strict=True):
        s = r["summary"]
        ci = s.get("ablation_auc_ci") or [None, None]
        if s.get("ablation_auc") is None:
            warnings.append(f"{p.name} has no ablation AUC (run scan with --measure ablation)")
        entries.append({
            "name": name, "model": r["model"]["path"], "model_sha256": r["model"]["sha256"],
            "report": str(p), "ablation_auc": s.get("ablation_auc"), "ci": list(ci),
            "noise_auc": s.get("noise_auc"), "risk": s.get("risk"),
            "baseline_accuracy": r["baseline"]["accuracy"],
        })
    entries.sort(key=lambda e: (e["ablation_auc"] is None, -(e["ablation_auc"] or 0.0)))
    for i, e in enumerate(entries):
        e["rank"] = i + 1
        nxt = entries[i + 1] if i + 1 < len(entries) else None
        e["overlaps_next"] = bool(
            nxt is not None and None not in (e["ci"][0], nxt["ci"][1])
            and e["ci"][0] <= nxt["ci"][1])
    return entries, warnings
