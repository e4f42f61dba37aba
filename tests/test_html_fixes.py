"""The HTML report's gate colours, distinguishable histograms and compare's unbroken cells."""

from __future__ import annotations

import json
import re

import pytest
from test_ci_output import long_named_mlp

from sdaudit.cli.app import run
from sdaudit.report.html import render_comparison, render_report
from sdaudit.report.text import num


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("html")
    model, data = long_named_mlp(tmp)
    out = tmp / "r.json"
    assert run(["scan", str(model), "--data", str(data), "--draws", "2", "-q", "--json",
                str(out), "--format", "json", "--measure", "selectivity,ablation"]) == 0
    return json.loads(out.read_text())


def with_gate(report, passed: bool, threshold: float):
    auc = report["summary"]["ablation_auc"]
    check = {"name": "fail_under", "passed": passed, "value": auc, "threshold": threshold,
             "message": ""}
    return {**report, "gate": {"passed": passed, "checks": [check], "verdict": ""}}


def test_a_failed_gate_is_red_and_a_passed_one_green_both_with_the_threshold(report):
    auc = num(report["summary"]["ablation_auc"])
    failed = render_report(with_gate(report, False, 0.99))
    assert f"<p class='gate fail'>Gate: FAILED: AUC {auc} &lt; 0.990</p>" in failed
    assert ".gate.fail{color:#fff;background:#cf222e}" in failed
    passed = render_report(with_gate(report, True, 0.1))
    assert f"<p class='gate pass'>Gate: passed: AUC {auc} ≥ 0.100</p>" in passed
    assert "<p class='gate none'>Gate: no gate set</p>" in render_report(report)


def test_selectivity_histograms_are_opaque_bars_in_one_colour_per_layer(report):
    page = render_report(report)
    section = page.split("<h2>Class selectivity per layer</h2>")[1].split("</svg>")[0]
    styles = re.findall(r'<path d="M [^"]*" clip-path="[^"]*" style="([^"]*)"', section)
    bars = [style for style in styles if style.startswith("fill: #")]  # not grid lines
    fills = {style.split(";")[0].removeprefix("fill: ") for style in bars}
    assert {"#1f77b4", "#ff7f0e"} <= fills  # the two layers' colours (matplotlib's cycle)
    assert not any("opacity" in style for style in bars)  # no translucent bars over each other


def test_compare_cells_never_wrap_and_the_table_sits_below_the_figure(report, tmp_path):
    entry = {"rank": 1, "name": "model.onnx (cifar10-resnet20-checkpoint-epoch-010.json)",
             "ablation_auc": 0.806, "ci": [0.716, 0.896], "overlaps_next": False,
             "unablated_accuracy": 1.0}
    page = render_comparison([entry], [])
    assert "td,th{white-space:nowrap}" in page
    assert "<div class='row stacked'>" in page
    assert "<td>0.716–0.896</td>" in page
