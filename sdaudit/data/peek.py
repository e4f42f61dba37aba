"""The shape of the data's first sample, read without opening the data set for the model.

A model that leaves an input dimension open ([-1, 3, ?, ?]) gets it from the data where the
data fixes it: an .npz's ``x`` array (every sample has its shape), an image folder's crop size
or, without one, its first image's size. Loader scripts and folders without images fix nothing.
"""

from __future__ import annotations

from pathlib import Path

from sdaudit.errors import DataError


def sample_shape(path: str | Path | None, channels: int | None, channels_last: bool,
                 crop: int | None = None) -> tuple[int, ...] | None:
    """The per-sample shape the data at ``path`` fixes (batch dropped), or None.

    ``channels``: the model's image channels where it fixes them (1 or 3), else 3.
    """
    if path is None:
        return None
    p = Path(path)
    if p.is_file() and p.suffix.lower() == ".npz":
        return _npz_shape(p)
    if p.is_dir():
        size = (crop, crop) if crop else _first_image_size(p)
        if size is None:
            return None
        c = channels or 3
        return (*size, c) if channels_last else (c, *size)
    return None


def _npz_shape(path: Path) -> tuple[int, ...] | None:
    import zipfile

    import numpy as np

    try:
        with zipfile.ZipFile(path) as zf, zf.open("x.npy") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape = np.lib.format.read_array_header_1_0(fh)[0]
            else:
                shape = np.lib.format.read_array_header_2_0(fh)[0]
    except (KeyError, zipfile.BadZipFile, OSError, ValueError):
        return None  # the data set itself reports what is wrong, once it is opened
    return tuple(int(d) for d in shape[1:]) if len(shape) > 1 else None


def _first_image_size(root: Path) -> tuple[int, int] | None:
    from PIL import Image, UnidentifiedImageError

    from sdaudit.data.images import _is_image

    for file in sorted(f for f in root.rglob("*") if f.is_file() and _is_image(f)):
        try:
            with Image.open(file) as img:
                width, height = img.size
            return height, width
        except (OSError, UnidentifiedImageError):
            continue
    return None


def fill_open_dims(model_shape: tuple[int | str | None, ...], data_shape: tuple[int, ...],
                   input_name: str) -> tuple[int, ...]:
    """The input's full shape (batch 1) with its open dimensions taken from ``data_shape``."""
    dims = model_shape[1:]
    if len(dims) != len(data_shape):
        raise DataError(
            f"the data's samples have shape {list(data_shape)}, the model's input "
            f"{input_name!r} takes {len(dims)} dimensions per sample "
            f"({', '.join(str(d) if isinstance(d, int) else '?' for d in dims)})",
            "store the samples in the model's input layout (batch first), or give the "
                "input's shape with --input-shape")
    out = []
    for fixed, given in zip(dims, data_shape, strict=True):
        if isinstance(fixed, int) and fixed > 0 and fixed != given:
            raise DataError(
                f"the data's samples have shape {list(data_shape)}, the model's input "
                f"{input_name!r} takes {[d if isinstance(d, int) else '?' for d in dims]}",
                "store the samples in the model's input layout (batch first), or give the "
                "input's shape with --input-shape")
        out.append(given)
    return (1, *out)
