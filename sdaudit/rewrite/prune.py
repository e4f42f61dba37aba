"""Pruned suffixes: an ablated channel is a channel nobody computes.

Zero ablation makes whole channels zero. Rather than compute them and multiply by 0, the pruned
suffix of one configuration carries each activation *compactly*: only its live channels, those
that are both needed downstream (backward pass) and not known to be zero (forward pass):

* a convolution reading a tensor with ablated channels reads only the others (its weights'
  input columns sliced); a convolution whose output channels are all ablated later (through
  ReLU, residual Add, BatchNorm…) computes only the live ones (weights' rows sliced);
* channel-wise operations (activations, pooling, BatchNorm, Add/Mul of two activations,
  per-channel constants) run on the live channels only; where two operands carry different
  live sets they are aligned (a gather, with implicit zeros filled in);
* anything not understood receives its input whole (zeros written back): the pass saves work
  only where it can. Masks must broadcast on axis 1 (else NotPrunableError at construction).

Several configurations are fused into one model, each a branch reading the same cut tensors,
with one output per configuration: one run of one session serves them all (one thread pool, one
call). The engine checks the fused model against the masked suffix on its first chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import onnx

# Activations with f(0) = 0, applied channel by channel (a zero channel stays zero).
ZERO_PRESERVING = frozenset({
    "Relu", "LeakyRelu", "Elu", "Selu", "Celu", "Tanh", "HardSwish", "Identity", "Neg", "Abs",
    "Softsign", "Erf", "ThresholdedRelu", "Mish", "MaxPool", "AveragePool", "GlobalAveragePool",
    "GlobalMaxPool", "LpPool", "GlobalLpPool",
})
# Channel-wise activations with f(0) != 0: live where needed, zeros materialised first.
CHANNELWISE = frozenset({"Sigmoid", "HardSigmoid", "Softplus", "Exp", "Cos"})
# Per-channel parameters in these inputs (from index 1): sliced with the channels.
PER_CHANNEL_PARAMS = frozenset({"BatchNormalization", "InstanceNormalization"})


def nchwc_block() -> int:
    """The channel block of ONNX Runtime's NCHWc convolution kernels on this CPU: 16 with
    AVX-512, else 8. A pruned convolution's input channels are padded (with zero channels) to a
    multiple of it, which keeps those kernels in use."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return 16 if "avx512f" in line.split() else 8
    except OSError:
        pass
    return 8


class NotPrunableError(Exception):
    """This configuration cannot be pruned here (the masked suffix runs it instead)."""


@dataclass
class Branch:
    """One configuration's pruned suffix: its nodes and constants, ready to fuse."""

    output: str
    nodes: list[Any]
    inits: list[Any]
    macs: float = 0.0  # multiply-adds per sample of its convolutions and products
    cost: float = 1.0  # macs ÷ the masked suffix's
    nbytes: int = 0  # of its constants


@dataclass
class _Graph:
    """The suffix, analysed once: nodes in order, constants, shapes, the mask multiplies."""

    model: onnx.ModelProto
    nodes: list[Any]
    consts: dict[str, np.ndarray]  # initializers and Constant outputs
    channels: dict[str, int]  # tensor -> channel count (axis 1), where known
    ranks: dict[str, int]
    masks: dict[str, tuple[str, int]]  # Mul output -> (mask input, index of the data input)
    inputs: list[str]  # cut tensors (graph inputs that are not masks)
    output: str
    shapes: dict[str, list[int | None]]  # where inferred


def analyse(suffix: onnx.ModelProto, mask_inputs: tuple[str, ...], output: str) -> _Graph:
    """Shapes, constants and mask multiplies of a masked suffix (see instrument())."""
    import onnx
    from onnx import numpy_helper, shape_inference

    inferred = shape_inference.infer_shapes(suffix)
    g = inferred.graph
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    channels: dict[str, int] = {}
    ranks: dict[str, int] = {}
    shapes: dict[str, list[int | None]] = {}
    for vi in [*g.input, *g.value_info, *g.output]:
        tt = vi.type.tensor_type
        if not tt.HasField("shape"):
            continue
        dims = tt.shape.dim
        shapes.setdefault(vi.name, [d.dim_value if d.HasField("dim_value") else None
                                    for d in dims])
        ranks[vi.name] = len(dims)
        if len(dims) >= 2 and dims[1].HasField("dim_value"):
            channels[vi.name] = int(dims[1].dim_value)
    for name, arr in consts.items():
        ranks[name] = arr.ndim
    nodes = list(g.node)
    for node in nodes:  # in topological order: a chain of Identity nodes resolves
        if node.op_type == "Constant" and node.attribute:
            attr = node.attribute[0]
            if attr.name == "value":
                consts[node.output[0]] = numpy_helper.to_array(attr.t)
        elif node.op_type == "Identity" and node.input[0] in consts:
            consts[node.output[0]] = consts[node.input[0]]  # weights passed through (exporters)
    masks_set = set(mask_inputs)
    bcast = {n.output[0]: n.input[0] for n in nodes
             if n.op_type == "Reshape" and n.input[0] in masks_set}
    for node in nodes:  # the pass knows channels on axis 1 only ([N, C, …] or [N, C])
        if node.op_type == "Reshape" and node.input[0] in masks_set:
            target = consts.get(node.input[1])
            if target is None or len(target) < 2 or int(target[1]) != -1:
                raise NotPrunableError(f"{node.input[0]}: the channels are not on axis 1")
    masks: dict[str, tuple[str, int]] = {}
    for node in nodes:
        if node.op_type != "Mul":
            continue
        for i, name in enumerate(node.input):
            source = bcast.get(name, name if name in masks_set else None)
            if source is not None:
                masks[node.output[0]] = (source, 1 - i)
    inputs = [i.name for i in g.input if i.name not in masks_set]
    del onnx
    return _Graph(inferred, nodes, consts, channels, ranks, masks, inputs, output, shapes)


def _channel_const(g: _Graph, name: str, out_rank: int, c: int) -> np.ndarray | None:
    """A constant operand as a per-channel vector of length ``c`` (broadcast on axis 1), or None
    where it does not broadcast that way (scalars and [1]-shaped constants give a full vector)."""
    arr = g.consts.get(name)
    if arr is None:
        return None
    if arr.size == 1:
        return np.full(c, arr.reshape(-1)[0])
    shape = (1,) * (out_rank - arr.ndim) + arr.shape
    if len(shape) != out_rank or shape[1] != c or any(d != 1 for i, d in enumerate(shape) if i != 1):
        return None
    return arr.reshape(-1)


def _spatial_axes(node: Any, g: _Graph, rank: int) -> bool:
    """Whether a Reduce* node reduces spatial axes only (keeps batch and channel)."""
    axes = None
    for attr in node.attribute:
        if attr.name == "axes":
            axes = list(attr.ints)
    if axes is None and len(node.input) > 1 and node.input[1] in g.consts:
        axes = [int(a) for a in g.consts[node.input[1]].reshape(-1)]
    if not axes:
        return False
    axes = [a % rank for a in axes]
    return 0 not in axes and 1 not in axes


class _Kind:
    MASK, ZERO, CHANNEL, PARAMS, BINARY, CONV, DEPTHWISE, FLATTEN, GEMM, MATMUL, OPAQUE = range(11)


def _attr(node: Any, name: str, default: Any) -> Any:
    import onnx

    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


def _classify(g: _Graph, node: Any) -> int:  # noqa: PLR0911 - one return per op family
    """How a node moves channels (see the module's docstring); OPAQUE where unsure."""
    op = node.op_type
    out = node.output[0] if node.output else ""
    c_out = g.channels.get(out)
    x = node.input[0] if node.input else ""
    if out in g.masks:
        return _Kind.MASK
    if node.output and all(o in g.consts for o in node.output):
        return _Kind.OPAQUE  # a constant (Identity of weights, Constant): emitted as it is
    if c_out is None or (len(node.output) != 1 and op not in ("BatchNormalization", "Dropout")):
        return _Kind.OPAQUE
    c_in = g.channels.get(x)
    if op == "Clip":
        lo = g.consts.get(node.input[1]) if len(node.input) > 1 and node.input[1] else None
        hi = g.consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        lo_v = float(lo) if lo is not None else _attr(node, "min", -np.inf)
        hi_v = float(hi) if hi is not None else _attr(node, "max", np.inf)
        if (len(node.input) > 1 and node.input[1] and lo is None) or \
                (len(node.input) > 2 and node.input[2] and hi is None):
            return _Kind.OPAQUE
        return _Kind.ZERO if lo_v <= 0 <= hi_v and c_in == c_out else _Kind.CHANNEL
    if op in ZERO_PRESERVING or op == "Dropout":
        return _Kind.ZERO if c_in == c_out else _Kind.OPAQUE
    if op in CHANNELWISE:
        return _Kind.CHANNEL if c_in == c_out else _Kind.OPAQUE
    if op == "PRelu":
        if c_in == c_out and _channel_const(g, node.input[1], g.ranks.get(out, 0), c_out) is not None:
            return _Kind.ZERO
        return _Kind.OPAQUE
    if op in PER_CHANNEL_PARAMS:
        if c_in == c_out and all(i in g.consts and g.consts[i].shape == (c_out,)
                                 for i in node.input[1:]):
            return _Kind.PARAMS
        return _Kind.OPAQUE
    if op in ("ReduceMean", "ReduceMax", "ReduceSum", "ReduceMin"):
        rank = g.ranks.get(x, 0)
        if c_in == c_out and rank >= 2 and _spatial_axes(node, g, rank):
            return _Kind.ZERO
        return _Kind.OPAQUE
    if op in ("Add", "Sub", "Mul", "Div") and len(node.input) == 2:
        a, b = node.input
        rank = g.ranks.get(out, 0)
        for operand in (a, b):
            if operand in g.consts:
                if _channel_const(g, operand, rank, c_out) is None:
                    return _Kind.OPAQUE
            elif g.channels.get(operand) != c_out or g.ranks.get(operand) != rank:
                return _Kind.OPAQUE
        if op == "Div" and b not in g.consts:
            return _Kind.OPAQUE
        if a in g.consts and b in g.consts:
            return _Kind.OPAQUE
        return _Kind.BINARY
    if op == "Conv" and x not in g.consts and len(node.input) >= 2 and node.input[1] in g.consts:
        w = g.consts[node.input[1]]
        group = int(_attr(node, "group", 1))
        if len(node.input) > 2 and node.input[2] and node.input[2] not in g.consts:
            return _Kind.OPAQUE
        if c_in is None or w.shape[0] != c_out:
            return _Kind.OPAQUE
        if group == 1 and w.shape[1] == c_in:
            return _Kind.CONV
        if group == c_in == c_out and w.shape[1] == 1:
            return _Kind.DEPTHWISE
        return _Kind.OPAQUE
    if op == "Flatten":
        shape = g.shapes.get(x)
        if int(_attr(node, "axis", 1)) == 1 and shape is not None and c_in == c_out and \
                all(d == 1 for d in shape[2:]):
            return _Kind.ZERO
        return _Kind.OPAQUE
    if op == "Gemm":
        if (len(node.input) >= 2 and node.input[1] in g.consts and not _attr(node, "transA", 0)
                and g.ranks.get(x) == 2 and c_in is not None
                and (len(node.input) < 3 or not node.input[2] or node.input[2] in g.consts)):
            return _Kind.GEMM
        return _Kind.OPAQUE
    if op == "MatMul":
        if (len(node.input) == 2 and node.input[1] in g.consts and g.ranks.get(x) == 2
                and g.consts[node.input[1]].ndim == 2 and c_in is not None):
            return _Kind.MATMUL
        return _Kind.OPAQUE
    return _Kind.OPAQUE


class Pruner:
    """Builds fused pruned suffixes of one masked suffix for sets of zero-ablation masks."""

    def __init__(self, suffix: onnx.ModelProto, mask_inputs: tuple[str, ...],
                 output: str, block: int | None = None) -> None:
        self.g = analyse(suffix, mask_inputs, output)
        self.mask_inputs = mask_inputs
        self.kinds = [_classify(self.g, n) for n in self.g.nodes]
        self.block = block or nchwc_block()
        self.opset = next((int(i.version) for i in self.g.model.opset_import
                           if i.domain in ("", "ai.onnx")), 0)
        # Multiply-adds of each convolution and product (per sample), and of the whole suffix.
        self.macs: dict[str, float] = {}
        for node, kind in zip(self.g.nodes, self.kinds, strict=True):
            if kind in (_Kind.CONV, _Kind.DEPTHWISE, _Kind.GEMM, _Kind.MATMUL):
                out = node.output[0]
                shape = self.g.shapes.get(out) or []
                spatial = float(np.prod([d or 1 for d in shape[2:]])) if len(shape) > 2 else 1.0
                self.macs[out] = float(self.g.consts[node.input[1]].size) * spatial
        self.full_macs = float(sum(self.macs.values()))

    # -- analysis per configuration ---------------------------------------------------------
    def _zero_sets(self, masks: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Forward: channels known to be exactly zero (boolean per channel)."""
        g = self.g
        z: dict[str, np.ndarray] = {}

        def zero(name: str) -> np.ndarray | None:
            return z.get(name)

        def operand_zero(name: str, rank: int, c: int) -> np.ndarray:
            if name in g.consts:
                vec = _channel_const(g, name, rank, c)
                return np.asarray(vec == 0) if vec is not None else np.zeros(c, bool)
            known = z.get(name)
            return known if known is not None else np.zeros(c, bool)

        for node, kind in zip(g.nodes, self.kinds, strict=True):
            out = node.output[0] if node.output else ""
            c = g.channels.get(out)
            if c is None:
                continue
            if kind == _Kind.MASK:
                mask_name, data = g.masks[out]
                m = masks[mask_name] == 0
                prev = zero(node.input[data])
                z[out] = m | prev if prev is not None else m
            elif kind == _Kind.ZERO:
                prev = zero(node.input[0])
                if prev is not None:
                    z[out] = prev
            elif kind == _Kind.BINARY:
                a, b = node.input
                rank = g.ranks[out]
                za, zb = (operand_zero(a, rank, c), operand_zero(b, rank, c))
                if node.op_type in ("Add", "Sub"):
                    z[out] = za & zb
                elif node.op_type == "Mul":
                    z[out] = za | zb
                else:  # Div by a constant: x / 0 is not zero
                    z[out] = za & ~zb
        return z

    def _request_sets(self, masks: dict[str, np.ndarray],
                      z: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Backward: channels whose values some consumer needs (boolean per channel)."""
        g = self.g
        r: dict[str, np.ndarray] = {}

        def ask(name: str, want: np.ndarray) -> None:
            c = g.channels.get(name)
            if c is None or name in g.consts:
                return
            prev = r.get(name)
            r[name] = want.copy() if prev is None else (prev | want)

        def full(name: str) -> np.ndarray:
            return np.ones(g.channels[name], bool)

        if g.output in g.channels:
            ask(g.output, full(g.output))
        for node, kind in zip(reversed(g.nodes), reversed(self.kinds), strict=True):
            out = node.output[0] if node.output else ""
            want = r.get(out)
            if kind in (_Kind.CONV, _Kind.GEMM, _Kind.MATMUL):
                x = node.input[0]
                if want is not None and want.any() and x in g.channels:
                    ask(x, ~z.get(x, np.zeros(g.channels[x], bool)))
                continue
            if kind == _Kind.OPAQUE:
                for name in node.input:
                    if name in g.channels and name not in g.consts:
                        ask(name, full(name))
                continue
            if want is None:
                continue
            if kind == _Kind.MASK:
                mask_name, data = g.masks[out]
                ask(node.input[data], want & (masks[mask_name] != 0))
            elif kind in (_Kind.ZERO, _Kind.CHANNEL, _Kind.PARAMS, _Kind.DEPTHWISE):
                ask(node.input[0], want)
            elif kind == _Kind.BINARY:
                for name in node.input:
                    if name not in g.consts:
                        ask(name, want)
        return r

    # -- emission ---------------------------------------------------------------------------
    def cost(self, masks: dict[str, np.ndarray]) -> float:
        """The share of the masked suffix's multiply-adds a pruned branch would need (without
        building it; input padding left out)."""
        g = self.g
        z = self._zero_sets(masks)
        r = self._request_sets(masks, z)
        macs = 0.0
        for node, kind in zip(g.nodes, self.kinds, strict=True):
            if kind not in (_Kind.CONV, _Kind.DEPTHWISE, _Kind.GEMM, _Kind.MATMUL):
                continue
            out, x = node.output[0], node.input[0]
            want = r.get(out)
            if want is None or not want.any():
                continue
            share = float(want.mean())
            if kind != _Kind.DEPTHWISE and x in r:
                zx = z.get(x)
                share *= float(1.0 - zx.mean()) if zx is not None else 1.0
            macs += self.macs[out] * share
        return macs / max(self.full_macs, 1.0)

    def branch(self, masks: dict[str, np.ndarray], name: str) -> Branch:
        """The pruned suffix of one configuration (masks by mask input name, 0/1 per channel),
        its output called ``name``. Raises NotPrunableError where the pass cannot express it.

        Pre-condition: zero ablation (masks of 0 and 1). Post-condition: from the same cut the
        branch gives the masked suffix's output with those masks; runtime.pruning checks the
        first and last branch of every fused session against the masked suffix on the first
        chunk (within 1e-4 of the output's scale) and runs everything masked on a mismatch."""
        b = Branch(name, [], [])
        self._emit(masks, name + "/", b)
        b.cost = b.macs / max(self.full_macs, 1.0)
        return b

    def fuse(self, branches: list[Branch]) -> onnx.ModelProto:
        """One model running every branch from the same cut tensors, an output per branch."""
        import onnx
        from onnx import helper

        g = self.g
        src = g.model
        opset = self.opset
        nodes: list[Any] = []
        inits = [t for b in branches for t in b.inits]
        previous = None
        for k, b in enumerate(branches):
            if previous is None or opset < 10:
                nodes += b.nodes
            else:
                # Branch k starts after branch k-1 has finished: it reads the cut through a Slice
                # whose end depends on the previous output (0 × its first dimension + the
                # largest int64: the whole tensor). Without this, ONNX Runtime runs the branches
                # breadth-first and holds the activations of many at once.
                batch = f"b{k}/end"
                nodes += [helper.make_node("Shape", [previous], [batch + ".shape"]),
                          helper.make_node("Slice", [batch + ".shape", "prune.zero", "prune.one"],
                                           [batch + ".first"]),
                          helper.make_node("Mul", [batch + ".first", "prune.zero"],
                                           [batch + ".zero"]),
                          helper.make_node("Add", [batch + ".zero", "prune.max"], [batch])]
                renamed = {}
                for name in g.inputs:
                    renamed[name] = f"b{k}/{name}"
                    nodes.append(helper.make_node("Slice", [name, "prune.zero", batch,
                                                            "prune.zero"], [renamed[name]]))
                for node in b.nodes:
                    copy = onnx.NodeProto()
                    copy.CopyFrom(node)
                    copy.input[:] = [renamed.get(i, i) for i in node.input]
                    nodes.append(copy)
            previous = b.output
        if len(branches) > 1 and opset >= 10:
            from onnx import numpy_helper

            inits += [numpy_helper.from_array(np.array([0], np.int64), "prune.zero"),
                      numpy_helper.from_array(np.array([1], np.int64), "prune.one"),
                      numpy_helper.from_array(np.array([np.iinfo(np.int64).max], np.int64),
                                              "prune.max")]
        shared = {n for node in nodes for n in node.input}
        inits += [t for t in src.graph.initializer if t.name in shared]
        inputs = [i for i in src.graph.input if i.name in g.inputs]
        out_vi = next(o for o in src.graph.output if o.name == g.output)
        outs = []
        for b in branches:
            vi = onnx.ValueInfoProto()
            vi.CopyFrom(out_vi)
            vi.name = b.output
            outs.append(vi)
        graph = helper.make_graph(nodes, "sdaudit_pruned", inputs, outs, inits)
        model = helper.make_model(graph, opset_imports=list(src.opset_import))
        model.ir_version = src.ir_version
        return model

    def _emit(self, masks: dict[str, np.ndarray], pre: str, b: Branch) -> None:
        from onnx import helper, numpy_helper

        g = self.g
        nodes, inits, final = b.nodes, b.inits, b.output
        for name in self.mask_inputs:
            if not np.isin(masks[name], (0.0, 1.0)).all():
                raise NotPrunableError(f"{name}: a mask other than 0/1")
        z = self._zero_sets(masks)
        r = self._request_sets(masks, z)
        # name -> (emitted name, live channel indices or None for all channels present)
        env: dict[str, tuple[str, np.ndarray | None]] = {name: (name, None) for name in g.inputs}
        counter = [0]

        def fresh(base: str) -> str:
            counter[0] += 1
            return f"{pre}{base}#{counter[0]}"

        def const(base: str, arr: np.ndarray) -> str:
            name = fresh(base)
            inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
            b.nbytes += arr.nbytes
            return name

        def add(op: str, inputs: list[str], base: str, **attrs: Any) -> str:
            out = fresh(base)
            nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
            return out

        def zero_pad(name: str, pads: list[int], base: str) -> str:
            """Zero channels appended (pads as an input from opset 11, an attribute before)."""
            if self.opset >= 11:
                return add("Pad", [name, const("pads", np.array(pads, np.int64))], base)
            return add("Pad", [name], base, pads=pads)

        def zeros_of(name: str) -> np.ndarray:
            zz = z.get(name)
            return zz if zz is not None else np.zeros(g.channels[name], bool)

        def live_of(name: str) -> np.ndarray:
            """The channels a compact tensor carries: requested and not known zero."""
            want = r.get(name)
            c = g.channels[name]
            want = want if want is not None else np.zeros(c, bool)
            return np.flatnonzero(want & ~zeros_of(name))

        def align(name: str, target: np.ndarray) -> str:
            """``name`` (original) as a tensor holding exactly the channels ``target``."""
            if name not in env:
                raise NotPrunableError(f"{name}: not computed")
            emitted, have = env[name]
            c = g.channels[name]
            if have is None:
                if len(target) == c and np.array_equal(target, np.arange(c)):
                    return emitted
                have = np.arange(c)
            if np.array_equal(have, target):
                return emitted
            pos = np.full(c, -1)
            pos[have] = np.arange(len(have))
            idx = pos[target]
            if (idx < 0).any():
                if not zeros_of(name)[target[idx < 0]].all():  # pragma: no cover - invariant
                    raise NotPrunableError(f"{name}: a channel neither carried nor zero")
                if len(have) == 0:
                    raise NotPrunableError(f"{name}: no channel left to pad from")
                rank = g.ranks[name]
                pads = [0] * (2 * rank)
                pads[rank + 1] = 1
                emitted = zero_pad(emitted, pads, "zpad")
                idx = np.where(idx < 0, len(have), idx)
            if len(idx) == 0:
                raise NotPrunableError(f"{name}: no live channel")
            return add("Gather", [emitted, const("idx", idx.astype(np.int64))], "align", axis=1)

        def sliced(name: str, idx: np.ndarray, axis: int = 0) -> str:
            return const("w", np.take(g.consts[name], idx, axis=axis))

        for node, kind in zip(g.nodes, self.kinds, strict=True):
            if node.op_type == "Reshape" and node.input[0] in self.mask_inputs:
                continue
            out = node.output[0] if node.output else ""
            if kind != _Kind.OPAQUE and (out not in r or not r[out].any()):
                continue  # nobody needs it
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            if kind == _Kind.MASK:
                data = node.input[g.masks[out][1]]
                live = live_of(out)
                if len(live) == 0:
                    raise NotPrunableError("every channel of a requested tensor is ablated")
                # The input carries live(out) or more (its request is r(out) minus ablated).
                env[out] = (align(data, live), live)
            elif kind in (_Kind.ZERO, _Kind.CHANNEL, _Kind.PARAMS):
                x = node.input[0]
                live = live_of(out) if kind == _Kind.ZERO else np.flatnonzero(r[out])
                if len(live) == 0:
                    raise NotPrunableError("no live channel")
                ins = [align(x, live)]
                rank = g.ranks.get(out, 0)
                for extra in node.input[1:]:
                    if kind == _Kind.PARAMS:
                        ins.append(sliced(extra, live))
                    elif node.op_type == "PRelu":
                        vec = _channel_const(g, extra, rank, g.channels[out])
                        assert vec is not None
                        shape = [1] * rank
                        shape[1] = len(live)
                        ins.append(const("slope", vec[live].reshape(shape[1:])))
                    else:
                        ins.append(env[extra][0] if extra in env else extra)
                new = fresh(out.rsplit("/", 1)[-1])
                nodes.append(helper.make_node(node.op_type, ins, [new, *[fresh("aux") for _ in
                                                                      node.output[1:]]],
                                              name=new, domain=node.domain, **attrs))
                env[out] = (new, live)
            elif kind == _Kind.BINARY:
                live = live_of(out)
                if len(live) == 0:
                    raise NotPrunableError("no live channel")
                rank = g.ranks[out]
                ins = []
                for name in node.input:
                    if name in g.consts:
                        vec = _channel_const(g, name, rank, g.channels[out])
                        assert vec is not None
                        shape = [1] * rank
                        shape[1] = len(live)
                        ins.append(const("k", vec[live].astype(g.consts[name].dtype)
                                         .reshape(shape)))
                    else:
                        ins.append(align(name, live))
                new = add(node.op_type, ins, out.rsplit("/", 1)[-1], **attrs)
                env[out] = (new, live)
            elif kind in (_Kind.CONV, _Kind.DEPTHWISE):
                x, w_name = node.input[0], node.input[1]
                live_out = np.flatnonzero(r[out])
                if len(live_out) == 0:
                    raise NotPrunableError("no live channel")
                w = g.consts[w_name]
                bias = (g.consts[node.input[2]] if len(node.input) > 2 and node.input[2]
                        else None)
                if kind == _Kind.DEPTHWISE:
                    wk = w[live_out]
                    ins = [align(x, live_out), const("w", wk)]
                    attrs["group"] = len(live_out)
                else:
                    live_in = live_of(x) if x in r else np.arange(0)
                    if len(live_in) == 0:
                        raise NotPrunableError("a convolution with no live input channel")
                    src = align(x, live_in)
                    wk = w[live_out][:, live_in]
                    pad = (-len(live_in)) % self.block if len(live_in) > self.block else 0
                    if pad:
                        rank = g.ranks[x]
                        pads = [0] * (2 * rank)
                        pads[rank + 1] = pad
                        src = zero_pad(src, pads, "bpad")
                        wk = np.concatenate(
                            [wk, np.zeros((wk.shape[0], pad, *wk.shape[2:]), wk.dtype)], axis=1)
                    ins = [src, const("w", wk)]
                if bias is not None:
                    ins.append(const("b", bias[live_out]))
                b.macs += self.macs[out] * float(np.prod(wk.shape) / w.size)
                new = add("Conv", ins, out.rsplit("/", 1)[-1], **attrs)
                env[out] = (new, live_out)
            elif kind in (_Kind.GEMM, _Kind.MATMUL):
                x, w_name = node.input[0], node.input[1]
                live_out = np.flatnonzero(r[out])
                live_in = live_of(x) if x in r else np.arange(0)
                if len(live_in) == 0 or len(live_out) == 0:
                    raise NotPrunableError("a product with no live channel")
                w = g.consts[w_name]
                if kind == _Kind.GEMM and attrs.get("transB", 0):
                    wk = w[live_out][:, live_in]
                else:
                    wk = w[live_in][:, live_out]
                ins = [align(x, live_in), const("w", wk)]
                b.macs += self.macs[out] * float(wk.size / w.size)
                if kind == _Kind.GEMM and len(node.input) > 2 and node.input[2]:
                    cvec = g.consts[node.input[2]]
                    if cvec.ndim >= 1 and cvec.shape[-1] == g.channels[out]:
                        cvec = np.take(cvec, live_out, axis=-1)
                    elif cvec.size != 1:
                        raise NotPrunableError("a Gemm bias that is not per output")
                    ins.append(const("c", cvec))
                new = add(node.op_type, ins, out.rsplit("/", 1)[-1], **attrs)
                env[out] = (new, live_out)
            else:  # opaque: whole inputs, outputs as they are
                ins = []
                for name in node.input:
                    if name in env and name in g.channels:
                        ins.append(align(name, np.arange(g.channels[name])))
                    elif name in env:
                        ins.append(env[name][0])
                    else:
                        ins.append(name)  # a constant or an empty optional input
                outs = [fresh(o.rsplit("/", 1)[-1]) if o else "" for o in node.output]
                nodes.append(helper.make_node(node.op_type, ins, outs, name=outs[0] or fresh("n"),
                                              domain=node.domain, **attrs))
                for o, new in zip(node.output, outs, strict=True):
                    if o:
                        env[o] = (new, None)
        if g.output not in env:
            raise NotPrunableError("the output was not produced")
        src_name = (align(g.output, np.arange(g.channels[g.output]))
                    if g.output in g.channels else env[g.output][0])
        nodes.append(helper.make_node("Identity", [src_name], [final], name=pre + "out"))
