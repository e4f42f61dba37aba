"""The pruning pass (rewrite.prune) against references it shares nothing with.

Each tiny graph below is instrumented and split as the engine does; for several seeded 0/1
masks per graph, the fused pruned suffix must give the numbers of the masked suffix run in ONNX
Runtime with the same masks fed as inputs (and, for two graphs, of plain numpy). A
configuration the pass cannot express may raise NotPrunableError; it must never give a wrong
number.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import pytest
from conftest import SAMPLES
from onnx import TensorProto, helper, numpy_helper

from sdaudit.model.layers import discover_layers, select_layers
from sdaudit.ort import make_session
from sdaudit.rewrite.instrument import instrument
from sdaudit.rewrite.prune import Branch, NotPrunableError, Pruner
from sdaudit.rewrite.split import split

BATCH = 3
HW = 5
TOL = 1e-4  # max |pruned − reference| ≤ TOL × max(1, max |reference|)
NO_PADDING = 1 << 20  # a channel block no convolution reaches: no input padding


# -- building tiny graphs -----------------------------------------------------------------------
@dataclass
class Net:
    """A graph under construction; its constants are seeded random arrays."""

    seed: int = 0
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    consts: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def const(self, name: str, arr: Any) -> str:
        self.consts[name] = np.asarray(arr)
        return name

    def rand(self, name: str, *shape: int, scale: float = 0.3, low: float | None = None) -> str:
        """Standard normal × scale; ``low + |·|`` where given (variances, divisors)."""
        arr = self.rng.standard_normal(shape) * scale
        return self.const(name, (arr if low is None else low + np.abs(arr)).astype(np.float32))

    def op(self, op: str, inputs: list[str], out: str, **attrs: Any) -> str:
        self.nodes.append(helper.make_node(op, inputs, [out], name=out + "_node", **attrs))
        return out

    def conv(self, x: str, out: str, cin: int, cout: int, k: int = 3, *, bias: bool = True,
             group: int = 1, **attrs: Any) -> str:
        ins = [x, self.rand(out + ".W", cout, cin // group, k, k)]
        if bias:
            ins.append(self.rand(out + ".b", cout, scale=0.1))
        return self.op("Conv", ins, out, pads=[k // 2] * 4, group=group, **attrs)

    def conv_relu(self, x: str, out: str, cin: int, cout: int, **kw: Any) -> str:
        return self.op("Relu", [self.conv(x, out + ".c", cin, cout, **kw)], out)

    def head(self, x: str, c: int, classes: int = 4, out: str = "logits") -> str:
        """GAP ─ Flatten ─ Gemm: [N, c, H, W] to [N, classes]."""
        g = self.op("GlobalAveragePool", [x], "head.gap")
        f = self.op("Flatten", [g], "head.flat", axis=1)
        return self.op("Gemm", [f, self.rand("head.W", c, classes), self.rand("head.b", classes)],
                       out)

    def model(self, inputs: dict[str, list], outputs: dict[str, list]) -> onnx.ModelProto:
        vi = helper.make_tensor_value_info
        graph = helper.make_graph(
            self.nodes, "net", [vi(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
            [vi(n, TensorProto.FLOAT, s) for n, s in outputs.items()],
            [numpy_helper.from_array(a, n) for n, a in self.consts.items()])
        return at_opset(helper.make_model(graph), 17)


def at_opset(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    """The model importing the default domain at ``opset`` (its ops must exist there)."""
    del model.opset_import[:]
    model.opset_import.append(helper.make_opsetid("", opset))
    model.ir_version = 8
    onnx.checker.check_model(model)
    return onnx.shape_inference.infer_shapes(model)


def image(c: int) -> dict[str, list]:
    return {"x": ["N", c, HW, HW]}


LOGITS = {"logits": ["N", 4]}


def weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}


def plain_cnn() -> onnx.ModelProto:
    """x ─Conv─Relu─► r0 [20] ─Conv─Relu─► r1 [12] ─GAP─Flatten─Gemm─► logits."""
    n = Net(1)
    r1 = n.conv_relu(n.conv_relu("x", "r0", 3, 20), "r1", 20, 12)
    n.head(r1, 12)
    return n.model(image(3), LOGITS)


def residual() -> onnx.ModelProto:
    """x ─Conv─Relu─► r0 ─Conv─Relu─► r1 ─Conv─► c2 ─Add(r0)─Relu─► r2 ─Conv─Relu─► r3 ─head."""
    n = Net(2)
    r0 = n.conv_relu("x", "r0", 3, 16)
    r1 = n.conv_relu(r0, "r1", 16, 16)
    r2 = n.op("Relu", [n.op("Add", [n.conv(r1, "c2", 16, 16), r0], "s")], "r2")
    n.head(n.conv_relu(r2, "r3", 16, 10), 10)
    return n.model(image(3), LOGITS)


def batchnorm(n: Net, x: str, out: str, c: int) -> str:
    params = [n.rand(f"{out}.{p}", c, scale=0.5, low=0.5 if p in ("scale", "var") else None)
              for p in ("scale", "B", "mean", "var")]
    return n.op("BatchNormalization", [x, *params], out, epsilon=1e-3)


def bn_sigmoid() -> onnx.ModelProto:
    """BatchNormalization and Sigmoid (f(0) ≠ 0) reading masked tensors::

        x ─Conv─Relu─► r0 ─BN─Conv─BN─Relu─► r1 ─Sigmoid─Conv─Relu─► r2 ─head"""
    n = Net(3)
    c1 = n.conv(batchnorm(n, n.conv_relu("x", "r0", 3, 12), "bn0", 12), "c1", 12, 14)
    r1 = n.op("Relu", [batchnorm(n, c1, "bn1", 14)], "r1")
    n.head(n.conv_relu(n.op("Sigmoid", [r1], "sg"), "r2", 14, 8), 8)
    return n.model(image(3), LOGITS)


def depthwise() -> onnx.ModelProto:
    """x ─Conv─Relu─► r0 [12] ─DepthwiseConv─Relu─► r1 ─GroupedConv 1x1 (3 groups)─Relu─► r2 ─head."""
    n = Net(4)
    r1 = n.conv_relu(n.conv_relu("x", "r0", 3, 12), "r1", 12, 12, group=12)
    n.head(n.conv_relu(r1, "r2", 12, 9, k=1, group=3), 9)
    return n.model(image(3), LOGITS)


def squeeze_excitation() -> onnx.ModelProto:
    """x ─Conv─Relu─► r0 ─┬─GAP─Conv 1x1─Sigmoid─► gate ─┐
                          └─────────────────────────── Mul ─► m ─Conv─Relu─► r2 ─head"""
    n = Net(5)
    r0 = n.conv_relu("x", "r0", 3, 10)
    pooled = n.op("GlobalAveragePool", [r0], "se.gap")
    gate = n.op("Sigmoid", [n.conv(pooled, "se.c", 10, 10, k=1)], "gate")
    n.head(n.conv_relu(n.op("Mul", [r0, gate], "m"), "r2", 10, 8), 8)
    return n.model(image(3), LOGITS)


def concat() -> onnx.ModelProto:
    """x ─Conv─Relu─► ra [8]  ─┐
       x ─Conv─Relu─► rb [10] ─ Concat ─Conv─Relu─► r2 ─head"""
    n = Net(6)
    cat = n.op("Concat", [n.conv_relu("x", "ra", 3, 8), n.conv_relu("x", "rb", 3, 10, k=1)], "cat",
               axis=1)
    n.head(n.conv_relu(cat, "r2", 18, 8), 8)
    return n.model(image(3), LOGITS)


def sum_of_masked() -> onnx.ModelProto:
    """Add of two masked tensors (a channel is zero where both are) and SiLU layers::

        x ─Conv─Relu─► ra ─┐
        x ─Conv─Relu─► rb ─ Add ─Conv─SiLU─► s1 ─Conv─SiLU─► s2 ─head"""
    n = Net(7)
    total = n.op("Add", [n.conv_relu("x", "ra", 3, 10), n.conv_relu("x", "rb", 3, 10, k=1)], "sum")
    current, c = total, 10
    for i, width in ((1, 12), (2, 8)):
        pre = n.conv(current, f"c{i}", c, width)
        current = n.op("Mul", [pre, n.op("Sigmoid", [pre], f"sig{i}")], f"s{i}")
        c = width
    n.head(current, c)
    return n.model(image(3), LOGITS)


def shared_input() -> onnx.ModelProto:
    """A masked tensor whose first reader wants fewer of its channels than its second::

        x ─Conv─Relu─► r0 ─┬─LeakyRelu─► la ─Conv 1x1─┐
                           └─Conv─────────────────────── Add ─Relu─► r2 ─head"""
    n = Net(16)
    r0 = n.conv_relu("x", "r0", 3, 12)
    ca = n.conv(n.op("LeakyRelu", [r0], "la", alpha=0.1), "ca", 12, 10, k=1)
    r2 = n.op("Relu", [n.op("Add", [ca, n.conv(r0, "cb", 12, 10)], "s")], "r2")
    n.head(r2, 10)
    return n.model(image(3), LOGITS)


def mlp() -> onnx.ModelProto:
    """Rank-2 masks; Gemm with transB, alpha, beta and a [1, M] bias; MatMul + Add::

        x[N,10] ─Gemm(transB)─Relu─► a0 [16] ─Gemm(transB, α, β)─Relu─► a1 [12] ─MatMul─Add─► logits"""
    n = Net(8)
    a0 = n.op("Relu", [n.op("Gemm", ["x", n.rand("W0", 16, 10), n.rand("b0", 16)], "h0",
                            transB=1)], "a0")
    a1 = n.op("Relu", [n.op("Gemm", [a0, n.rand("W1", 12, 16), n.rand("b1", 1, 12)], "h1",
                            transB=1, alpha=0.7, beta=1.5)], "a1")
    n.op("Add", [n.op("MatMul", [a1, n.rand("W2", 12, 4)], "m2"), n.rand("b2", 4)], "logits")
    return n.model({"x": ["N", 10]}, LOGITS)


def misc_ops() -> onnx.ModelProto:
    """PRelu, Clip (bounds as inputs), pooling, per-channel Sub/Div, LeakyRelu, a scalar Mul, and
    three ops with f(0) ≠ 0 reading known-zero channels (Softplus, Clip(0.1, 0.9), k − x)::

        x ─Conv─PRelu─► p0 ─Clip(-0.5, 0.8)─► cl ─MaxPool─Sub(k)─Div(k)─LeakyRelu─► lk
          ─AveragePool─PRelu─Mul(0.5)─► sc ─┬─Softplus───────┐
                                            ├─Clip(0.1, 0.9)─ Add ─ Add ─Conv─Clip(0.1, 6)─► c6 ─head
                                            └─Sub(k − ·)─────────────┘"""
    n = Net(9)
    p0 = n.op("PRelu", [n.conv("x", "c0", 3, 12), n.rand("slope", 12, 1, 1)], "p0")
    cl = n.op("Clip", [p0, n.const("lo", np.float32(-0.5)), n.const("hi", np.float32(0.8))], "cl")
    x = n.op("MaxPool", [cl], "mp", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    x = n.op("Sub", [x, n.rand("mu", 1, 12, 1, 1)], "sub")
    x = n.op("Div", [x, n.rand("sd", 12, 1, 1, low=0.5)], "div")
    x = n.op("LeakyRelu", [x], "lk", alpha=0.2)
    x = n.op("AveragePool", [x], "ap", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    x = n.op("PRelu", [x, n.rand("slope2", 12, 1, 1)], "pr")
    sc = n.op("Mul", [x, n.const("half", np.float32(0.5))], "sc")
    clipped = n.op("Clip", [sc, n.const("lo9", np.float32(0.1)), n.const("hi9", np.float32(0.9))],
                   "c09")
    x = n.op("Add", [n.op("Softplus", [sc], "sp"), clipped], "sum1")
    x = n.op("Add", [x, n.op("Sub", [n.rand("k", 12, 1, 1), sc], "rsub")], "sum2")
    c6 = n.op("Clip", [n.conv(x, "c1", 12, 10), n.const("lo6", np.float32(0.1)),
                       n.const("hi6", np.float32(6.0))], "c6")
    n.head(c6, 10)
    return n.model(image(3), LOGITS)


def no_bias() -> onnx.ModelProto:
    """Convolutions without bias (one strided, one dilated)::

        x ─Conv─Relu─► r0 ─Conv/2─Relu─► r1 ─Conv(dilation 2)─Relu─► r2 ─head"""
    n = Net(10)
    r1 = n.conv_relu(n.conv_relu("x", "r0", 3, 14, bias=False), "r1", 14, 18, bias=False,
                     strides=[2, 2])
    r2 = n.op("Relu", [n.op("Conv", [r1, n.rand("c2.W", 8, 18, 3, 3)], "c2",
                            pads=[2, 2, 2, 2], dilations=[2, 2])], "r2")
    n.head(r2, 8)
    return n.model(image(3), LOGITS)


def score_output() -> onnx.ModelProto:
    """An output of rank 1 (no channel axis): x ─Conv─Relu─► r0 ─Conv─Relu─► r1 ─head─ReduceSum─► score."""
    n = Net(11)
    r1 = n.conv_relu(n.conv_relu("x", "r0", 3, 12), "r1", 12, 10)
    n.op("ReduceSum", [n.head(r1, 10, out="z"), n.const("axes", np.array([1]))], "score",
         keepdims=0)
    return n.model(image(3), {"score": ["N"]})


def open_width_output() -> onnx.ModelProto:
    """An output [N, ?] whose width shape inference cannot tell (a Reshape to a computed shape)::

        x ─Conv─Relu─► r0 ─Conv─Relu─► r1 ─Reshape(r1, Concat(Shape(r1)[:1], [-1]))─► flat"""
    n = Net(12)
    r1 = n.conv_relu(n.conv_relu("x", "r0", 3, 12), "r1", 12, 6)
    first = n.op("Slice", [n.op("Shape", [r1], "shape"), n.const("zero", np.array([0])),
                           n.const("one", np.array([1]))], "first")
    target = n.op("Concat", [first, n.const("minus1", np.array([-1]))], "target", axis=0)
    n.op("Reshape", [r1, target], "flat")
    return n.model(image(3), {"flat": ["N", None]})


def wide_convs() -> onnx.ModelProto:
    """Channel counts that are multiples of every NCHWc block: no padding without ablation::

        x ─Conv─Relu─► r0 [16] ─Conv─Relu─► r1 [32] ─Conv─Relu─► r2 [16] ─head"""
    n = Net(13)
    r1 = n.conv_relu(n.conv_relu("x", "r0", 3, 16), "r1", 16, 32)
    n.head(n.conv_relu(r1, "r2", 32, 16), 16)
    return n.model(image(3), LOGITS)


# -- instrumenting, splitting, running ----------------------------------------------------------
def session(model: onnx.ModelProto) -> Any:
    return make_session(model.SerializeToString(), "cpu", threads=1)


@dataclass
class Case:
    """A graph cut for pruning at some layers, with the cut tensors of one random batch."""

    pruner: Pruner
    masked: Any  # the masked suffix's session
    output: str
    sizes: dict[str, int]  # mask input -> channels
    feeds: dict[str, np.ndarray]  # the cut tensors

    def reference(self, masks: dict[str, np.ndarray]) -> np.ndarray:
        controls = {k: v.reshape(1, -1).astype(np.float32) for k, v in masks.items()}
        return self.masked.run([self.output], {**self.feeds, **controls})[0]

    def run(self, branches: list[Branch]) -> list[np.ndarray]:
        return session(self.pruner.fuse(branches)).run([b.output for b in branches], self.feeds)


def prepare(model: onnx.ModelProto, spec: str, block: int | None = None) -> Case:
    layers = select_layers(discover_layers(model), spec)
    assert [la.name for la in layers] == spec.split(",")
    inst = instrument(model, layers, noise=False, stats=False, verify=False)
    output = model.graph.output[0].name
    cut = split(inst, (output,))
    rng = np.random.default_rng(0)
    inputs = {}
    for vi in model.graph.input:
        dims = [d.dim_value or BATCH for d in vi.type.tensor_type.shape.dim]
        inputs[vi.name] = rng.standard_normal(dims).astype(np.float32)
    feeds = {name: inputs[name] for name in cut.cut if name in inputs}
    if cut.prefix is not None:
        values = session(cut.prefix).run(list(cut.prefix_outputs), inputs)
        feeds.update(zip(cut.prefix_outputs, values, strict=True))
    return Case(Pruner(cut.suffix, inst.mask_inputs, output, block=block), session(cut.suffix),
                output, {m: la.channels for m, la in zip(inst.mask_inputs, layers, strict=True)},
                feeds)


def mask_configs(case: Case, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """0: nothing ablated; 1: everything; 2: one live unit per layer; 3: one dead unit per layer;
    then each layer whole (the others random); then random masks of several densities at every
    selected layer at once."""
    rng = np.random.default_rng(seed)

    def every(fn: Callable[[int], np.ndarray]) -> dict[str, np.ndarray]:
        return {name: fn(c).astype(np.float32) for name, c in case.sizes.items()}

    def one(c: int, value: float) -> np.ndarray:
        m = np.full(c, 1.0 - value)
        m[rng.integers(c)] = value
        return m

    configs = [every(np.ones), every(np.zeros), every(lambda c: one(c, 1.0)),
               every(lambda c: one(c, 0.0))]
    for name, c in case.sizes.items():
        cfg = every(lambda c: rng.random(c) < 0.5)
        cfg[name] = np.zeros(c, np.float32)
        configs.append(cfg)
    for keep in (0.1, 0.3, 0.5, 0.7, 0.9, 0.5):
        configs.append(every(lambda c, keep=keep: rng.random(c) < keep))
    return configs


def assert_close(got: np.ndarray, ref: np.ndarray, what: str = "") -> None:
    assert got.shape == ref.shape, f"{what}: shape {got.shape}, expected {ref.shape}"
    worst = float(np.abs(got.astype(np.float64) - ref).max())
    limit = TOL * max(1.0, float(np.abs(ref).max()))
    assert worst <= limit, f"{what}: pruned differs by {worst:.3g} (limit {limit:.3g})"


def check(case: Case, configs: list[dict[str, np.ndarray]]) -> list[int]:
    """Each configuration alone, then every prunable one fused in one model; the indices of the
    configurations that ran pruned."""
    branches, done, refs = [], [], []
    for i, cfg in enumerate(configs):
        try:
            b = case.pruner.branch(cfg, f"out#{i}")
        except NotPrunableError:
            continue
        refs.append(case.reference(cfg))
        assert_close(case.run([b])[0], refs[-1], f"configuration {i} alone")
        branches.append(b)
        done.append(i)
    for k, (got, ref) in enumerate(zip(case.run(branches) if branches else [], refs, strict=True)):
        assert_close(got, ref, f"configuration {done[k]} among {len(branches)} fused")
    return done


GRAPHS: dict[str, tuple[Callable[[], onnx.ModelProto], list[str]]] = {
    "plain": (plain_cnn, ["r0", "r0,r1"]),
    "residual": (residual, ["r0,r2", "r1,r3", "r0,r1,r2,r3"]),
    "bn-sigmoid": (bn_sigmoid, ["r0,r1", "r1"]),
    "depthwise": (depthwise, ["r0", "r0,r1"]),
    "squeeze-excitation": (squeeze_excitation, ["r0", "r0,gate,r2"]),
    "concat": (concat, ["ra,rb", "ra,rb,r2"]),
    "sum-of-masked": (sum_of_masked, ["ra,rb", "ra,rb,s1,s2"]),
    "shared-input": (shared_input, ["r0,la", "r0,la,r2"]),
    "mlp": (mlp, ["a0", "a0,a1"]),
    "misc-ops": (misc_ops, ["p0,lk", "p0,cl,lk,c6"]),
    "no-bias": (no_bias, ["r0,r1", "r0,r1,r2"]),
    "rank-1-output": (score_output, ["r0,r1"]),
    "open-width-output": (open_width_output, ["r0,r1"]),
}


@pytest.mark.parametrize(("graph", "spec"), [(g, s) for g, (_, specs) in GRAPHS.items()
                                             for s in specs])
def test_pruned_suffix_gives_the_masked_suffixs_numbers(graph, spec):
    case = prepare(GRAPHS[graph][0](), spec)
    done = check(case, mask_configs(case, seed=len(spec)))
    # Nothing ablated, or one unit per layer, is always expressible: the test is not vacuous.
    assert {0, 3} <= set(done)
    assert len(done) >= 5, done


@pytest.mark.parametrize("block", [2, 4, 16, NO_PADDING])
def test_any_channel_block_gives_the_same_numbers(block):
    """Inputs padded with zero channels to a multiple of the block (20 → 24 or 32 here)."""
    for build, spec in ((plain_cnn, "r0,r1"), (residual, "r0,r2")):
        case = prepare(build(), spec, block=block)
        assert len(check(case, mask_configs(case, seed=block))) >= 5


@pytest.mark.parametrize(("build", "spec", "block"), [(plain_cnn, "r0,r1", 4),
                                                      (bn_sigmoid, "r0,r1", NO_PADDING)])
@pytest.mark.parametrize("opset", [9, 10])
def test_models_before_opset_11(build, spec, block, opset):
    """Block padding (20 channels, block 4), then zero channels aligned for BN and Sigmoid: Pad
    takes its pads as an attribute before opset 11 (an input from 11 on)."""
    case = prepare(at_opset(build(), opset), spec, block=block)
    configs = mask_configs(case, seed=opset)
    check(case, [configs[i] for i in (0, 3)])


# -- numpy references -------------------------------------------------------------------------
def np_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A 'same' convolution, stride 1, groups 1, in float64."""
    k = w.shape[2]
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (k // 2, k // 2), (k // 2, k // 2)))
    windows = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))
    return np.einsum("nchwij,ocij->nohw", windows, w) + b[None, :, None, None]


def check_against_numpy(case: Case, seed: int,
                        numpy_ref: Callable[[dict[str, np.ndarray]], np.ndarray]) -> None:
    """Every prunable configuration's pruned branch against ``numpy_ref(masks)`` (≥ 5 of them)."""
    done = 0
    for cfg in mask_configs(case, seed=seed):
        ref = numpy_ref(cfg)
        try:
            b = case.pruner.branch(cfg, "out")
        except NotPrunableError:
            continue
        assert_close(case.run([b])[0], ref, "numpy")
        done += 1
    assert done >= 5


def test_plain_cnn_against_numpy():
    model = plain_cnn()
    w = weights(model)
    case = prepare(model, "r0,r1")

    def numpy_ref(cfg: dict[str, np.ndarray]) -> np.ndarray:
        m0, m1 = cfg["r0.mask"], cfg["r1.mask"]
        r0 = case.feeds["r0"] * m0[None, :, None, None]
        r1 = np.maximum(np_conv(r0, w["r1.c.W"], w["r1.c.b"]), 0) * m1[None, :, None, None]
        ref = r1.mean(axis=(2, 3)) @ w["head.W"] + w["head.b"]
        assert_close(case.reference(cfg), ref, "the masked suffix")  # the reference is sound
        return ref

    check_against_numpy(case, 5, numpy_ref)


def test_mlp_against_numpy():
    model = mlp()
    w = weights(model)
    case = prepare(model, "a0,a1")

    def numpy_ref(cfg: dict[str, np.ndarray]) -> np.ndarray:
        a0 = case.feeds["a0"] * cfg["a0.mask"]
        a1 = np.maximum(0.7 * a0 @ w["W1"].T + 1.5 * w["b1"], 0) * cfg["a1.mask"]
        return a1 @ w["W2"] + w["b2"]

    check_against_numpy(case, 6, numpy_ref)


# -- fusing -------------------------------------------------------------------------------------
def test_fused_branches_are_independent_and_in_order():
    case = prepare(residual(), "r0,r2")
    configs = [c for i, c in enumerate(mask_configs(case, seed=7)) if i in (0, 2, 3, 8, 9, 11)]
    branches = [case.pruner.branch(cfg, f"cfg{i}") for i, cfg in enumerate(configs)]
    sizes = [(len(b.nodes), len(b.inits)) for b in branches]
    refs = [case.reference(cfg) for cfg in configs]
    assert not np.allclose(refs[1], refs[2])  # the configurations do differ
    order = [4, 1, 5, 0, 3, 2]
    for picked in (list(range(6)), order, [2], [5, 2]):
        outs = case.run([branches[i] for i in picked])
        for i, got in zip(picked, outs, strict=True):
            assert_close(got, refs[i], f"branch {i} in order {picked}")
    # fuse leaves its branches as they were: twice the same branches, the same model results
    assert [(len(b.nodes), len(b.inits)) for b in branches] == sizes
    first, second = (case.run([branches[i] for i in order]) for _ in range(2))
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


def shape_through_the_cut() -> onnx.ModelProto:
    """x's shape [N, 3, 5, 5] computed before the first layer, read after it (the cut holds a
    tensor of 4 elements whatever the batch)::

        x ─Shape─► xshape ───────────────────────────────────┐
        x ─Conv─Relu─► r0 ─Conv─Relu─► r1 [3] ─Flatten─ Reshape ─Conv─Relu─► r2 ─head"""
    n = Net(14)
    shape = n.op("Shape", ["x"], "xshape")
    r1 = n.conv_relu(n.conv_relu("x", "r0", 3, 8), "r1", 8, 3)
    back = n.op("Reshape", [n.op("Flatten", [r1], "fl", axis=1), shape], "back")
    n.head(n.conv_relu(back, "r2", 3, 8), 8)
    return n.model(image(3), LOGITS)


def transposed_output() -> onnx.ModelProto:
    """Logits as [classes, N]: x ─Conv─Relu─► r0 ─Conv─Relu─► r1 ─head─Transpose─► zt [2, N]."""
    n = Net(15)
    r1 = n.conv_relu(n.conv_relu("x", "r0", 3, 8), "r1", 8, 6)
    n.op("Transpose", [n.head(r1, 6, classes=2, out="z")], "zt", perm=[1, 0])
    return n.model(image(3), {"zt": [2, "N"]})


@pytest.mark.parametrize("build", [shape_through_the_cut, transposed_output])
def test_fused_branches_where_axis_0_is_not_the_batch(build):
    """fuse() chains branch k after branch k-1 through a Slice of the cut that must keep it
    whole whatever axis 0 is: a 4-element shape vector through the cut, [2, N] logits (a chain
    that sliced to the previous output's first dimension cut these short)."""
    case = prepare(build(), "r0,r1")
    configs = mask_configs(case, seed=8)
    check(case, [configs[i] for i in (0, 3, 10, 11)])


# -- cost ---------------------------------------------------------------------------------------
def test_cost_is_the_share_of_multiply_adds():
    case = prepare(wide_convs(), "r0,r1,r2")
    exact = prepare(wide_convs(), "r0,r1,r2", block=NO_PADDING).pruner
    configs = mask_configs(case, seed=9)
    full = case.pruner.branch(configs[0], "full")
    assert full.cost == pytest.approx(1.0, abs=0.01)
    assert case.pruner.cost(configs[0]) == pytest.approx(1.0, abs=0.01)
    costs = []
    for i, cfg in enumerate(configs[2:], start=2):
        try:
            b = case.pruner.branch(cfg, "out")
        except NotPrunableError:
            continue
        assert 0 <= b.cost < 1, i
        unpadded = exact.branch(cfg, "out").cost
        assert unpadded <= b.cost + 1e-9
        assert exact.cost(cfg) == pytest.approx(unpadded, rel=1e-9)  # without building it
        costs.append(b.cost)
    assert len(costs) >= 5
    assert min(costs) < 0.2  # one live unit per layer


# -- end to end ---------------------------------------------------------------------------------
def flat_numbers(value: Any, path: str = "") -> dict[str, float]:
    if isinstance(value, dict):
        return {k: v for key, item in value.items()
                for k, v in flat_numbers(item, f"{path}.{key}").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value)
                for k, v in flat_numbers(item, f"{path}[{i}]").items()}
    return {path: float(value)} if isinstance(value, (int, float)) else {}


def test_scan_with_and_without_pruning_gives_the_same_curves(tmp_path):
    """--prune runs every configuration that can be pruned pruned, --no-prune none; the default
    decides by the expected saving (none, or a few, on a sample this small)."""
    from sdaudit.cli.app import run

    reports = {}
    for flags in (["--prune"], ["--no-prune"], []):
        out = tmp_path / f"{len(reports)}.json"
        code = run(["scan", str(SAMPLES / "digits-cnn.onnx"), "--data",
                    str(SAMPLES / "digits-train.npz"), "--measure", "ablation", "--draws", "2",
                    "--max-samples", "300", "--device", "cpu", "--json", str(out), "-q",
                    "--format", "json", *flags])
        assert code == 0
        reports[" ".join(flags)] = json.loads(out.read_text())
    pruned, plain = reports["--prune"], reports["--no-prune"]
    assert pruned["runtime"]["prune"] is True
    assert pruned["runtime"]["pruned_configurations"] > 0
    assert plain["runtime"]["prune"] is False
    assert plain["runtime"]["pruned_configurations"] == 0
    reference = flat_numbers(plain["ablation"])
    assert len(reference) > 50  # the joint and per-layer curves
    for flags, report in reports.items():
        assert not any("disagreed" in note for note in report["summary"]["notes"]), flags
        numbers = flat_numbers(report["ablation"])
        assert numbers.keys() == reference.keys()
        for key, value in numbers.items():
            assert value == pytest.approx(reference[key], rel=1e-6, abs=1e-6), (flags, key)


def weights_through_identity() -> onnx.ModelProto:
    """The residual net with every convolution's weights read through an Identity node (as
    torch.onnx exports shared or folded parameters)."""
    model = residual()
    inits = {t.name for t in model.graph.initializer}
    extra = []
    for node in model.graph.node:
        if node.op_type == "Conv" and node.input[1] in inits:
            alias = node.input[1] + ".alias"
            extra.append(helper.make_node("Identity", [node.input[1]], [alias]))
            node.input[1] = alias
    nodes = extra + list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return at_opset(model, 17)


def test_weights_read_through_identity_are_pruned():
    """Convolutions whose weights come through Identity are pruned like the others (they were
    left whole, and the branch did nearly the masked suffix's work), with the same numbers."""
    case = prepare(weights_through_identity(), "r0,r2")
    direct = prepare(residual(), "r0,r2")
    configs = mask_configs(case, seed=12)
    assert len(check(case, configs)) >= 5
    for cfg in configs[3:8]:
        try:
            costs = (case.pruner.cost(cfg), direct.pruner.cost(cfg))
        except NotPrunableError:
            continue
        assert costs[0] == pytest.approx(costs[1])
        assert costs[0] < 0.95


def constant_weights_of_an_opaque_reader() -> onnx.ModelProto:
    """A grouped convolution (left whole by the pass) whose weights are Identity(Constant)::

        x ─Conv─Relu─► r0 [8] ─Conv(group 2, W = Identity(Constant))─Relu─► r1 ─head"""
    n = Net(14)
    r0 = n.conv_relu("x", "r0", 3, 8)
    w = numpy_helper.from_array(n.rng.standard_normal((8, 4, 3, 3)).astype(np.float32) * 0.3,
                                "wk")
    n.nodes.append(helper.make_node("Constant", [], ["wk"], value=w))
    n.op("Identity", ["wk"], "wg")
    r1 = n.op("Relu", [n.op("Conv", [r0, "wg"], "c1", pads=[1] * 4, group=2)], "r1")
    n.head(r1, 8)
    return n.model(image(3), LOGITS)


def test_constants_read_by_an_opaque_node_reach_it():
    """Constants computed in the graph (Identity of a Constant) are emitted in every branch even
    though no channel-wise request reaches them (the fused model was invalid)."""
    case = prepare(constant_weights_of_an_opaque_reader(), "r0")
    assert len(check(case, mask_configs(case, seed=14))) >= 5


def test_channels_on_another_axis_run_masked(tmp_path):
    """Token layers ([N, L, C]: channels last) are not pruned — the pass knows axis 1 only — and
    the scan gives the masked numbers (it crashed, or pruned token positions, before)."""
    import models

    from sdaudit.api import audit
    from sdaudit.config import AuditConfig
    from sdaudit.report.json_io import dumps

    model, _ = models.tokens(17)
    path = models.save(model, str(tmp_path / "tokens.onnx"))
    data = tmp_path / "tokens.npz"
    np.savez(data, x=np.random.default_rng(0).standard_normal((40, 5, 4)).astype(np.float32))
    reports = {prune: json.loads(dumps(audit(path, str(data), AuditConfig(
        device="cpu", draws=2, measures=("ablation",), prune=prune)))) for prune in (True, False)}
    assert reports[True]["runtime"]["pruned_configurations"] == 0
    assert reports[True]["ablation"] == reports[False]["ablation"]
    assert reports[True]["summary"]["notes"] == reports[False]["summary"]["notes"]


def test_pruned_count_is_of_configurations_pruned_on_every_chunk(tmp_path, monkeypatch):
    """A fused model the timing check drops after the first chunk ran pruned on one chunk only:
    it is not counted (it was), and the numbers are the masked ones."""
    from sdaudit.cli.app import run
    from sdaudit.runtime import pruning

    monkeypatch.setattr(pruning, "PRUNE_PAYBACK", 0.0)  # always worth building ...
    monkeypatch.setattr(pruning, "PRUNE_KEEP", 0.0)  # ... never faster than masked
    reports = {}
    for flags in ([], ["--no-prune"]):
        out = tmp_path / f"{len(reports)}.json"
        assert run(["scan", str(SAMPLES / "digits-cnn.onnx"), "--data",
                    str(SAMPLES / "digits-train.npz"), "--measure", "ablation", "--draws", "2",
                    "--max-samples", "200", "--chunk-size", "50", "--device", "cpu", "--json",
                    str(out), "-q", "--format", "json", *flags]) == 0
        reports[" ".join(flags)] = json.loads(out.read_text())
    assert reports[""]["runtime"]["pruned_configurations"] == 0
    ours, plain = flat_numbers(reports[""]["ablation"]), flat_numbers(reports["--no-prune"]["ablation"])
    for key, value in plain.items():
        assert ours[key] == pytest.approx(value, rel=1e-6, abs=1e-6), key
