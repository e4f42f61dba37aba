"""Load an ONNX model safely: validate it, resolve external data inside its folder, infer shapes."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sdaudit.errors import BadFlagError, ModelError, first_line

if TYPE_CHECKING:
    import onnx

# ONNX TensorProto data types that are floating point, with their numpy names.
FLOAT_TYPES = {1: "float32", 10: "float16", 11: "float64", 16: "bfloat16"}


@dataclass(frozen=True)
class TensorSpec:
    """Name, element type and shape of a graph input or output (None: unknown dimension)."""

    name: str
    dtype: str
    shape: tuple[int | str | None, ...] | None

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape or [])}


@dataclass(frozen=True)
class LoadedModel:
    """A validated model with inferred shapes, and where it came from."""

    path: Path
    proto: onnx.ModelProto
    sha256: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    converted: str | None = None  # the cached ONNX export of a PyTorch file

    @property
    def opset(self) -> int:
        return default_opset(self.proto)


def default_opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    raise ModelError("the model imports no default ONNX opset", "re-export it with a standard opset")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def parse_input_shapes(spec: str | None) -> dict[str, tuple[int, ...]] | tuple[int, ...] | None:
    """Parse ``--input-shape``: ``1,3,224,224`` (the only input) or ``name:1,3,224,224;other:...``."""
    if spec is None or not spec.strip():
        return None

    def dims(text: str) -> tuple[int, ...]:
        try:
            values = tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
        except ValueError:
            raise BadFlagError(
                f"--input-shape {spec!r} is not a list of integers",
                "write it like --input-shape 1,3,224,224",
            ) from None
        if not values or any(v <= 0 for v in values):
            raise BadFlagError(
                f"--input-shape {spec!r} needs positive dimensions",
                "write it like --input-shape 1,3,224,224",
            )
        return values

    if ":" not in spec:
        return dims(spec)
    shapes: dict[str, tuple[int, ...]] = {}
    for part in spec.split(";"):
        name, _, text = part.rpartition(":")
        shapes[name.strip()] = dims(text)
    return shapes


def _check_external_data(model: onnx.ModelProto, base: Path) -> None:
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    root = base.resolve()
    for tensor in _get_all_tensors(model):
        if not uses_external_data(tensor):
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = (root / location).resolve()
        if os.path.isabs(location) or not target.is_relative_to(root):
            raise ModelError(
                f"external data of tensor {tensor.name!r} points outside the model's folder "
                f"({location!r})",
                "keep the weights file next to the .onnx file; sdaudit never reads outside it",
            )
        if not target.is_file():
            raise ModelError(
                f"external data file {location!r} of tensor {tensor.name!r} is missing",
                f"put {location!r} in {root}",
            )


def _sniff_not_onnx(head: bytes) -> str | None:
    stripped = head.lstrip()
    if stripped.startswith((b"{", b"[")):
        return "it looks like a JSON file"
    if head.startswith(b"PK\x03\x04"):
        return "it is a ZIP archive (a TorchScript/PyTorch file or an .npz?)"
    if head.startswith(b"\x89PNG") or head.startswith(b"\xff\xd8\xff"):
        return "it is an image"
    return None


def _spec(value_info: onnx.ValueInfoProto) -> TensorSpec:
    from onnx import TensorProto

    ttype = value_info.type.tensor_type
    dtype = TensorProto.DataType.Name(ttype.elem_type).lower() if ttype.elem_type else "unknown"
    shape: tuple[int | str | None, ...] | None = None
    if ttype.HasField("shape"):
        shape = tuple(
            d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in ttype.shape.dim
        )
    return TensorSpec(value_info.name, dtype, shape)


def _apply_input_shapes(
    model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]] | tuple[int, ...]
) -> None:
    initializers = {i.name for i in model.graph.initializer}
    graph_inputs = [i for i in model.graph.input if i.name not in initializers]
    if isinstance(shapes, tuple):
        if len(graph_inputs) != 1:
            names = ", ".join(i.name for i in graph_inputs)
            raise BadFlagError(
                f"the model has {len(graph_inputs)} inputs ({names})",
                "name each one: --input-shape 'name:1,3,224,224;other:1,10'",
            )
        shapes = {graph_inputs[0].name: shapes}
    by_name = {i.name: i for i in graph_inputs}
    for name, dims in shapes.items():
        if name not in by_name:
            raise BadFlagError(
                f"--input-shape names {name!r}, which is not an input of the model",
                f"inputs are: {', '.join(by_name)}",
            )
        tshape = by_name[name].type.tensor_type.shape
        if len(tshape.dim) and len(tshape.dim) != len(dims):
            raise BadFlagError(
                f"--input-shape gives {len(dims)} dimensions for {name!r}, the model has "
                f"{len(tshape.dim)}",
                "give one number per dimension, batch first",
            )
        del tshape.dim[:]
        for i, value in enumerate(dims):
            dim = tshape.dim.add()
            # The batch dimension stays symbolic so that any chunk size can run.
            if i == 0:
                dim.dim_param = "batch"
            else:
                dim.dim_value = value


def load_model(
    path: str | os.PathLike[str],
    input_shape: dict[str, tuple[int, ...]] | tuple[int, ...] | None = None,
    *,
    require_static: bool = True,
) -> LoadedModel:
    """Read, validate and shape-infer an ONNX model.

    Refuses external data outside the model's folder; keeps ir_version and opset imports.
    ``require_static``: every input dimension but the batch must be known (or given).
    """
    import onnx
    from google.protobuf.message import DecodeError

    p = Path(path)
    if not p.exists():
        raise ModelError(f"model file {str(p)!r} does not exist", "check the path")
    if p.is_dir():
        raise ModelError(f"{str(p)!r} is a folder, not a model file", "give the .onnx file")
    try:
        with p.open("rb") as fh:
            head = fh.read(64)
    except OSError as exc:
        raise ModelError(f"cannot read model file {str(p)!r}: {exc.strerror}") from None
    if not head:
        raise ModelError(f"model file {str(p)!r} is empty", "re-export or re-download it")
    from sdaudit.model.torch_convert import TORCH_SUFFIXES, convert

    if p.suffix.lower() in TORCH_SUFFIXES:
        sha = sha256_of(p)
        shape = input_shape
        if isinstance(shape, dict):
            shape = next(iter(shape.values())) if len(shape) == 1 else None
        onnx_path = convert(p, sha, shape)
        loaded = load_model(onnx_path, None, require_static=require_static)
        return LoadedModel(p, loaded.proto, sha, loaded.inputs, loaded.outputs, str(onnx_path))
    what = _sniff_not_onnx(head)
    if what:
        raise ModelError(f"{str(p)!r} is not an ONNX model: {what}", "give an .onnx file")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError) as exc:
        raise ModelError(
            f"{str(p)!r} is not a readable ONNX model ({type(exc).__name__})",
            "the file is truncated or corrupt: re-export it",
        ) from None
    if not model.HasField("graph") or (not model.graph.node and not model.graph.output):
        raise ModelError(
            f"{str(p)!r} holds no graph: not an ONNX model, or an empty one",
            "the file is truncated or corrupt: re-export it",
        )
    _check_external_data(model, p.parent)
    from onnx.external_data_helper import load_external_data_for_model

    try:
        load_external_data_for_model(model, str(p.parent))
    except OSError as exc:
        raise ModelError(f"cannot read the model's external data: {exc}") from None
    except ValueError as exc:  # onnx: a file shorter than the offsets and lengths it names
        raise ModelError(f"the external data of {str(p)!r} is truncated or does not match the "
                         f"model: {first_line(exc)}",
                         "copy the weights file(s) again, or re-export the model") from None
    default_opset(model)
    from sdaudit.model.order import is_sorted, sort_nodes

    if not is_sorted(model.graph):  # a converter appended nodes late: sorted in memory only
        sort_nodes(model.graph)
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError) as exc:
        raise ModelError(f"{str(p)!r} is not a valid ONNX model: {first_line(exc)}",
                         "re-export it") from None

    initializers = {i.name for i in model.graph.initializer}
    if not [i for i in model.graph.input if i.name not in initializers]:
        raise ModelError(f"{str(p)!r} has no inputs", "a model to audit must take an input")
    if not model.graph.output:
        raise ModelError(f"{str(p)!r} has no outputs", "a model to audit must produce an output")

    if input_shape is not None:
        _apply_input_shapes(model, input_shape)
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as exc:  # shape inference raises many types on malformed models
        raise ModelError(f"shape inference failed on {str(p)!r}: {first_line(exc)}",
                         "re-export it") from None

    inputs = tuple(_spec(i) for i in model.graph.input if i.name not in initializers)
    outputs = tuple(_spec(o) for o in model.graph.output)
    if require_static:
        for spec in inputs:
            if spec.shape is None or any(
                not isinstance(d, int) or d <= 0 for d in spec.shape[1:]
            ):
                shown = "?" if spec.shape is None else ",".join(str(d) for d in spec.shape)
                raise ModelError(
                    f"the shape of input {spec.name!r} is not fully known ({shown})",
                    "give it with --input-shape, e.g. --input-shape 1,3,224,224",
                )
    return LoadedModel(p, model, sha256_of(p), inputs, outputs)
