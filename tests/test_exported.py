"""Models as converters and exporters write them: float16 and bfloat16 graphs, unsorted node
lists, converters' outputs (labels, ZipMap), inputs whose shape the data fixes."""

from __future__ import annotations

import warnings

import jsonschema
import models
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from sdaudit.api import audit
from sdaudit.config import AuditConfig
from sdaudit.errors import DataError, ModelError, ort_message
from sdaudit.model.layers import discover_layers
from sdaudit.model.load import load_model
from sdaudit.model.order import is_sorted, sort_nodes
from sdaudit.model.outputs import choose_output, keep_outputs, unzip_maps
from sdaudit.report.json_io import load_schema, report_to_dict
from sdaudit.rewrite.instrument import equivalence_tolerance, instrument, neutral_controls

FAST = AuditConfig(fractions=(0.0, 0.5), draws=2, noise_levels=(0.1, 1.0), device="cpu")


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray], names: list[str] | None = None):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(names, feeds)


def _fp16(model: onnx.ModelProto, keep_io_types: bool) -> onnx.ModelProto:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return convert_float_to_float16(model, keep_io_types=keep_io_types)


def _conv_data(tmp_path, model: onnx.ModelProto, dtype=np.float32, n: int = 64):
    """Random inputs labelled by the float32 model's own predictions with some flipped (so the
    unablated accuracy is neither 0 nor 1 and must be computed, not assumed)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 2, 5, 5)).astype(np.float32)
    pred = _run(model, {"x": x})[0].argmax(1)
    y = np.where(rng.random(n) < 0.25, (pred + 1) % 4, pred)
    path = tmp_path / "d.npz"
    np.savez(path, x=x.astype(dtype), y=y)
    return path, x, y


@pytest.mark.parametrize("keep_io_types", [False, True])
def test_fp16_conversions_audit_like_plain_onnxruntime(tmp_path, keep_io_types):
    base, _ = models.conv()
    half = _fp16(base, keep_io_types)
    if keep_io_types:  # the converter appends the input casts last: not topologically sorted
        assert not is_sorted(half.graph)
    path = models.save(half, tmp_path / "half.onnx")
    before = path.read_bytes()
    data, x, y = _conv_data(tmp_path, base, np.float32 if keep_io_types else np.float16)
    feed = x if keep_io_types else x.astype(np.float16)
    plain = float((_run(half, {"x": feed})[0].argmax(1) == y).mean())
    d = report_to_dict(audit(path, data, FAST))
    jsonschema.validate(d, load_schema())
    # The unablated figure is the plain model's own accuracy (same kernels, same inputs).
    assert d["baseline"]["accuracy"] == pytest.approx(plain, abs=1e-9)
    assert path.read_bytes() == before  # sorted in memory only
    assert d["ablation"]["accuracy_mean"][0] == pytest.approx(plain)


def test_fp16_mask_zeroes_the_channel_like_zeroed_weights():
    """Masking channel j of Relu(Conv) in a float16 graph equals zeroing that channel's kernel
    and bias (Relu(0) = 0): an independent float16 computation."""
    base, _ = models.conv()
    half = _fp16(base, keep_io_types=False)
    loaded_layers = [layer for layer in discover_layers(onnx.shape_inference.infer_shapes(half))
                     if layer.op_type == "Relu"]
    inst = instrument(half, loaded_layers, noise=True, stats=True)  # checks all-ones = original
    x = np.random.default_rng(1).standard_normal((8, 2, 5, 5)).astype(np.float16)
    controls = neutral_controls(inst, 1)
    mask = np.ones((1, 3), np.float32)
    mask[0, 1] = 0
    controls[inst.mask_inputs[0]] = mask
    # Every control is a float32 input whatever the tensor's type.
    assert all(v.type.tensor_type.elem_type == TensorProto.FLOAT for v in inst.model.graph.input
               if v.name in inst.control_inputs)
    got = _run(inst.model, {"x": x, **controls}, ["logits"])[0]
    zeroed = onnx.ModelProto()
    zeroed.CopyFrom(half)
    for init in zeroed.graph.initializer:
        if init.name in ("K", "c"):
            arr = onnx.numpy_helper.to_array(init).copy()
            arr[1] = 0
            init.CopyFrom(onnx.numpy_helper.from_array(arr, init.name))
    want = _run(zeroed, {"x": x})[0]
    assert got.dtype == np.float16
    # Same float16 kernels on the same values: equal up to one float16 rounding of the logits.
    np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), atol=2e-3)
    # Statistics come out in float32 (a float16 square overflows past 256).
    means = _run(inst.model, {"x": x, **neutral_controls(inst, 1)}, list(inst.mean_outputs))[0]
    assert means.dtype == np.float32


def _bf16_net() -> tuple[onnx.ModelProto, np.ndarray]:
    """A float32 net that stores one activation in bfloat16 (ONNX Runtime's CPU has Cast, and
    almost no other kernel, for it)::

        x[N,4] ─Relu─► r ─Cast(bf16)─► b[N,4] ─Cast(f32)─► f ─MatMul(W)─► out[N,3]
    """
    w = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Cast", ["r"], ["b"], to=TensorProto.BFLOAT16),
             helper.make_node("Cast", ["b"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("MatMul", ["f", "W"], ["out"])]
    graph = helper.make_graph(nodes, "bf16", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, ["N", 4])], [helper.make_tensor_value_info(
            "out", TensorProto.FLOAT, ["N", 3])], [onnx.numpy_helper.from_array(w, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model), w


def test_bf16_tensor_masks_in_float32_and_cast_back():
    from sdaudit.model.layers import LayerInfo

    model, weights = _bf16_net()
    layer = LayerInfo("b", "Cast", "linear", ("N", 4), 1, 4, 0, 1, True)
    inst = instrument(model, [layer], noise=True, stats=True)
    assert equivalence_tolerance(model) == pytest.approx(8 * 2.0**-7)  # bfloat16's 8 ulps
    x = np.array([[1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 0.25, 2.0]], np.float32)
    controls = neutral_controls(inst, 1)
    controls[inst.mask_inputs[0]] = np.array([[1, 0, 1, 0]], np.float32)
    got = _run(inst.model, {"x": x, **controls}, ["out"])[0]
    # These values are exact in bfloat16: the numpy reference is exact too.
    want = (np.maximum(x, 0) * np.array([1, 0, 1, 0], np.float32)) @ weights
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_unsorted_nodes_are_sorted_in_memory(tmp_path):
    model, _ = models.mlp()
    shuffled = onnx.ModelProto()
    shuffled.CopyFrom(model)
    nodes = list(shuffled.graph.node)[::-1]
    del shuffled.graph.node[:]
    shuffled.graph.node.extend(nodes)
    assert not is_sorted(shuffled.graph)
    path = tmp_path / "u.onnx"
    onnx.save(shuffled, str(path))  # onnx.save does not check
    loaded = load_model(path)
    assert is_sorted(loaded.proto.graph)
    assert [n.op_type for n in loaded.proto.graph.node] == [n.op_type for n in model.graph.node]
    cyclic = onnx.ModelProto()
    cyclic.CopyFrom(model)
    cyclic.graph.node[0].input[0] = cyclic.graph.node[-1].output[0]
    with pytest.raises(ModelError, match="cycle"):
        sort_nodes(cyclic.graph)


def _sklearn_mlp(zipmap: bool):
    from skl2onnx import to_onnx
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier

    x, y = load_digits(return_X_y=True)
    x = (x / 16).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings: 60 iterations are enough here
        clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=60, random_state=0).fit(
            x[:1000], y[:1000])
    options = None if zipmap else {id(clf): {"zipmap": False}}
    return clf, to_onnx(clf, x[:1], options=options), x[1000:], y[1000:]


@pytest.mark.parametrize("zipmap", [True, False])
def test_skl2onnx_defaults_audit_the_probabilities(tmp_path, zipmap):
    clf, model, x, y = _sklearn_mlp(zipmap)
    assert model.graph.output[0].type.tensor_type.elem_type == TensorProto.INT64  # the label
    path = models.save(model, tmp_path / "skl.onnx")
    np.savez(tmp_path / "d.npz", x=x, y=y)
    d = report_to_dict(audit(path, tmp_path / "d.npz", FAST))
    jsonschema.validate(d, load_schema())
    assert d["model"]["output_kind"] == "probabilities"
    assert d["model"]["output_used"] != "output_label"
    assert "[N, K]" in d["model"]["output_choice"]
    # sklearn's own accuracy; onnxruntime's float32 may flip a borderline sample or two.
    assert d["baseline"]["accuracy"] == pytest.approx(clf.score(x, y), abs=0.005)
    # The logits in front of the Softmax are no hidden layer once the label head is cut.
    assert [layer["name"] for layer in d["layers"]] == ["next_activations"]


def test_output_choice_rules():
    from sdaudit.model.load import TensorSpec

    label = TensorSpec("label", "int64", ("N",))
    probs = TensorSpec("probabilities", "float", ("N", 10))
    boxes = TensorSpec("boxes", "float", ("N", 4))
    one = TensorSpec("score", "float", ("N", 1))
    assert choose_output((label, probs), None).name == "probabilities"
    assert choose_output((boxes, probs), None).name == "probabilities"  # named as scores
    assert choose_output((boxes, one), None).name == "boxes"
    assert choose_output((label, one), None).name == "score"  # rank 2, no [N, K>1]
    assert choose_output((label, probs), "label").reason == "--output"
    with pytest.raises(ModelError, match="not an output"):
        choose_output((label, probs), "nope")
    with pytest.raises(ModelError, match="sequence or map"):
        choose_output((label, probs), "probabilities", ("label",))


def test_zipmap_output_is_replaced_by_its_probabilities_and_cut():
    _, model, x, _ = _sklearn_mlp(zipmap=True)
    model = onnx.shape_inference.infer_shapes(model)
    unzipped, exposed = unzip_maps(model)
    assert len(exposed) == 1
    assert exposed[0].shape[1] == 10
    kept = keep_outputs(unzipped, (exposed[0].name,))
    assert [o.name for o in kept.graph.output] == [exposed[0].name]
    assert not any(n.op_type == "ZipMap" for n in kept.graph.node)
    onnx.checker.check_model(kept)
    got = _run(kept, {"X": x[:5]})[0]
    maps = _run(model, {"X": x[:5]})[1]
    np.testing.assert_allclose(got, [[m[k] for k in range(10)] for m in maps], rtol=1e-6)


def test_open_input_dimensions_come_from_the_data(tmp_path):
    base, _ = models.conv()
    opened = onnx.ModelProto()
    opened.CopyFrom(base)
    dims = opened.graph.input[0].type.tensor_type.shape.dim
    for d in dims[2:]:
        d.ClearField("dim_value")
        d.dim_param = "side"
    del opened.graph.value_info[:]
    path = models.save(opened, tmp_path / "open.onnx")
    with pytest.raises(ModelError, match="not fully known"):
        load_model(path)
    data, x, y = _conv_data(tmp_path, base)
    d = report_to_dict(audit(path, data, FAST))
    plain = float((_run(base, {"x": x})[0].argmax(1) == y).mean())
    assert d["baseline"]["accuracy"] == pytest.approx(plain)
    assert d["model"]["inputs"][0]["shape"][1:] == [2, 5, 5]
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, x=np.zeros((4, 3, 5, 5), np.float32), y=np.zeros(4, np.int64))
    with pytest.raises(DataError, match=r"takes \[2, '\?', '\?'\]"):
        audit(path, wrong, FAST)


def test_ort_message_keeps_the_whole_text_without_colours():
    exc = RuntimeError("\x1b[1;31m[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Unexpected input "
                       "data type. Actual: (tensor(float)) ,\n expected: (tensor(float16))\x1b[m")
    assert ort_message(exc) == ("Unexpected input data type. Actual: (tensor(float)) , "
                                "expected: (tensor(float16))")


def _sequence_model(tmp_path, n: int = 80):
    """A token model with an [N, T, V] output (a CTC recogniser's shape)::

        x[N,6,4] ─MatMul(A)─► p ─Relu─► hid[N,6,8] ─MatMul(B)─► z ─Softmax(axis 2)─► probs[N,6,5]
    """
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4, 8)).astype(np.float32)
    b = rng.standard_normal((8, 5)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "A"], ["p"]),
             helper.make_node("Relu", ["p"], ["hid"]),
             helper.make_node("MatMul", ["hid", "B"], ["z"]),
             helper.make_node("Softmax", ["z"], ["probs"], axis=2)]
    graph = helper.make_graph(nodes, "seq", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, ["N", 6, 4])], [helper.make_tensor_value_info(
            "probs", TensorProto.FLOAT, ["N", 6, 5])],
        [onnx.numpy_helper.from_array(a, "A"), onnx.numpy_helper.from_array(b, "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    x = rng.standard_normal((n, 6, 4)).astype(np.float32)
    np.savez(tmp_path / "seq.npz", x=x)
    return models.save(model, tmp_path / "seq.onnx"), tmp_path / "seq.npz", x, a, b


def test_sequence_output_per_position_agreement_matches_numpy(tmp_path):
    path, data, x, a, b = _sequence_model(tmp_path)
    config = AuditConfig(fractions=(0.0, 0.25, 0.5, 0.75), draws=3, measures=("ablation",),
                         per_layer=False, device="cpu")
    d = report_to_dict(audit(path, data, config))
    jsonschema.validate(d, load_schema())
    assert d["model"]["metric"] == {"kind": "per-position", "class_axis": 2, "positions": 6}
    assert d["data"]["samples"] == len(x)
    assert d["baseline"]["accuracy"] == 1.0
    assert any("selectivity needs" in note for note in d["summary"]["notes"])
    # numpy reference: every unit of `hid` off exactly, and each fraction's mean over draws
    # within the range of agreements of all k-subsets.
    hid = np.maximum(x @ a, 0)
    ref = (hid @ b).argmax(-1)
    full = report_to_dict(audit(path, data, AuditConfig(fractions=(0.0, 1.0), draws=1,
                                                          measures=("ablation",),
                                                          per_layer=False, device="cpu")))
    # All eight units off: the logits are 0 everywhere, Softmax is uniform, argmax is class 0.
    assert full["ablation"]["accuracy_mean"][1] == pytest.approx(float((ref == 0).mean()))
    # One draw of k units: its agreement is that of some k-subset; the mean over the draws
    # lies within the range numpy finds over all k-subsets.
    import itertools

    for j, frac in enumerate(config.fractions):
        k = round(frac * 8)
        scores = []
        for off in itertools.combinations(range(8), k):
            mask = np.ones(8, np.float32)
            mask[list(off)] = 0
            scores.append(float((((hid * mask) @ b).argmax(-1) == ref).mean()))
        got = d["ablation"]["accuracy_mean"][j]
        assert min(scores) - 1e-9 <= got <= max(scores) + 1e-9


def test_metric_choice_by_shape_and_graph():
    from sdaudit.analysis.metrics import choose_metric

    assert choose_metric("auto", "o", ("N", 10), 1, None).kind == "classification"
    assert choose_metric("auto", "o", ("N", 1), 1, None).kind == "relative"
    assert choose_metric("auto", "o", ("N", 128), None, None).kind == "classification"
    assert choose_metric("auto", "o", ("N", 40, 97), 2, None).kind == "per-position"
    assert choose_metric("auto", "o", ("N", 1, 64, 64), 1, None).kind == "relative"
    assert choose_metric("auto", "o", ("N", 22, 2100), 1, slice(4, 22)).kind == "per-position"
    assert choose_metric("cosine", "o", ("N", 10), 1, None).kind == "cosine"


def test_relative_change_closed_form():
    """Scaling the output by s changes it by |1 − s| of its size: score 1 − min(1, |1 − s|),
    cosine 1 (s > 0); the squared change (loss) is (1 − s)²."""
    from sdaudit.analysis.metrics import RelativeChange
    from sdaudit.runtime.counts import SweepCounts

    base = np.random.default_rng(0).standard_normal((5, 3, 4))
    for cosine in (False, True):
        metric = RelativeChange("o", cosine=cosine)
        metric.setup(base, np.zeros(0, np.int64))
        ref = metric.reference(base)
        counts = SweepCounts.zeros(3, 1)
        scaled = np.concatenate([base * s for s in (1.0, 0.75, 2.5)])
        metric.accumulate(counts, np.arange(3), scaled, 3, ref.pred, ref)
        want = [1.0, 1.0, 1.0] if cosine else [1.0, 0.75, 0.0]
        np.testing.assert_allclose(counts.correct / 5, want, atol=1e-12)
        np.testing.assert_allclose(counts.loss / 5, [0.0, 0.0625, 2.25], atol=1e-12)


def _detector(tmp_path):
    """A YOLO-style head: boxes and Sigmoid class scores concatenated along axis 1::

        x[N,2,4,4] ─Conv 1×1 (K1)─► c[N,3,4,4] ─Relu─► r ─Conv 1×1 (K2)─► s[N,6,4,4]
        s ─Reshape─► [N,6,16] ─Slice 0:2 (boxes)────────────────┐
                               └Slice 2:6 ─Sigmoid─► cls[N,4,16] ┴─Concat(axis 1)─► out[N,6,16]
    """
    import onnx_graphsurgeon as gs

    rng = np.random.default_rng(0)
    k1 = rng.standard_normal((3, 2, 1, 1)).astype(np.float32)
    k2 = rng.standard_normal((6, 3, 1, 1)).astype(np.float32)
    x = gs.Variable("x", dtype=np.float32, shape=["N", 2, 4, 4])
    c, r, s, f, box, sc, cls = (gs.Variable(v, dtype=np.float32) for v in
                                ("c", "r", "s", "f", "box", "sc", "cls"))
    out = gs.Variable("out", dtype=np.float32, shape=["N", 6, 16])

    def i64(name, *values):
        return gs.Constant(name, np.array(values, np.int64))

    nodes = [
        gs.Node("Conv", inputs=[x, gs.Constant("K1", k1)], outputs=[c]),
        gs.Node("Relu", inputs=[c], outputs=[r]),
        gs.Node("Conv", inputs=[r, gs.Constant("K2", k2)], outputs=[s]),
        gs.Node("Reshape", inputs=[s, i64("shape", 0, 6, 16)], outputs=[f]),
        gs.Node("Slice", inputs=[f, i64("b0", 0), i64("b1", 2), i64("ax", 1)], outputs=[box]),
        gs.Node("Slice", inputs=[f, i64("c0", 2), i64("c1", 6), i64("ax2", 1)], outputs=[sc]),
        gs.Node("Sigmoid", inputs=[sc], outputs=[cls]),
        gs.Node("Concat", inputs=[box, cls], outputs=[out], attrs={"axis": 1}),
    ]
    graph = gs.Graph(nodes=nodes, inputs=[x], outputs=[out], opset=17)
    model = models._export(graph, 17)
    xs = rng.standard_normal((40, 2, 4, 4)).astype(np.float32)
    np.savez(tmp_path / "det.npz", x=xs)
    return models.save(model, tmp_path / "det.onnx"), tmp_path / "det.npz", model, xs


def test_detector_scores_per_anchor_exclude_the_boxes(tmp_path):
    from sdaudit.model.class_axis import class_axis

    path, data, model, xs = _detector(tmp_path)
    assert class_axis(model, "out") == (1, slice(2, 6))
    d = report_to_dict(audit(path, data, AuditConfig(fractions=(0.0, 1.0), draws=1,
                                                     measures=("ablation",), per_layer=False,
                                                     device="cpu")))
    assert d["model"]["metric"]["class_channels"] == [2, 6]
    assert d["model"]["metric"]["positions"] == 16
    # Every channel of r off: s = 0, every class score is sigmoid(0), argmax class 0 at every
    # anchor: the agreement is the share of anchors whose unablated class is 0.
    scores = _run(model, {"x": xs})[0][:, 2:6, :]
    assert d["ablation"]["accuracy_mean"][1] == pytest.approx(
        float((scores.argmax(1) == 0).mean()))


def test_a_fully_resumed_sequence_audit_keeps_its_samples_and_positions(tmp_path):
    """Every unit read back from the checkpoint, no chunk run: the metric's positions come from
    the units (a per-position run once reported 6 × the samples and positions 1)."""
    from sdaudit.runtime.executors import Execution

    path, data, x, _, _ = _sequence_model(tmp_path)
    config = AuditConfig(fractions=(0.0, 0.5), draws=2, measures=("ablation",), per_layer=False,
                         device="cpu")
    execution = Execution(checkpoint=str(tmp_path / "ckpt"))
    first = report_to_dict(audit(path, data, config, execution=execution))
    again = report_to_dict(audit(path, data, config, execution=execution))
    assert again["runtime"]["units_run"] == 0
    assert again["runtime"]["units_resumed"] > 0
    for d in (first, again):
        assert d["data"]["samples"] == len(x)
        assert d["model"]["metric"]["positions"] == 6
    assert again["summary"]["ablation_auc"] == first["summary"]["ablation_auc"]
