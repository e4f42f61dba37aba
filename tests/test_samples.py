"""The bundled samples: exported from PyTorch by the legacy exporter, names like /3/Relu_output_0."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import onnxruntime as ort
import pytest
from conftest import SAMPLES

from sdaudit.model.layers import discover_layers, select_layers
from sdaudit.model.load import load_model
from sdaudit.rewrite.instrument import instrument, neutral_controls

MODELS = {"digits-mlp.onnx": "digits-train-flat.npz", "digits-cnn.onnx": "digits-train.npz"}


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name", sorted(MODELS))
def test_all_ones_reproduce_every_sample_on_real_data(name):
    loaded = load_model(SAMPLES / name)
    inst = instrument(loaded.proto, select_layers(discover_layers(loaded.proto), "all"))
    x = np.load(SAMPLES / MODELS[name])["x"][:300]
    ref = _session(loaded.proto).run(["logits"], {"input": x})[0]
    got = _session(inst.model).run(["logits"], {"input": x, **neutral_controls(inst)})[0]
    np.testing.assert_allclose(got, ref, atol=1e-5 * max(1.0, float(np.abs(ref).max())))


def test_layers_of_the_exported_cnn():
    layers = discover_layers(load_model(SAMPLES / "digits-cnn.onnx").proto)
    assert [la.name for la in layers] == [
        "/1/Relu_output_0", "/3/Relu_output_0", "/6/Relu_output_0", "/8/Relu_output_0",
        "/11/Relu_output_0"]
    assert [la.name for la in layers if la.default] == [
        "/3/Relu_output_0", "/6/Relu_output_0", "/8/Relu_output_0"]
    assert [la.channels for la in layers] == [32, 32, 64, 64, 128]


@pytest.mark.parametrize("k", [0, 17, 63])
def test_zeroing_channel_k_equals_a_hand_inserted_mul(k):
    """The issue's acceptance check, on a model exported from PyTorch by someone else's tool."""
    proto = load_model(SAMPLES / "digits-cnn.onnx").proto
    tensor = "/8/Relu_output_0"
    inst = instrument(proto, select_layers(discover_layers(proto), tensor))
    graph = gs.import_onnx(proto)
    t = graph.tensors()[tensor]
    consumers = list(t.outputs)
    m = np.ones((1, 64, 1, 1), dtype=np.float32)
    m[0, k] = 0
    masked = gs.Variable("by_hand", dtype=np.float32)
    graph.nodes.append(gs.Node("Mul", inputs=[t, gs.Constant("m", m)], outputs=[masked]))
    for node in consumers:
        node.inputs = [masked if i is t else i for i in node.inputs]
    by_hand = gs.export_onnx(graph.cleanup().toposort())
    x = np.load(SAMPLES / "digits-train.npz")["x"][:64]
    mask = np.ones((1, 64), dtype=np.float32)
    mask[0, k] = 0
    got = _session(inst.model).run(["logits"], {"input": x, **neutral_controls(inst),
                                                inst.mask_inputs[0]: mask})[0]
    np.testing.assert_array_equal(got, _session(by_hand).run(["logits"], {"input": x})[0])


def test_png_folder_gives_the_npz_accuracy(runner, app):
    """The image-folder path reproduces the npz numbers (pixels round-trip within 0.5/255)."""
    args = ["--measure", "ablation", "--draws", "2", "--format", "json", "-q"]
    a = runner.invoke(app, ["scan", str(SAMPLES / "digits-cnn.onnx"), "--data",
                            str(SAMPLES / "digits-png"), *args])
    b = runner.invoke(app, ["scan", str(SAMPLES / "digits-cnn.onnx"), "--data",
                            str(SAMPLES / "digits-train.npz"), *args])
    assert a.exit_code == 0, a.output
    assert b.exit_code == 0, b.output
    ra, rb = json.loads(a.stdout), json.loads(b.stdout)
    assert ra["data"]["samples"] == rb["data"]["samples"] == 1200
    assert ra["data"]["class_names"] == [str(i) for i in range(10)]
    assert abs(ra["baseline"]["accuracy"] - rb["baseline"]["accuracy"]) <= 1 / 1200
    assert abs(ra["summary"]["ablation_auc"] - rb["summary"]["ablation_auc"]) < 0.01
