"""Split an instrumented model into a prefix (run once per chunk) and a suffix (run per config).

Suffix nodes are those downstream of a control input (mask, fill, noise): only they can change
between configurations. Everything else is the prefix. The *cut* is the set of tensors the
suffix reads from the prefix (the first selected activation, skip connections that jump over
it, and model inputs the suffix uses directly)::

    input ─► [prefix] ─► cut tensors ─► [suffix + controls] ─► outputs, statistics
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sdaudit.errors import RewriteError

if TYPE_CHECKING:
    import onnx

    from sdaudit.rewrite.instrument import InstrumentedModel


@dataclass(frozen=True)
class SplitModel:
    """Prefix and suffix, and the tensors that pass between them."""

    prefix: onnx.ModelProto | None  # None when the cut holds only model inputs
    suffix: onnx.ModelProto
    cut: tuple[str, ...]  # suffix inputs besides the controls, in order
    prefix_outputs: tuple[str, ...]  # the cut tensors the prefix computes
    suffix_outputs: tuple[str, ...]


def _downstream(starts: list[Any]) -> tuple[set[str], set[int]]:
    """Names of the tensors reachable from ``starts`` (themselves included), and the ids of the
    nodes that read any of them."""
    tensors: set[str] = set()
    nodes: set[int] = set()
    frontier = list(starts)
    while frontier:
        tensor = frontier.pop()
        if tensor.name in tensors:
            continue
        tensors.add(tensor.name)
        for node in tensor.outputs:
            if id(node) not in nodes:
                nodes.add(id(node))
                frontier.extend(node.outputs)
    return tensors, nodes


def split(inst: InstrumentedModel, outputs: tuple[str, ...]) -> SplitModel:
    """Cut ``inst`` so that ``outputs`` (model outputs and statistics) come from the suffix.

    Pre-condition: every name in ``outputs`` depends on a control input (else RewriteError).
    Post-condition: the prefix computes exactly the cut tensors from the model's inputs; the
    suffix reads only the cut, the controls and its own constants, and gives ``outputs`` as
    ``inst`` does (the engine checks each sweep suffix on its first chunk with neutral controls:
    runtime.suffix.SuffixRunner.check_neutral; the tests check prefix + suffix = whole)."""
    import onnx_graphsurgeon as gs

    from sdaudit.rewrite.instrument import _restore_header

    graph = gs.import_onnx(inst.model)
    tensors = graph.tensors()
    controls = set(inst.control_inputs)
    seen_tensors, downstream = _downstream([tensors[name] for name in controls])
    for name in outputs:
        if name not in seen_tensors:
            raise RewriteError(
                f"output {name!r} does not depend on any selected layer",
                "select layers that lie between the input and this output",
            )
    suffix_nodes = [n for n in graph.nodes if id(n) in downstream]
    produced = {t.name for n in suffix_nodes for t in n.outputs}
    # Tensors that depend on the model's inputs. Anything else the suffix reads (weights passed
    # through Identity, shapes computed from constants) is no per-sample value: the suffix
    # computes it itself, it never goes through the cut.
    batch_dependent, _ = _downstream([t for t in graph.inputs if t.name not in controls])
    cut: list[str] = []
    for node in suffix_nodes:
        for t in node.inputs:
            if (isinstance(t, gs.Constant) or t.name in produced or t.name in controls
                    or t.name in cut or not t.name):
                continue
            if t.name not in batch_dependent:
                continue
            if t.dtype is None:
                raise RewriteError(f"shape inference gave no type for cut tensor {t.name!r}")
            cut.append(t.name)
    graph_inputs = {t.name for t in graph.inputs}
    prefix_outputs = tuple(c for c in cut if c not in graph_inputs)

    prefix = None
    if prefix_outputs:
        pre = gs.import_onnx(inst.model)
        pre_tensors = pre.tensors()
        pre.outputs = [pre_tensors[c] for c in prefix_outputs]
        pre.inputs = [t for t in pre.inputs if t.name not in controls]
        pre.cleanup(remove_unused_graph_inputs=True).toposort()
        prefix = _restore_header(inst.model, gs.export_onnx(pre))

    suf = graph
    suf_tensors = suf.tensors()
    new_inputs = []
    for name in cut:
        t = suf_tensors[name]
        t.inputs.clear()
        new_inputs.append(t)
    suf.inputs = new_inputs + [suf_tensors[c] for c in inst.control_inputs]
    suf.outputs = [suf_tensors[o] for o in outputs]
    suf.cleanup(remove_unused_graph_inputs=False).toposort()
    suffix = _restore_header(inst.model, gs.export_onnx(suf))
    return SplitModel(prefix, suffix, tuple(cut), prefix_outputs, tuple(outputs))
