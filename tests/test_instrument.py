"""The instrumentation pass against closed-form and numpy references."""

from __future__ import annotations

import models
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from sdaudit.errors import RewriteError
from sdaudit.model.layers import discover_layers, select_layers
from sdaudit.rewrite.instrument import instrument, neutral_controls

OPSETS = list(range(11, 22))


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _relu(v: np.ndarray) -> np.ndarray:
    return np.maximum(v, 0)


def _conv_ref(x: np.ndarray, k: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Plain numpy 3×3 convolution with padding 1 (cross-correlation, as ONNX defines it)."""
    n, _, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, k.shape[0], h, w), dtype=np.float64)
    for i in range(3):
        for j in range(3):
            out += np.einsum("nchw,oc->nohw", xp[:, :, i:i + h, j:j + w], k[:, :, i, j])
    return out + c[None, :, None, None]


@pytest.mark.parametrize("opset", OPSETS)
def test_masked_mlp_matches_closed_form(opset):
    model, w = models.mlp(opset)
    inst = instrument(model, select_layers(discover_layers(model), "all"))
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 4)).astype(np.float32)
    mask = np.array([[1, 0, 1]], dtype=np.float32)
    feeds = {"x": x, **neutral_controls(inst, 1), inst.mask_inputs[0]: mask}
    got, mean = _session(inst.model).run(["logits", inst.mean_outputs[0]], feeds)
    hidden = _relu(x @ w["W0"] + w["b0"]) * mask
    np.testing.assert_allclose(got, hidden @ w["W1"] + w["b1"], atol=1e-5)
    np.testing.assert_allclose(mean, hidden, atol=1e-6)
    assert inst.model.ir_version == model.ir_version
    assert [(i.domain, i.version) for i in inst.model.opset_import] == [
        (i.domain, i.version) for i in model.opset_import]


@pytest.mark.parametrize("opset", [11, 13, 17, 18, 21])
def test_masked_conv_matches_numpy_reference(opset):
    model, w = models.conv(opset)
    inst = instrument(model, select_layers(discover_layers(model), "all"))
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 2, 5, 5)).astype(np.float32)
    # [N, C] masks: each sample its own channels off.
    mask = np.array([[1, 1, 1], [0, 1, 1], [1, 0, 0], [0, 0, 0]], dtype=np.float32)
    feeds = {"x": x, **neutral_controls(inst, 4), inst.mask_inputs[0]: mask}
    got, mean, sqmean = _session(inst.model).run(
        ["logits", inst.mean_outputs[0], inst.sqmean_outputs[0]], feeds)
    r = _relu(_conv_ref(x, w["K"], w["c"])) * mask[:, :, None, None]
    pooled = r.mean(axis=(2, 3))
    np.testing.assert_allclose(got, pooled @ w["W"] + w["b"], atol=1e-5)
    np.testing.assert_allclose(mean, pooled, atol=1e-5)
    np.testing.assert_allclose(sqmean, (r**2).mean(axis=(2, 3)), atol=1e-5)


def test_masked_tokens_use_the_last_axis():
    model, w = models.tokens(17)
    layers = discover_layers(model)
    assert layers[0].channel_axis == 2
    assert layers[0].channels == 6
    inst = instrument(model, layers)
    x = np.random.default_rng(3).standard_normal((3, 5, 4)).astype(np.float32)
    mask = np.ones((1, 6), dtype=np.float32)
    mask[0, [1, 4]] = 0
    feeds = {"x": x, **neutral_controls(inst, 1), inst.mask_inputs[0]: mask}
    got, mean = _session(inst.model).run(["logits", inst.mean_outputs[0]], feeds)
    t = _relu(x @ w["A"] + w["a"]) * mask[:, None, :]
    np.testing.assert_allclose(got, t.mean(axis=1) @ w["B"], atol=1e-5)
    np.testing.assert_allclose(mean, t.mean(axis=1), atol=1e-6)


def test_residual_masks_both_layers_independently():
    model, w = models.residual(17)
    layers = select_layers(discover_layers(model), "a0,a1")
    inst = instrument(model, layers)
    x = np.random.default_rng(4).standard_normal((5, 3)).astype(np.float32)
    m0 = np.array([[0, 1, 1]], dtype=np.float32)
    m1 = np.array([[1, 1, 0]], dtype=np.float32)
    feeds = {"x": x, **neutral_controls(inst), inst.mask_inputs[0]: m0, inst.mask_inputs[1]: m1}
    got = _session(inst.model).run(["logits"], feeds)[0]
    a0 = _relu(x @ w["W0"]) * m0
    a1 = _relu(a0 @ w["W1"] + a0) * m1
    np.testing.assert_allclose(got, a1 @ w["W2"], atol=1e-5)


def test_silu_is_found_and_masked():
    model, w = models.silu_mlp(17)
    layers = discover_layers(model)
    assert [(la.name, la.op_type) for la in layers] == [("a", "SiLU")]
    inst = instrument(model, layers)
    x = np.random.default_rng(5).standard_normal((2, 4)).astype(np.float32)
    mask = np.array([[1, 0, 1, 0, 1]], dtype=np.float32)
    got = _session(inst.model).run(["logits"], {"x": x, **neutral_controls(inst),
                                                inst.mask_inputs[0]: mask})[0]
    h = x @ w["W0"]
    np.testing.assert_allclose(got, (h / (1 + np.exp(-h)) * mask) @ w["W1"], atol=1e-5)


def test_mask_equals_hand_inserted_mul():
    """Zeroing channel k of the mask gives exactly what inserting Mul(T, m) by hand gives."""
    import onnx_graphsurgeon as gs

    model, _ = models.conv(17)
    inst = instrument(model, discover_layers(model))
    graph = gs.import_onnx(model)
    r = graph.tensors()["r"]
    consumers = list(r.outputs)
    m = np.ones((1, 3, 1, 1), dtype=np.float32)
    m[0, 1] = 0
    masked = gs.Variable("r_by_hand", dtype=np.float32)
    graph.nodes.append(gs.Node("Mul", inputs=[r, gs.Constant("m", m)], outputs=[masked]))
    for node in consumers:
        node.inputs = [masked if t is r else t for t in node.inputs]
    by_hand = gs.export_onnx(graph.cleanup().toposort())
    x = np.random.default_rng(6).standard_normal((3, 2, 5, 5)).astype(np.float32)
    ref = _session(by_hand).run(["logits"], {"x": x})[0]
    mask = np.ones((1, 3), dtype=np.float32)
    mask[0, 1] = 0
    got = _session(inst.model).run(["logits"], {"x": x, **neutral_controls(inst),
                                                inst.mask_inputs[0]: mask})[0]
    np.testing.assert_array_equal(got, ref)


def test_noise_has_the_requested_spread():
    """logits = a·W1 + b1 is linear in a: added noise of s.d. σ per unit gives a known variance."""
    model, w = models.mlp(17, sizes=(4, 3, 2))
    inst = instrument(model, discover_layers(model), seed=7)
    x = np.tile(np.random.default_rng(7).standard_normal((1, 4)).astype(np.float32), (20000, 1))
    sd = np.array([[0.5, 1.0, 2.0]], dtype=np.float32)
    sess = _session(inst.model)
    clean = sess.run(["logits"], {"x": x[:1], **neutral_controls(inst)})[0]
    noisy = sess.run(["logits"], {"x": x, **neutral_controls(inst), inst.noise_inputs[0]: sd})[0]
    expected_var = (sd[0] ** 2) @ (w["W1"] ** 2)
    np.testing.assert_allclose(noisy.mean(axis=0), clean[0], atol=0.06)
    np.testing.assert_allclose(noisy.var(axis=0), expected_var, rtol=0.05)


def test_dynamic_batch_stays_dynamic_and_outputs_come_first():
    model, _ = models.conv(17)
    inst = instrument(model, discover_layers(model))
    outputs = [o.name for o in inst.model.graph.output]
    assert outputs[0] == "logits"
    assert outputs[1:] == ["r.mean", "r.sqmean"]
    dim = inst.model.graph.input[0].type.tensor_type.shape.dim[0]
    assert dim.dim_param == "N"
    names = [i.name for i in inst.model.graph.input]
    assert "r.mask" in names
    assert "r.noise_sd" in names
    sess = _session(inst.model)
    for n in (1, 7):
        x = np.zeros((n, 2, 5, 5), dtype=np.float32)
        assert sess.run(["logits"], {"x": x, **neutral_controls(inst, 1)})[0].shape == (n, 4)


def test_instrumenting_twice_is_refused():
    model, _ = models.mlp(17)
    inst = instrument(model, discover_layers(model))
    with pytest.raises(RewriteError, match="instrumented already"):
        instrument(inst.model, discover_layers(model))


def test_post_condition_refuses_a_broken_rewrite(monkeypatch):
    """If the rewrite changed the outputs, the pass must refuse to continue."""
    import sdaudit.rewrite.instrument as mod

    model, _ = models.mlp(17)
    real = mod.neutral_controls

    def broken(inst, batch=1):
        feeds = real(inst, batch)
        return {k: (v * 0.5 if k.endswith(".mask") else v) for k, v in feeds.items()}

    monkeypatch.setattr(mod, "neutral_controls", broken)
    with pytest.raises(RewriteError, match="differs from the original"):
        instrument(model, discover_layers(model))


def test_fixed_batch_models_run_in_chunks_of_their_size(tmp_path):
    """A graph that hard-codes batch 1 (Reshape to [1, -1]) runs one padded sample at a time."""
    import onnx_graphsurgeon as gs

    from sdaudit.api import audit
    from sdaudit.config import AuditConfig

    model, _ = models.conv(17)
    graph = gs.import_onnx(model)
    graph.inputs[0].shape = [1, 2, 5, 5]
    flatten = next(n for n in graph.nodes if n.op == "Flatten")
    flatten.op = "Reshape"
    flatten.attrs = {}
    flatten.inputs.append(gs.Constant("fixed_shape", np.array([1, -1], dtype=np.int64)))
    graph.outputs[0].shape = [1, 4]
    fixed = gs.export_onnx(graph)
    fixed.ir_version = model.ir_version
    path = models.save(fixed, tmp_path / "fixed.onnx")
    dynamic = models.save(model, tmp_path / "dyn.onnx")
    x = np.random.default_rng(0).standard_normal((7, 2, 5, 5)).astype(np.float32)
    np.savez(tmp_path / "x.npz", x=x)
    config = AuditConfig(draws=2, device="cpu", measures=("ablation", "importance"))
    a = audit(path, tmp_path / "x.npz", config)
    b = audit(dynamic, tmp_path / "x.npz", config)
    assert a.data["samples"] == 7
    assert a.ablation.joint.accuracy_mean == pytest.approx(b.ablation.joint.accuracy_mean)
    assert a.layers[0].units.importance == pytest.approx(b.layers[0].units.importance)


def test_weights_passed_through_identity_stay_in_the_suffix():
    """Exporters dedupe weights with Identity(initializer): not a per-sample tensor to cut.

    x ─Gemm(W0)─► h ─Relu─► a ─Gemm(Identity(W1))─► logits
    """
    from onnx import TensorProto, helper

    from sdaudit.rewrite.split import split

    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((3, 4)).astype(np.float32)
    w1 = rng.standard_normal((4, 2)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W0"], ["h"]), helper.make_node("Relu", ["h"], ["a"]),
         helper.make_node("Identity", ["W1"], ["W1_copy"]),
         helper.make_node("Gemm", ["a", "W1_copy"], ["logits"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        [onnx.numpy_helper.from_array(w0, "W0"), onnx.numpy_helper.from_array(w1, "W1")])
    model = onnx.shape_inference.infer_shapes(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8))
    inst = instrument(model, discover_layers(model))
    parts = split(inst, ("logits",))
    assert parts.cut == ("a",)
    x = rng.standard_normal((5, 3)).astype(np.float32)
    a = _session(parts.prefix).run(["a"], {"x": x})[0]
    got = _session(parts.suffix).run(["logits"], {"a": np.concatenate([a, a]),
                                                  **neutral_controls(inst, 10)})[0]
    np.testing.assert_allclose(got[:5], np.maximum(x @ w0, 0) @ w1, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("opset", [11, 17, 21])
def test_noise_from_an_input_is_the_closed_form(opset):
    """noise_source="input": T' = T + ε · sd with ε fed; against numpy for the dense net, and the
    conv net's [N, C, H, W] draw broadcast with a per-channel s.d."""
    model, w = models.mlp(opset)
    inst = instrument(model, select_layers(discover_layers(model), "all"), noise_source="input")
    assert len(inst.eps_inputs) == 1
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 4)).astype(np.float32)
    eps = rng.standard_normal((5, 3)).astype(np.float32)
    sd = np.array([[0.5, 0.0, 2.0]], dtype=np.float32)
    feeds = {"x": x, **neutral_controls(inst, 1), inst.eps_inputs[0]: eps,
             inst.noise_inputs[0]: sd}
    got = _session(inst.model).run(["logits"], feeds)[0]
    hidden = _relu(x @ w["W0"] + w["b0"]) + eps * sd
    np.testing.assert_allclose(got, hidden @ w["W1"] + w["b1"], atol=1e-5)
    # Neutral controls (a broadcasting zero draw) give the original model.
    clean = _session(inst.model).run(["logits"], {"x": x, **neutral_controls(inst, 1)})[0]
    np.testing.assert_allclose(clean, _session(model).run(["logits"], {"x": x})[0], atol=1e-6)

    cmodel, cw = models.conv(opset)
    cinst = instrument(cmodel, discover_layers(cmodel), noise_source="input")
    xc = rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
    ec = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    sdc = np.array([[1.0, 0.0, 0.25]], dtype=np.float32)
    out = _session(cinst.model).run(["logits"], {"x": xc, **neutral_controls(cinst, 1),
                                                 cinst.eps_inputs[0]: ec,
                                                 cinst.noise_inputs[0]: sdc})[0]
    r = _relu(_conv_ref(xc, cw["K"], cw["c"])) + ec * sdc[0][None, :, None, None]
    np.testing.assert_allclose(out, r.mean(axis=(2, 3)) @ cw["W"] + cw["b"], atol=1e-5)


def test_shape_unknown_refuses_input_noise():
    model, _ = models.mlp(17)
    layers = select_layers(discover_layers(model), "all")
    from dataclasses import replace

    open_shape = [replace(layers[0], shape=("N", None))]
    with pytest.raises(RewriteError, match="not known"):
        instrument(model, open_shape, noise_source="input", verify=False)
