"""The instrumentation pass: per-channel mask and noise inputs, pooled-statistics outputs.

For each selected tensor T with channel axis c::

    T ──► Mul(T, mask) ──► [Add(·, fill)] ──► [Add(·, RandomNormalLike(T) · noise_sd)] ──► T'
                                                                                          │
                           every former consumer of T reads T' instead ◄──────────────────┘
    T' ──► ReduceMean over space ──► "<T>.mean"   [N, C]
    T'·T' ► ReduceMean over space ──► "<T>.sqmean" [N, C]

``mask``, ``fill`` and ``noise_sd`` are new graph inputs of shape [1, C] (one value per channel
for the whole batch) or [N, C] (one row per sample). Ones, zeros and zeros give the original
outputs: the pass checks exactly that before it returns.

With ``noise_source="input"`` the standard-normal draw is an input too, ``<T>.eps`` (T's shape,
or [1, ...] to broadcast), instead of an in-graph RandomNormalLike: the engine then draws it once
per chunk and draw (keyed by seed, chunk and draw: runtime.suffix) and reuses it across levels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from sdaudit.errors import RewriteError, first_line, ort_message

if TYPE_CHECKING:
    import onnx

    from sdaudit.model.layers import LayerInfo

MASK_SUFFIX = ".mask"
FILL_SUFFIX = ".fill"
NOISE_SUFFIX = ".noise_sd"
EPS_SUFFIX = ".eps"
MEAN_SUFFIX = ".mean"
SQMEAN_SUFFIX = ".sqmean"
EQUIVALENCE_ATOL = 1e-5


@dataclass(frozen=True)
class InstrumentedModel:
    """An instrumented model and the names of what the pass added, per layer (in selection order)."""

    model: onnx.ModelProto
    layers: tuple[LayerInfo, ...]
    mask_inputs: tuple[str, ...]
    fill_inputs: tuple[str, ...] = field(default=())
    noise_inputs: tuple[str, ...] = field(default=())
    mean_outputs: tuple[str, ...] = field(default=())
    sqmean_outputs: tuple[str, ...] = field(default=())
    model_outputs: tuple[str, ...] = field(default=())
    eps_inputs: tuple[str, ...] = field(default=())  # with noise_source="input"

    @property
    def control_inputs(self) -> tuple[str, ...]:
        return self.mask_inputs + self.fill_inputs + self.noise_inputs + self.eps_inputs


def _broadcast_shape(layer: LayerInfo) -> list[int] | None:
    """Reshape target turning a [B, C] control into something that broadcasts against T."""
    rank = len(layer.shape)
    batch = getattr(layer, "batch_axis", 0)
    if rank == 2 and batch == 0:
        return None
    dims = [1] * rank
    if batch == 0:
        dims[0] = 0  # copy the control's own batch dimension (1 or N)
        dims[layer.channel_axis] = -1
    else:  # sequence-first [L, N, C]: the control's rows go to the batch axis
        dims[batch] = -1
        dims[layer.channel_axis] = layer.channels
    return dims


def instrument(
    model: onnx.ModelProto,
    layers: list[LayerInfo] | tuple[LayerInfo, ...],
    *,
    noise: bool = True,
    fill: bool = False,
    stats: bool = True,
    seed: int = 0,
    verify: bool = True,
    noise_source: str = "graph",
) -> InstrumentedModel:
    """Add mask (and optionally fill and noise) inputs and statistics outputs at ``layers``.

    ``seed`` seeds the in-graph RandomNormalLike of each layer (:func:`graph_seed`), so a run that
    feeds the same controls in the same order draws the same noise. ``noise_source="input"``:
    the draw is a graph input ``<T>.eps`` instead (needs T's shape known but for the batch).
    """
    import onnx
    import onnx_graphsurgeon as gs

    if not layers:
        raise RewriteError("no layer selected to instrument", "choose layers with --layers")
    opset = next(
        (int(i.version) for i in model.opset_import if i.domain in ("", "ai.onnx")), None
    )
    if opset is None:
        raise RewriteError("the model imports no default ONNX opset", "re-export it")
    graph = gs.import_onnx(model)
    tensors = graph.tensors()
    original_outputs = [t.name for t in graph.outputs]
    taken = set(tensors)
    masks: list[str] = []
    fills: list[str] = []
    noises: list[str] = []
    means: list[str] = []
    sqmeans: list[str] = []
    epses: list[str] = []

    def new_name(base: str) -> str:
        if base in taken:
            raise RewriteError(
                f"the model already has a tensor named {base!r}",
                "the model seems to be instrumented already: give the original model",
            )
        taken.add(base)
        return base

    for position, layer in enumerate(layers):
        if layer.name not in tensors:
            raise RewriteError(f"tensor {layer.name!r} is not in the model")
        tensor = tensors[layer.name]
        if tensor in graph.outputs:
            raise RewriteError(f"{layer.name!r} is a model output, not a hidden activation")
        dtype = tensor.dtype or np.float32
        # The controls' arithmetic runs in T's type, but for types without kernels for it on
        # every device (bfloat16 on the CPU): there in float32, exact for masks, cast back.
        dtype = _onnx_type(dtype)
        work = dtype if dtype in _ARITHMETIC_TYPES else _onnx_type(np.float32)
        consumers = list(tensor.outputs)
        reshape_to = _broadcast_shape(layer)
        c = layer.channels

        def control(suffix: str, layer: LayerInfo = layer, dtype: object = work, c: int = c,
                    reshape_to: list[int] | None = reshape_to) -> gs.Variable:
            # Controls are float32 inputs whatever T's type (numpy has no bfloat16; callers
            # feed one type); a Cast brings them to T's type, in which the arithmetic runs.
            var = gs.Variable(new_name(layer.name + suffix), dtype=np.float32,
                              shape=["ctl_batch", c])
            graph.inputs.append(var)
            var = to_type(var, dtype, suffix)
            if reshape_to is None:
                return var
            shaped = gs.Variable(new_name(layer.name + suffix + ".bcast"), dtype=_gs_type(dtype))
            target = gs.Constant(
                new_name(layer.name + suffix + ".shape"), np.array(reshape_to, dtype=np.int64)
            )
            graph.nodes.append(
                gs.Node("Reshape", name=shaped.name + "_node", inputs=[var, target], outputs=[shaped])
            )
            return shaped

        def op(kind: str, inputs: list[gs.Tensor], suffix: str, attrs: dict | None = None,
               layer: LayerInfo = layer, dtype: object = work) -> gs.Variable:
            out = gs.Variable(new_name(layer.name + suffix), dtype=_gs_type(dtype))
            graph.nodes.append(
                gs.Node(kind, name=out.name + "_node", attrs=attrs or {}, inputs=inputs,
                        outputs=[out])
            )
            return out

        def to_type(var: gs.Variable, dtype: object, suffix: str,
                    layer: LayerInfo = layer) -> gs.Variable:
            """``var`` cast to ``dtype`` (itself where it has that type already)."""
            if _onnx_type(var.dtype or np.float32) == _onnx_type(dtype):
                return var
            out = gs.Variable(new_name(layer.name + suffix + ".cast"), dtype=_gs_type(dtype))
            graph.nodes.append(gs.Node("Cast", name=out.name + "_node", inputs=[var],
                                       outputs=[out], attrs={"to": _onnx_type(dtype)}))
            return out

        mask_var = control(MASK_SUFFIX)
        masks.append(layer.name + MASK_SUFFIX)
        current = op("Mul", [to_type(tensor, work, ".work"), mask_var], ".masked")
        if fill:
            fill_var = control(FILL_SUFFIX)
            fills.append(layer.name + FILL_SUFFIX)
            current = op("Add", [current, fill_var], ".filled")
        if noise:
            sd_var = control(NOISE_SUFFIX)
            noises.append(layer.name + NOISE_SUFFIX)
            # Drawn from the masked tensor (same shape) so the draw happens per configuration,
            # downstream of the controls, and never lands in the cached prefix.
            if noise_source == "input":
                if not all(isinstance(d, int) for d in layer.shape[1:]) or \
                        getattr(layer, "batch_axis", 0) != 0:
                    raise RewriteError(f"the shape of {layer.name!r} is not known: noise needs "
                                       "in-graph draws there")
                eps = gs.Variable(new_name(layer.name + EPS_SUFFIX), dtype=np.float32,
                                  shape=["eps_batch", *layer.shape[1:]])
                graph.inputs.append(eps)
                epses.append(eps.name)
                eps = to_type(eps, work, EPS_SUFFIX)
            else:
                # Drawn in float32 (the draw's kernels exist for float32 everywhere), then cast.
                eps = op("RandomNormalLike", [current], EPS_SUFFIX,
                         {"mean": 0.0, "scale": 1.0, "seed": graph_seed(seed, position),
                          "dtype": _onnx_type(np.float32)}, dtype=np.float32)
                eps = to_type(eps, work, EPS_SUFFIX)
            scaled = op("Mul", [eps, sd_var], ".noise")
            current = op("Add", [current, scaled], ".noisy")
        perturbed = to_type(current, dtype, ".back")
        for node in consumers:
            node.inputs = [perturbed if t is tensor else t for t in node.inputs]
        if stats:
            batch_axis = getattr(layer, "batch_axis", 0)
            spatial = [a for a in range(len(layer.shape))
                       if a not in (batch_axis, layer.channel_axis)]
            # Statistics in float32 whatever T's type: a square in float16 overflows past 256.
            current = to_type(current, np.float32, ".f32")
            squared = op("Mul", [current, current], ".sq", dtype=np.float32)
            for source, suffix, names in ((current, MEAN_SUFFIX, means),
                                          (squared, SQMEAN_SUFFIX, sqmeans)):
                if spatial:
                    if opset >= 18:
                        axes = gs.Constant(new_name(layer.name + suffix + ".axes"),
                                           np.array(spatial, dtype=np.int64))
                        out = op("ReduceMean", [source, axes], suffix, {"keepdims": 0},
                                 dtype=np.float32)
                    else:
                        out = op("ReduceMean", [source], suffix,
                                 {"axes": spatial, "keepdims": 0}, dtype=np.float32)
                else:
                    out = op("Identity", [source], suffix, dtype=np.float32)
                n_dim = layer.shape[batch_axis]
                out.shape = [n_dim if isinstance(n_dim, int) else "batch", c]
                graph.outputs.append(out)
                names.append(out.name)

    graph.cleanup(remove_unused_graph_inputs=False).toposort()
    exported = gs.export_onnx(graph)
    result_model = _restore_header(model, exported)
    try:
        onnx.checker.check_model(result_model)
    except onnx.checker.ValidationError as exc:  # pragma: no cover - a bug in the pass
        raise RewriteError(f"the instrumented model is invalid: {first_line(exc)}") from None
    result = InstrumentedModel(
        result_model, tuple(layers), tuple(masks), tuple(fills), tuple(noises), tuple(means),
        tuple(sqmeans), tuple(original_outputs), tuple(epses),
    )
    if verify:
        verify_equivalence(model, result)
    return result


# float32, float16, float64: ONNX Runtime has Mul/Add/Reshape kernels for them on every device.
_ARITHMETIC_TYPES = (1, 10, 11)


def _onnx_type(dtype: object) -> int:
    """The ONNX TensorProto type of a numpy dtype, or of an onnx-graphsurgeon one (which keeps
    types numpy lacks, bfloat16, as their ONNX number)."""
    from onnx import helper

    if isinstance(dtype, int):
        return dtype
    return int(helper.np_dtype_to_tensor_dtype(np.dtype(dtype)))  # type: ignore[call-overload]


def _gs_type(dtype: object) -> object:
    """A dtype as onnx-graphsurgeon takes it: numpy where numpy has it, else the ONNX number."""
    from onnx import helper

    if not isinstance(dtype, int):
        return dtype
    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(dtype))
    except (KeyError, TypeError, ValueError):
        return dtype


def _restore_header(original: onnx.ModelProto, new: onnx.ModelProto) -> onnx.ModelProto:
    """Keep what the exporter must not change: ir_version, opset imports, producer, metadata."""
    new.ir_version = original.ir_version
    del new.opset_import[:]
    new.opset_import.extend(original.opset_import)
    new.producer_name = original.producer_name
    new.producer_version = original.producer_version
    new.domain = original.domain
    new.model_version = original.model_version
    new.doc_string = original.doc_string
    del new.metadata_props[:]
    new.metadata_props.extend(original.metadata_props)
    return new


def neutral_controls(inst: InstrumentedModel, batch: int = 1) -> dict[str, np.ndarray]:
    """Ones for every mask, zeros for every fill and noise s.d.: the unperturbed model."""
    feeds: dict[str, np.ndarray] = {}
    for layer, name in zip(inst.layers, inst.mask_inputs, strict=True):
        feeds[name] = np.ones((batch, layer.channels), dtype=np.float32)
    for names in (inst.fill_inputs, inst.noise_inputs):
        for layer, name in zip(inst.layers, names, strict=bool(names)):
            feeds[name] = np.zeros((batch, layer.channels), dtype=np.float32)
    for layer, name in zip(inst.layers, inst.eps_inputs, strict=bool(inst.eps_inputs)):
        dims = tuple(d if isinstance(d, int) else 1 for d in layer.shape[1:])
        feeds[name] = np.zeros((1, *dims), dtype=np.float32)  # broadcasts
    return feeds


EXACT_FLOAT_SEEDS = 2**24  # ONNX stores RandomNormalLike's seed as a float32: exact below 2^24


def graph_seed(seed: int, position: int) -> float:
    """The in-graph seed of the layer at ``position``: ``seed + position`` where a float32 holds
    it exactly; above 2^24 (where float32 would merge neighbouring seeds) a hash of both."""
    value = seed + position
    if value < EXACT_FLOAT_SEEDS:
        return float(value)
    state = np.random.SeedSequence([seed, position]).generate_state(1)[0]
    return float(int(state) % EXACT_FLOAT_SEEDS)


def probe_inputs(model: onnx.ModelProto, batch: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded random inputs of the model's shape, for equivalence checks."""
    from onnx import helper

    rng = np.random.default_rng(seed)
    initializers = {i.name for i in model.graph.initializer}
    feeds: dict[str, np.ndarray] = {}
    for vi in model.graph.input:
        if vi.name in initializers:
            continue
        ttype = vi.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else 0 for d in ttype.shape.dim]
        # A symbolic batch gets ``batch`` rows; a fixed one keeps its size.
        dims = [batch if i == 0 and d == 0 else d for i, d in enumerate(dims)]
        if any(d <= 0 for d in dims):
            raise RewriteError(
                f"cannot check the rewrite: the shape of input {vi.name!r} is not known",
                "give it with --input-shape",
            )
        np_type = helper.tensor_dtype_to_np_dtype(ttype.elem_type)
        if np.issubdtype(np_type, np.floating):
            feeds[vi.name] = rng.standard_normal(dims).astype(np_type)
        else:
            feeds[vi.name] = np.zeros(dims, dtype=np_type)
    return feeds


def _cast_controls(inst: InstrumentedModel, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    from onnx import helper

    types = {vi.name: vi.type.tensor_type.elem_type for vi in inst.model.graph.input}
    return {
        k: v.astype(helper.tensor_dtype_to_np_dtype(types[k])) if k in types else v
        for k, v in feeds.items()
    }


# Machine epsilon of each floating ONNX type (float32, float16, float64, bfloat16).
_EPS = {1: 2.0**-23, 10: 2.0**-10, 11: 2.0**-52, 16: 2.0**-7}


def equivalence_tolerance(model: onnx.ModelProto) -> float:
    """The post-condition's tolerance (before scaling by the outputs' magnitude): 1e-5, or
    8 ulps of the least precise floating type the graph computes in (a float16 graph with
    float32 inputs and outputs included), whichever is larger. Masks of ones and zero noise
    change no value; the slack covers kernels that fuse differently around the new nodes."""
    types = {t.data_type for t in model.graph.initializer}
    for vi in (*model.graph.input, *model.graph.value_info, *model.graph.output):
        types.add(vi.type.tensor_type.elem_type)
    for node in model.graph.node:
        types.update(int(a.i) for a in node.attribute if a.name == "to")
    eps = max((_EPS[t] for t in types if t in _EPS), default=_EPS[1])
    return max(EQUIVALENCE_ATOL, 8.0 * eps)


def verify_equivalence(original: onnx.ModelProto, inst: InstrumentedModel) -> float:
    """Post-condition of the pass: neutral controls reproduce the original outputs (within
    :func:`equivalence_tolerance`, scaled by the outputs' magnitude where it exceeds 1).

    Returns the largest absolute difference seen.
    """
    from sdaudit.ort import make_session

    feeds = probe_inputs(original)
    batch = next(iter(feeds.values())).shape[0] if feeds else 1
    try:
        ref_sess = make_session(original.SerializeToString(), device="cpu")
        ref = ref_sess.run(list(inst.model_outputs), feeds)
        sess = make_session(inst.model.SerializeToString(), device="cpu")
        controls = _cast_controls(inst, neutral_controls(inst, batch))
        got = sess.run(list(inst.model_outputs), {**feeds, **controls})
    except RewriteError:
        raise
    except Exception as exc:
        raise RewriteError(
            f"ONNX Runtime could not run the model to check the rewrite: {ort_message(exc)}",
            "check that the model runs in onnxruntime",
        ) from None
    worst = 0.0
    for name, a, b in zip(inst.model_outputs, ref, got, strict=True):
        a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        if a64.shape != b64.shape:
            raise RewriteError(f"rewrite changed the shape of output {name!r}")
        if a64.size:
            both_nan = np.isnan(a64) & np.isnan(b64)
            diff = np.where(both_nan, 0.0, np.abs(a64 - b64))
            worst = max(worst, float(np.nanmax(np.where(np.isnan(diff), np.inf, diff))))
    scale = max(1.0, max((float(np.nanmax(np.abs(np.asarray(a, dtype=np.float64))))
                          for a in ref if np.asarray(a).size), default=1.0))
    limit = equivalence_tolerance(original) * scale
    if worst > limit:
        raise RewriteError(
            f"the instrumented model differs from the original by {worst:.3g} with all-ones "
            f"masks (limit {limit:.3g})",
            "please report this model to the sdaudit developers",
        )
    return worst
