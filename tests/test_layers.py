"""Layer discovery and the one selection syntax."""

from __future__ import annotations

import models
import onnx
import pytest
from onnx import TensorProto, helper

from sdaudit.errors import LayerSelectionError
from sdaudit.model.layers import discover_layers, select_layers


def _chain(ops: list[str], opset: int = 17) -> onnx.ModelProto:
    """x[N,4] ─Gemm─► (op) ─Gemm─► ... ─Gemm─► logits, one activation op per hidden layer."""
    nodes, inits, current = [], [], "x"
    for i, op in enumerate(ops):
        w = helper.make_tensor(f"W{i}", TensorProto.FLOAT, [4, 4], [0.1] * 16)
        inits.append(w)
        nodes.append(helper.make_node("Gemm", [current, f"W{i}"], [f"g{i}"]))
        nodes.append(helper.make_node(op, [f"g{i}"], [f"act{i}"]))
        current = f"act{i}"
    inits.append(helper.make_tensor("Wout", TensorProto.FLOAT, [4, 3], [0.1] * 12))
    nodes.append(helper.make_node("Gemm", [current, "Wout"], ["z"]))
    nodes.append(helper.make_node("Softmax", ["z"], ["probs"], axis=1))
    graph = helper.make_graph(
        nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model)


@pytest.mark.parametrize("op", ["Relu", "LeakyRelu", "Sigmoid", "Tanh", "Elu", "HardSwish",
                                "Softplus", "HardSigmoid", "Selu"])
def test_each_activation_op_is_found(op):
    layers = discover_layers(_chain([op, op]))
    assert [(la.name, la.op_type, la.kind) for la in layers] == [
        ("act0", op, "activation"), ("act1", op, "activation")]
    # An MLP: every hidden activation is in the default selection; the logits before the
    # Softmax head are never a layer.
    assert all(la.default for la in layers)
    assert [la.depth for la in layers] == [1, 2]


def test_gelu_and_clip_and_prelu():
    for op, opset in (("Gelu", 20), ("Clip", 17)):
        assert discover_layers(_chain([op], opset))[0].op_type == op
    model = _chain(["Relu"])
    node = model.graph.node[1]
    node.op_type = "PRelu"
    node.input.append("slope")
    model.graph.initializer.append(helper.make_tensor("slope", TensorProto.FLOAT, [1], [0.1]))
    assert discover_layers(model)[0].op_type == "PRelu"


def test_hidden_linear_outputs_without_activation_are_layers():
    """x ─Gemm─► g0 ─Identity─► act0 ─Gemm─► z ─Softmax─► probs: g0 is a linear layer."""
    layers = discover_layers(_chain(["Identity"]))
    assert [(la.name, la.op_type, la.kind) for la in layers] == [("g0", "Gemm", "linear")]
    assert layers[0].default  # no activation anywhere: the last three of what there is


def test_residual_add_feeding_relu_is_not_a_layer():
    model, _ = models.residual(17)
    names = {la.name: la for la in discover_layers(model)}
    assert "s" not in names  # the sum is followed by a Relu
    assert names["a0"].default
    assert names["a1"].default
    assert "h1" not in names  # Gemm → residual Add → Relu: the Relu is the layer
    assert list(names) == ["a0", "a1"]


def test_conv_net_default_is_the_last_three_conv_activations():
    """x ─Conv─Relu─Conv─Relu─Conv─Relu─Conv─Relu─GAP─Flatten─Gemm─Relu─Gemm─► logits"""
    nodes, inits, current = [], [], "x"
    for i in range(4):
        inits.append(helper.make_tensor(f"K{i}", TensorProto.FLOAT, [2, 2, 3, 3], [0.01] * 36))
        nodes += [helper.make_node("Conv", [current, f"K{i}"], [f"c{i}"], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"])]
        current = f"r{i}"
    inits += [helper.make_tensor("W", TensorProto.FLOAT, [2, 5], [0.1] * 10),
              helper.make_tensor("V", TensorProto.FLOAT, [5, 3], [0.1] * 15)]
    nodes += [helper.make_node("GlobalAveragePool", [current], ["g"]),
              helper.make_node("Flatten", ["g"], ["f"]),
              helper.make_node("Gemm", ["f", "W"], ["d"]),
              helper.make_node("Relu", ["d"], ["fc"]),
              helper.make_node("Gemm", ["fc", "V"], ["logits"])]
    graph = helper.make_graph(
        nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 6, 6])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])], inits)
    model = onnx.shape_inference.infer_shapes(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    layers = discover_layers(model)
    assert [la.name for la in layers] == ["r0", "r1", "r2", "r3", "fc"]
    assert [la.name for la in layers if la.default] == ["r1", "r2", "r3"]
    assert [la.name for la in select_layers(layers, "last:2")] == ["r3", "fc"]
    assert [la.name for la in select_layers(layers, "first:1,fc")] == ["r0", "fc"]
    assert [la.name for la in select_layers(layers, "r[02]")] == ["r0", "r2"]
    assert [la.name for la in select_layers(layers, "all")] == ["r0", "r1", "r2", "r3", "fc"]
    assert layers[0].shape[1:] == (2, 6, 6)
    assert layers[0].channels == 2


@pytest.mark.parametrize("spec", ["nope", "r*x", "last:0", "last:x", "first:-1"])
def test_bad_selection_says_what_to_do(spec):
    model, _ = models.conv(17)
    with pytest.raises(LayerSelectionError) as info:
        select_layers(discover_layers(model), spec)
    assert "--layers" in str(info.value)


def test_a_model_without_activations_has_nothing_to_audit():
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "id",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(LayerSelectionError, match="no activation tensor"):
        select_layers(discover_layers(model), None)


def test_squeeze_excitation_gates_are_not_default_conv_layers():
    """x ─Conv─Relu─► r0 ─┬─GAP─Conv─HardSigmoid─► gate ─┐
                          └────────────────────────────── Mul ─► m ─Conv─Relu─► r1 ─GAP─Flatten─Gemm"""
    inits = [helper.make_tensor(n, TensorProto.FLOAT, [2, 2, 1, 1], [0.1] * 4) for n in ("K0", "K1", "K2")]
    inits.append(helper.make_tensor("W", TensorProto.FLOAT, [2, 3], [0.1] * 6))
    nodes = [
        helper.make_node("Conv", ["x", "K0"], ["c0"]), helper.make_node("Relu", ["c0"], ["r0"]),
        helper.make_node("GlobalAveragePool", ["r0"], ["p"]),
        helper.make_node("Conv", ["p", "K1"], ["s"]), helper.make_node("HardSigmoid", ["s"], ["gate"]),
        helper.make_node("Mul", ["r0", "gate"], ["m"]),
        helper.make_node("Conv", ["m", "K2"], ["c1"]), helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("GlobalAveragePool", ["r1"], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "W"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "se", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 4, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])], inits)
    model = onnx.shape_inference.infer_shapes(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    layers = discover_layers(model)
    assert [la.name for la in layers] == ["r0", "gate", "r1"]
    assert [la.name for la in layers if la.default] == ["r0", "r1"]


def test_one_channel_norm_is_listed_but_not_default():
    """The Clip of models.l2_embedding is an activation op of one channel: a norm, not a
    population of units. Ablating it divides by zero, so it is listed but never in the default
    selection (the Relu is)."""
    model = models.l2_embedding()
    layers = discover_layers(model)
    by_name = {layer.name: layer for layer in layers}
    assert "c" in by_name
    assert by_name["c"].channels == 1
    assert [layer.name for layer in select_layers(layers, None)] == ["a"]
