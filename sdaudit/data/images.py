"""Image folders.

Layouts: one sub-folder per class (matched to the model's class names where known, ImageNet
WordNet ids to the standard 1,000-class index, otherwise sorted names give the index); a flat
folder of images with ``--labels FILE`` (ImageNet's official validation layout); a flat folder
without labels (the model's own predictions stand in).

Images are decoded (:mod:`sdaudit.data.decode`: real bit depth, EXIF orientation, alpha dropped)
in a thread pool one chunk ahead of the model. Files that cannot be read, or not at a known
scale, are skipped, counted and named with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sdaudit.data.base import InputLayout, Sampling, SkipLog
from sdaudit.data.preprocess import Preprocess, pixels_to_array
from sdaudit.errors import DataError

if TYPE_CHECKING:
    from sdaudit.data.decode import Pixels

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)


def _raise(exc: OSError) -> None:
    """os.walk skips folders it cannot read in silence; a class folder must not lose images so."""
    raise exc


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


class ImageFolderDataset:
    """Images under a folder, labelled by sub-folder or by a labels file, or unlabelled."""

    def __init__(self, root: Path, layout: InputLayout, preprocess: Preprocess, *,
                 num_classes: int | None, class_names: tuple[str, ...] | None = None,
                 labels_file: str | Path | None = None, sampling: Sampling | None = None,
                 workers: int = 2) -> None:
        from sdaudit.data.classes import map_folders, read_labels_file

        self.path = str(root)
        self.skipped = SkipLog()
        self.transparent = 0
        self.converted: dict[str, int] = {}
        self._layout = layout
        self._pre = preprocess
        self._workers = max(1, workers)
        if layout.image_size is None or layout.channels not in (1, 3):
            raise DataError(
                f"the model's input {layout.name!r} takes {list(layout.shape)} per sample, not an "
                "image (C,H,W or H,W,C with C = 1 or 3)",
                "give the data as an .npz with x in the model's input layout",
            )
        preprocess.check(layout)
        folders = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        loose = sorted(p for p in root.iterdir() if p.is_file() and _is_image(p))
        files: list[tuple[Path, int]] = []
        self.class_names = class_names
        self.matched_by = "none"
        if folders and not loose:
            if labels_file is not None:
                raise DataError("--labels is for a flat folder of images; this one has class "
                                "sub-folders", "drop --labels: the sub-folders give the classes")
            mapping, self.class_names, self.matched_by = map_folders(folders, class_names,
                                                                     num_classes)
            for name in folders:
                for dirpath, _dirs, names in os.walk(root / name, onerror=_raise):
                    files.extend((Path(dirpath) / f, mapping[name]) for f in sorted(names)
                                 if _is_image(Path(f)))
            self.kind = "image-folder"
            self.labelled = True
        elif loose:
            if labels_file is not None:
                labels = read_labels_file(labels_file, class_names)
                missing = [p.name for p in loose if p.name not in labels and p.stem not in labels]
                if missing:
                    raise DataError(
                        f"{len(missing)} images have no label in {str(labels_file)!r} "
                        f"(first: {missing[0]})", "give a label for every image in the folder")
                files = [(p, labels.get(p.name, labels.get(p.stem, -1))) for p in loose]
                self.kind, self.labelled, self.matched_by = "image-flat", True, "labels file"
            else:
                files = [(p, -1) for p in loose]
                self.kind, self.labelled = "image-unlabelled", False
            if self.class_names is None and num_classes == 1000:
                from sdaudit.data.classes import imagenet_classes

                self.class_names = imagenet_classes()[1]
        else:
            hint = ("give a folder with one sub-folder of images per class, or a flat folder of "
                    "images") if not folders else f"image files end in {', '.join(sorted(IMAGE_SUFFIXES))}"
            where = f"{len(folders)} sub-folders" if folders else "an empty folder"
            raise DataError(f"no images found under {self.path!r} ({where})", hint)
        if not files:
            raise DataError(
                f"no images found under {self.path!r} ({len(folders)} class folders)",
                f"image files end in {', '.join(sorted(IMAGE_SUFFIXES))}",
            )
        if self.labelled and num_classes is not None:
            top = max(label for _, label in files)
            if top >= num_classes:
                raise DataError(
                    f"labels go up to {top} but the model has {num_classes} outputs",
                    "give one sub-folder (or label) per model class, in the model's order",
                )
        files.sort(key=lambda item: (item[1], str(item[0])))
        if sampling is not None and sampling.active:
            labels_arr = np.array([lab for _, lab in files]) if self.labelled else None
            files = [files[i] for i in sampling.choose(labels_arr, len(files))]
        self._files = files
        self.num_samples = len(files)

    def _decode(self, path: Path) -> tuple[np.ndarray | None, str | Pixels]:
        """(sample, its decoded pixels), or (None, why it was skipped)."""
        from PIL import Image, UnidentifiedImageError

        from sdaudit.data.decode import UnreadableImageError, read_pixels

        try:
            pixels = read_pixels(path, self._layout.channels or 1)
            return pixels_to_array(pixels, self._pre, self._layout), pixels
        except UnreadableImageError as exc:
            return None, str(exc)
        except UnidentifiedImageError:
            return None, "not an image PIL can read"
        except Image.DecompressionBombError:
            return None, "larger than PIL's decompression-bomb limit"
        except PermissionError as exc:
            return None, f"not readable ({exc.strerror})"
        except (OSError, ValueError, SyntaxError, EOFError, MemoryError):
            return None, "truncated or corrupt"

    def chunks(self, size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        dtype = np.dtype(self._layout.dtype)
        batches = [self._files[i:i + size] for i in range(0, len(self._files), size)]
        self.skipped = SkipLog()  # each pass sees the same files; count them once
        self.transparent = 0  # images whose alpha had transparent pixels (dropped)
        self.converted = {}  # images converted to the model's channels, by kind
        with ThreadPoolExecutor(self._workers, thread_name_prefix="sdaudit-decode") as pool:
            def submit(batch: list[tuple[Path, int]]) -> list[Future[tuple[np.ndarray | None,
                                                                            str | Pixels]]]:
                return [pool.submit(self._decode, p) for p, _ in batch]

            pending = submit(batches[0]) if batches else []
            for i, batch in enumerate(batches):
                current = pending
                # Decode the next chunk while the model works on this one.
                pending = submit(batches[i + 1]) if i + 1 < len(batches) else []
                arrays, labels = [], []
                for (path, label), fut in zip(batch, current, strict=True):
                    arr, info = fut.result()
                    if arr is None or isinstance(info, str):
                        self.skipped.add(str(path.relative_to(self.path)), str(info))
                        continue
                    self.transparent += info.transparent
                    if info.converted:
                        self.converted[info.converted] = self.converted.get(info.converted, 0) + 1
                    arrays.append(arr)
                    labels.append(label)
                if arrays:
                    yield np.stack(arrays).astype(dtype, copy=False), np.asarray(labels, np.int64)

    def describe(self) -> dict[str, object]:
        import hashlib

        # Names, sizes and labels of the files used (no image is read again for it).
        digest = hashlib.sha256()
        for path, label in self._files:
            size = path.stat().st_size if path.exists() else -1
            digest.update(f"{path.relative_to(self.path)}\t{size}\t{label}\n".encode())
        return {"path": self.path, "kind": self.kind, "preprocess": self._pre.to_dict(),
                "classes_matched_by": self.matched_by,
                "fingerprint": "files-sha256:" + digest.hexdigest()}
