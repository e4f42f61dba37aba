"""The verdict of a scan: intervals from draws and images, --draws auto, --baseline like with
like, --gate significant. Tiny nets with closed forms (tests/models.py)."""

from __future__ import annotations

import json
import math

import models
import numpy as np
import pytest

from sdaudit.analysis.intervals import t_quantile, trapezoid_weights
from sdaudit.api import audit
from sdaudit.cli.app import run
from sdaudit.config import DEFAULT_FRACTIONS, AuditConfig, Gate
from sdaudit.report.json_io import report_to_dict


@pytest.fixture
def counting(tmp_path):
    model = models.save(models.counting_net(units=10, threshold=4.5), tmp_path / "count.onnx")
    data = models.counting_data(tmp_path / "count.npz")
    return model, data


def _image_se_by_hand() -> tuple[float, float]:
    """Counting net, 50 + 50 images: class 1 is always right (area 1); class 0 is right while
    at most 5 of 10 units are off. The draws do not matter; the images do."""
    w = trapezoid_weights(DEFAULT_FRACTIONS)
    a0 = float(sum(wf for wf, f in zip(w, DEFAULT_FRACTIONS, strict=True)
                   if 10 - round(10 * f) > 4.5))
    a = np.array([a0] * 50 + [1.0] * 50)
    return float(a.mean()), float(a.std(ddof=1) / math.sqrt(len(a)))


def test_image_variance_of_the_counting_net(counting):
    model, data = counting
    report = audit(model, data, AuditConfig(measures=("ablation",), draws=4, device="cpu"))
    auc, se = _image_se_by_hand()
    joint = report.ablation.joint
    assert joint.auc == pytest.approx(auc, abs=1e-6)
    assert joint.auc_draw_se == pytest.approx(0.0, abs=1e-9)  # every draw is the same
    assert joint.auc_image_se == pytest.approx(se, rel=1e-6)
    # the draw part is 0: the degrees of freedom are the images' (n − 1 = 99)
    half = t_quantile(99) * se
    assert report.summary.ablation_auc_ci == pytest.approx((auc - half, auc + half), abs=1e-6)
    assert joint.interval == "draws and images"


def test_auto_stops_when_the_images_set_the_width(counting):
    model, data = counting
    report = audit(model, data, AuditConfig(measures=("ablation",), device="cpu"))
    draws = report.summary.draws
    # zero draw variance: the first batch already shows more draws cannot help
    assert draws["mode"] == "auto"
    assert draws["used"] == 5
    assert draws["passes"] == 1
    assert draws["stopped"] == "images"
    assert any("the images, not the draws" in note for note in report.summary.notes)


def test_one_draw_says_so_instead_of_a_zero_width_interval(tmp_path):
    model = models.save(models.mlp(sizes=(4, 8, 3), seed=1)[0], tmp_path / "m.onnx")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 4)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=rng.integers(0, 3, 60))
    report = audit(model, tmp_path / "d.npz", AuditConfig(measures=("ablation",), draws=1,
                                                          device="cpu"))
    assert report.summary.ablation_auc_ci is None
    assert report.ablation.joint.auc_ci_low is None
    assert any("one draw" in note for note in report.summary.notes)
    d = report_to_dict(report)
    assert d["summary"]["ablation_auc_ci"] is None


def test_auto_draws_are_nested_and_reach_their_bounds(tmp_path):
    model = models.save(models.mlp(sizes=(4, 32, 16, 3), seed=2)[0], tmp_path / "m.onnx")
    rng = np.random.default_rng(1)
    # unlabelled: agreement with the unablated model, whose draw variance dominates here
    np.savez(tmp_path / "d.npz", x=rng.standard_normal((300, 4)).astype(np.float32))
    fixed = audit(model, tmp_path / "d.npz", AuditConfig(measures=("ablation",), draws=5,
                                                         device="cpu", layers="all"))
    auto = audit(model, tmp_path / "d.npz", AuditConfig(measures=("ablation",), draws="auto",
                                                        ci_target=1e-4, max_draws=12,
                                                        device="cpu", layers="all"))
    assert auto.summary.draws["used"] == 12
    assert auto.summary.draws["stopped"] in (
        "max_draws", "images")
    assert auto.ablation.joint.draws == 12
    # draw k is the same whatever the stopping point: the joint curve and each layer's
    assert auto.ablation.joint.auc_draws[:5] == pytest.approx(fixed.ablation.joint.auc_draws)
    for name, curve in fixed.ablation.per_layer.items():
        assert auto.ablation.per_layer[name].auc_draws[:5] == pytest.approx(curve.auc_draws)
    # the AUC is the mean of the per-draw AUCs (trapezoids are linear)
    assert auto.ablation.joint.auc == pytest.approx(np.mean(auto.ablation.joint.auc_draws),
                                                    abs=1e-9)
    hw = auto.summary.draws["half_width"]
    lo, hi = auto.summary.ablation_auc_ci
    assert hw == pytest.approx((hi - lo) / 2, abs=1e-9)


def _scan(model, data, out, *extra: str) -> int:
    return run(["scan", str(model), "--data", str(data), "-q", "--measure", "ablation",
                "--json", str(out), "--format", "json", *extra])


@pytest.mark.parametrize(("change", "named"), [
    (["--fractions", "0,0.5"], "fractions"),
    (["--ablation-value", "mean"], "ablation_value"),
])
def test_baseline_with_other_settings_is_refused(counting, tmp_path, capsys, change, named):
    model, data = counting
    assert _scan(model, data, tmp_path / "old.json", "--draws", "2") == 0
    capsys.readouterr()
    code = _scan(model, data, tmp_path / "new.json", "--draws", "2", "--baseline",
                 str(tmp_path / "old.json"), *change)
    err = capsys.readouterr().err
    assert code == 2
    assert named in err
    assert "other settings" in err
    assert "Traceback" not in err
    assert not (tmp_path / "new.json").exists()


def test_baseline_on_other_data_or_layers_is_refused(tmp_path, capsys):
    model = models.save(models.mlp(sizes=(4, 6, 5, 3), seed=3)[0], tmp_path / "m.onnx")
    rng = np.random.default_rng(2)
    for name, n in (("a", 40), ("b", 41)):
        np.savez(tmp_path / f"{name}.npz", x=rng.standard_normal((n, 4)).astype(np.float32),
                 y=rng.integers(0, 3, n))
    assert _scan(model, tmp_path / "a.npz", tmp_path / "old.json", "--draws", "2",
                 "--layers", "all") == 0
    capsys.readouterr()
    assert _scan(model, tmp_path / "b.npz", tmp_path / "n1.json", "--draws", "2",
                 "--layers", "all", "--baseline", str(tmp_path / "old.json")) == 2
    assert "other data" in capsys.readouterr().err
    assert _scan(model, tmp_path / "a.npz", tmp_path / "n2.json", "--draws", "2",
                 "--layers", "first:1", "--baseline", str(tmp_path / "old.json")) == 2
    err = capsys.readouterr().err
    assert "other layers" in err
    assert len(err.strip().splitlines()) <= 2


def test_baseline_with_other_draws_warns(counting, tmp_path, capsys):
    model, data = counting
    assert _scan(model, data, tmp_path / "old.json", "--draws", "3") == 0
    assert _scan(model, data, tmp_path / "new.json", "--draws", "5", "--baseline",
                 str(tmp_path / "old.json")) == 0
    report = json.loads((tmp_path / "new.json").read_text())
    assert any("--draws 3" in note for note in report["summary"]["notes"])
    assert report["summary"]["risk_basis"] == "baseline"
    diff = report["summary"]["baseline_difference"]
    assert diff["difference"] == pytest.approx(0.0, abs=1e-6)
    assert diff["paired"]


def test_gate_significant_uses_the_interval_of_the_drop(counting, tmp_path):
    model, data = counting
    first = audit(model, data, AuditConfig(measures=("ablation",), draws=4, device="cpu"))
    se = first.ablation.joint.auc_image_se
    # paired draws: every per-draw difference is δ, so the draws add nothing; both reports'
    # image parts do (taken as independent): half-width t(99)·√2·s.e.
    half = t_quantile(99) * math.sqrt(2) * se

    def baseline(delta: float) -> str:
        old = report_to_dict(first)
        old["summary"]["ablation_auc"] += delta
        old["ablation"]["auc_draws"] = [a + delta for a in old["ablation"]["auc_draws"]]
        path = tmp_path / f"old{delta}.json"
        path.write_text(json.dumps(old))
        return str(path)

    def gate(delta: float, mode: str):
        return audit(model, data, AuditConfig(
            measures=("ablation",), draws=4, device="cpu",
            gate=Gate(baseline_report=baseline(delta), max_drop=0.0, mode=mode))).gate

    small, large = 0.5 * half, 2.0 * half
    point = gate(small, "point")
    assert not point.passed  # the drop measured is above 0
    within = gate(small, "significant")
    assert within.passed  # … but not significantly
    check = within.checks[0]
    assert check.mode == "significant"
    assert check.value == pytest.approx(small, abs=1e-6)
    assert check.interval == pytest.approx((small - half, small + half), abs=1e-5)
    assert "not significantly" in check.message
    assert not gate(large, "significant").passed


def test_gate_significant_needs_max_drop(counting, capsys):
    model, data = counting
    assert run(["scan", str(model), "--data", str(data), "-q", "--gate", "significant"]) == 2
    assert "--gate significant" in capsys.readouterr().err


@pytest.mark.parametrize(("old", "new", "words"), [
    (0.8, 0.8, "no drop"), (0.8, 0.79999995, "no drop"), (0.8, 0.75, "drop 0.050"),
    (0.8, 0.85, "rise 0.050")])
def test_drop_message_never_shows_a_signed_zero(old, new, words):
    from sdaudit.analysis.intervals import Difference
    from sdaudit.report.baseline import drop_check

    diff = Difference(new - old, -0.0001, 0.0001, True, 0.0, 0.0, False, None, None)
    for mode in ("point", "significant"):
        message = drop_check(diff, old, new, 0.02, mode).message
        assert words in message
        assert "+0.000" not in message
        assert "-0.000" not in message
