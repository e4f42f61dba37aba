"""Pick the data source for a path."""

from __future__ import annotations

from pathlib import Path

from sdaudit.data.base import Dataset, InputLayout, Preprocess
from sdaudit.errors import DataError


def open_dataset(path: str | Path, layout: InputLayout, *, num_classes: int | None,
                 preprocess: Preprocess | None = None, workers: int = 2) -> Dataset:
    """An .npz file or an image folder, checked against the model's input."""
    from sdaudit.data.images import ImageFolderDataset
    from sdaudit.data.npz import NpzDataset

    p = Path(path)
    if not p.exists():
        raise DataError(f"data path {str(p)!r} does not exist", "check --data")
    if p.is_dir():
        try:
            return ImageFolderDataset(p, layout, preprocess or Preprocess(), num_classes, workers)
        except PermissionError as exc:
            raise DataError(f"cannot read {str(p)!r}: {exc.strerror}") from None
    if p.suffix.lower() == ".npz":
        if p.stat().st_size == 0:
            raise DataError(f"{str(p)!r} is empty", "write it with numpy.savez(path, x=x, y=y)")
        return NpzDataset(p, layout, num_classes)
    raise DataError(
        f"cannot read data from {str(p)!r}: not an .npz file or a folder",
        "give an .npz with arrays x and y, or a folder with one sub-folder of images per class",
    )
