"""The engine's alternative paths give the numbers of the plain one: IO binding (the CUDA path,
exercised here on the CPU) and half precision (checked, with its fp32 fallback)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx_graphsurgeon as gs
import pytest
from approx import assert_reports_close
from models import _export, save

from sdaudit.api import audit
from sdaudit.config import AuditConfig
from sdaudit.report.json_io import dumps

ROOT = Path(__file__).resolve().parents[1]
CNN = ROOT / "samples" / "digits-cnn.onnx"
DATA = ROOT / "samples" / "digits-test.npz"


def _run(**kw: object) -> dict:
    config = AuditConfig(measures=("ablation", "noise"), draws=2, per_layer=False, device="cpu",
                         chunk_size=64, **kw)  # type: ignore[arg-type]
    return json.loads(dumps(audit(str(CNN), str(DATA), config)))


def test_io_binding_gives_the_plain_runs_numbers():
    plain, bound = _run(io_binding=False), _run(io_binding=True)
    assert plain["runtime"]["io_binding"] is False
    assert bound["runtime"]["io_binding"] is True
    for part in ("ablation", "noise"):
        # Equal up to float32 summation order (onnxruntime 1.32 differs in kl_mean's 7th digit).
        assert_reports_close(bound[part], plain[part], part)


def test_fp16_curves_stay_within_0005_of_fp32():
    fp32, fp16 = _run(), _run(precision="fp16")
    assert fp16["runtime"]["precision"] == "fp16"
    assert 0 <= fp16["runtime"]["fp16_prediction_change"] <= 0.005
    assert fp16["baseline"] == fp32["baseline"]  # the statistics run stays fp32
    a32, a16 = (np.array(r["ablation"]["accuracy_mean"]) for r in (fp32, fp16))
    assert np.abs(a32 - a16).max() <= 0.005
    n32, n16 = (np.array(r["noise"]["accuracy_mean"]) for r in (fp32, fp16))
    assert np.abs(n32 - n16).max() <= 0.005
    # fp16 really ran: the outputs moved (KL from the unperturbed outputs), the accuracy did not.
    assert fp16["ablation"]["kl_mean"] != fp32["ablation"]["kl_mean"]
    assert fp16["noise"]["kl_mean"] != fp32["noise"]["kl_mean"]


def _near_tie(tmp_path: Path) -> tuple[Path, Path]:
    """Class 1's weight 1.0002 rounds to 1.0 in float16 (spacing 2^-10 near 1): in fp32 class 1
    wins every sample with x0 > 0, in fp16 the logits tie and class 0 (the first) wins::

        x[N,2] ─Gemm(I)─► h ─Relu─► a[N,2] ─Gemm(W = [[1, 1.0002], [0, 0]])─► logits[N,2]

    Samples of class 1 have x0 > 0, those of class 0 x0 < 0 (a0 = 0: a tie in both, class 0).
    """
    x = gs.Variable("x", dtype=np.float32, shape=["N", 2])
    h, a = gs.Variable("h", dtype=np.float32), gs.Variable("a", dtype=np.float32)
    logits = gs.Variable("logits", dtype=np.float32, shape=["N", 2])
    w = np.array([[1.0, 1.0002], [0.0, 0.0]], dtype=np.float32)
    graph = gs.Graph(inputs=[x], outputs=[logits], nodes=[
        gs.Node("Gemm", inputs=[x, gs.Constant("I", np.eye(2, dtype=np.float32))], outputs=[h]),
        gs.Node("Relu", inputs=[h], outputs=[a]),
        gs.Node("Gemm", inputs=[a, gs.Constant("W", w)], outputs=[logits]),
    ])
    model = save(_export(graph, 17), tmp_path / "tie.onnx")
    y = np.repeat(np.arange(2), 30)
    xs = np.stack([np.where(y == 1, 1.0, -1.0) * np.linspace(0.5, 2.0, 60), np.ones(60)], axis=1)
    data = tmp_path / "tie.npz"
    np.savez(data, x=xs.astype(np.float32), y=y)
    return model, data


def test_fp16_that_changes_predictions_falls_back_to_fp32(tmp_path):
    model, data = _near_tie(tmp_path)
    config = AuditConfig(measures=("ablation", "noise"), draws=2, device="cpu",
                         precision="fp16")
    report = json.loads(dumps(audit(str(model), str(data), config)))
    assert report["runtime"]["precision"] == "fp32"
    assert report["runtime"]["fp16_prediction_change"] == pytest.approx(0.5)
    assert any("fp16 changed" in note for note in report["summary"]["notes"])
    plain = json.loads(dumps(audit(str(model), str(data), AuditConfig(
        measures=("ablation", "noise"), draws=2, device="cpu"))))
    assert_reports_close(report["ablation"], plain["ablation"], "ablation")
    assert_reports_close(report["noise"], plain["noise"], "noise")  # the noise session fell back too


def _all_from_level_0(levels, offsets, masks):
    return [(levels[0], np.arange(1, len(masks)))]


@pytest.mark.parametrize("ablation_value", ["zero", "mean"])
def test_later_suffix_levels_give_the_first_levels_numbers(monkeypatch, ablation_value):
    """Per-layer, single-unit and ordered configurations that leave the first layers intact run
    from a later suffix (its cut from the statistics run); running all of them from the first
    layer instead gives the same curves."""
    from sdaudit.runtime import suffix, variants

    used: list[int] = []
    real_session = variants.Sessions.level

    def spy(self, level):
        used.append(level.first)
        return real_session(self, level)

    monkeypatch.setattr(variants.Sessions, "level", spy)
    config = AuditConfig(measures=("ablation", "importance", "ordered"), draws=2, device="cpu",
                         chunk_size=100, ablation_value=ablation_value)
    levels = json.loads(dumps(audit(str(CNN), str(DATA), config)))
    assert {1, 2} <= set(used)  # the later levels ran
    monkeypatch.setattr(suffix, "assign_levels", _all_from_level_0)
    flat = json.loads(dumps(audit(str(CNN), str(DATA), config)))
    n = levels["data"]["samples"]
    curves = [("joint", levels["ablation"], flat["ablation"])]
    curves += [(name, levels["ablation"]["per_layer"][name], flat["ablation"]["per_layer"][name])
               for name in levels["ablation"]["per_layer"]]
    curves += [(name, levels["ablation"]["ordered"][name], flat["ablation"]["ordered"][name])
               for name in ("high_to_low", "low_to_high")]
    for name, a, b in curves:
        np.testing.assert_allclose(a["accuracy_mean"], b["accuracy_mean"], atol=1.5 / n,
                                   err_msg=name)
        np.testing.assert_allclose(a["loss_mean"], b["loss_mean"], rtol=1e-4, atol=1e-5,
                                   err_msg=name)
    for la, lb in zip(levels["layers"], flat["layers"], strict=True):
        np.testing.assert_allclose(la["units"]["importance"], lb["units"]["importance"],
                                   atol=1.5 / n)
        np.testing.assert_allclose(la["units"]["importance_loss"], lb["units"]["importance_loss"],
                                   rtol=1e-3, atol=1e-5)


def test_noise_draws_inside_the_graph_where_shapes_are_open(monkeypatch):
    """Where the noise draw cannot be an input (a layer's shape not fully known), every run draws
    inside the graph and the report says the draws are not shared."""
    from sdaudit.errors import RewriteError
    from sdaudit.rewrite import instrument as rewrite

    real = rewrite.instrument

    def no_input_noise(*args, **kwargs):
        if kwargs.get("noise_source") == "input":
            raise RewriteError("simulated: shape not known")
        return real(*args, **kwargs)

    monkeypatch.setattr(rewrite, "instrument", no_input_noise)
    report = _run()
    assert any("draws afresh" in note for note in report["summary"]["notes"])
    assert 0 < report["summary"]["noise_auc"] <= 1


def test_a_second_head_does_not_stop_the_levels(tmp_path):
    """Layers that only feed another output get no suffix level of their own; the scan runs
    (it stopped with "does not depend on any selected layer" when levels were built blindly)::

        x ─Gemm─► h0 ─Relu─► a0 ─Gemm─► logits
                              └─Gemm─► h1 ─Relu─► a1 ─Gemm─► aux
    """
    rng = np.random.default_rng(0)

    def const(name, *shape):
        return gs.Constant(name, rng.standard_normal(shape).astype(np.float32))

    x = gs.Variable("x", dtype=np.float32, shape=["N", 4])
    h0, a0, h1, a1 = (gs.Variable(n, dtype=np.float32) for n in ("h0", "a0", "h1", "a1"))
    logits = gs.Variable("logits", dtype=np.float32, shape=["N", 3])
    aux = gs.Variable("aux", dtype=np.float32, shape=["N", 2])
    graph = gs.Graph(inputs=[x], outputs=[logits, aux], nodes=[
        gs.Node("Gemm", inputs=[x, const("W0", 4, 8)], outputs=[h0]),
        gs.Node("Relu", inputs=[h0], outputs=[a0]),
        gs.Node("Gemm", inputs=[a0, const("W1", 8, 3)], outputs=[logits]),
        gs.Node("Gemm", inputs=[a0, const("W2", 8, 6)], outputs=[h1]),
        gs.Node("Relu", inputs=[h1], outputs=[a1]),
        gs.Node("Gemm", inputs=[a1, const("W3", 6, 2)], outputs=[aux]),
    ])
    model = save(_export(graph, 17), tmp_path / "two-heads.onnx")
    xs = rng.standard_normal((60, 4)).astype(np.float32)
    data = tmp_path / "d.npz"
    np.savez(data, x=xs, y=rng.integers(0, 3, 60))
    report = json.loads(dumps(audit(str(model), str(data), AuditConfig(draws=2, device="cpu"))))
    # The aux-only layer cannot change the audited output: the aux head is cut before layers
    # are found (it was listed, and its curve stayed at the baseline).
    assert [layer["name"] for layer in report["layers"]] == ["a0"]
    assert report["model"]["output_used"] == "logits"


def test_the_sweep_variants_are_checked_against_the_unablated_model(monkeypatch):
    """The sweep's suffixes (every level, the noise suffix) are instrumented without running the
    rewrite's own check; on the first chunk each one, with every unit kept and no noise, must give
    the statistics run's outputs. A suffix that does not (here: a level fed the masks of another
    configuration) stops the scan with one line instead of measuring the wrong model."""
    from sdaudit.errors import RewriteError
    from sdaudit.runtime import suffix

    seen: list[str] = []
    real = suffix.SuffixRunner.check_neutral

    def spy(self, unperturbed, n, reference):
        seen.append("checked")
        return real(self, unperturbed, n, reference)

    monkeypatch.setattr(suffix.SuffixRunner, "check_neutral", spy)
    config = AuditConfig(measures=("ablation", "noise"), draws=2, device="cpu", chunk_size=100)
    audit(str(CNN), str(DATA), config)
    assert seen == ["checked"]  # once per engine, on its first chunk

    real_controls = suffix.SuffixRunner.controls

    def half_masks(self, inst, masks, *args, **kwargs):
        return real_controls(self, inst, masks * 0.5, *args, **kwargs)

    monkeypatch.setattr(suffix.SuffixRunner, "controls", half_masks)
    with pytest.raises(RewriteError, match="does not reproduce the model with every unit kept"):
        audit(str(CNN), str(DATA), config)
