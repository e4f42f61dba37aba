"""Which axis of each tensor is the batch: proven, not assumed.

A tensor's units can be audited only where its batch axis is known: the masks broadcast over
every other axis, and statistics average over them. Exporters move the batch: torch's dynamo
exporter writes attention blocks sequence-first ([L, N, C]) and flattens tokens into
[L·N, C]. The batch axis of a tensor is

* the axis whose dimension is the model input's batch symbol (``batch``, ``N``), where
  shape inference carried it there and it appears once; otherwise
* the one it inherits from its producer: element-wise ops and normalizations keep their
  input's, Conv/Pool/Gemm/MatMul keep the data input's, Transpose permutes it, Flatten and
  Reshape keep axis 0 where the output's first dimension equals the input's (or the Reshape
  copies it: a 0 in its shape); anything else proves nothing.

A fixed batch size (an int) proves only what propagation proves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx

_KEEP = frozenset({
    "Relu", "LeakyRelu", "PRelu", "Gelu", "Sigmoid", "Tanh", "Clip", "HardSwish", "HardSigmoid",
    "Elu", "Selu", "Celu", "Softplus", "Mish", "ThresholdedRelu", "Erf", "Add", "Sub", "Mul",
    "Div", "Pow", "Sqrt", "Exp", "Identity", "Dropout", "Cast", "BatchNormalization",
    "InstanceNormalization", "LayerNormalization", "Conv", "ConvTranspose", "MaxPool",
    "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Gemm", "MatMul", "Softmax",
    "LogSoftmax", "Neg", "Abs", "Where", "Resize", "Pad", "Concat", "DequantizeLinear",
    "QuantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger",
    "DynamicQuantizeLinear", "Min", "Max", "Slice", "Expand",
})


def batch_axes(model: onnx.ModelProto) -> dict[str, int | None]:
    """The proven batch axis of every tensor with a shape (None: not proven)."""
    from onnx import helper, numpy_helper

    graph = model.graph
    consts = {i.name: i for i in graph.initializer}
    shapes: dict[str, list[int | str | None]] = {}
    for vi in (*graph.input, *graph.value_info, *graph.output):
        t = vi.type.tensor_type
        if t.HasField("shape"):
            shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                               for d in t.shape.dim]
    inputs = [i for i in graph.input if i.name not in consts]
    axes: dict[str, int | None] = {}
    symbols = set()
    for i in inputs:
        dims = shapes.get(i.name)
        axes[i.name] = 0
        if dims and isinstance(dims[0], str):
            symbols.add(dims[0])
    constant = set(consts)
    for node in graph.node:
        if node.op_type == "Constant" or (node.input and all(
                not name or name in constant for name in node.input)):
            constant.update(node.output)
            continue
        data = [name for name in node.input if name and name not in constant]
        inherited = axes.get(data[0]) if data else None
        for out in node.output:
            if not out:
                continue
            dims = shapes.get(out)
            found = None
            if dims is not None and symbols:
                hits = [k for k, d in enumerate(dims) if isinstance(d, str) and d in symbols]
                if len(hits) == 1:
                    found = hits[0]
                elif not hits and all(d is not None for d in dims) and any(
                        isinstance(d, str) and d in symbols
                        for d in shapes.get(data[0] if data else "", [])):
                    found = None  # the batch symbol was there and is gone: merged or unknown
                    axes[out] = None
                    continue
            if found is None and inherited is not None:
                op = node.op_type
                if op in _KEEP:
                    found = inherited
                elif op == "Gather" and node.input[0] in constant and inherited == 0:
                    found = 0  # an embedding lookup: [N, L] ids → [N, L, C]
                elif op == "Transpose":
                    perm = next((list(helper.get_attribute_value(a)) for a in node.attribute
                                 if a.name == "perm"), None)
                    rank = len(dims) if dims is not None else None
                    if perm is None and rank is not None:
                        perm = list(range(rank))[::-1]
                    found = perm.index(inherited) if perm is not None else None
                elif op in ("Flatten", "Reshape", "Squeeze", "Unsqueeze") and inherited == 0:
                    src = shapes.get(data[0]) if data else None
                    copies = False
                    if op == "Reshape" and len(node.input) > 1 and node.input[1] in consts:
                        target = numpy_helper.to_array(consts[node.input[1]]).tolist()
                        copies = bool(target) and target[0] == 0
                    same = (dims is not None and src is not None and len(dims) > 0
                            and dims[0] is not None and dims[0] == src[0])
                    found = 0 if copies or same or (op == "Flatten" and _flatten_axis(node) == 1) \
                        else None
            if found is None and dims and not (isinstance(dims[0], str) and dims[0] not in symbols):
                # Nothing moved the batch as far as the graph shows (no Transpose or Reshape
                # proved otherwise, no other symbol in front): axis 0, as every exporter has it.
                found = 0 if not _moves(node.op_type) else None
            axes[out] = found
    return axes


def _moves(op: str) -> bool:
    """Ops that can move or merge the batch axis: past them only a proof counts."""
    return op in ("Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Einsum",
                  "SpaceToDepth", "DepthToSpace")


def _flatten_axis(node: onnx.NodeProto) -> int:
    from onnx import helper

    return int(next((helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"),
                    1))
