"""NumPy .npz archives with ``x`` (model input layout) and ``y`` (integer labels).

Uncompressed members are memory-mapped straight out of the archive, so memory stays flat in the
number of samples; compressed members are read whole (a note says so).
"""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from sdaudit.data.base import InputLayout, Sampling, SkipLog
from sdaudit.errors import DataError


def _memmap_member(path: Path, member: str) -> np.ndarray | None:
    """Map an uncompressed .npy member of a zip in place; None where that is not possible."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
        if info.compress_type != zipfile.ZIP_STORED:
            return None
    with path.open("rb") as fh:
        fh.seek(info.header_offset)
        local = fh.read(30)
        if local[:4] != b"PK\x03\x04":
            return None
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        start = info.header_offset + 30 + name_len + extra_len
        fh.seek(start)
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        else:  # pragma: no cover - future formats
            return None
        if dtype.hasobject:
            return None
        offset = fh.tell()
    if int(np.prod(shape)) == 0:
        return np.zeros(shape, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                     order="F" if fortran else "C")


class NpzDataset:
    """Labelled arrays from an .npz file."""

    kind = "npz"

    def __init__(self, path: Path, layout: InputLayout, num_classes: int | None,
                 sampling: Sampling | None = None) -> None:
        self.path = str(path)
        self.skipped = SkipLog()
        self.class_names: tuple[str, ...] | None = None
        try:
            with zipfile.ZipFile(path) as zf:
                members = set(zf.namelist())
        except (zipfile.BadZipFile, OSError) as exc:
            raise DataError(
                f"{self.path!r} is not a readable .npz archive ({exc})",
                "write it with numpy.savez(path, x=..., y=...)",
            ) from None
        if "x.npy" not in members:
            keys = ", ".join(sorted(m.removesuffix(".npy") for m in members)) or "none"
            raise DataError(
                f"{self.path!r} has no array 'x' (arrays: {keys})",
                "save inputs as x and labels as y: numpy.savez(path, x=x, y=y)",
            )
        self.labelled = "y.npy" in members
        try:
            x = _memmap_member(path, "x.npy")
            if x is None:
                with np.load(path, allow_pickle=False) as npz:
                    x = npz["x"]
            if x.ndim == 0:
                raise DataError(f"x in {self.path!r} is a single number, not samples",
                                "store x batch first: shape (N, ...) in the model's input layout")
            if self.labelled:
                with np.load(path, allow_pickle=False) as npz:
                    y = self._check_labels(npz["y"], len(x), num_classes)
            else:  # unlabelled: the model's own predictions stand in
                y = np.full(len(x), -1, dtype=np.int64)
        except (ValueError, OSError, zipfile.BadZipFile) as exc:
            raise DataError(f"cannot read arrays from {self.path!r}: {exc}",
                            "store x and y as numeric arrays: numpy.savez(path, "
                            "x=x.astype('float32'), y=y.astype('int64'))") from None
        self._x, self._y = x, y
        self._index: np.ndarray | None = None
        if sampling is not None and sampling.active:
            self._index = sampling.choose(y if self.labelled else None, len(x))
        expected = tuple(layout.shape)
        if tuple(x.shape[1:]) != expected:
            same_size = int(np.prod(x.shape[1:])) == int(np.prod(expected))
            raise DataError(
                f"x in {self.path!r} has samples of shape {list(x.shape[1:])}, the model's input "
                f"{layout.name!r} takes {list(expected)}",
                f"reshape x to (N, {', '.join(str(d) for d in expected)}) if the layout is the "
                "same, else store x in the model's input layout (batch first)" if same_size
                else "store x in the model's input layout (batch first)",
            )
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise DataError(f"x in {self.path!r} has dtype {x.dtype}; numbers are needed")
        self._dtype = np.dtype(layout.dtype)
        self.num_samples = len(x) if self._index is None else len(self._index)
        if self.num_samples == 0:
            raise DataError(f"{self.path!r} holds zero samples", "give at least one labelled sample")

    def _check_labels(self, y: np.ndarray, n: int, num_classes: int | None) -> np.ndarray:
        if y.ndim != 1:
            raise DataError(
                f"labels y in {self.path!r} have shape {list(y.shape)}; one integer per sample is "
                "needed", "store y as a 1-D integer array (class indices, not one-hot)",
            )
        if len(y) != n:
            raise DataError(
                f"{self.path!r} has {n} samples in x but {len(y)} labels in y",
                "give exactly one label per sample",
            )
        if not np.issubdtype(y.dtype, np.integer):
            if np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0):
                y = y.astype(np.int64)
            else:
                raise DataError(
                    f"labels y in {self.path!r} are {y.dtype}, not integer class indices",
                    "store y as integers 0..K-1",
                )
        y = y.astype(np.int64)
        if len(y) and y.min() < 0:
            raise DataError(f"labels y in {self.path!r} include {int(y.min())}; they must be ≥ 0")
        if num_classes is not None and len(y) and y.max() >= num_classes:
            raise DataError(
                f"labels y in {self.path!r} go up to {int(y.max())} but the model has "
                f"{num_classes} outputs",
                "labels must be class indices 0..K-1 in the model's output order",
            )
        return y

    def chunks(self, size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, self.num_samples, size):
            if self._index is None:
                rows: slice | np.ndarray = slice(start, start + size)
                x = np.asarray(self._read_rows(start, min(start + size, self.num_samples)),
                               dtype=self._dtype)
            else:
                rows = self._index[start:start + size]
                x = np.asarray(self._x[rows], dtype=self._dtype)
            yield np.ascontiguousarray(x), self._y[rows]

    def _read_rows(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) of x. From a mapped file they are read with plain reads, not
        through the mapping: mapped pages would stay resident and memory would grow with the
        number of samples."""
        x = self._x
        if not isinstance(x, np.memmap) or not x.flags.c_contiguous:
            return x[start:stop]
        row_bytes = x.itemsize * int(np.prod(x.shape[1:], dtype=np.int64))
        return np.fromfile(self.path, dtype=x.dtype, count=(stop - start) * row_bytes // x.itemsize,
                           offset=x.offset + start * row_bytes).reshape(stop - start, *x.shape[1:])

    def describe(self) -> dict[str, object]:
        from sdaudit.model.load import sha256_of

        # The file's hash: reports on the same data are recognizable whatever its name.
        return {"path": self.path, "kind": self.kind,
                "fingerprint": "sha256:" + sha256_of(Path(self.path))}
