"""Find layers whose suffix is linear in them: global pooling, then a dense head.

Where the only path from a layer's activation ``T`` to the audited output is ::

    T ─► GlobalAveragePool | ReduceMean over every axis but batch and channel
      ─► [Flatten | Reshape | Squeeze | Identity | Dropout]*
      ─► Gemm(B, C) | MatMul(B) [─► Add(bias)]
      ─► [Softmax] ─► output

the logits are ``pooled(T) @ M + b`` (``pooled`` = the per-channel spatial mean the statistics
run already gives), so ablating channel *i* alone changes them by ``−(pooled_i − fill_i)·M[i]``:
single-unit importance in closed form (:mod:`sdaudit.analysis.closed_form`), no run per unit.

Only structure is read here; the engine's statistics run checks ``pooled @ M + b`` against the
model's own output on every chunk (:func:`sdaudit.analysis.closed_form.check_head`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import onnx

    from sdaudit.model.layers import LayerInfo

PASS_THROUGH = ("Flatten", "Reshape", "Squeeze", "Identity", "Dropout")


@dataclass(frozen=True)
class LinearHead:
    """``output = [softmax](pooled(layer) @ matrix + bias)``, read from the graph."""

    layer: str
    matrix: np.ndarray  # [C, K] float64
    bias: np.ndarray  # [K] float64
    softmax: bool  # the output is the softmax of the logits
    ops: tuple[str, ...]  # the operations from the layer to the output, in order

    def __post_init__(self) -> None:
        if self.matrix.ndim != 2 or self.bias.shape != (self.matrix.shape[1],):
            from sdaudit.errors import InternalError

            raise InternalError(f"linear head of {self.layer!r}: matrix {self.matrix.shape} "
                                f"and bias {self.bias.shape} do not fit")


class _Graph:
    """Producers, consumers and constant values of a model's main graph."""

    def __init__(self, model: onnx.ModelProto) -> None:
        from onnx import numpy_helper

        graph = model.graph
        self.outputs = {o.name for o in graph.output}
        self.consumers: dict[str, list[Any]] = {}
        self.consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i)
                                              for i in graph.initializer}
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                          13)
        for node in graph.node:
            for name in node.input:
                if name:
                    self.consumers.setdefault(name, []).append(node)
            if node.op_type == "Constant" and node.output:
                attr = next((a for a in node.attribute if a.name == "value"), None)
                if attr is not None:
                    self.consts[node.output[0]] = numpy_helper.to_array(attr.t)
        # Weights exported behind Identity nodes (torch does) count as constants.
        for node in graph.node:
            if node.op_type == "Identity" and node.input[0] in self.consts:
                self.consts[node.output[0]] = self.consts[node.input[0]]

    def only_consumer(self, name: str) -> Any | None:
        """The one node reading ``name`` (None if none, several, or ``name`` is an output)."""
        readers = self.consumers.get(name, [])
        if len(readers) != 1 or name in self.outputs:
            return None
        return readers[0]


def _attr(node: Any, name: str, default: Any) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _pools_space(node: Any, g: _Graph, rank: int, axis: int) -> bool:
    """Whether ``node`` averages its input over every axis but batch and the channel axis."""
    spatial = sorted(set(range(2 if axis == 1 else 1, rank)) - {axis}) if rank > 2 else []
    if node.op_type == "GlobalAveragePool":
        return axis == 1 and rank > 2
    if node.op_type != "ReduceMean":
        return False
    if len(node.input) > 1 and node.input[1]:
        if node.input[1] not in g.consts:
            return False
        axes = [int(a) for a in g.consts[node.input[1]].reshape(-1)]
    else:
        axes = list(_attr(node, "axes", []))
        if not axes:
            return False
    return sorted(a % rank for a in axes) == spatial and bool(spatial)


def _passes_through(node: Any, g: _Graph, channels: int) -> bool:
    """Whether ``node`` only reshapes an [N, C, 1…] or [N, 1…, C] tensor into [N, C] (or keeps
    it as it is): the pooled values reach the head unchanged and in order."""
    op = node.op_type
    if op in ("Identity", "Dropout"):
        return len([o for o in node.output if o]) == 1 or not any(
            g.consumers.get(o) for o in node.output[1:])
    if op == "Flatten":
        return int(_attr(node, "axis", 1)) == 1
    if op == "Squeeze":
        return True  # only size-1 axes can be squeezed: [N, C, 1, 1] → [N, C]
    if op == "Reshape":
        shape = g.consts.get(node.input[1]) if len(node.input) > 1 else None
        if shape is None:
            return False
        dims = [int(d) for d in shape.reshape(-1)]
        return len(dims) == 2 and ((dims[1] == channels and dims[0] in (-1, 0))
                                   or dims == [0, -1])
    return False


def _affine(node: Any, g: _Graph,  # noqa: PLR0911 - one return per way of not matching
            channels: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(M [C, K], bias [K]) of a Gemm or MatMul whose first operand is the pooled tensor."""
    if node.op_type == "Gemm":
        if int(_attr(node, "transA", 0)) or len(node.input) < 2 or node.input[1] not in g.consts:
            return None
        b = g.consts[node.input[1]].astype(np.float64)
        if int(_attr(node, "transB", 0)):
            b = b.T
        matrix = float(_attr(node, "alpha", 1.0)) * b
        bias = np.zeros(matrix.shape[1])
        if len(node.input) > 2 and node.input[2]:
            if node.input[2] not in g.consts:
                return None
            c = g.consts[node.input[2]].astype(np.float64).reshape(-1)
            if c.size not in (1, matrix.shape[1]):
                return None
            bias = float(_attr(node, "beta", 1.0)) * np.broadcast_to(c, matrix.shape[1:]).copy()
        return (matrix, bias) if matrix.shape[0] == channels else None
    if node.op_type == "MatMul" and node.input[1] in g.consts:
        matrix = g.consts[node.input[1]].astype(np.float64)
        if matrix.ndim != 2 or matrix.shape[0] != channels:
            return None
        return matrix, np.zeros(matrix.shape[1])
    return None


def find_linear_head(  # noqa: PLR0911 - one return per way of not matching
        model: onnx.ModelProto, layer: LayerInfo, output: str) -> LinearHead | None:
    """The linear head between ``layer`` and ``output``, or None where the suffix is anything
    else (more than one reader on the way, a nonlinearity, weights computed in the graph)."""
    g = _Graph(model)
    rank, axis, channels = len(layer.shape), layer.channel_axis, layer.channels
    if rank < 2 or not channels or axis not in (1, rank - 1):
        return None
    name, ops = layer.name, []
    node = g.only_consumer(name)
    if node is None:
        return None
    if rank > 2:  # pooling first (a dense [N, C] layer feeds its head directly)
        if not _pools_space(node, g, rank, axis):
            return None
        ops.append(node.op_type)
        name = node.output[0]
        node = g.only_consumer(name)
    while node is not None and node.op_type in PASS_THROUGH:
        if not _passes_through(node, g, channels):
            return None
        ops.append(node.op_type)
        name = node.output[0]
        node = g.only_consumer(name)
    if node is None or node.input[0] != name:
        return None
    found = _affine(node, g, channels)
    if found is None:
        return None
    matrix, bias = found
    ops.append(node.op_type)
    name = node.output[0]
    if node.op_type == "MatMul" and name != output:
        add = g.only_consumer(name)
        if add is not None and add.op_type == "Add":
            other = add.input[1] if add.input[0] == name else add.input[0]
            value = g.consts.get(other)
            if value is not None and value.size in (1, matrix.shape[1]) and value.ndim <= 2:
                bias = bias + np.broadcast_to(value.astype(np.float64).reshape(-1),
                                              bias.shape)
                ops.append("Add")
                name = add.output[0]
    softmax = False
    if name != output:
        last = g.only_consumer(name)
        if last is None or last.op_type != "Softmax" or last.output[0] != output:
            return None
        if int(_attr(last, "axis", -1 if g.opset >= 13 else 1)) not in (-1, 1):
            return None
        softmax = True
        ops.append("Softmax")
    return LinearHead(layer.name, matrix, bias, softmax, tuple(ops))
