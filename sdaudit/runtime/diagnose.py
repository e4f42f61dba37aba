"""Whose fault is an ONNX Runtime failure in the middle of an audit: the data's or sdaudit's?

When a run fails inside ONNX Runtime, the model as the user gave it (no rewrite) runs over the
same data in a plain session. If it fails too, the data do not fit the model (token ids past the
vocabulary, values an op refuses): a :class:`~sdaudit.errors.ModelError` with ONNX Runtime's own
message (exit 2). If it runs, the failure is in sdaudit's rewritten graphs and the original
exception stands (a bug, exit 3). This costs a pass over the data only on that failure path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import numpy as np

from sdaudit.errors import ModelError, ort_message

# What ORT puts before the message of a kernel that failed.
_KERNEL = re.compile(r"^Non-zero status code returned while running (?P<op>\S+ node)\. "
                     r"Name:'[^']*' Status Message: ")


def is_ort_error(exc: BaseException) -> bool:
    """An exception raised inside ONNX Runtime (its pybind error classes)."""
    return type(exc).__module__.startswith("onnxruntime")


def short_message(exc: BaseException) -> str:
    """ONNX Runtime's message (errors.ort_message) without the kernel-failure boilerplate."""
    text = ort_message(exc, 400)
    match = _KERNEL.match(text)
    return text if match is None else f"{match.group('op')}: {text[match.end():]}"


def data_failure(model_bytes: bytes, input_name: str,
                 chunks: Iterable[tuple[np.ndarray, Any]]) -> str | None:
    """ONNX Runtime's message for the first chunk the plain model cannot run on; None if all run."""
    from sdaudit.ort import make_session

    session = make_session(model_bytes, "cpu")
    for x, _ in chunks:
        try:
            session.run(None, {input_name: x})
        except Exception as exc:
            if not is_ort_error(exc):
                raise
            return short_message(exc)
    return None


def raise_if_data_fault(model_path: Any, data_paths: Iterable[Any],
                        input_shape: Any, options: Any) -> None:
    """A ModelError when the model as given fails on one of ``data_paths``; else return (the
    caller re-raises its error). Pre-condition: an ONNX Runtime error stopped the audit."""
    from dataclasses import replace

    from sdaudit.api import input_layout
    from sdaudit.data import DataOptions, open_dataset
    from sdaudit.model.load import load_model

    loaded = load_model(model_path, input_shape)
    opts = options or DataOptions()
    layout = input_layout(loaded, opts.channels_last)
    for i, path in enumerate(data_paths):
        data = open_dataset(path, layout, num_classes=None,
                            options=opts if i == 0 else replace(opts, loader_script=None))
        message = data_failure(loaded.proto.SerializeToString(), layout.name, data.chunks(16))
        if message is not None:
            where = "the data" if i == 0 else "the selectivity data"
            raise ModelError(f"ONNX Runtime cannot run the model on {where}: {message}",
                             "check that the data fit the model's input (dtype, value range, "
                             "e.g. token ids below the vocabulary size)") from None
