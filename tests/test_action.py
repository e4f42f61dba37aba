"""The reusable GitHub Action: action/run.py (its one step) run as the runner would run it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import models
import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_action(tmp_path: Path, **inputs: str) -> tuple[int, dict[str, str], str]:
    """(exit code, $GITHUB_OUTPUT as a dict, $GITHUB_STEP_SUMMARY)."""
    out, summary = tmp_path / "github_output", tmp_path / "step_summary"
    out.write_text("")
    summary.write_text("")
    env = {**os.environ, "GITHUB_OUTPUT": str(out), "GITHUB_STEP_SUMMARY": str(summary),
           "SDAUDIT_REPORT": str(tmp_path / "report.json"),
           **{f"SDAUDIT_{k.upper()}": v for k, v in inputs.items()}}
    result = subprocess.run([sys.executable, str(ROOT / "action" / "run.py")], env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    outputs = dict(line.split("=", 1) for line in out.read_text().splitlines())
    return result.returncode, outputs, summary.read_text()


@pytest.fixture
def counting(tmp_path):
    return (str(models.save(models.counting_net(), tmp_path / "m.onnx")),
            str(models.counting_data(tmp_path / "d.npz")))


def test_a_passed_gate_publishes_verdict_and_auc(counting, tmp_path):
    model, data = counting
    code, outputs, summary = run_action(tmp_path, model=model, data=data, thresholds="0.3",
                                        args="--draws 2 --measure ablation")
    assert code == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert outputs["verdict"] == "passed"
    assert float(outputs["auc"]) == report["summary"]["ablation_auc"]
    assert [float(outputs["auc_ci_low"]), float(outputs["auc_ci_high"])] == \
        report["summary"]["ablation_auc_ci"]
    assert outputs["exit_code"] == "0"
    assert summary.startswith("### sdaudit: reliance on single directions — ✅ gate passed")


def test_a_failed_gate_fails_the_step(counting, tmp_path):
    model, data = counting
    code, outputs, _ = run_action(tmp_path, model=model, data=data,
                                  thresholds="fail-under=0.99, risk-thresholds=0.9/0.8",
                                  args="--draws 2 --measure ablation")
    assert code == 1
    assert outputs["verdict"] == "failed"
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["config"]["risk"] == {"low": 0.9, "medium": 0.8}


def test_an_error_is_published_too(counting, tmp_path):
    model, _ = counting
    code, outputs, summary = run_action(tmp_path, model=model, data=str(tmp_path / "no.npz"))
    assert code == 2
    assert outputs["verdict"] == "error"
    assert outputs["auc"] == ""
    assert "could not run (exit 2)" in summary


def test_action_yml_declares_what_the_step_reads_and_writes():
    yaml = pytest.importorskip("yaml")
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    assert {"model", "data", "thresholds"} <= set(action["inputs"])
    assert action["inputs"]["model"]["required"] is True
    assert {"verdict", "auc"} <= set(action["outputs"])
    steps = action["runs"]["steps"]
    scan = next(s for s in steps if s.get("id") == "scan")
    # Every input reaches the step, and every output reads a key run.py writes.
    assert {f"SDAUDIT_{k.upper().replace('-', '_')}" for k in action["inputs"]
            if k != "python-version"} <= set(scan["env"])
    written = set(re.findall(r'"(\w+)": ', (ROOT / "action" / "run.py").read_text()))
    for name, output in action["outputs"].items():
        key = re.search(r"steps\.scan\.outputs\.(\w+)", output["value"]).group(1)
        assert key in written, name
