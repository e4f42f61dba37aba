"""Numbers and one-line texts shared by the terminal report, the CI formats and the HTML page.

They read the JSON form of a report (``report_to_dict``) so that a report written earlier renders
the same way. Nothing here truncates a number.
"""

from __future__ import annotations

import math
from typing import Any

VERDICT_LINE_MAX = 160  # characters: one line of a CI log, with room for a prefix


def num(value: Any, digits: int = 3) -> str:
    """A number with ``digits`` decimals; "–" where there is none; never "-0.000"."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    text = f"{float(value):.{digits}f}"
    if text.startswith("-") and float(text) == 0.0:  # a tiny negative rounds to zero: no sign
        text = text[1:]
    return text


def unablated(report: dict[str, Any]) -> dict[str, Any]:
    """The unablated model's figures: ``unablated`` since schema 1.3, ``baseline`` before."""
    block = report.get("unablated") or report.get("baseline")
    return block if isinstance(block, dict) else {}


def check_text(check: dict[str, Any]) -> str:
    """One gate check with its value and threshold, e.g. "AUC 0.806 ≥ 0.600"."""
    ok = bool(check.get("passed"))
    value, threshold = check.get("value"), check.get("threshold")
    name = check.get("name")
    if value is None:
        return str(check.get("message") or f"{name}: no value")
    if name == "fail_under" and threshold is not None:
        return f"AUC {num(value)} {'≥' if ok else '<'} {num(threshold)}"
    if name == "max_drop" and threshold is not None:
        if value <= 0 or num(value) == num(0.0):
            rise = num(-value)
            change = "no drop" if rise == num(0.0) else f"rise {rise}"
            return f"{change} vs baseline (drop allowed {num(threshold)})"
        return f"drop {num(value)} {'≤' if ok else '>'} {num(threshold)} vs baseline"
    return str(check.get("message") or name)


def gate_text(gate: dict[str, Any]) -> str:
    """The gate's result with every check's value and threshold, passed or not."""
    checks = gate.get("checks") or []
    if not checks:
        return "no gate set"
    return f"{'passed' if gate['passed'] else 'FAILED'}: " + "; ".join(check_text(c) for c in checks)


def verdict_line(report: dict[str, Any]) -> str:
    """The last line of a text report: risk, ablation AUC with its interval, the gate's result.

    At most :data:`VERDICT_LINE_MAX` characters: where the checks' details would make it longer,
    they are counted instead (the panel above lists them)."""
    s = report["summary"]
    parts = ["sdaudit:"]
    if s.get("ablation_auc") is not None:
        lo, hi = s.get("ablation_auc_ci") or (None, None)
        risk = s.get("risk")
        parts.append(f"{str(risk).upper()} risk ·" if risk else "not graded ·")
        parts.append(f"ablation AUC {num(s['ablation_auc'])} (95% CI {num(lo)}–{num(hi)}) ·")
    else:
        parts.append("no ablation AUC measured ·")
    gate = report["gate"]
    line = " ".join([*parts, f"gate {gate_text(gate)}"])
    if len(line) > VERDICT_LINE_MAX:
        checks = gate.get("checks") or []
        failed = sum(1 for c in checks if not c.get("passed"))
        short = (f"gate passed ({len(checks)} checks)" if gate["passed"]
                 else f"gate FAILED ({failed} of {len(checks)} checks)")
        line = " ".join([*parts, short])
    return line
