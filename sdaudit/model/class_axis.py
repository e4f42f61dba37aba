"""The class axis of an output, read from the ops that produce it.

Softmax/LogSoftmax name their axis; a MatMul/Gemm projects onto the last axis (a sequence
model's vocabulary, [N, T, V]); a Conv's channels are axis 1 (a segmenter's [N, K, H, W], a
detector head's [N, 4 + C, A]). Element-wise ops, Transpose (the axis permuted) and Concat pass
it on. Where a Concat along that axis joins Sigmoid or Softmax outputs with other tensors (a
YOLO-style head: decoded boxes, then class scores), the class channels are the Sigmoid/Softmax
part. Nothing found: None (the caller falls back to the shape, or asks for --class-axis).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx

_ELEMENTWISE = frozenset({
    "Sigmoid", "Relu", "Tanh", "Add", "Sub", "Mul", "Div", "Identity", "Clip", "Exp", "Log",
    "HardSigmoid", "LeakyRelu", "Cast", "Dropout", "BatchNormalization", "Neg", "Abs"})
_SCORES = frozenset({"Sigmoid", "Softmax", "LogSoftmax", "HardSigmoid"})


def _attr(node: onnx.NodeProto, name: str, default: object) -> object:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def class_axis(model: onnx.ModelProto, output: str) -> tuple[int | None, slice | None]:
    """(class axis, class channels along it or None for all) of ``output``; (None, None)."""
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    consts = {i.name for i in graph.initializer}
    ranks: dict[str, int] = {}
    dims: dict[str, list[int | None]] = {}
    for vi in (*graph.input, *graph.value_info, *graph.output):
        t = vi.type.tensor_type
        if t.HasField("shape"):
            ranks[vi.name] = len(t.shape.dim)
            dims[vi.name] = [d.dim_value if d.HasField("dim_value") else None
                             for d in t.shape.dim]

    def walk(name: str, seen: int) -> int | None:  # noqa: PLR0911 - one return per op kind
        """The class axis of ``name`` in its own axes (a non-negative index)."""
        node = producer.get(name)
        rank = ranks.get(name)
        if node is None or seen > 64 or rank is None:
            return None
        op = node.op_type
        if op in ("Softmax", "LogSoftmax"):
            axis = int(_attr(node, "axis", -1))  # type: ignore[call-overload]
            return axis % rank
        if op in ("MatMul", "Gemm"):
            return rank - 1
        if op in ("Conv", "ConvTranspose"):
            return 1
        if op == "Transpose":
            perm = list(_attr(node, "perm", list(range(rank))[::-1]))  # type: ignore[call-overload]
            inner = walk(node.input[0], seen + 1)
            return None if inner is None else perm.index(inner)
        if op in ("Reshape", "Flatten"):
            # The axis survives where the dimensions up to it are unchanged ([N, C, H, W] →
            # [N, C, H·W], a detector head's anchors flattened).
            src = node.input[0]
            inner = walk(src, seen + 1)
            before, after = dims.get(src), dims.get(name)
            if inner is None or before is None or after is None or inner >= len(after):
                return None
            same = all(b is not None and b == a for b, a in
                       zip(before[1:inner + 1], after[1:inner + 1], strict=False))
            return inner if same else None
        if op in _ELEMENTWISE or op in ("Concat", "Slice"):
            for i in node.input:
                if i and i not in consts and ranks.get(i) == rank:
                    found = walk(i, seen + 1)
                    if found is not None:
                        return found
        return None

    axis = walk(output, 0)
    if axis is None:
        return None, None
    node = producer.get(output)
    if node is not None and node.op_type == "Concat" and \
            int(_attr(node, "axis", 0)) % ranks[output] == axis:  # type: ignore[call-overload]
        start = 0
        parts: list[tuple[int, int, bool]] = []
        for i in node.input:
            width = (dims.get(i) or [None] * (axis + 1))[axis]
            if width is None:
                return axis, None
            src = producer.get(i)
            parts.append((start, start + width, src is not None and src.op_type in _SCORES))
            start += width
        scored = [p for p in parts if p[2]]
        if scored and len(scored) < len(parts):
            lo, hi = min(p[0] for p in scored), max(p[1] for p in scored)
            return axis, slice(lo, hi)
    return axis, None
