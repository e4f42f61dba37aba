"""Image folders: one sub-folder per class, sorted names give the class index.

Images are decoded in a thread pool one chunk ahead of the model, resized to the model's input
size, scaled and normalized per channel. Unreadable files are skipped, counted and named.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from sdaudit.data.base import InputLayout, Preprocess, SkipLog
from sdaudit.errors import DataError

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


class ImageFolderDataset:
    """Labelled images in class sub-folders."""

    kind = "image-folder"

    def __init__(self, root: Path, layout: InputLayout, preprocess: Preprocess,
                 num_classes: int | None, workers: int) -> None:
        self.path = str(root)
        self.skipped = SkipLog()
        self._layout = layout
        self._pre = preprocess
        self._workers = max(1, workers)
        if layout.image_size is None or layout.channels not in (1, 3):
            raise DataError(
                f"the model's input {layout.name!r} takes {list(layout.shape)} per sample, not an "
                "image (C,H,W with C = 1 or 3)",
                "give the data as an .npz with x in the model's input layout",
            )
        for name, values in (("--mean", preprocess.mean), ("--std", preprocess.std)):
            if len(values) not in (1, layout.channels):
                raise DataError(
                    f"{name} has {len(values)} values; the model takes {layout.channels} channels",
                    f"give 1 or {layout.channels} comma-separated values",
                )
        if any(s == 0 for s in preprocess.std):
            raise DataError("--std contains 0", "standard deviations must be non-zero")
        classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        files: list[tuple[Path, int]] = []
        for index, name in enumerate(classes):
            for dirpath, _dirs, names in os.walk(root / name):
                files.extend((Path(dirpath) / f, index) for f in sorted(names)
                             if _is_image(Path(f)))
        if not classes:
            loose = [p for p in root.iterdir() if _is_image(p)]
            hint = ("put each class's images in its own sub-folder (root/cat/*.jpg, root/dog/*.jpg)"
                    if loose else "give a folder with one sub-folder of images per class")
            raise DataError(f"{self.path!r} has no class sub-folders", hint)
        if not files:
            raise DataError(
                f"no images found under {self.path!r} ({len(classes)} class folders)",
                f"image files end in {', '.join(sorted(IMAGE_SUFFIXES))}",
            )
        if num_classes is not None and len(classes) > num_classes:
            raise DataError(
                f"{self.path!r} has {len(classes)} class folders but the model has "
                f"{num_classes} outputs",
                "give one sub-folder per model class (sorted names give the class index)",
            )
        files.sort(key=lambda item: (item[1], str(item[0])))
        self._files = files
        self.class_names: tuple[str, ...] | None = tuple(classes)
        self.num_samples = len(files)
        self._mean = np.asarray(preprocess.mean, dtype=np.float32)
        self._std = np.asarray(preprocess.std, dtype=np.float32)

    def _decode(self, path: Path) -> np.ndarray | None:
        from PIL import Image, UnidentifiedImageError

        height, width = self._layout.image_size or (0, 0)
        try:
            with Image.open(path) as opened:
                img = opened.convert("L" if self._layout.channels == 1 else "RGB")
                if img.size != (width, height):
                    img = img.resize((width, height), Image.Resampling.BILINEAR)
                arr = np.asarray(img, dtype=np.float32)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            return None
        if arr.ndim == 2:
            arr = arr[:, :, None]
        arr = (arr * self._pre.scale - self._mean) / self._std
        if not self._layout.channels_last:
            arr = arr.transpose(2, 0, 1)
        return arr

    def chunks(self, size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        dtype = np.dtype(self._layout.dtype)
        batches = [self._files[i:i + size] for i in range(0, len(self._files), size)]
        with ThreadPoolExecutor(self._workers, thread_name_prefix="sdaudit-decode") as pool:
            def submit(batch: list[tuple[Path, int]]) -> list[Future[np.ndarray | None]]:
                return [pool.submit(self._decode, p) for p, _ in batch]

            pending = submit(batches[0]) if batches else []
            for i, batch in enumerate(batches):
                current = pending
                # Decode the next chunk while the model works on this one.
                pending = submit(batches[i + 1]) if i + 1 < len(batches) else []
                arrays, labels = [], []
                for (path, label), fut in zip(batch, current, strict=True):
                    arr = fut.result()
                    if arr is None:
                        self.skipped.add(str(path.relative_to(self.path)))
                        continue
                    arrays.append(arr)
                    labels.append(label)
                if arrays:
                    yield np.stack(arrays).astype(dtype, copy=False), np.asarray(labels, np.int64)

    def describe(self) -> dict[str, object]:
        return {"path": self.path, "kind": self.kind, "preprocess": self._pre.to_dict()}
