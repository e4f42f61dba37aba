"""Layer discovery on exported graphs: proven batch and channel axes, activations written as
several ops, quantized depths."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from sdaudit.model.layers import discover_layers
from sdaudit.rewrite.instrument import instrument, neutral_controls


def _model(nodes, inits, x_shape, out_shape, opset=17):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return onnx.shape_inference.infer_shapes(model, data_prop=True)


def _seq_first():
    """Sequence-first hidden units, as torch's exporter writes attention blocks, and a flattened
    [L·N, C] tensor::

        x[N,5,3] ─Transpose(1,0,2)─► t[5,N,3] ─MatMul(A)─► h[5,N,4] ─Relu─► r[5,N,4]
        r ─Reshape(-1, 4)─► f[5N,4] ─MatMul(F)─► g[5N,4] ─Reshape(5,-1,4)─► back[5,N,4]
        back ─ReduceMean(axis 0)─► m[N,4] ─MatMul(B)─► logits[N,2]
    """
    rng = np.random.default_rng(0)
    inits = {"A": rng.standard_normal((3, 4)).astype(np.float32),
             "F": rng.standard_normal((4, 4)).astype(np.float32),
             "B": rng.standard_normal((4, 2)).astype(np.float32),
             "flat": np.array([-1, 4], np.int64), "unflat": np.array([5, -1, 4], np.int64)}
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0, 2]),
             helper.make_node("MatMul", ["t", "A"], ["h"]),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Reshape", ["r", "flat"], ["f"]),
             helper.make_node("MatMul", ["f", "F"], ["g"]),
             helper.make_node("Reshape", ["g", "unflat"], ["back"]),
             helper.make_node("ReduceMean", ["back"], ["m"], axes=[0], keepdims=0),
             helper.make_node("MatMul", ["m", "B"], ["logits"])]
    return _model(nodes, inits, ["N", 5, 3], ["N", 2]), inits


def test_sequence_first_layers_have_their_batch_axis_and_flattened_ones_are_not_listed():
    model, w = _seq_first()
    layers = {layer.name: layer for layer in discover_layers(model)}
    assert "g" not in layers  # [5N, 4]: the batch is merged with the tokens
    r = layers["r"]
    assert (r.batch_axis, r.channel_axis, r.channels) == (1, 2, 4)
    # Per-sample masks (one row per sample, as stacked configurations use) land on the right
    # samples: numpy reference.
    inst = instrument(model, [r], noise=True, stats=True)
    x = np.random.default_rng(1).standard_normal((3, 5, 3)).astype(np.float32)
    masks = np.ones((3, 4), np.float32)
    masks[0, 1] = masks[1, 2] = masks[2, 0] = 0
    feeds = {**neutral_controls(inst, 3), inst.mask_inputs[0]: masks}
    sess = ort.InferenceSession(inst.model.SerializeToString(), providers=["CPUExecutionProvider"])
    got, mean = sess.run(["logits", inst.mean_outputs[0]], {"x": x, **feeds})
    hidden = np.maximum(x @ w["A"], 0) * masks[:, None, :]  # [N, L, C]
    want = (hidden @ w["F"]).mean(axis=1) @ w["B"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(mean, hidden.mean(axis=1), rtol=1e-5, atol=1e-6)


def test_attention_products_are_no_layers():
    rng = np.random.default_rng(0)
    inits = {"Q": rng.standard_normal((3, 3)).astype(np.float32),
             "B": rng.standard_normal((3, 2)).astype(np.float32)}
    nodes = [helper.make_node("MatMul", ["x", "Q"], ["q"]),
             helper.make_node("Transpose", ["q"], ["kt"], perm=[0, 2, 1]),
             helper.make_node("MatMul", ["q", "kt"], ["scores"]),  # [N, L, L]
             helper.make_node("Softmax", ["scores"], ["att"], axis=2),
             helper.make_node("MatMul", ["att", "q"], ["ctx"]),  # [N, L, 3]
             helper.make_node("Relu", ["ctx"], ["r"]),
             helper.make_node("ReduceMean", ["r"], ["m"], axes=[1], keepdims=0),
             helper.make_node("MatMul", ["m", "B"], ["logits"])]
    model = _model(nodes, inits, ["N", 4, 3], ["N", 2])
    names = [layer.name for layer in discover_layers(model)]
    assert "scores" not in names
    assert "r" in names


def _gated(kind: str):
    """x[N,4] ─Gemm(W)─► h[N,6] ─<kind written as ops>─► a[N,6] ─Gemm(V)─► logits[N,2]"""
    rng = np.random.default_rng(0)
    inits = {"W": rng.standard_normal((4, 6)).astype(np.float32),
             "V": rng.standard_normal((6, 2)).astype(np.float32),
             "three": np.array(3, np.float32), "six": np.array(6, np.float32),
             "zero": np.array(0, np.float32), "half": np.array(0.5, np.float32),
             "one": np.array(1, np.float32), "sqrt2": np.array(np.sqrt(2), np.float32)}
    nodes = [helper.make_node("Gemm", ["x", "W"], ["h"])]
    if kind == "HardSwish":  # PaddlePaddle's export: Add → Clip → Mul → Div
        nodes += [helper.make_node("Add", ["h", "three"], ["p"]),
                  helper.make_node("Clip", ["p", "zero", "six"], ["c"]),
                  helper.make_node("Mul", ["h", "c"], ["hc"]),
                  helper.make_node("Div", ["hc", "six"], ["a"])]
    elif kind == "GELU":  # x · (1 + erf(x / √2)) · 0.5
        nodes += [helper.make_node("Div", ["h", "sqrt2"], ["d"]),
                  helper.make_node("Erf", ["d"], ["e"]),
                  helper.make_node("Add", ["e", "one"], ["e1"]),
                  helper.make_node("Mul", ["h", "e1"], ["he"]),
                  helper.make_node("Mul", ["he", "half"], ["a"])]
    elif kind == "Mish":  # x · tanh(softplus(x))
        nodes += [helper.make_node("Softplus", ["h"], ["s"]),
                  helper.make_node("Tanh", ["s"], ["t"]),
                  helper.make_node("Mul", ["h", "t"], ["a"])]
    nodes.append(helper.make_node("Gemm", ["a", "V"], ["logits"]))
    return _model(nodes, inits, ["N", 4], ["N", 2])


def test_activations_written_as_ops_are_one_layer_at_the_pattern_output():
    for kind in ("HardSwish", "GELU", "Mish"):
        layers = discover_layers(_gated(kind))
        assert [(layer.name, layer.op_type, layer.kind) for layer in layers] == \
            [("a", kind, "activation")], kind


def test_quantized_weight_layers_count_in_the_depth():
    """QLinearConv (static quantization, QOperator format) counts as a weight layer::

        x ─QuantizeLinear─► q ─QLinearConv─► qc ─DequantizeLinear─► c ─Relu─► r[N,2,3,3]
          ─GlobalAveragePool─► g ─Flatten─► f ─Gemm─► logits
    """
    rng = np.random.default_rng(0)
    inits = {"s": np.array(0.05, np.float32), "z": np.array(0, np.uint8),
             "w": rng.integers(0, 255, (2, 1, 1, 1)).astype(np.uint8),
             "ws": np.array(0.01, np.float32), "wz": np.array(128, np.uint8),
             "G": rng.standard_normal((2, 3)).astype(np.float32)}
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("QLinearConv", ["q", "s", "z", "w", "ws", "wz", "s", "z"], ["qc"]),
             helper.make_node("DequantizeLinear", ["qc", "s", "z"], ["c"]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "G"], ["logits"])]
    model = _model(nodes, inits, ["N", 1, 3, 3], ["N", 3])
    layers = {layer.name: layer for layer in discover_layers(model)}
    assert layers["r"].depth == 1
