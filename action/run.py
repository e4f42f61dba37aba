"""The step behind action.yml: run `sdaudit scan` from the action's inputs, publish its verdict.

Inputs arrive as environment variables (SDAUDIT_MODEL, SDAUDIT_DATA, SDAUDIT_THRESHOLDS,
SDAUDIT_BASELINE, SDAUDIT_CONFIG, SDAUDIT_ARGS, SDAUDIT_REPORT); outputs go to $GITHUB_OUTPUT
(verdict, auc, auc_ci_low, auc_ci_high, risk, report, exit_code) and the Markdown summary to
$GITHUB_STEP_SUMMARY. The step exits with sdaudit's own exit code (0 passed, 1 gate failed, 2
could not run, 3 internal error), so a failed gate fails the job.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path


def thresholds(text: str) -> list[str]:
    """``0.5`` (the lowest acceptable ablation AUC) or ``fail-under=0.5, max-drop=0.05,
    risk-thresholds=0.7/0.5``: gate and grading flags of scan."""
    text = text.strip()
    if not text:
        return []
    if "=" not in text:
        return ["--fail-under", text]
    args: list[str] = []
    for item in text.replace(";", ",").split(","):
        if not item.strip():
            continue
        key, _, value = item.partition("=")
        key = key.strip()
        if key not in ("fail-under", "max-drop", "risk-thresholds"):
            sys.exit(f"sdaudit action: thresholds: unknown key {key!r} (use fail-under, "
                     "max-drop, risk-thresholds)")
        args += [f"--{key}", value.strip().replace("/", ",")]
    return args


def main() -> int:
    env = os.environ
    report = Path(env.get("SDAUDIT_REPORT") or "sdaudit-report.json")
    argv = [sys.executable, "-m", "sdaudit", "scan", env["SDAUDIT_MODEL"]]
    if env.get("SDAUDIT_DATA"):
        argv += ["--data", env["SDAUDIT_DATA"]]
    if env.get("SDAUDIT_CONFIG"):
        argv += ["--config", env["SDAUDIT_CONFIG"]]
    if env.get("SDAUDIT_BASELINE"):
        argv += ["--baseline", env["SDAUDIT_BASELINE"]]
    argv += thresholds(env.get("SDAUDIT_THRESHOLDS", ""))
    argv += shlex.split(env.get("SDAUDIT_ARGS", ""))
    argv += ["--json", str(report), "--format", "markdown", "--quiet"]
    result = subprocess.run(argv, stdout=subprocess.PIPE, text=True, check=False)
    summary = env.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as fh:
            fh.write(result.stdout)
    data = json.loads(report.read_text()) if result.returncode in (0, 1) else None
    s = data["summary"] if data else {}
    ci = s.get("ablation_auc_ci") or [None, None]
    gate = data["gate"] if data else None
    verdict = ("error" if gate is None else "no gate set" if not gate["checks"]
               else "passed" if gate["passed"] else "failed")
    outputs = {"verdict": verdict, "auc": s.get("ablation_auc"), "auc_ci_low": ci[0],
               "auc_ci_high": ci[1], "risk": s.get("risk"),
               "report": str(report) if data else "", "exit_code": result.returncode}
    target = env.get("GITHUB_OUTPUT")
    if target:
        with open(target, "a", encoding="utf-8") as fh:
            for key, value in outputs.items():
                fh.write(f"{key}={'' if value is None else value}\n")
    print(f"sdaudit: verdict {verdict}, ablation AUC {outputs['auc']} (exit {result.returncode})")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
