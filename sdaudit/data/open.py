"""Pick the data source for a path."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdaudit.data.base import Dataset, InputLayout, Sampling
from sdaudit.data.preprocess import Preprocess
from sdaudit.errors import DataError


@dataclass(frozen=True)
class DataOptions:
    """Everything about reading the data besides its path.

    Images: ``preset`` (none, imagenet) with explicit ``overrides`` (Preprocess fields) on top;
    ``preprocess``, where given, is used as it is.
    """

    preset: str = "none"
    overrides: dict[str, Any] = field(default_factory=dict)
    preprocess: Preprocess | None = None
    channels_last: bool | None = None
    class_names: tuple[str, ...] | None = None
    labels_file: str | None = None
    sampling: Sampling = field(default_factory=Sampling)
    loader_script: str | None = None


def open_dataset(path: str | Path | None, layout: InputLayout, *, num_classes: int | None,
                 options: DataOptions | None = None, workers: int = 2) -> Dataset:
    """An .npz file, an image folder, or a loader script, checked against the model's input."""
    from sdaudit.data.images import ImageFolderDataset
    from sdaudit.data.npz import NpzDataset
    from sdaudit.data.preprocess import preset, with_overrides
    from sdaudit.data.script import ScriptDataset

    opts = options or DataOptions()
    pre = opts.preprocess or with_overrides(preset(opts.preset, layout), **opts.overrides)
    if opts.loader_script is not None:
        return ScriptDataset(opts.loader_script, layout, num_classes)
    if path is None:
        raise DataError("no data given", "give --data PATH or --data-loader-script FILE.py")
    p = Path(path)
    if not p.exists():
        raise DataError(f"data path {str(p)!r} does not exist", "check --data")
    if p.is_dir():
        try:
            return ImageFolderDataset(p, layout, pre, num_classes=num_classes,
                                      class_names=opts.class_names, labels_file=opts.labels_file,
                                      sampling=opts.sampling, workers=workers)
        except PermissionError as exc:
            raise DataError(f"cannot read {str(p)!r}: {exc.strerror}") from None
    if p.suffix.lower() == ".npz":
        if p.stat().st_size == 0:
            raise DataError(f"{str(p)!r} is empty", "write it with numpy.savez(path, x=x, y=y)")
        dataset = NpzDataset(p, layout, num_classes, opts.sampling)
        dataset.class_names = opts.class_names
        return dataset
    raise DataError(
        f"cannot read data from {str(p)!r}: not an .npz file or a folder",
        "give an .npz with arrays x and y, or a folder with one sub-folder of images per class",
    )
