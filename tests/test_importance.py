"""Single-unit importance: the closed form against masked runs, the sample against all data."""

from __future__ import annotations

import models
import numpy as np
import pytest
from conftest import SAMPLES

from sdaudit.analysis.curves import t975
from sdaudit.analysis.importance import estimate
from sdaudit.api import audit
from sdaudit.config import AuditConfig
from sdaudit.data.subsample import StratifiedSample
from sdaudit.model.layers import discover_layers
from sdaudit.model.linear_head import find_linear_head
from sdaudit.model.load import load_model
from sdaudit.report.json_io import report_to_dict

CNN = SAMPLES / "digits-cnn.onnx"
TRAIN = SAMPLES / "digits-train.npz"


def _heads(path) -> dict[str, object]:
    proto = load_model(path).proto
    out = proto.graph.output[0].name
    return {layer.name: find_linear_head(proto, layer, out) for layer in discover_layers(proto)}


def test_linear_heads_are_found_where_the_suffix_is_linear(tmp_path):
    found = {}
    for name in ("conv", "conv_softmax", "tokens", "mlp", "residual"):
        path = models.save(getattr(models, name)()[0], tmp_path / f"{name}.onnx")
        found[name] = {k: None if h is None else h.ops for k, h in _heads(path).items()}
    assert found["conv"] == {"r": ("GlobalAveragePool", "Flatten", "Gemm")}
    assert found["conv_softmax"] == {"r": ("GlobalAveragePool", "Flatten", "Gemm", "Softmax")}
    assert found["tokens"] == {"t": ("ReduceMean", "MatMul")}
    assert found["mlp"] == {"a0": ("Gemm",)}
    # a0 also feeds the skip connection: its suffix is not linear; a1 feeds the head only
    assert found["residual"] == {"a0": None, "a1": ("Gemm",)}
    cnn = _heads(CNN)
    # /8 reaches the output through Flatten → Gemm → Relu → Gemm: not linear
    assert cnn["/8/Relu_output_0"] is None
    assert cnn["/11/Relu_output_0"] is not None
    w = models.conv()[1]["W"]  # Gemm without transB: M is W itself
    path = tmp_path / "conv.onnx"
    head = _heads(path)["r"]
    np.testing.assert_array_equal(head.matrix, w.astype(np.float64))


def _importance(model, data, **kw) -> dict:
    cfg = AuditConfig(measures=("importance",), device="cpu", importance_samples=0, **kw)
    return report_to_dict(audit(model, data, cfg))


def _random_data(path, shape, classes, n=64, seed=1):
    rng = np.random.default_rng(seed)
    np.savez(path, x=rng.standard_normal((n, *shape)).astype(np.float32),
             y=rng.integers(0, classes, n))
    return path


@pytest.mark.parametrize(("name", "shape", "classes", "layers"), [
    ("conv", (2, 5, 5), 4, "r"), ("conv_softmax", (2, 5, 5), 4, "r"),
    ("tokens", (5, 4), 3, "t"), ("mlp", (4,), 2, "a0"),
])
def test_closed_form_equals_the_masked_run(tmp_path, name, shape, classes, layers):
    model = models.save(getattr(models, name)()[0], tmp_path / "m.onnx")
    data = _random_data(tmp_path / "d.npz", shape, classes)
    closed = _importance(model, data, layers=layers)
    masked = _importance(model, data, layers=layers, closed_form=False)
    assert closed["importance"]["method"][layers].startswith("closed form")
    assert masked["importance"]["method"][layers] == "masked runs"
    a, b = closed["layers"][0]["units"], masked["layers"][0]["units"]
    # The masked run computes in float32, the closed form in float64 from float32 pooled
    # values: they agree to float32 rounding of O(1) losses (1e-5 leaves two orders to spare).
    np.testing.assert_allclose(a["importance_loss"], b["importance_loss"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(a["importance"], b["importance"], rtol=0, atol=1e-5)
    assert a["importance_loss_se"] == [0.0] * len(a["importance_loss"])  # all the data: exact


def test_closed_form_on_the_trained_cnn_equals_masked_runs():
    closed = _importance(CNN, TRAIN, layers="/11/Relu_output_0")
    masked = _importance(CNN, TRAIN, layers="/11/Relu_output_0", closed_form=False)
    a, b = closed["layers"][0]["units"], masked["layers"][0]["units"]
    assert max(a["importance_loss"]) > 1e-3  # some unit matters: the comparison means something
    np.testing.assert_allclose(a["importance_loss"], b["importance_loss"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(a["importance"], b["importance"], rtol=0, atol=1e-5)


def test_a_head_that_does_not_reproduce_the_output_runs_masked(tmp_path, monkeypatch):
    from dataclasses import replace

    import sdaudit.model.linear_head as lh

    model = models.save(models.conv()[0], tmp_path / "m.onnx")
    data = _random_data(tmp_path / "d.npz", (2, 5, 5), 4)
    real = lh.find_linear_head

    def wrong(*args, **kw):
        head = real(*args, **kw)
        return None if head is None else replace(head, matrix=head.matrix * 2)

    monkeypatch.setattr(lh, "find_linear_head", wrong)
    bad = _importance(model, data, layers="r")
    masked = _importance(model, data, layers="r", closed_form=False)
    assert any("did not reproduce" in note for note in bad["summary"]["notes"])
    np.testing.assert_allclose(bad["layers"][0]["units"]["importance_loss"],
                               masked["layers"][0]["units"]["importance_loss"], atol=1e-7)


class _Chunks:
    path, kind, class_names, labelled = "mem", "npz", None, True

    def __init__(self, y):
        from sdaudit.data.base import SkipLog

        self.y, self.num_samples, self.skipped = y, len(y), SkipLog()

    def chunks(self, size):
        for lo in range(0, len(self.y), size):
            yield np.arange(lo, min(lo + size, len(self.y)))[:, None], self.y[lo:lo + size]


def test_stratified_sample_keeps_each_class_share_and_repeats_with_its_seed():
    y = np.repeat([0, 1, 2], [600, 300, 100])
    rng = np.random.default_rng(0)
    y = y[rng.permutation(len(y))]
    data = _Chunks(y)

    def picked(seed, size=200, chunk=64):
        rows = [x[:, 0] for x, _ in StratifiedSample(data, size, seed).chunks(chunk)]
        return np.concatenate(rows)

    a = picked(0)
    assert np.array_equal(a, picked(0, chunk=17))  # the chunk size changes nothing
    assert not np.array_equal(a, picked(1))
    assert len(np.unique(a)) == len(a)
    assert abs(len(a) - 200) <= 3
    counts = np.bincount(y[a], minlength=3)
    assert np.all(np.abs(counts - np.array([120, 60, 20])) <= 1)
    assert all(len(x) <= 64 for x, _ in StratifiedSample(data, 200, 0).chunks(64))


def test_standard_error_is_that_of_a_mean_without_replacement():
    rng = np.random.default_rng(0)
    d = rng.standard_normal((50, 3)) ** 2  # per-sample loss rises of three units
    base = rng.standard_normal(50)
    loss = (base[:, None] + d).sum(axis=0)
    est = estimate(np.zeros(3), loss, (d**2).sum(axis=0), np.zeros(3), 0.0, base.sum(), 50, 200)
    np.testing.assert_allclose(est.loss_rise, d.mean(axis=0))
    expected = d.std(axis=0, ddof=1) / np.sqrt(50) * np.sqrt(1 - 50 / 200)
    np.testing.assert_allclose(est.loss_rise_se, expected)
    # the project's t quantile (1.96 beyond 30 degrees of freedom)
    np.testing.assert_allclose(est.loss_rise_ci_high - est.loss_rise, t975(49) * expected)
    whole = estimate(np.zeros(3), loss, (d**2).sum(axis=0), np.zeros(3), 0.0, base.sum(), 50, 50)
    assert np.all(whole.loss_rise_se == 0)


def test_sampled_importance_agrees_with_all_data_within_its_intervals():
    layer = "/8/Relu_output_0"  # no closed form: masked runs on the sample
    full = np.asarray(_importance(CNN, TRAIN, layers=layer)["layers"][0]["units"]
                      ["importance_loss"])
    live = full != 0  # dead units: 0 on every sample, exactly (a standard error of 0)
    inside, z2 = [], []
    for seed in (0, 1, 2, 3):
        cfg = AuditConfig(measures=("importance",), device="cpu", layers=layer, seed=seed,
                          importance_samples=300)
        d = report_to_dict(audit(CNN, TRAIN, cfg))
        assert abs(d["importance"]["samples"] - 300) <= 10
        assert d["importance"]["population"] == 1200
        u = d["layers"][0]["units"]
        lo, hi = np.asarray(u["importance_loss_ci_low"]), np.asarray(u["importance_loss_ci_high"])
        se = np.asarray(u["importance_loss_se"])
        assert np.all(se[~live] == 0)
        assert np.all(se[live] > 0)
        inside.append(((full >= lo) & (full <= hi))[live])
        z2.append(((np.asarray(u["importance_loss"]) - full)[live] / se[live]) ** 2)
    # 95 % intervals. The units share their samples, so one sample's coverage swings, and the
    # per-sample loss changes are heavy-tailed (a few samples near the boundary carry most of
    # a unit's importance), so at 300 samples the sample s.d. is often low: in a simulation
    # of this layer over 40 seeds, coverage 0.90 on average (0.69 at the 5th percentile),
    # mean squared z-score 1.6 (1.3 for simple random samples of the same size). A standard
    # error off by a factor of 2 either way would give about 6.4 or 0.4.
    assert np.mean(inside) >= 0.8
    assert 0.5 <= np.mean(z2) <= 2.5
