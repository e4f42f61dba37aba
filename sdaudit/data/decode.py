"""Image files → pixels at their real bit depth, in the channels the model takes.

What each kind of file becomes (docs/method.md, "Images"):

- 8 bits per channel (L, RGB, 1, P, CMYK, YCbCr and their alpha forms): PIL converts to L or RGB
  as it always has (palette colours looked up; CMYK naively, R = (255 − C)(255 − K)/255; RGB to L
  by ITU-R 601-2 luma, L = 0.299 R + 0.587 G + 0.114 B).
- 16 bits per channel: grey (PIL's I;16 modes, and PNG or 16-bit PGM grey read as I) and 16-bit colour PNGs
  (RGB, RGBA, LA: read with pypng, as PIL keeps only their high byte) are read whole and put on
  the 8-bit scale, v · 255 / 65535, without rounding, so ``--scale 1/255`` maps every image to
  [0, 1] whatever its depth. Grey becomes RGB by repeating it; RGB becomes grey by the same luma.
- Alpha (LA, RGBA, PA, a palette with transparency) is dropped: the colour channels as stored,
  as PIL's ``convert("RGB")`` and torchvision's image loader read them, so the model sees what
  those training pipelines gave it. Images with transparent pixels are counted in a note.
- EXIF orientation is applied (the picture as a viewer shows it), for every depth.
- 32-bit integer and floating-point images (TIFF's I and F modes) have no agreed range, and
  16-bit colour TIFFs are kept only at 8 bits by PIL: those are skipped, counted and named with
  the reason, never read at a guessed scale.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")
SIXTEEN_BIT_AS_I = ("PNG", "PPM")  # formats PIL reads as mode I holding 16-bit values (PPM's
# maxval already scaled to 65535)
LUMA = (0.299, 0.587, 0.114)
_TO_8BIT = np.float32(255.0 / 65535.0)
# EXIF orientation → the transpose that shows the picture upright (as PIL's ImageOps).
_ORIENT = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE",
           6: "ROTATE_270", 7: "TRANSVERSE", 8: "ROTATE_90"}


class UnreadableImageError(Exception):
    """An image that is not read, with the reason (skipped and counted, never guessed)."""


@dataclass(frozen=True)
class Pixels:
    """One decoded image: an 8-bit PIL image (mode L or RGB), or float planes (PIL mode F) on
    the 8-bit scale, one per channel; and whether transparency was dropped."""

    image: Image.Image | None
    planes: tuple[Image.Image, ...]
    transparent: bool
    # "colour → grey" or "grey → colour" where the file's channels are not the model's
    converted: str | None = None


_GREY_MODES = ("1", "L", "LA", "La", "I", "F", "I;16", "I;16B", "I;16L", "I;16N")


def _conversion(colour: bool, channels: int) -> str | None:
    if colour and channels == 1:
        return "colour → grey"
    if not colour and channels == 3:
        return "grey → colour"
    return None


def _png_header(path: Path) -> tuple[int, int] | None:
    """(bit depth, colour type) of a PNG file, from its IHDR chunk."""
    with path.open("rb") as fh:
        head = fh.read(26)
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return head[24], head[25]


def _png16(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """A 16-bit PNG at full depth: (colour planes [H, W, C] as float32 on the 8-bit scale, alpha
    or None)."""
    import png

    width, height, rows, info = png.Reader(filename=str(path)).asDirect()
    planes = int(info["planes"])
    arr = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows])
    arr = arr.reshape(height, width, planes)
    colour = planes - 1 if info.get("alpha") else planes
    alpha = arr[:, :, colour] if info.get("alpha") else None
    return arr[:, :, :colour].astype(np.float32) * _TO_8BIT, alpha


def _alpha_of(img: Image.Image) -> np.ndarray | None:
    if img.mode in ("LA", "PA", "RGBA", "La", "RGBa"):
        return np.asarray(img.getchannel("A"))
    if img.mode == "P" and "transparency" in img.info:
        return np.asarray(img.convert("RGBA").getchannel("A"))
    return None


def _planes(arr: np.ndarray, channels: int) -> tuple[Image.Image, ...]:
    from PIL import Image

    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.shape[2] == 1 and channels == 3:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.shape[2] == 3 and channels == 1:
        arr = (arr @ np.asarray(LUMA, dtype=np.float32))[:, :, None]
    return tuple(Image.fromarray(np.ascontiguousarray(arr[:, :, c], dtype=np.float32), "F")
                 for c in range(arr.shape[2]))


def read_pixels(path: Path, channels: int) -> Pixels:
    """The image at ``path`` in ``channels`` (1 or 3) channels; UnreadableImageError where it is
    not read (see the module docstring)."""
    from PIL import Image

    with Image.open(path) as img:
        orientation = img.getexif().get(0x0112, 1)
        header = _png_header(path) if img.format == "PNG" else None
        if header is not None and header[0] == 16 and header[1] in (2, 4, 6):
            colour, alpha = _png16(path)
            result = Pixels(None, _planes(colour, channels),
                            alpha is not None and bool((alpha < 65535).any()))
        elif img.mode in SIXTEEN_BIT or (img.mode == "I" and img.format in SIXTEEN_BIT_AS_I):
            grey = np.asarray(img).astype(np.float32) * _TO_8BIT
            result = Pixels(None, _planes(grey, channels), False)
        elif img.mode in ("I", "F"):
            kind = "32-bit integer" if img.mode == "I" else "floating-point"
            raise UnreadableImageError(f"{kind} pixels (no agreed range)")
        elif img.format == "TIFF" and max(_bits_per_sample(img)) > 8:
            raise UnreadableImageError("16-bit colour TIFF (read only at 8 bits by PIL)")
        else:
            alpha = _alpha_of(img)
            source = img.convert("RGBA") if img.mode == "P" and alpha is not None else img
            try:
                converted = source.convert("L" if channels == 1 else "RGB")
            except ValueError:
                raise UnreadableImageError(f"mode {img.mode} cannot be converted") from None
            result = Pixels(converted, (), alpha is not None and bool((alpha < 255).any()))
        sixteen = header is not None and header[0] == 16
        is_colour = header[1] in (2, 6) if sixteen and header else img.mode not in _GREY_MODES
        result = replace(result, converted=_conversion(bool(is_colour), channels))
    method = _ORIENT.get(int(orientation)) if isinstance(orientation, int) else None
    if method is None:
        return result
    step = getattr(Image.Transpose, method)
    return replace(result, image=None if result.image is None else result.image.transpose(step),
                   planes=tuple(p.transpose(step) for p in result.planes))


def _bits_per_sample(img: Image.Image) -> tuple[int, ...]:
    tags = getattr(img, "tag_v2", None)
    value = tags.get(258, (8,)) if tags is not None else (8,)
    return tuple(int(v) for v in value) if isinstance(value, tuple | list) else (int(value),)
