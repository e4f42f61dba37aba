"""Perturbed outputs that hold NaN or infinity are counted as wrong and named in a note."""

from __future__ import annotations

import json

import models
import numpy as np
from typer.testing import CliRunner

from sdaudit.analysis.metrics import choose_metric
from sdaudit.cli.app import app
from sdaudit.runtime.counts import SweepCounts


def test_classification_counts_nonfinite_outputs_as_wrong():
    metric = choose_metric("classification", "z", ("N", 3), None, None)
    ref_out = np.array([[3.0, 0, 0], [0, 3.0, 0]], dtype=np.float32)
    labels = np.array([0, 1])
    metric.setup(ref_out, labels)
    ref = metric.reference(ref_out)
    counts = SweepCounts.zeros(2, metric.classes)
    # configuration 0: both right; configuration 1: sample 0 right, sample 1 NaN
    out = np.concatenate([ref_out, np.array([[3.0, 0, 0], [np.nan, np.nan, np.nan]],
                                            dtype=np.float32)])
    metric.accumulate(counts, np.arange(2), out, 2, metric.targets(labels, ref), ref)
    assert counts.nonfinite.tolist() == [0, 1]
    assert counts.correct.tolist() == [2, 1]  # the NaN sample is wrong, not argmax 0 by chance
    assert counts.agree.tolist() == [2, 1]


def test_ablating_the_norm_gives_a_note(tmp_path):
    model = models.save(models.l2_embedding(), tmp_path / "emb.onnx")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "x.npz", x=rng.standard_normal((40, 4)).astype(np.float32) + 1.0)
    out = tmp_path / "r.json"
    result = CliRunner().invoke(app, [
        "scan", str(model), "--data", str(tmp_path / "x.npz"), "--layers", "c",
        "--measure", "ablation", "--draws", "1", "--fractions", "0,1", "--no-per-layer", "-q",
        "--metric", "relative", "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    notes = [n for n in report["summary"]["notes"] if "NaN or infinite" in n]
    assert notes, report["summary"]["notes"]
    # the outputs are NaN once the one unit is ablated: they score 0 (a sample whose
    # unablated embedding is already 0, every Relu off, may score otherwise)
    assert report["ablation"]["accuracy_mean"][-1] < 0.1
    assert report["ablation"]["accuracy_mean"][0] == 1.0


def test_few_samples_say_the_verdict_speaks_for_them_only(tmp_path):
    """One sample: no variance over images can enter the interval, and the report says so."""
    from sdaudit.runtime.passes import FEW_SAMPLES

    model = models.save(models.l2_embedding(), tmp_path / "emb.onnx")
    for n, words in ((1, "cannot include the variance over images"), (30, "rests on few"),
                     (FEW_SAMPLES, None)):
        x = np.random.default_rng(n).standard_normal((n, 4)).astype(np.float32) + 1.0
        np.savez(tmp_path / "x.npz", x=x)
        out = tmp_path / f"r{n}.json"
        result = CliRunner().invoke(app, [
            "scan", str(model), "--data", str(tmp_path / "x.npz"), "--measure", "ablation",
            "--draws", "2", "--no-per-layer", "-q", "--json", str(out)])
        assert result.exit_code == 0, result.output
        notes = [m for m in json.loads(out.read_text())["summary"]["notes"] if "only " in m]
        if words is None:
            assert not notes
        else:
            assert len(notes) == 1
            assert words in notes[0]
