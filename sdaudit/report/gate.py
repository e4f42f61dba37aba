"""The gate: checks of the ablation AUC against a threshold and an earlier report."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from sdaudit.report.model import GateCheck, GateResult, Summary

if TYPE_CHECKING:
    from sdaudit.config import AuditConfig
    from sdaudit.report.build import Figures


def baseline_auc(path_text: str) -> float:
    """The ablation AUC of an earlier report (--baseline), read by compare's reader;
    DataError when there is none."""
    from sdaudit.report.reader import ablation_auc, read_report

    return ablation_auc(read_report(path_text, "--baseline"), "--baseline", path_text)


def judge(config: AuditConfig, figs: Figures, old: dict[str, Any] | None,
          samples: int) -> tuple[Summary, GateResult]:
    """The summary with what the verdict rests on, and the gate. ``old``: the --baseline report
    (already checked like with like, report.baseline), whose drop gets its interval."""
    from sdaudit.report import baseline

    summary = figs.summary
    if old is None:
        return summary, gate(config, summary.ablation_auc)
    joint = figs.ablation.joint if figs.ablation is not None else None
    diff = None
    if joint is not None and figs.joint_interval is not None:
        diff = baseline.drop(old, figs.joint_interval, joint.auc_draws, config.to_dict(), samples)
    check = baseline.drop_check(diff, float(old["summary"]["ablation_auc"]),
                                summary.ablation_auc,
                                config.gate.max_drop if config.gate.max_drop is not None else 0.0,
                                config.gate.mode)
    summary = replace(summary, risk_basis="baseline",
                      baseline_difference=baseline.difference_dict(diff))
    return summary, gate(config, summary.ablation_auc, check)


def gate(config: AuditConfig, summary_auc: float | None,
         drop: GateCheck | None = None) -> GateResult:
    """The gate's checks on the ablation AUC: ``--fail-under`` and ``--baseline``/``--max-drop``
    (``drop``: its check, from report.baseline, with the drop's interval)."""
    checks: list[GateCheck] = []
    gate = config.gate
    if gate.fail_under is not None:
        ok = summary_auc is not None and summary_auc >= gate.fail_under
        checks.append(GateCheck(
            "fail_under", ok, summary_auc, gate.fail_under,
            f"ablation AUC {summary_auc:.3f} {'≥' if ok else '<'} {gate.fail_under:.3f}"
            if summary_auc is not None else "no ablation AUC measured"))
    if drop is not None:
        checks.append(drop)
    passed = all(c.passed for c in checks)
    verdict = ("no gate set" if not checks else "passed" if passed else
               "failed: " + "; ".join(c.message for c in checks if not c.passed))
    return GateResult(passed, tuple(checks), verdict)
