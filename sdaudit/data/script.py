"""``--data-loader-script FILE.py[:func]``: any data, from a function the user writes.

Polygraphy's convention: the function (default ``load_data``) returns an iterable of batches;
each batch is ``(x, y)``, ``(x,)``/``x`` (unlabelled), or a dict with the model's input name and
optionally ``"y"``/``"labels"``. It is called once per pass, so it must yield the same batches
each time. Loading the script runs its code: give only scripts you trust.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from sdaudit.data.base import InputLayout, SkipLog
from sdaudit.errors import DataError, first_line


def _numbers(x: Any, what: str) -> np.ndarray:
    """A batch as a numeric array; anything else is the script's error, named."""
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as exc:
        raise DataError(f"the loader script's {what} are not an array: {first_line(exc)}",
                        "yield numpy arrays") from None
    if arr.dtype == np.bool_ or not (np.issubdtype(arr.dtype, np.integer)
                                     or np.issubdtype(arr.dtype, np.floating)):
        raise DataError(f"the loader script yields {what} of dtype {arr.dtype}; numbers are needed",
                        "yield numeric numpy arrays")
    return arr


def _labels(y: Any) -> np.ndarray:
    """Labels as int64 class indices: integers, or floats that are whole numbers (0.5 is refused,
    never truncated)."""
    arr = _numbers(y, "labels")
    if np.issubdtype(arr.dtype, np.floating) and not (
            np.all(np.isfinite(arr)) and np.all(np.mod(arr, 1) == 0)):
        raise DataError("the loader script yields labels that are not whole numbers",
                        "labels are integer class indices 0..K-1")
    return arr.astype(np.int64)


class ScriptDataset:
    kind = "loader-script"

    def __init__(self, spec: str, layout: InputLayout, num_classes: int | None) -> None:
        path_text, _, func_name = spec.partition(":") if not Path(spec).exists() else (spec, "", "")
        path = Path(path_text)
        self.path = str(path)
        self.skipped = SkipLog()
        self.class_names: tuple[str, ...] | None = None
        self._layout = layout
        self._num_classes = num_classes
        if not path.is_file():
            raise DataError(f"--data-loader-script {str(path)!r} does not exist", "check the path")
        module_spec = importlib.util.spec_from_file_location("sdaudit_user_loader", path)
        if module_spec is None or module_spec.loader is None:
            raise DataError(f"--data-loader-script {str(path)!r} is not a Python file")
        module = importlib.util.module_from_spec(module_spec)
        try:
            module_spec.loader.exec_module(module)
        except (Exception, SystemExit) as exc:  # a script's sys.exit() must not end sdaudit
            raise DataError(f"--data-loader-script {str(path)!r} failed to import: "
                            f"{type(exc).__name__}: {exc}") from None
        name = func_name or "load_data"
        func = getattr(module, name, None)
        if not callable(func):
            raise DataError(f"--data-loader-script {str(path)!r} has no function {name!r}",
                            "define load_data() or name the function: FILE.py:func")
        self._func: Callable[[], Any] = func
        self.num_samples, self.labelled = self._count()

    def _batches(self) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        try:
            for item in self._func():
                if isinstance(item, dict):
                    x = item.get(self._layout.name)
                    if x is None:
                        raise DataError(f"a batch from the loader script has no {self._layout.name!r}",
                                        f"key each batch by the model's input name {self._layout.name!r}")
                    y = item.get("y", item.get("labels"))
                elif isinstance(item, tuple | list):
                    x, y = item[0], (item[1] if len(item) > 1 else None)
                else:
                    x, y = item, None
                yield _numbers(x, "samples"), None if y is None else _labels(y)
        except DataError:
            raise
        except (Exception, SystemExit) as exc:
            raise DataError(f"the loader script failed: {type(exc).__name__}: {first_line(exc)}",
                            "run its function on its own to see the traceback") from None

    def _count(self) -> tuple[int, bool]:
        n, labelled = 0, None
        for x, y in self._batches():
            if tuple(x.shape[1:]) != self._layout.shape:
                raise DataError(
                    f"the loader script yields samples of shape {list(x.shape[1:])}; the model "
                    f"takes {list(self._layout.shape)}", "yield batches in the model's input layout")
            has = y is not None
            if labelled is not None and has != labelled:
                raise DataError("the loader script yields labels for some batches only",
                                "give labels for every batch or for none")
            labelled = has
            if y is not None and (y.ndim != 1 or len(y) != len(x)):
                raise DataError("the loader script's labels must be one integer per sample")
            if y is not None and self._num_classes is not None and len(y) and \
                    (y.min() < 0 or y.max() >= self._num_classes):
                raise DataError(f"the loader script's labels leave 0..{self._num_classes - 1}",
                                "labels are class indices in the model's output order")
            n += len(x)
        if n == 0:
            raise DataError("the loader script yielded zero samples", "yield at least one batch")
        return n, bool(labelled)

    def chunks(self, size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        dtype = np.dtype(self._layout.dtype)
        for x, y in self._batches():
            labels = (np.full(len(x), -1, np.int64) if y is None else y.astype(np.int64))
            for start in range(0, len(x), size):
                yield (np.ascontiguousarray(x[start:start + size], dtype=dtype),
                       labels[start:start + size])

    def describe(self) -> dict[str, object]:
        return {"path": self.path, "kind": self.kind}
