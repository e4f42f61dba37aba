"""``--baseline``: compare a scan with an earlier report like with like, and gate on the drop.

A baseline made with other fractions, another ablation value, other layers or other data
measures something else: its AUC is no reference, and the scan refuses it (exit 2) naming the
settings that differ. Other draws (or another draw mode) only change the precision: a warning.
The drop's 95 % interval comes from both reports' draw and image variance (paired draw by draw
where the two share data, units and seed; see :mod:`sdaudit.report.compare`).
"""

from __future__ import annotations

from typing import Any

from sdaudit.analysis.intervals import Difference, Interval, difference
from sdaudit.errors import BadFlagError
from sdaudit.report.compare import PAIRING_CONFIG, auc_interval, data_key, units_key
from sdaudit.report.model import GateCheck

# Settings a baseline must share: they define what the AUC measures.
# A report stores 7 significant digits: a drop this small is the rounding of the stored AUC.
ROUNDING = 1e-6
SAME_SETTINGS = ("fractions", "ablation_value")


def _short(value: Any) -> str:
    text = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) \
        if isinstance(value, list | tuple) else str(value)
    return text if len(text) <= 40 else text[:37] + "…"


def load(path: str) -> dict[str, Any]:
    """The baseline report, through the one report reader."""
    from sdaudit.report.reader import read_report

    return read_report(path, "--baseline")


def check_settings(old: dict[str, Any], config: dict[str, Any], path: str) -> list[str]:
    """Refuse (BadFlagError) a baseline made with other fractions or ablation value; the
    warnings where only the draws differ. Runs before any work."""
    cfg = old.get("config") or {}
    differ = [f"{k} {_short(cfg.get(k))} vs {_short(config.get(k))}" for k in SAME_SETTINGS
              if k in cfg and _norm(cfg.get(k)) != _norm(config.get(k))]
    if differ:
        raise BadFlagError(f"--baseline {path!r} was made with other settings: "
                           f"{'; '.join(differ)}", "scan with the baseline's settings, or make a "
                           "new baseline with these")
    warnings = []
    if cfg.get("draws") != config.get("draws"):
        warnings.append(f"--baseline {path!r} was made with --draws {cfg.get('draws')}, this "
                        f"scan with {config.get('draws')}: same measure, other precision (the "
                        "drop's interval accounts for both)")
    return warnings


def check_subject(old: dict[str, Any], layers: tuple[tuple[str, int], ...],
                  data: dict[str, Any], path: str) -> None:
    """Refuse a baseline measured on other layers or other data (after both are known, before
    the sweep)."""
    differ = []
    if units_key(old) != layers:
        old_names = [name for name, _ in units_key(old)]
        differ.append(f"layers {_short(old_names)} vs {_short([name for name, _ in layers])}")
    if data_key(old) != data_key({"data": data}):
        fp_old = old["data"].get("fingerprint") or old["data"].get("path")
        fp_new = data.get("fingerprint") or data.get("path")
        differ.append(f"data {str(fp_old)[:24]} ({old['data'].get('samples')} samples) vs "
                      f"{str(fp_new)[:24]} ({data.get('samples')} samples)")
    if differ:
        raise BadFlagError(f"--baseline {path!r} was measured on other {'; '.join(differ)}",
                           "compare with a baseline of the same layers and data")


def _norm(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(round(float(v), 9) if isinstance(v, int | float) else v for v in value)
    return value


def drop(old: dict[str, Any], new: Interval, new_per_draw: tuple[float, ...],
         new_config: dict[str, Any], samples: int) -> Difference | None:
    """``baseline AUC − this AUC`` with its 95 % interval."""
    iv_old, per_old, _ = auc_interval(old)
    if iv_old is None:
        return None
    paired = None
    if per_old is not None and new_per_draw and all(
            old["config"].get(k) == new_config.get(k) for k in PAIRING_CONFIG):
        # check_subject has made sure data and units are the same
        m = min(len(per_old), len(new_per_draw))
        if m >= 2:
            import numpy as np

            paired = per_old[:m] - np.asarray(new_per_draw[:m])
    return difference(iv_old, new, int(old["data"]["samples"]), samples, paired)


def drop_check(diff: Difference | None, old_auc: float, new_auc: float | None, max_drop: float,
               mode: str) -> GateCheck:
    """The max_drop check: on the drop measured ("point") or on its interval ("significant")."""
    if new_auc is None or diff is None:
        return GateCheck("max_drop", False, None, max_drop, "no ablation AUC measured",
                         None, mode)
    # The baseline's AUC was stored to 7 significant digits: compare this run's at the same
    # precision, or an identical rerun "drops" by the rounding (4e-8)
    value = old_auc - float(f"{new_auc:.7g}")
    ci = (diff.low, diff.high)
    shown = f" (95% CI of the drop {_signed(diff.low)} to {_signed(diff.high)})" \
        if diff.low is not None and diff.high is not None else " (no interval: one draw)"
    change = _change(value)
    if mode == "significant":
        # fail only when even the low end of the drop's interval is past the allowance
        ok = diff.low is None or diff.low <= max_drop + ROUNDING
        verdict = "not significantly more" if ok else "significantly more"
        msg = (f"ablation AUC {new_auc:.3f} vs baseline {old_auc:.3f}: {change}{shown}, "
               f"{verdict} than allowed {max_drop:.3f}")
    else:
        ok = value <= max_drop + ROUNDING
        msg = (f"ablation AUC {new_auc:.3f} vs baseline {old_auc:.3f}: {change}{shown} "
               f"(allowed {max_drop:.3f})")
    return GateCheck("max_drop", ok, value, max_drop, msg, ci, mode)


def _signed(x: float) -> str:
    """+0.012 / −0.012 / 0.000: never "-0.000" or "+0.000" for what rounds to zero."""
    text = f"{x:+.3f}"
    return "0.000" if text in ("+0.000", "-0.000") else text


def _change(drop: float) -> str:
    """The drop in words: "drop 0.012", "rise 0.012" or "no drop" (rounding to 0.000)."""
    text = f"{abs(drop):.3f}"
    if text == "0.000":
        return "no drop"
    return f"drop {text}" if drop > 0 else f"rise {text}"


def difference_dict(diff: Difference | None) -> dict[str, Any] | None:
    """The summary's baseline_difference: this AUC − the baseline's, with its interval."""
    if diff is None:
        return None
    return {"difference": -diff.estimate,
            "ci": [None if diff.high is None else -diff.high,
                   None if diff.low is None else -diff.low],
            "paired": diff.paired, "significant": diff.separable}
