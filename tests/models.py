"""Tiny models built in code with onnx-graphsurgeon, each with its diagram and known weights.

Every builder returns (model, weights) where ``weights`` holds the numpy arrays the graph uses,
so a test can compute the masked output in closed form with numpy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs


def _export(graph: gs.Graph, opset: int) -> onnx.ModelProto:
    graph.opset = opset
    model = gs.export_onnx(graph.cleanup().toposort())
    model.ir_version = min(model.ir_version, 8 if opset < 19 else 9)
    del model.opset_import[:]
    model.opset_import.append(onnx.helper.make_opsetid("", opset))
    onnx.checker.check_model(model)
    return onnx.shape_inference.infer_shapes(model)


def mlp(opset: int = 17, sizes: tuple[int, ...] = (4, 3, 2), seed: int = 0,
        hidden_act: str = "Relu") -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """A dense net with known weights; one activation per hidden layer::

        x[N,4] ─Gemm(W0,b0)─► h0 ─Relu─► a0[N,3] ─Gemm(W1,b1)─► logits[N,2]
    """
    rng = np.random.default_rng(seed)
    x = gs.Variable("x", dtype=np.float32, shape=["N", sizes[0]])
    graph = gs.Graph(inputs=[x], opset=opset)
    weights: dict[str, np.ndarray] = {}
    current = x
    for i in range(len(sizes) - 1):
        w = rng.standard_normal((sizes[i], sizes[i + 1])).astype(np.float32)
        b = rng.standard_normal(sizes[i + 1]).astype(np.float32) * 0.1
        weights[f"W{i}"], weights[f"b{i}"] = w, b
        last = i == len(sizes) - 2
        out = gs.Variable("logits" if last else f"h{i}", dtype=np.float32)
        graph.nodes.append(gs.Node("Gemm", inputs=[current, gs.Constant(f"W{i}", w),
                                                   gs.Constant(f"b{i}", b)], outputs=[out]))
        current = out
        if not last:
            act = gs.Variable(f"a{i}", dtype=np.float32)
            graph.nodes.append(gs.Node(hidden_act, inputs=[current], outputs=[act]))
            current = act
    current.shape = ["N", sizes[-1]]
    graph.outputs = [current]
    return _export(graph, opset), weights


def conv(opset: int = 17, seed: int = 0) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """A conv layer whose channels we mask, then global pooling and a dense head::

        x[N,2,5,5] ─Conv(K[3,2,3,3],c, pad 1)─► y ─Relu─► r[N,3,5,5]
                   ─GlobalAveragePool─► g[N,3,1,1] ─Flatten─► f[N,3] ─Gemm(W,b)─► logits[N,4]
    """
    rng = np.random.default_rng(seed)
    k = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    c = rng.standard_normal(3).astype(np.float32) * 0.1
    w = rng.standard_normal((3, 4)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32) * 0.1
    x = gs.Variable("x", dtype=np.float32, shape=["N", 2, 5, 5])
    y, r, g, f = (gs.Variable(n, dtype=np.float32) for n in ("y", "r", "g", "f"))
    out = gs.Variable("logits", dtype=np.float32, shape=["N", 4])
    nodes = [
        gs.Node("Conv", inputs=[x, gs.Constant("K", k), gs.Constant("c", c)], outputs=[y],
                attrs={"pads": [1, 1, 1, 1], "kernel_shape": [3, 3]}),
        gs.Node("Relu", inputs=[y], outputs=[r]),
        gs.Node("GlobalAveragePool", inputs=[r], outputs=[g]),
        gs.Node("Flatten", inputs=[g], outputs=[f], attrs={"axis": 1}),
        gs.Node("Gemm", inputs=[f, gs.Constant("W", w), gs.Constant("b", b)], outputs=[out]),
    ]
    graph = gs.Graph(nodes=nodes, inputs=[x], outputs=[out], opset=opset)
    return _export(graph, opset), {"K": k, "c": c, "W": w, "b": b}


def tokens(opset: int = 17, seed: int = 0) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """A token model: channel axis last::

        x[N,5,4] ─MatMul(A)─► p ─Add(a)─► q ─Relu─► t[N,5,6] ─ReduceMean(L)─► m[N,6]
                 ─MatMul(B)─► logits[N,3]
    """
    rng = np.random.default_rng(seed)
    a_w = rng.standard_normal((4, 6)).astype(np.float32)
    a_b = rng.standard_normal(6).astype(np.float32) * 0.1
    b_w = rng.standard_normal((6, 3)).astype(np.float32)
    x = gs.Variable("x", dtype=np.float32, shape=["N", 5, 4])
    p, q, t, m = (gs.Variable(n, dtype=np.float32) for n in ("p", "q", "t", "m"))
    out = gs.Variable("logits", dtype=np.float32, shape=["N", 3])
    if opset >= 18:
        reduce = gs.Node("ReduceMean", inputs=[t, gs.Constant("axes", np.array([1]))],
                         outputs=[m], attrs={"keepdims": 0})
    else:
        reduce = gs.Node("ReduceMean", inputs=[t], outputs=[m], attrs={"axes": [1], "keepdims": 0})
    nodes = [
        gs.Node("MatMul", inputs=[x, gs.Constant("A", a_w)], outputs=[p]),
        gs.Node("Add", inputs=[p, gs.Constant("a", a_b)], outputs=[q]),
        gs.Node("Relu", inputs=[q], outputs=[t]),
        reduce,
        gs.Node("MatMul", inputs=[m, gs.Constant("B", b_w)], outputs=[out]),
    ]
    graph = gs.Graph(nodes=nodes, inputs=[x], outputs=[out], opset=opset)
    return _export(graph, opset), {"A": a_w, "a": a_b, "B": b_w}


def residual(opset: int = 17, seed: int = 0) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """Two masked layers joined by a skip connection that bypasses the first cut::

        x[N,3] ─Gemm(W0)─► h0 ─Relu─► a0[N,3] ─Gemm(W1)─► h1 ─Add(a0)─► s ─Relu─► a1[N,3]
                                  └──────────────────────────────┘
        a1 ─Gemm(W2)─► logits[N,2]
    """
    rng = np.random.default_rng(seed)
    w = [rng.standard_normal(s).astype(np.float32) for s in ((3, 3), (3, 3), (3, 2))]
    x = gs.Variable("x", dtype=np.float32, shape=["N", 3])
    h0, a0, h1, s, a1 = (gs.Variable(n, dtype=np.float32) for n in ("h0", "a0", "h1", "s", "a1"))
    out = gs.Variable("logits", dtype=np.float32, shape=["N", 2])
    nodes = [
        gs.Node("Gemm", inputs=[x, gs.Constant("W0", w[0])], outputs=[h0]),
        gs.Node("Relu", inputs=[h0], outputs=[a0]),
        gs.Node("Gemm", inputs=[a0, gs.Constant("W1", w[1])], outputs=[h1]),
        gs.Node("Add", inputs=[h1, a0], outputs=[s]),
        gs.Node("Relu", inputs=[s], outputs=[a1]),
        gs.Node("Gemm", inputs=[a1, gs.Constant("W2", w[2])], outputs=[out]),
    ]
    graph = gs.Graph(nodes=nodes, inputs=[x], outputs=[out], opset=opset)
    return _export(graph, opset), {"W0": w[0], "W1": w[1], "W2": w[2]}


def silu_mlp(opset: int = 17, seed: int = 0) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """SiLU written as Mul(x, Sigmoid(x)), as exporters write it::

        x[N,4] ─Gemm(W0)─► h ─Sigmoid─► s ─┐
                           └──────────── Mul ─► a[N,5] ─Gemm(W1)─► logits[N,2]
    """
    rng = np.random.default_rng(seed)
    w0 = rng.standard_normal((4, 5)).astype(np.float32)
    w1 = rng.standard_normal((5, 2)).astype(np.float32)
    x = gs.Variable("x", dtype=np.float32, shape=["N", 4])
    h, s, a = (gs.Variable(n, dtype=np.float32) for n in ("h", "s", "a"))
    out = gs.Variable("logits", dtype=np.float32, shape=["N", 2])
    nodes = [
        gs.Node("Gemm", inputs=[x, gs.Constant("W0", w0)], outputs=[h]),
        gs.Node("Sigmoid", inputs=[h], outputs=[s]),
        gs.Node("Mul", inputs=[h, s], outputs=[a]),
        gs.Node("Gemm", inputs=[a, gs.Constant("W1", w1)], outputs=[out]),
    ]
    graph = gs.Graph(nodes=nodes, inputs=[x], outputs=[out], opset=opset)
    return _export(graph, opset), {"W0": w0, "W1": w1}


def save(model: onnx.ModelProto, path: Path, external: bool = False) -> Path:
    if external:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=path.name + ".data", size_threshold=0)
    else:
        onnx.save_model(model, str(path))
    return path


def counting_net(units: int = 10, threshold: float = 4.5, dead: int = 0,
                 opset: int = 17) -> onnx.ModelProto:
    """A net whose ablation curve is known in closed form::

        x[N,1] ─MatMul(ones[1,U] | −1 for dead units)─► h ─Relu─► a[N,U]
               ─MatMul(V[U,2])─► s ─Add([−t, 0])─► logits[N,2]

    V[:,0] = 1, V[:,1] = 0. With x = 1 for class 0 and x = 0 for class 1, every live unit is
    1 on class 0 and 0 on class 1; class 0 is predicted iff (live units left) > t. With k live
    units ablated, class 0 is right iff U_live − k > t, and class 1 is always right.
    """
    w0 = np.ones((1, units), dtype=np.float32)
    w0[0, :dead] = -1.0
    v = np.zeros((units, 2), dtype=np.float32)
    v[:, 0] = 1.0
    bias = np.array([-threshold, 0.0], dtype=np.float32)
    x = gs.Variable("x", dtype=np.float32, shape=["N", 1])
    h, a, s = (gs.Variable(n, dtype=np.float32) for n in ("h", "a", "s"))
    out = gs.Variable("logits", dtype=np.float32, shape=["N", 2])
    nodes = [
        gs.Node("MatMul", inputs=[x, gs.Constant("W0", w0)], outputs=[h]),
        gs.Node("Relu", inputs=[h], outputs=[a]),
        gs.Node("MatMul", inputs=[a, gs.Constant("V", v)], outputs=[s]),
        gs.Node("Add", inputs=[s, gs.Constant("t", bias)], outputs=[out]),
    ]
    graph = gs.Graph(nodes=nodes, inputs=[x], outputs=[out], opset=opset)
    return _export(graph, opset)


def counting_data(path: Path, per_class: int = 50) -> Path:
    """Balanced data for :func:`counting_net`: x = 1 ↔ class 0, x = 0 ↔ class 1."""
    x = np.concatenate([np.ones((per_class, 1)), np.zeros((per_class, 1))]).astype(np.float32)
    y = np.concatenate([np.zeros(per_class), np.ones(per_class)]).astype(np.int64)
    np.savez(path, x=x, y=y)
    return path


def external_outside(folder: Path) -> Path:
    """The conv model saved with external weights, then a copy one folder down whose weights
    location points back up (``../``): a model that reaches outside its own folder."""
    inner = folder / "inner"
    inner.mkdir()
    path = save(conv(17)[0], folder / "conv.onnx", external=True)
    model = onnx.load(str(path), load_external_data=False)
    for init in model.graph.initializer:
        for entry in init.external_data:
            if entry.key == "location":
                entry.value = "../conv.onnx.data"
    onnx.save_model(model, str(inner / "evil.onnx"))
    return inner / "evil.onnx"


def conv_softmax(opset: int = 17, seed: int = 0) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """:func:`conv` with a softmax head (the model outputs probabilities)::

        x ─Conv─► y ─Relu─► r ─GlobalAveragePool─► g ─Flatten─► f ─Gemm(W,b)─► z ─Softmax─► probs
    """
    model, weights = conv(opset, seed)
    graph = gs.import_onnx(model)
    logits = graph.outputs[0]
    logits.name = "z"
    probs = gs.Variable("probs", dtype=np.float32, shape=["N", 4])
    graph.nodes.append(gs.Node("Softmax", inputs=[logits], outputs=[probs], attrs={"axis": 1}))
    graph.outputs = [probs]
    return _export(graph, opset), weights


def l2_embedding() -> onnx.ModelProto:
    """An L2-normalised embedding (torch's F.normalize), weights 0.1::

        x[N,4] ─Gemm─► Relu ─► a[N,4] ─Gemm─► e[N,3] ─ReduceL2─► n[N,1] ─Clip(1e-12)─► c[N,1]
                                                  └──────────────── Div(e, c) ─► emb[N,3]
    """
    from onnx import TensorProto, helper

    w = helper.make_tensor("W0", TensorProto.FLOAT, [4, 4], [0.1] * 16)
    w1 = helper.make_tensor("W1", TensorProto.FLOAT, [4, 3], [0.1, 0.2, -0.3] * 4)
    lo = helper.make_tensor("lo", TensorProto.FLOAT, [], [1e-12])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    nodes = [helper.make_node("Gemm", ["x", "W0"], ["g"]), helper.make_node("Relu", ["g"], ["a"]),
             helper.make_node("Gemm", ["a", "W1"], ["e"]),
             helper.make_node("ReduceL2", ["e", "axes"], ["n"], keepdims=1),
             helper.make_node("Clip", ["n", "lo"], ["c"]), helper.make_node("Div", ["e", "c"], ["emb"])]
    graph = helper.make_graph(
        nodes, "emb", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["N", 3])], [w, w1, lo, axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model)
