"""Property tests of the rewrite: random small graphs and masks against numpy references."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from sdaudit.model.layers import discover_layers
from sdaudit.rewrite.instrument import instrument, neutral_controls

OPSETS = st.sampled_from([11, 13, 17, 18, 21])


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), d_in=st.integers(1, 6), hidden=st.integers(1, 9),
       d_out=st.integers(2, 5), batch=st.integers(1, 5), opset=OPSETS,
       per_sample=st.booleans())
def test_dense_rewrite_equals_numpy(seed, d_in, hidden, d_out, batch, opset, per_sample):
    """x ─Gemm(W,b)─► h ─Relu─► a ─Gemm(V)─► y: masked a, against a numpy reference."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((d_in, hidden)).astype(np.float32)
    b = rng.standard_normal(hidden).astype(np.float32)
    v = rng.standard_normal((hidden, d_out)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W", "b"], ["h"]), helper.make_node("Relu", ["h"], ["a"]),
         helper.make_node("Gemm", ["a", "V"], ["y"])], "dense",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", d_in])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", d_out])],
        [onnx.numpy_helper.from_array(t, n) for t, n in ((w, "W"), (b, "b"), (v, "V"))])
    model = onnx.shape_inference.infer_shapes(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8))
    inst = instrument(model, discover_layers(model))
    x = rng.standard_normal((batch, d_in)).astype(np.float32)
    mask = (rng.random((batch if per_sample else 1, hidden)) < 0.5).astype(np.float32)
    got = _run(inst.model, {"x": x, **neutral_controls(inst), inst.mask_inputs[0]: mask})
    ref = (np.maximum(x @ w + b, 0) * mask) @ v
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), c_in=st.integers(1, 3), c_out=st.integers(1, 6),
       size=st.integers(2, 6), batch=st.integers(1, 4), opset=OPSETS)
def test_conv_rewrite_equals_numpy(seed, c_in, c_out, size, batch, opset):
    """x ─Conv(K, 1×1)─► c ─Relu─► r ─ReduceMean(H,W)─► y: a channel mask on r."""
    rng = np.random.default_rng(seed)
    k = rng.standard_normal((c_out, c_in, 1, 1)).astype(np.float32)
    if opset >= 18:
        reduce = helper.make_node("ReduceMean", ["r", "axes"], ["m"], keepdims=0)
        inits = [onnx.numpy_helper.from_array(np.array([2, 3], np.int64), "axes")]
    else:
        reduce = helper.make_node("ReduceMean", ["r"], ["m"], axes=[2, 3], keepdims=0)
        inits = []
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "K"], ["c"]), helper.make_node("Relu", ["c"], ["r"]),
         reduce, helper.make_node("Identity", ["m"], ["y"])], "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", c_in, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", c_out])],
        [onnx.numpy_helper.from_array(k, "K"), *inits])
    model = onnx.shape_inference.infer_shapes(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8))
    layers = [la for la in discover_layers(model) if la.name == "r"]
    inst = instrument(model, layers)
    x = rng.standard_normal((batch, c_in, size, size)).astype(np.float32)
    mask = (rng.random((batch, c_out)) < 0.5).astype(np.float32)
    got = _run(inst.model, {"x": x, **neutral_controls(inst), inst.mask_inputs[0]: mask})
    r = np.maximum(np.einsum("nchw,oc->nohw", x, k[:, :, 0, 0]), 0) * mask[:, :, None, None]
    np.testing.assert_allclose(got, r.mean(axis=(2, 3)), rtol=1e-4, atol=1e-5)
