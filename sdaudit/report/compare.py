"""Rank models by their ablation AUC (``sdaudit compare``): pure functions on JSON reports.

The ranking is statistical: each pair of neighbours gets the difference of their AUCs with a
95 % interval (draw and image variance, see :mod:`sdaudit.analysis.intervals`); neighbours whose
difference is not significant form a tie group, and the entry says how many draws (or images)
would tell them apart at the difference measured. Reports that share their data and their units
(same data fingerprint, layers, fractions, ablation value and seed: the same permutations) are
compared draw by draw, which cancels the variance they share.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from sdaudit.analysis.curves import t975
from sdaudit.analysis.intervals import Difference, Interval, difference
from sdaudit.errors import DataError
from sdaudit.report.text import unablated

# Settings that change what the AUC means; reports that differ in them are not comparable.
COMPARABLE_CONFIG = ("layers", "fractions", "ablation_value")
# Settings that, on top of the data and the units, make two reports' draws the same draws.
PAIRING_CONFIG = ("fractions", "ablation_value", "seed")


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


def data_key(report: dict[str, Any]) -> tuple[Any, ...]:
    """What identifies the data of a report: its fingerprint where recorded, else path and size;
    with the number of samples used (a subset of the same file is other data)."""
    data = report["data"]
    if data.get("fingerprint"):
        return (data["fingerprint"], data.get("samples"))
    return (data.get("path"), data.get("samples"))


def units_key(report: dict[str, Any]) -> tuple[tuple[str, int], ...]:
    """The layers measured and their units, as the report lists them."""
    return tuple((str(layer["name"]), int(layer["channels"])) for layer in report["layers"])


def auc_interval(report: dict[str, Any]) -> tuple[Interval | None, np.ndarray | None, bool]:
    """The joint ablation AUC of a report as an :class:`Interval`, its per-draw AUCs where the
    report has them, and whether the report carried its image variance (schema 1.3 and later)."""
    s = report["summary"]
    auc = s.get("ablation_auc")
    joint = report.get("ablation") or {}
    if auc is None or not joint:
        return None, None, False
    draws = int(joint.get("draws") or 1)
    per_draw = joint.get("auc_draws")
    per = None if not per_draw or None in per_draw else np.asarray(per_draw, dtype=np.float64)
    if "auc_image_se" in joint:
        draw_se = joint.get("auc_draw_se")
        image_se = float(joint.get("auc_image_se") or 0.0)
        ci = s.get("ablation_auc_ci") or [None, None]
        return Interval(float(auc), None if draw_se is None else float(draw_se), image_se,
                        math.nan, ci[0], ci[1], draws), per, True
    # Older reports: a t-interval over the draws only; its half-width gives the draw s.e.
    ci = s.get("ablation_auc_ci") or [None, None]
    draw_se_old = None
    if draws > 1 and None not in ci:
        draw_se_old = (float(ci[1]) - float(ci[0])) / 2.0 / t975(draws - 1)
    return Interval(float(auc), draw_se_old, 0.0, math.nan, ci[0], ci[1], draws), per, False


def pairable(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether draw d of ``a`` ablated the same units of the same images as draw d of ``b``."""
    return (data_key(a) == data_key(b) and units_key(a) == units_key(b)
            and all(a["config"].get(k) == b["config"].get(k) for k in PAIRING_CONFIG))


def compare_two(a: dict[str, Any], b: dict[str, Any]) -> Difference | None:
    """``AUC(a) − AUC(b)`` with its interval (paired draws where the reports allow)."""
    ia, pa, _ = auc_interval(a)
    ib, pb, _ = auc_interval(b)
    if ia is None or ib is None:
        return None
    paired = None
    if pa is not None and pb is not None and pairable(a, b):
        m = min(len(pa), len(pb))
        if m >= 2:
            paired = pa[:m] - pb[:m]
    return difference(ia, ib, int(a["data"]["samples"]), int(b["data"]["samples"]), paired)


def _diff_dict(d: Difference) -> dict[str, Any]:
    return {"difference": d.estimate, "ci": [d.low, d.high], "paired": d.paired,
            "separable": d.separable, "draw_se": d.draw_se, "image_se": d.image_se,
            "draws_to_separate": d.draws_to_separate,
            "images_to_separate": d.images_to_separate}


def compare(paths: list[str | Path]) -> tuple[list[dict[str, Any]], list[str]]:
    """(ranking best first, warnings). Each entry names its model and report, its tie group
    (1 = the best group) and, in ``vs_next``, its difference to the next entry."""
    if len(paths) < 1:
        raise DataError("compare needs at least one report", "sdaudit compare A.json B.json ...")
    ps = [Path(p) for p in paths]
    reports = [load_report(p) for p in ps]
    names = _names(ps, reports)
    warnings: list[str] = []
    first = reports[0]
    other_data: list[str] = []
    old: list[str] = []
    for p, r in zip(ps[1:], reports[1:], strict=True):
        differ = [k for k in COMPARABLE_CONFIG if r["config"].get(k) != first["config"].get(k)]
        if differ:
            warnings.append(f"{p.name} was made with other settings than {ps[0].name} "
                            f"({', '.join(differ)}): its AUC is not directly comparable")
        if data_key(r) != data_key(first):
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
        elif not auc_interval(r)[2]:
            old.append(p.name)
        entries.append({
            "name": name, "model": r["model"]["path"], "model_sha256": r["model"]["sha256"],
            "report": str(p), "ablation_auc": s.get("ablation_auc"), "ci": list(ci),
            "draws": (r.get("ablation") or {}).get("draws"),
            "noise_auc": s.get("noise_auc"), "risk": s.get("risk"),
            "unablated_accuracy": unablated(r)["accuracy"],
            "baseline_accuracy": unablated(r)["accuracy"], "_report": r,  # deprecated name
        })
    if old:
        warnings.append(f"{', '.join(old[:3])}{' …' if len(old) > 3 else ''}: made before "
                        "report schema 1.3, their intervals hold the draw variance only")
    entries.sort(key=lambda e: (e["ablation_auc"] is None, -(e["ablation_auc"] or 0.0)))
    group = 1
    for i, e in enumerate(entries):
        e["rank"] = i + 1
        e["tie_group"] = group
        nxt = entries[i + 1] if i + 1 < len(entries) else None
        diff = None if nxt is None else compare_two(e["_report"], nxt["_report"])
        e["vs_next"] = None if diff is None else _diff_dict(diff)
        # Neighbours not told apart share a group (a chain: A ≈ B and B ≈ C puts all three in it)
        e["overlaps_next"] = bool(nxt is not None and nxt["ablation_auc"] is not None
                                  and (diff is None or not diff.separable))
        if nxt is not None and not e["overlaps_next"]:
            group += 1
    for e in entries:
        del e["_report"]
    return entries, warnings

