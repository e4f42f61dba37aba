"""TorchScript (.pt) and torch.export (.pt2) programs → ONNX, cached by content hash.

Loading a TorchScript or torch.export file runs code stored in it: give only files you trust.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sdaudit.errors import BadFlagError, ModelError, first_line

TORCH_SUFFIXES = (".pt", ".pth", ".ts", ".pt2")
OPSET = 17


def cache_dir() -> Path:
    base = os.environ.get("SDAUDIT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "sdaudit")
    return Path(base) / "torch-onnx"


def convert(path: Path, sha256: str, input_shape: tuple[int, ...] | None) -> Path:
    """The ONNX export of a TorchScript/torch.export file, made once per (file, shape, torch)."""
    if input_shape is None:
        raise BadFlagError(
            f"{str(path)!r} is a PyTorch file: its input shape is not stored in it",
            "give it with --input-shape, e.g. --input-shape 1,3,224,224",
        )
    try:
        import torch
    except ImportError:
        raise ModelError(
            f"{str(path)!r} is a PyTorch file and torch is not installed",
            "pip install 'sdaudit[torch]', or export the model to ONNX yourself",
        ) from None
    shape_tag = "x".join(str(d) for d in input_shape)
    target = cache_dir() / f"{sha256[:32]}-{shape_tag}-torch{torch.__version__}.onnx"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(*input_shape)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    import contextlib
    import sys
    import warnings

    # torch deprecates TorchScript loudly and its exporter prints progress on stdout, which must
    # stay clean for --format json.
    with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
        warnings.simplefilter("ignore")
        _export(torch, path, example, tmp, target)
    return target


def _export(torch: object, path: Path, example: object, tmp: Path, target: Path) -> None:
    torch_mod: Any = torch
    try:
        if path.suffix == ".pt2":
            try:
                program = torch_mod.export.load(str(path))
            except Exception as exc:
                raise ModelError(f"{str(path)!r} is not a torch.export program ({exc})",
                                 "save it with torch.export.save") from None
            torch_mod.onnx.export(program, (example,), str(tmp), dynamo=True,
                              input_names=["input"], output_names=["output"])
        else:
            try:
                module = torch_mod.jit.load(str(path), map_location="cpu")
            except Exception as exc:
                raise ModelError(
                    f"{str(path)!r} is not a TorchScript file ({first_line(exc, 120)})",
                    "a state_dict holds weights only: save torch.jit.script(model) or "
                    "torch.jit.trace(model, x), or export to ONNX",
                ) from None
            module.eval()
            torch_mod.onnx.export(module, (example,), str(tmp), dynamo=False,
                                  input_names=["input"], output_names=["output"],
                                  dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                                  opset_version=OPSET, do_constant_folding=True)
        os.replace(tmp, target)
    except (ModelError, BadFlagError):
        raise
    except Exception as exc:
        raise ModelError(f"torch could not export {str(path)!r} to ONNX: {first_line(exc)}",
                         "check --input-shape, or export the model to ONNX yourself") from None
    finally:
        tmp.unlink(missing_ok=True)
