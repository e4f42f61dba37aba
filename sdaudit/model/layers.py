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
WEIGHT_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
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
                or (f.op_type == "Sigmoid" and tensor in silu_sigmoids)):
            return True
        if f.op_type in PASS_THROUGH and f.output and _activation_follows(g, f.output[0],
                                                                          silu_sigmoids):
            return True
    return False


def _channel_axis(g: _Graph, tensor: str, rank: int) -> int:
    if rank != 3:
        return 1
    # [N, C, L] after Conv1d, [N, L, C] after MatMul/Gemm/LayerNorm (tokens): look upstream.
    frontier, seen = [tensor], set()
    while frontier:
        name = frontier.pop()
        node = g.node_of(name)
        if node is None or name in seen:
            continue
        seen.add(name)
        if node.op_type in ("Conv", "ConvTranspose", "BatchNormalization", "InstanceNormalization"):
            return 1
        if node.op_type in ("MatMul", "Gemm", "LayerNormalization"):
            return 2
        frontier.extend(i for i in node.input if i and i not in g.constants)
    return 2


def discover_layers(model: onnx.ModelProto) -> list[LayerInfo]:
    """All auditable activation tensors, in topological order, the default selection marked."""
    g = _Graph(model)
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
        if node.op_type in ACTIVATION_OPS and tensor not in silu_sigmoids:
            kind, op = "activation", node.op_type
        elif g.is_silu_mul(node):
            kind, op = "activation", SILU
        elif node.op_type in LINEAR_OPS:
            if _activation_follows(g, tensor, silu_sigmoids):
                continue
            kind, op = "linear", node.op_type
        else:
            continue
        shape = g.shapes.get(tensor)
        if shape is None or len(shape) < 2 or len(shape) > 5:
            continue
        if g.elem_types.get(tensor) not in (1, 10, 11, 16):
            continue
        axis = _channel_axis(g, tensor, len(shape))
        channels = shape[axis]
        if not isinstance(channels, int) or channels <= 0:
            continue
        found.append(
            LayerInfo(tensor, op, kind, shape, axis, channels, d, index, default=False)
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
    squeeze-excitation blocks) and 1×1 maps after global pooling are not conv feature maps."""
    gates = gates or set()
    activations = [layer for layer in layers if layer.kind == "activation"]
    conv = [a for a in activations if a.spatial and a.channel_axis == 1 and a.name not in gates
            and _spatial_size(a) != 1]
    dense = [a for a in activations if not a.spatial]
    if conv:
        chosen = conv[-3:]
    elif dense and len(dense) == len(activations):
        chosen = dense
    else:
        chosen = (activations or layers)[-3:]
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
