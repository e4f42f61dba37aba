"""`sdaudit scan` against nets whose answers are known in closed form."""

from __future__ import annotations

import itertools
import json
import math

import jsonschema
import models
import numpy as np
import pytest
from approx import assert_reports_close
from conftest import ROOT

from sdaudit.api import audit
from sdaudit.config import AuditConfig, Gate
from sdaudit.report.json_io import dumps, load_schema, report_to_dict

FRACTIONS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def _validate(report) -> dict:
    data = report_to_dict(report)
    jsonschema.validate(data, load_schema())
    return data


@pytest.fixture
def counting(tmp_path):
    model = models.save(models.counting_net(units=10, threshold=4.5), tmp_path / "count.onnx")
    data = models.counting_data(tmp_path / "count.npz")
    return model, data


def test_random_ablation_curve_is_the_closed_form(counting):
    model, data = counting
    report = audit(model, data, AuditConfig(fractions=FRACTIONS, draws=3, device="cpu"))
    d = _validate(report)
    # k = round(10 f) units off: class 0 right iff 10 − k > 4.5, class 1 always right.
    expected = [1.0 if 10 - round(10 * f) > 4.5 else 0.5 for f in FRACTIONS]
    assert d["ablation"]["accuracy_mean"] == pytest.approx(expected)
    assert d["ablation"]["accuracy_std"] == pytest.approx([0.0] * 10)
    assert d["ablation"]["units_ablated"] == [round(10 * f) for f in FRACTIONS]
    area = sum((a + b) / 2 * 0.1 for a, b in itertools.pairwise(expected)) / 0.9
    assert d["summary"]["ablation_auc"] == pytest.approx(area, abs=1e-6)
    # Agreement with the unablated predictions equals accuracy here (the net is perfect).
    assert d["ablation"]["agreement_mean"] == pytest.approx(expected)
    # Per-class: class 1 never collapses, class 0 does.
    assert d["ablation"]["class_auc"][1] == pytest.approx(1.0)
    assert d["ablation"]["class_auc"][0] < 1.0
    assert d["baseline"]["accuracy"] == 1.0


def test_selectivity_and_importance_closed_form(tmp_path):
    """Live units fire for class 0 only (SI = 1); a dead unit has SI 0 and importance 0."""
    model = models.save(models.counting_net(units=10, threshold=8.5, dead=1), tmp_path / "m.onnx")
    data = models.counting_data(tmp_path / "d.npz")
    report = audit(model, data, AuditConfig(draws=2, device="cpu"))
    d = _validate(report)
    units = d["layers"][0]["units"]
    assert units["selectivity"][0] == pytest.approx(0.0)
    assert units["selectivity"][1:] == pytest.approx([1.0] * 9, abs=1e-6)
    assert units["preferred_class"][1:] == [0] * 9
    # 9 live units, threshold 8.5: any live unit ablated → class 0 lost → accuracy 0.5.
    assert units["importance"][0] == 0.0
    assert units["importance"][1:] == pytest.approx([0.5] * 9)
    # Mutual information of a unit that equals the class: 1 bit; a dead unit: 0.
    assert units["mutual_information"][0] == pytest.approx(0.0)
    assert units["mutual_information"][1:] == pytest.approx([1.0] * 9, abs=1e-6)
    assert units["mean"][1:] == pytest.approx([0.5] * 9)
    assert units["sd"][1:] == pytest.approx([0.5] * 9)
    assert d["layers"][0]["dead_units"] == 1


def test_mean_ablation_closed_form(counting):
    """Clamped to its mean (0.5), an ablated unit adds 0.5 for both classes."""
    model, data = counting
    report = audit(model, data, AuditConfig(fractions=FRACTIONS, draws=2, ablation_value="mean",
                                            measures=("ablation",), device="cpu"))
    d = _validate(report)
    # class 0: (10 − k) + 0.5 k > 4.5 always; class 1 is lost once 0.5 k ≥ 4.5 (a tie goes to
    # class 0, argmax's first index), i.e. at k = 9.
    expected = [1.0 if 0.5 * round(10 * f) < 4.5 else 0.5 for f in FRACTIONS]
    assert expected[-1] == 0.5
    assert d["ablation"]["accuracy_mean"] == pytest.approx(expected)


def test_noise_curve_matches_the_gaussian_closed_form(tmp_path):
    from statistics import NormalDist

    model = models.save(models.counting_net(units=10, threshold=4.5), tmp_path / "m.onnx")
    data = models.counting_data(tmp_path / "d.npz", per_class=2000)
    levels = (0.5, 1.0, 2.0, 4.0)
    report = audit(model, data, AuditConfig(measures=("noise",), noise_levels=levels, draws=2,
                                            device="cpu"))
    d = _validate(report)
    phi = NormalDist().cdf
    # Each unit's s.d. over the data is 0.5; the sum of 10 noisy units has s.d. √10·0.5·α.
    for alpha, acc in zip(levels, d["noise"]["accuracy_mean"], strict=True):
        s = math.sqrt(10) * 0.5 * alpha
        expected = 0.5 * (phi(5.5 / s) + phi(4.5 / s))
        assert acc == pytest.approx(expected, abs=0.015)
    assert d["ablation"] is None


def test_noise_levels_share_each_draw(tmp_path):
    """Common random numbers: a draw's standard-normal ε serves every level, so two levels a
    millionth apart give the same accuracy draw by draw (independent draws would differ by
    about 0.003 on 4,000 samples), and the draws of one level still differ from each other."""
    model = models.save(models.counting_net(units=10, threshold=4.5), tmp_path / "m.onnx")
    data = models.counting_data(tmp_path / "d.npz", per_class=2000)
    report = audit(model, data, AuditConfig(measures=("noise",), noise_levels=(2.0, 2.000002),
                                            draws=3, device="cpu"))
    d = _validate(report)
    acc = d["noise"]["accuracy_mean"]
    assert acc[0] == acc[1]
    assert d["noise"]["accuracy_std"][0] > 0  # three different draws


def test_measure_ablation_runs_only_that(counting):
    model, data = counting
    d = _validate(audit(model, data, AuditConfig(measures=("ablation",), device="cpu")))
    assert d["noise"] is None
    assert d["importance"] is None
    assert d["layers"][0]["units"]["selectivity"] is None
    assert d["ablation"]["ordered"] == {}


def test_same_command_twice_gives_identical_json_but_run(tmp_path):
    model, _ = models.conv(17)
    path = models.save(model, tmp_path / "conv.onnx")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((120, 2, 5, 5)).astype(np.float32)
    import onnxruntime as ort

    y = ort.InferenceSession(str(path)).run(None, {"x": x})[0].argmax(1)
    y[:10] = (y[:10] + 1) % 4
    np.savez(tmp_path / "d.npz", x=x, y=y)
    config = AuditConfig(draws=3, chunk_size=32, device="cpu")
    a = json.loads(dumps(audit(path, tmp_path / "d.npz", config)))
    b = json.loads(dumps(audit(path, tmp_path / "d.npz", config)))
    assert a.pop("run") != {}
    assert b.pop("run") != {}
    # runtime records timing-based choices (which fused pruned suffixes paid on this machine)
    for key in ("pruned_configurations",):
        a["runtime"].pop(key)
        b["runtime"].pop(key)
    # Equal up to float32 summation order: ONNX Runtime's thread pool and the timing-based
    # choice of pruned suffixes (docs/method.md) may sum a value in another order (approx.py).
    assert_reports_close(a, b)


def test_gate_fail_under_and_baseline(counting, tmp_path):
    model, data = counting
    first = audit(model, data, AuditConfig(measures=("ablation",), device="cpu"))
    auc = first.summary.ablation_auc
    assert first.gate.passed
    assert first.gate.verdict == "no gate set"
    failing = audit(model, data, AuditConfig(measures=("ablation",), device="cpu",
                                             gate=Gate(fail_under=auc + 0.01)))
    assert not failing.gate.passed
    baseline = tmp_path / "old.json"
    old = report_to_dict(first)
    old["summary"]["ablation_auc"] = auc + 0.2
    baseline.write_text(json.dumps(old))
    drop = audit(model, data, AuditConfig(measures=("ablation",), device="cpu",
                                          gate=Gate(baseline_report=str(baseline), max_drop=0.1)))
    assert not drop.gate.passed
    assert drop.gate.checks[0].value == pytest.approx(0.2, abs=1e-6)
    ok = audit(model, data, AuditConfig(measures=("ablation",), device="cpu",
                                        gate=Gate(baseline_report=str(baseline), max_drop=0.25)))
    assert ok.gate.passed


def test_schema_in_docs_is_the_shipped_one():
    shipped = (ROOT / "sdaudit" / "report" / "schema.json").read_text()
    assert (ROOT / "docs" / "report-schema.json").read_text() == shipped


def test_shipped_schema_is_generated_from_its_source():
    from sdaudit.report.schema_source import schema_text

    assert (ROOT / "sdaudit" / "report" / "schema.json").read_text() == schema_text()
