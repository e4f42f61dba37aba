"""Layer discovery: every activation tensor of a graph that can be audited, and layer selection.

A *layer* here is one activation tensor; its *units* are the channels along its channel axis
(a feature map of a conv net, a hidden unit of an MLP, a feature of a token sequence).
"""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from sdaudit.errors import LayerSelectionError

if TYPE_CHECKING:
    import onnx

ACTIVATION_OPS = frozenset(
    {
        "Relu", "LeakyRelu", "PRelu", "Gelu", "Sigmoid", "Tanh", "Clip", "HardSwish",
        "HardSigmoid", "Elu", "Selu", "Celu", "Softplus", "Mish", "ThresholdedRelu",
    }
)
LINEAR_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul", "Add"})
# Quantized graphs count their weight layers too (QOperator and dynamic quantization).
WEIGHT_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul", "QLinearConv",
                        "QLinearMatMul", "ConvInteger", "MatMulInteger"})
# x · f(x) gates written as several ops (HardSwish = x·Clip(x + 3, 0, 6)/6, GELU =
# x·(1 + erf(x/√2))/2 or its tanh form, SiLU = x·σ(x), Mish = x·tanh(softplus(x))): the ops of
# f, each with a constant as its other operand, and what the bounded ones make the pattern.
GATE_CHAIN = frozenset({"Add", "Sub", "Mul", "Div", "Clip", "Erf", "Tanh", "Sigmoid",
                        "Softplus", "HardSigmoid", "Relu", "Pow"})
GATE_NAMES = (("Erf", "GELU"), ("Softplus", "Mish"), ("Tanh", "GELU"), ("Clip", "HardSwish"),
              ("HardSigmoid", "HardSwish"), ("Relu", "HardSwish"), ("Sigmoid", "SiLU"))
# Ops through which a linear output still "has an activation follow" (bias, batch norm, no-ops).
PASS_THROUGH = frozenset({"BatchNormalization", "Identity", "Dropout"})
# Ops between the logits and the model output: their inputs are not hidden layers.
HEAD_OPS = frozenset(
    {"Softmax", "LogSoftmax", "Identity", "Reshape", "Flatten", "Squeeze", "Cast", "ArgMax", "TopK"}
)
SILU = "SiLU"


@dataclass(frozen=True)
class LayerInfo:
    """One auditable activation tensor."""

    name: str
    op_type: str  # the producing op (SiLU for Mul(x, Sigmoid(x)))
    kind: str  # "activation" or "linear" (a hidden Conv/Gemm/MatMul/Add output with no activation)
    shape: tuple[int | str | None, ...]
    channel_axis: int
    channels: int
    depth: int  # weight layers (Conv/Gemm/MatMul) on the longest path from the inputs
    index: int  # position of the producing node in topological order
    default: bool  # in the default selection (the paper's)
    batch_axis: int = 0  # proven (sdaudit.model.axes): 1 for sequence-first [L, N, C]

    @property
    def spatial(self) -> bool:
        return len(self.shape) > 2

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["shape"] = [d if isinstance(d, int) else (d or "?") for d in self.shape]
        return data


class _Graph:
    """Producer/consumer maps and inferred shapes of an ONNX graph."""

    def __init__(self, model: onnx.ModelProto) -> None:
        graph = model.graph
        self.nodes = list(graph.node)
        self.producer: dict[str, int] = {}
        self.consumers: dict[str, list[int]] = {}
        for i, node in enumerate(self.nodes):
            for out in node.output:
                if out:
                    self.producer[out] = i
            for inp in node.input:
                if inp:
                    self.consumers.setdefault(inp, []).append(i)
        self.constants = {init.name for init in graph.initializer}
        self.constants.update(
            out for node in self.nodes if node.op_type == "Constant" for out in node.output
        )
        for node in self.nodes:  # computed from constants only (a transposed weight): constant
            if node.input and all(not i or i in self.constants for i in node.input):
                self.constants.update(o for o in node.output if o)
        self.outputs = {o.name for o in graph.output}
        self.shapes: dict[str, tuple[int | str | None, ...]] = {}
        self.elem_types: dict[str, int] = {}
        for vi in [*graph.input, *graph.value_info, *graph.output]:
            ttype = vi.type.tensor_type
            self.elem_types[vi.name] = ttype.elem_type
            if ttype.HasField("shape"):
                self.shapes[vi.name] = tuple(
                    d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                    for d in ttype.shape.dim
                )

    def node_of(self, tensor: str) -> onnx.NodeProto | None:
        i = self.producer.get(tensor)
        return None if i is None else self.nodes[i]

    def consumer_nodes(self, tensor: str) -> list[onnx.NodeProto]:
        return [self.nodes[i] for i in self.consumers.get(tensor, [])]

    def is_silu_mul(self, node: onnx.NodeProto) -> bool:
        if node.op_type != "Mul" or len(node.input) != 2:
            return False
        a, b = node.input
        for x, s in ((a, b), (b, a)):
            sig = self.node_of(s)
            if sig is not None and sig.op_type == "Sigmoid" and sig.input[0] == x:
                return True
        return False

    def feeds_only_head(self, tensor: str, seen: set[str] | None = None) -> bool:
        """True when every path from ``tensor`` reaches the outputs through head ops only."""
        if tensor in self.outputs:
            return True
        seen = seen or set()
        consumers = self.consumer_nodes(tensor)
        if not consumers:
            return False
        for node in consumers:
            if node.op_type not in HEAD_OPS:
                return False
            for out in node.output:
                if out and out not in seen:
                    seen.add(out)
                    if not self.feeds_only_head(out, seen):
                        return False
        return True


def _activation_follows(g: _Graph, tensor: str, silu_sigmoids: set[str]) -> bool:
    """Whether an activation (or a bias/residual Add, which an activation may follow in turn)
    consumes ``tensor``, directly or through batch norm, Identity or Dropout."""
    for f in g.consumer_nodes(tensor):
        if (f.op_type in ACTIVATION_OPS or g.is_silu_mul(f) or f.op_type == "Add"
                or (f.op_type == "Sigmoid" and tensor in silu_sigmoids)
                or any(o in silu_sigmoids for o in f.output)):  # a gate pattern's first op
            return True
        if f.op_type in PASS_THROUGH and f.output and _activation_follows(g, f.output[0],
                                                                          silu_sigmoids):
            return True
    return False


def _channel_axis(g: _Graph, tensor: str, rank: int, batch: int) -> int | None:
    """The proven channel axis of ``tensor`` (batch axis ``batch``), or None.

    [N, C]: 1. Rank 3: 1 after a Conv ([N, C, L]), the last after MatMul/Gemm/LayerNorm
    ([N, L, C] tokens, or [L, N, C] sequence-first); rank 4 and 5: 1 where a Conv family op
    made the channels (upstream through ops that keep them). Anything else: not proven."""
    if rank == 2:
        return 1 if batch == 0 else None
    frontier, seen = [tensor], set()
    while frontier:
        name = frontier.pop()
        node = g.node_of(name)
        if node is None or name in seen:
            continue
        seen.add(name)
        if node.op_type in ("Conv", "ConvTranspose", "BatchNormalization", "InstanceNormalization",
                            "QLinearConv", "ConvInteger"):
            return 1 if batch == 0 else None
        if node.op_type in ("MatMul", "Gemm", "LayerNormalization", "QLinearMatMul",
                            "MatMulInteger"):
            return rank - 1 if rank == 3 and batch in (0, 1) else None
        if node.op_type in ("Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze",
                            "Concat", "Split", "Gather", "Slice"):
            continue  # axes moved: nothing proven past here (another path may prove it)
        frontier.extend(i for i in node.input if i and i not in g.constants)
    # Nothing made the channels (an embedding lookup, say): tokens last for rank 3, channels
    # first for maps, as exporters lay them out.
    return 2 if rank == 3 and batch in (0, 1) else (1 if batch == 0 else None)


def _gate_root(g: _Graph, tensor: str, limit: int = 8) -> tuple[str, set[str], list[str]]:
    """Follow ``tensor`` up through gate-chain ops with a constant other operand: the tensor
    it starts from, the ops passed and the tensors inside the chain."""
    ops: set[str] = set()
    inner: list[str] = []
    current = tensor
    for _ in range(limit):
        node = g.node_of(current)
        if node is None or node.op_type not in GATE_CHAIN:
            break
        data = [i for i in node.input if i and i not in g.constants]
        if len(data) != 1:
            break
        ops.add(node.op_type)
        inner.append(current)
        current = data[0]
    return current, ops, inner


def _gate_patterns(g: _Graph) -> tuple[dict[str, str], set[str]]:
    """Gated activations written as ops: {pattern output: its name}, and the tensors inside
    the patterns (never layers themselves)."""
    outputs: dict[str, str] = {}
    inside: set[str] = set()
    for node in g.nodes:
        if node.op_type != "Mul" or len(node.input) != 2 or any(i in g.constants for i in node.input):
            continue
        (ra, oa, ia), (rb, ob, ib) = (_gate_root(g, i) for i in node.input)
        if ra != rb or ra == node.input[0] == node.input[1]:
            continue
        ops = oa | ob
        name = next((label for op, label in GATE_NAMES if op in ops), None)
        if name is None:
            continue
        out = node.output[0]
        inner = [*ia, *ib]
        # A constant scale after the product (…/6, …·0.5) belongs to the pattern.
        consumers = g.consumer_nodes(out)
        if len(consumers) == 1 and consumers[0].op_type in ("Mul", "Div") and any(
                i in g.constants for i in consumers[0].input):
            inner.append(out)
            out = consumers[0].output[0]
        outputs[out] = name
        inside.update(inner)
    return outputs, inside


def discover_layers(model: onnx.ModelProto) -> list[LayerInfo]:
    """All auditable activation tensors, in topological order, the default selection marked."""
    from sdaudit.model.axes import batch_axes

    g = _Graph(model)
    batch_of = batch_axes(model)
    patterns, inside = _gate_patterns(g)
    depth_of: dict[str, int] = {}
    found: list[LayerInfo] = []
    silu_sigmoids: set[str] = set()
    gates: set[str] = set()
    for node in g.nodes:
        if g.is_silu_mul(node):
            silu_sigmoids.update(node.input)

    for index, node in enumerate(g.nodes):
        d = max((depth_of.get(i, 0) for i in node.input if i), default=0)
        d += 1 if node.op_type in WEIGHT_OPS else 0
        for out in node.output:
            depth_of[out] = d
        if len(node.output) != 1:
            continue
        tensor = node.output[0]
        if tensor in g.outputs or g.feeds_only_head(tensor):
            continue
        if tensor in patterns:
            kind, op = "activation", patterns[tensor]
        elif tensor in inside:
            continue
        elif node.op_type in ACTIVATION_OPS and tensor not in silu_sigmoids:
            kind, op = "activation", node.op_type
        elif g.is_silu_mul(node):
            kind, op = "activation", SILU
        elif node.op_type in LINEAR_OPS:
            if _activation_follows(g, tensor, silu_sigmoids | inside | set(patterns)):
                continue
            if node.op_type == "MatMul" and not any(i in g.constants for i in node.input):
                continue  # a product of two activations (attention scores): no units
            kind, op = "linear", node.op_type
        else:
            continue
        shape = g.shapes.get(tensor)
        if shape is None or len(shape) < 2 or len(shape) > 5:
            continue
        if g.elem_types.get(tensor) not in (1, 10, 11, 16):
            continue
        batch = batch_of.get(tensor)
        if batch is None:
            continue  # its batch axis is not proven (flattened [L·N, C], reshaped heads)
        axis = _channel_axis(g, tensor, len(shape), batch)
        if axis is None or axis <= batch:
            continue
        channels = shape[axis]
        if not isinstance(channels, int) or channels <= 0:
            continue
        found.append(
            LayerInfo(tensor, op, kind, shape, axis, channels, d, index, default=False,
                      batch_axis=batch)
        )
        consumers = g.consumer_nodes(tensor)
        if consumers and all(c.op_type == "Mul" and not g.is_silu_mul(c) for c in consumers):
            gates.add(tensor)  # squeeze-excitation style: scales another tensor
    return _mark_default(found, gates)


def _spatial_size(layer: LayerInfo) -> int | None:
    dims = [d for i, d in enumerate(layer.shape) if i not in (0, layer.channel_axis)]
    if not all(isinstance(d, int) for d in dims):
        return None
    size = 1
    for d in dims:
        size *= int(d)  # type: ignore[arg-type]
    return size


def _mark_default(layers: list[LayerInfo], gates: set[str] | None = None) -> list[LayerInfo]:
    """The paper's selection: the last three conv activation layers of a conv net, else every
    hidden activation of an MLP; token models (and graphs without activations) take the last
    three of what there is. Gates (an activation that only scales another tensor, as in
    squeeze-excitation blocks) and 1×1 maps after global pooling are not conv feature maps.
    A one-channel tensor (an L2 norm before a division, a single score) is no population of
    directions to ablate at random: it is listed, never selected by default."""
    gates = gates or set()
    activations = [layer for layer in layers if layer.kind == "activation" and layer.channels > 1]
    conv = [a for a in activations if a.spatial and a.channel_axis == 1 and a.name not in gates
            and _spatial_size(a) != 1]
    dense = [a for a in activations if not a.spatial]
    if conv:
        chosen = conv[-3:]
    elif dense and len(dense) == len(activations):
        chosen = dense
    else:
        chosen = (activations or [la for la in layers if la.channels > 1] or layers)[-3:]
    names = {c.name for c in chosen}
    return [
        LayerInfo(**{**asdict(layer), "default": layer.name in names}) for layer in layers
    ]


def select_layers(layers: list[LayerInfo], spec: str | None) -> list[LayerInfo]:
    """Apply the one selection syntax shared by every command.

    ``default`` (or nothing): the paper's selection; ``all``; ``last:N`` / ``first:N``;
    comma-separated tensor names and glob patterns (``/features/*/Relu_output_0``). Items combine.
    """
    if not layers:
        raise LayerSelectionError(
            "the model has no activation tensor that can be audited",
            "sdaudit audits hidden activations (Relu, Gelu, Sigmoid, Conv outputs, ...)",
        )
    text = (spec or "default").strip()
    chosen: set[str] = set()
    for raw in [t.strip() for t in text.split(",")]:
        if not raw:
            continue
        if raw == "default":
            matched = [layer for layer in layers if layer.default]
        elif raw == "all":
            matched = list(layers)
        elif raw.startswith(("last:", "first:")):
            which, _, count = raw.partition(":")
            if not count.isdigit() or int(count) <= 0:
                raise LayerSelectionError(
                    f"--layers {raw!r}: the count must be a positive integer", "e.g. --layers last:3"
                )
            n = int(count)
            matched = layers[-n:] if which == "last" else layers[:n]
        elif any(ch in raw for ch in "*?["):
            matched = [layer for layer in layers if fnmatch.fnmatchcase(layer.name, raw)]
        else:
            matched = [layer for layer in layers if layer.name == raw]
        if not matched:
            known = ", ".join(layer.name for layer in layers[:6])
            more = f" and {len(layers) - 6} more" if len(layers) > 6 else ""
            raise LayerSelectionError(
                f"--layers {raw!r} matches no auditable tensor",
                f"run `sdaudit layers MODEL` to list them ({known}{more})",
            )
        chosen.update(layer.name for layer in matched)
    return [layer for layer in layers if layer.name in chosen]
