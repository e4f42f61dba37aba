"""What a CI log shows: the real entry point (`python -m sdaudit`) with stdout piped, no terminal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import models
import onnx
import pytest

from sdaudit.report.text import VERDICT_LINE_MAX, check_text, gate_text, num, verdict_line

LONG = "/backbone/stage4/block3/conv_pointwise_expand/Relu_output_0"  # 59 characters
NAMES = {"a0": LONG, "a1": "/head/Relu_output_0"}


def sdaudit(*args: str, columns: int | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed entry point as CI does: stdout and stderr are pipes, not a terminal."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    if columns is not None:
        env["COLUMNS"] = str(columns)
    return subprocess.run([sys.executable, "-m", "sdaudit", *args], capture_output=True,
                          text=True, env=env, timeout=120, check=False)


def long_named_mlp(tmp_path: Path) -> tuple[Path, Path]:
    """A two-layer MLP with long tensor names; its labels are its own predictions (accuracy 1)."""
    import numpy as np
    import onnxruntime as ort

    model = models.mlp(sizes=(4, 16, 16, 3), seed=3)[0]
    for node in model.graph.node:
        node.input[:] = [NAMES.get(n, n) for n in node.input]
        node.output[:] = [NAMES.get(n, n) for n in node.output]
    for info in model.graph.value_info:
        info.name = NAMES.get(info.name, info.name)
    onnx.checker.check_model(model)
    path = models.save(model, tmp_path / "mlp.onnx")
    x = np.random.default_rng(0).standard_normal((120, 4)).astype(np.float32)
    logits = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.savez(tmp_path / "mlp.npz", x=x, y=logits.argmax(axis=1))
    return path, tmp_path / "mlp.npz"


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("piped")
    model, data = long_named_mlp(tmp)
    out = tmp / "r.json"
    result = sdaudit("scan", str(model), "--data", str(data), "--draws", "3", "--fail-under",
                     "0.3", "--json", str(out), "-q")
    return result, json.loads(out.read_text()), (model, data, tmp)


def test_piped_text_keeps_every_number_and_column(scanned):
    result, report, _ = scanned
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "…" not in out  # rich's mark of a cut cell
    header = next(line for line in out.splitlines() if "SI mean" in line)
    assert header.rstrip().endswith("AUC")  # the layer table's last column, whole
    layer_auc = report["summary"]["per_layer_auc"][LONG]
    lines = out.splitlines()
    i = next(i for i, line in enumerate(lines) if line.strip().startswith("/backbone"))
    assert lines[i].rstrip().endswith(num(layer_auc))  # e.g. 0.961 in full, not "0.96"
    # The long name folds onto the next line (the numbers keep their width); nothing is lost.
    assert lines[i].split()[0] + lines[i + 1].split()[0] == LONG
    # 120 columns with no terminal and no COLUMNS (rich's fallback, 80, cut the AUC column).
    assert max(len(line) for line in out.splitlines()[:-1]) <= 120


def test_the_last_line_is_the_verdict(scanned):
    result, report, _ = scanned
    last = result.stdout.rstrip("\n").splitlines()[-1]
    s = report["summary"]
    lo, hi = s["ablation_auc_ci"]
    assert last == (f"sdaudit: {s['risk'].upper()} risk · ablation AUC {num(s['ablation_auc'])} "
                    f"(95% CI {num(lo)}–{num(hi)}) · gate passed: AUC "
                    f"{num(s['ablation_auc'])} ≥ 0.300")
    assert len(last) <= VERDICT_LINE_MAX


def test_a_narrow_console_widens_tables_rather_than_cutting_numbers(scanned):
    _, report, (model, data, _) = scanned
    result = sdaudit("scan", str(model), "--data", str(data), "--draws", "3", "--measure",
                     "ablation", "-q", columns=40)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    joint = report["ablation"]
    # Every row of the joint curve keeps its numbers whole: fraction, units off, mean accuracy.
    for x, off, acc in zip(joint["fractions"], joint["units_ablated"], joint["accuracy_mean"],
                           strict=True):
        assert any(line.split()[:3] == [f"{x:.3g}", str(off), num(acc)] for line in lines
                   if line.strip()), (x, off, acc)
    assert "…" not in result.stdout


def test_a_failed_gate_ends_with_its_threshold(scanned):
    _, report, (model, data, _) = scanned
    result = sdaudit("scan", str(model), "--data", str(data), "--draws", "3", "--measure",
                     "ablation", "--fail-under", "0.95", "-q")
    assert result.returncode == 1
    last = result.stdout.rstrip("\n").splitlines()[-1]
    assert last.endswith(f"gate FAILED: AUC {num(report['summary']['ablation_auc'])} < 0.950")


def test_compare_keeps_file_names_and_intervals_whole(scanned, tmp_path):
    _, report, _ = scanned
    names = []
    for i in range(2):
        path = tmp_path / f"checkpoint-epoch-{i:03d}-with-a-rather-long-name-{i}.json"
        path.write_text(json.dumps(report))
        names.append(path)
    result = sdaudit("compare", *map(str, names), columns=60)
    assert result.returncode == 0, result.stderr
    lo, hi = report["summary"]["ablation_auc_ci"]
    rows = [line for line in result.stdout.splitlines() if "mlp.onnx" in line]
    assert len(rows) == 2  # one line per model: nothing folded onto a second line
    for row, path in zip(rows, names, strict=True):
        assert f"{num(lo)}–{num(hi)}" in row
        assert f"mlp.onnx ({path.name})" in row


def test_layers_footer_says_what_was_listed(scanned):
    _, _, (model, _, _) = scanned
    everything = sdaudit("layers", str(model))
    assert everything.returncode == 0, everything.stderr
    assert everything.stdout.rstrip().splitlines()[-1].startswith("✓ = the default selection")
    chosen = sdaudit("layers", str(model), "--layers", LONG)
    assert chosen.stdout.rstrip().splitlines()[-1].startswith(
        f"listed: the 1 layers --layers {LONG} selects; ✓ = also in the default selection")


def test_numbers_never_show_a_negative_zero():
    assert num(-0.0001) == "0.000"
    assert num(-0.0) == "0.000"
    assert num(-0.0006) == "-0.001"
    assert num(None) == "–"
    assert num(float("nan")) == "–"
    assert num(3) == "3.000"


def test_gate_texts_name_value_and_threshold():
    passed = {"name": "fail_under", "passed": True, "value": 0.8061, "threshold": 0.6,
              "message": ""}
    same = {"name": "max_drop", "passed": True, "value": -0.0001, "threshold": 0.05,
            "message": ""}
    rose = {"name": "max_drop", "passed": True, "value": -0.02, "threshold": 0.05, "message": ""}
    fell = {"name": "max_drop", "passed": False, "value": 0.07, "threshold": 0.05, "message": ""}
    assert check_text(passed) == "AUC 0.806 ≥ 0.600"
    assert check_text(same) == "no drop vs baseline (drop allowed 0.050)"
    assert check_text(rose) == "rise 0.020 vs baseline (drop allowed 0.050)"
    assert check_text(fell) == "drop 0.070 > 0.050 vs baseline"
    assert gate_text({"passed": True, "checks": []}) == "no gate set"
    assert gate_text({"passed": False, "checks": [passed, fell]}) == (
        "FAILED: AUC 0.806 ≥ 0.600; drop 0.070 > 0.050 vs baseline")


def test_the_verdict_line_stays_within_160_characters():
    many = [{"name": f"check_{i}", "passed": i != 3, "value": None, "threshold": None,
             "message": f"a long explanation of check number {i} " * 2} for i in range(6)]
    report = {"summary": {"ablation_auc": 0.5, "ablation_auc_ci": [0.4, 0.6], "risk": "medium"},
              "gate": {"passed": False, "checks": many}}
    line = verdict_line(report)
    assert len(line) <= VERDICT_LINE_MAX
    assert line == ("sdaudit: MEDIUM risk · ablation AUC 0.500 (95% CI 0.400–0.600) · gate "
                    "FAILED (1 of 6 checks)")
