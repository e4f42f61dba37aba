"""Report formats for CI systems: JUnit XML and Markdown (pull-request comments)."""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape, quoteattr

from sdaudit.report.text import check_text, gate_text, num, unablated


def _f(value: Any, digits: int = 3) -> str:
    return num(value, digits) if isinstance(value, float) or value is None else str(value)


ERROR_KINDS = {2: "could not run", 3: "internal error", 130: "interrupted", 143: "terminated"}


def junit_error(model: str, exit_code: int, message: str) -> str:
    """A valid JUnit document for a scan that did not finish (exit 2, 3, 130, 143): one test case
    in error, so that a CI step publishing test results shows why instead of an empty file."""
    kind = ERROR_KINDS.get(exit_code, "error")
    text = f"sdaudit exited with {exit_code} ({kind}): {message}"
    return "\n".join([
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<testsuites name="sdaudit" tests="1" failures="0" errors="1">',
        f'  <testsuite name={quoteattr("sdaudit: " + model)} tests="1" failures="0" errors="1" '
        'time="0.000">',
        '    <testcase classname="sdaudit.gate" name="audit">',
        f'      <error message={quoteattr(message)} type={quoteattr(kind)}>{escape(text)}</error>',
        "    </testcase>",
        "  </testsuite>",
        "</testsuites>",
    ]) + "\n"


def markdown_error(model: str, exit_code: int, message: str) -> str:
    """The Markdown summary of a scan that did not finish: what failed and the exit code."""
    kind = ERROR_KINDS.get(exit_code, "error")
    fence = "```"
    return (f"### sdaudit: reliance on single directions — ⚠️ {kind} (exit {exit_code})\n\n"
            f"Model `{model}`: no audit result.\n\n{fence}\n{message}\n{fence}\n")


def junit(report: dict[str, Any]) -> str:
    """One test suite: a test case for the audit itself and one per gate check."""
    s = report["summary"]
    model = report["model"]["path"]
    summary = (f"ablation AUC {_f(s['ablation_auc'])}, noise AUC {_f(s['noise_auc'])}, risk "
               f"{s['risk']}, unablated accuracy {_f(unablated(report)['accuracy'])}")
    cases: list[tuple[str, str | None, str]] = [("audit", None, summary)]
    for check in report["gate"]["checks"]:
        text = check_text(check)
        cases.append((check["name"], None if check["passed"] else text, text))
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
        f"### sdaudit: reliance on single directions — {icon} gate {gate_text(gate)}", "",
        f"Model `{report['model']['path']}` on `{report['data']['path']}` "
        f"({report['data']['samples']} samples).", "",
        "| measure | value |", "|---|---:|",
        f"| unablated accuracy | {_f(unablated(report)['accuracy'])} |",
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
        lines.append(f"\n- {'✅' if check['passed'] else '❌'} {check['name']}: "
                     f"{check_text(check)}")
    for note in s.get("notes", []):
        lines.append(f"\n> {note}")
    return "\n".join(lines) + "\n"
