"""Report formats for CI systems: JUnit XML and Markdown (pull-request comments)."""

from __future__ import annotations

import math
from typing import Any
from xml.sax.saxutils import escape, quoteattr


def _f(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def junit(report: dict[str, Any]) -> str:
    """One test suite: a test case for the audit itself and one per gate check."""
    s = report["summary"]
    model = report["model"]["path"]
    cases = [("audit", None, f"ablation AUC {_f(s['ablation_auc'])}, noise AUC "
              f"{_f(s['noise_auc'])}, risk {s['risk']}, unablated accuracy "
              f"{_f(report['baseline']['accuracy'])}")]
    for check in report["gate"]["checks"]:
        cases.append((check["name"], None if check["passed"] else check["message"],
                      check["message"]))
    failures = sum(1 for _, failure, _ in cases if failure)
    duration = float(report.get("run", {}).get("duration_s") or 0.0)
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             f'<testsuites name="sdaudit" tests="{len(cases)}" failures="{failures}">',
             f'  <testsuite name={quoteattr("sdaudit: " + str(model))} tests="{len(cases)}" '
             f'failures="{failures}" errors="0" time="{duration:.3f}">']
    for name, failure, message in cases:
        lines.append(f'    <testcase classname="sdaudit.gate" name={quoteattr(name)}>')
        if failure:
            lines.append(f'      <failure message={quoteattr(failure)}>{escape(failure)}</failure>')
        lines.append(f"      <system-out>{escape(message)}</system-out>")
        lines.append("    </testcase>")
    lines += ["  </testsuite>", "</testsuites>"]
    return "\n".join(lines) + "\n"


def markdown(report: dict[str, Any]) -> str:
    """A short summary for a pull-request comment."""
    s = report["summary"]
    gate = report["gate"]
    icon = "✅" if gate["passed"] else "❌"
    ci = s.get("ablation_auc_ci") or [None, None]
    lines = [
        f"### sdaudit: reliance on single directions — {icon} {gate['verdict']}", "",
        f"Model `{report['model']['path']}` on `{report['data']['path']}` "
        f"({report['data']['samples']} samples).", "",
        "| measure | value |", "|---|---:|",
        f"| unablated accuracy | {_f(report['baseline']['accuracy'])} |",
        f"| ablation AUC | {_f(s['ablation_auc'])} ({_f(ci[0])}–{_f(ci[1])}) |",
        f"| noise AUC | {_f(s['noise_auc'])} |",
        f"| risk | **{s['risk'] or '–'}** |",
    ]
    if report["layers"]:
        lines += ["", "| layer | units | SI mean | ρ(SI, importance) | layer AUC |",
                  "|---|---:|---:|---:|---:|"]
        for layer in report["layers"]:
            lines.append(f"| `{layer['name']}` | {layer['channels']} | "
                         f"{_f(layer['selectivity_mean'])} | "
                         f"{_f(layer['importance_selectivity_spearman'], 2)} | "
                         f"{_f(s['per_layer_auc'].get(layer['name']))} |")
    for check in gate["checks"]:
        lines.append(f"\n- {'✅' if check['passed'] else '❌'} {check['name']}: {check['message']}")
    for note in s.get("notes", []):
        lines.append(f"\n> {note}")
    return "\n".join(lines) + "\n"
