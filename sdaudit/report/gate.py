"""The gate: checks of the ablation AUC against a threshold and an earlier report."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sdaudit.report.model import GateCheck, GateResult

if TYPE_CHECKING:
    from sdaudit.config import AuditConfig


def baseline_auc(path_text: str) -> float:
    """The ablation AUC of an earlier report (--baseline), read by compare's reader;
    DataError when there is none."""
    from sdaudit.report.reader import ablation_auc, read_report

    return ablation_auc(read_report(path_text, "--baseline"), "--baseline", path_text)


def gate(config: AuditConfig, summary_auc: float | None) -> GateResult:
    """The gate's checks on the ablation AUC: ``--fail-under`` and ``--baseline``/``--max-drop``."""
    checks: list[GateCheck] = []
    gate = config.gate
    if gate.fail_under is not None:
        ok = summary_auc is not None and summary_auc >= gate.fail_under
        checks.append(GateCheck(
            "fail_under", ok, summary_auc, gate.fail_under,
            f"ablation AUC {summary_auc:.3f} {'≥' if ok else '<'} {gate.fail_under:.3f}"
            if summary_auc is not None else "no ablation AUC measured"))
    if gate.baseline_report is not None:
        old_auc = baseline_auc(gate.baseline_report)
        max_drop = gate.max_drop if gate.max_drop is not None else 0.0
        # The baseline's AUC was stored to 7 significant digits: compare this run's at the same
        # precision, or an identical rerun "drops" by the rounding (4e-8) and fails the gate.
        drop = None if summary_auc is None else old_auc - float(f"{summary_auc:.7g}")
        ok = drop is not None and drop <= max_drop + 1e-12
        msg = (f"ablation AUC {summary_auc:.3f} vs baseline {old_auc:.3f}: drop {drop:+.3f} "
               f"(allowed {max_drop:.3f})" if drop is not None else "no ablation AUC measured")
        checks.append(GateCheck("max_drop", ok, drop, max_drop, msg))
    passed = all(c.passed for c in checks)
    verdict = ("no gate set" if not checks else "passed" if passed else
               "failed: " + "; ".join(c.message for c in checks if not c.passed))
    return GateResult(passed, tuple(checks), verdict)
