"""Which output to audit, and a graph without the outputs no tensor can carry.

Converters give models several outputs: skl2onnx a ``label`` (int64 [N]) and ``probabilities``
(float [N, K], or a ZipMap sequence of maps), detectors boxes and scores. The audited output is
the one holding the class scores: a float tensor [N, K] with K > 1, probabilities or logits in
preference to anything else; without one, the first float tensor output of rank ≥ 2 (a
sequence, a map, a detector's head: see sdaudit.analysis.metrics). ``--output`` overrides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sdaudit.errors import ModelError

if TYPE_CHECKING:
    import onnx

    from sdaudit.model.load import LoadedModel, TensorSpec

FLOAT_DTYPES = ("float", "float32", "float16", "double", "float64", "bfloat16")
# Names that say "class scores" (skl2onnx's probabilities, torch's logits, Keras' predictions).
SCORE_WORDS = ("prob", "logit", "score", "softmax", "pred", "output_probability")


@dataclass(frozen=True)
class OutputChoice:
    """The audited output and why it was chosen (for the report)."""

    name: str
    reason: str


def _class_scores(spec: TensorSpec) -> bool:
    shape = spec.shape
    return (spec.dtype in FLOAT_DTYPES and shape is not None and len(shape) == 2
            and (not isinstance(shape[1], int) or shape[1] > 1))


def choose_output(outputs: tuple[TensorSpec, ...], requested: str | None,
                  tensor_outputs: tuple[str, ...] | None = None) -> OutputChoice:
    """The output to audit among ``outputs`` (``tensor_outputs``: those that are tensors)."""
    names = [o.name for o in outputs]
    tensors = [o for o in outputs if tensor_outputs is None or o.name in tensor_outputs]
    if requested is not None:
        if requested not in names:
            raise ModelError(f"--output {requested!r} is not an output of the model",
                             f"outputs: {', '.join(names)}")
        if requested not in [o.name for o in tensors]:
            raise ModelError(f"--output {requested!r} is a sequence or map, not a tensor",
                             "choose a tensor output (skl2onnx: convert with "
                             "options={'zipmap': False})")
        return OutputChoice(requested, "--output")
    scores = [o for o in tensors if _class_scores(o)]
    if scores:
        named = [o for o in scores if any(w in o.name.lower() for w in SCORE_WORDS)]
        pick = (named or scores)[0]
        why = ("the only float [N, K] output" if len(scores) == 1 else
               "a float [N, K] output named as class scores" if named else
               "the first float [N, K] output")
        return OutputChoice(pick.name, why)
    ranked = [o for o in tensors if o.dtype in FLOAT_DTYPES and o.shape and len(o.shape) >= 2]
    if ranked:
        return OutputChoice(ranked[0].name, "the first float output of rank 2 or more (no "
                                            "[N, K] class scores)")
    if tensors:
        return OutputChoice(tensors[0].name, "the first tensor output")
    raise ModelError("the model has no tensor output to audit",
                     "export a model whose outputs include a tensor of class scores")


def unzip_maps(model: onnx.ModelProto) -> tuple[onnx.ModelProto, tuple[TensorSpec, ...]]:
    """``model`` with each output a ZipMap makes (a sequence of {class: probability} maps, the
    skl2onnx default) replaced by the ZipMap's input, the float [N, K] probabilities; and the
    specs of the tensors that took their place (shapes from the model's inferred value_info).
    """
    import onnx

    from sdaudit.model.load import _spec

    producer = {out: node for node in model.graph.node for out in node.output}
    zipped = [o for o in model.graph.output
              if not o.type.HasField("tensor_type") and o.name in producer
              and producer[o.name].op_type == "ZipMap"]
    if not zipped:
        return model, ()
    out = onnx.ModelProto()
    out.CopyFrom(model)
    infos = {v.name: v for v in (*out.graph.value_info, *out.graph.input, *out.graph.output)}
    taken = {o.name for o in out.graph.output}
    added = []
    for o in zipped:
        source = producer[o.name].input[0]
        if source in taken:
            continue
        info = infos.get(source)
        if info is None or not info.type.HasField("tensor_type"):
            continue
        out.graph.output.append(info)
        taken.add(source)
        added.append(_spec(info))
    return out, tuple(added)


def tensor_output_names(model: onnx.ModelProto) -> tuple[str, ...]:
    """The graph outputs that are tensors (not sequences, maps or optionals)."""
    return tuple(o.name for o in model.graph.output if o.type.HasField("tensor_type"))


def keep_outputs(model: onnx.ModelProto, names: tuple[str, ...]) -> onnx.ModelProto:
    """A copy of ``model`` with only the outputs ``names`` and the nodes they need.

    Sequence and map outputs (ZipMap) cannot be rewritten or split; the audit needs only its
    one output. Post-condition: every kept output still has a producer or is an input.
    """
    import onnx

    from sdaudit.model.order import _subgraph_reads

    kept = onnx.ModelProto()
    kept.CopyFrom(model)
    graph = kept.graph
    wanted = [o for o in graph.output if o.name in names]
    if len(wanted) != len(set(names)):
        from sdaudit.errors import InternalError

        raise InternalError(f"keep_outputs: {names} are not all outputs")
    needed = {o.name for o in wanted}
    live: list[onnx.NodeProto] = []
    for node in reversed(list(graph.node)):
        if any(out in needed for out in node.output):
            live.append(node)
            needed.update(name for name in (*node.input, *_subgraph_reads(node)) if name)
    live.reverse()
    del graph.node[:]
    graph.node.extend(live)
    del graph.output[:]
    graph.output.extend(wanted)
    used = {name for node in live for name in (*node.input, *_subgraph_reads(node), *node.output)}
    inits = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    infos = [v for v in graph.value_info if v.name in used]
    del graph.value_info[:]
    graph.value_info.extend(infos)
    # Inputs stay (their names are the data's); unused ones are harmless.
    # Opset imports of domains no longer used stay too (ai.onnx.ml for a dropped ZipMap).
    return kept


def for_output(loaded: LoadedModel, requested: str | None) -> tuple[LoadedModel, OutputChoice]:
    """``loaded`` with its graph cut to the audited output alone, and that output's choice.

    ZipMap outputs give way to their probabilities first; other heads, labels and sequences
    are cut (the rewrite cannot carry a sequence, and nothing else is measured). The outputs
    listed stay the model's own, plus any probabilities a ZipMap hid.
    """
    from dataclasses import replace

    unzipped, exposed = unzip_maps(loaded.proto)
    outputs = (*loaded.outputs, *exposed)
    choice = choose_output(outputs, requested, tensor_output_names(unzipped))
    return replace(loaded, proto=keep_outputs(unzipped, (choice.name,)), outputs=outputs), choice
