"""Image preprocessing: presets and explicit steps, one image at a time (PIL, then numpy)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from sdaudit.errors import BadFlagError

if TYPE_CHECKING:
    from PIL import Image

    from sdaudit.data.base import InputLayout
    from sdaudit.data.decode import Pixels

INTERPOLATIONS = ("bilinear", "bicubic", "lanczos", "nearest")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PRESETS = ("none", "imagenet")
MAX_RESIZED_PIXELS = 1 << 26  # 67 M pixels: past that one resized image takes > 800 MB in float


@dataclass(frozen=True)
class Preprocess:
    """How an image file becomes model input.

    1. decode; convert to RGB (or L for one-channel models); ``bgr`` reverses the channels;
    2. ``resize`` set: the shorter side to ``resize`` (aspect kept), then a centre crop to the
       model's input size (``crop``, where the model leaves the size open); otherwise a direct
       resize to the model's input size;
    3. x = (pixel · scale − mean) / std, per channel in the model's channel order.
    """

    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    resize: int | None = None
    crop: int | None = None
    bgr: bool = False
    interpolation: str = "bilinear"
    preset: str = "none"

    def to_dict(self) -> dict[str, object]:
        return {"preset": self.preset, "scale": self.scale, "mean": list(self.mean),
                "std": list(self.std), "resize": self.resize, "crop": self.crop, "bgr": self.bgr,
                "interpolation": self.interpolation}

    def check(self, layout: InputLayout) -> None:
        channels = layout.channels or 1
        for name, values in (("--mean", self.mean), ("--std", self.std)):
            if len(values) not in (1, channels):
                if self.preset != "none" and channels == 1:
                    raise BadFlagError(
                        f"--preset {self.preset} is for RGB models; this model takes 1 channel",
                        "use --preset none, with --mean and --std for its one channel",
                    )
                raise BadFlagError(
                    f"{name} has {len(values)} values; the model takes {channels} "
                    f"channel{'s' if channels > 1 else ''}",
                    "give one value" if channels == 1 else f"give 1 or {channels} comma-separated values",
                )
        if any(s == 0 for s in self.std):
            raise BadFlagError("--std contains 0", "standard deviations must be non-zero")
        if not 0 < self.scale < float("inf"):
            raise BadFlagError("--scale must be positive", "e.g. --scale 0.00392 (1/255)")
        if self.interpolation not in INTERPOLATIONS:
            raise BadFlagError(f"--interpolation {self.interpolation!r}",
                               f"choose one of {', '.join(INTERPOLATIONS)}")
        size = layout.image_size
        if self.resize is not None and self.resize**2 > MAX_RESIZED_PIXELS:
            raise BadFlagError(
                f"--resize {self.resize} makes images of at least {self.resize}×{self.resize} "
                "pixels", f"the shorter side takes at most {math.isqrt(MAX_RESIZED_PIXELS)}")
        if self.resize is not None and size is not None and self.resize < min(size):
            raise BadFlagError(
                f"--resize {self.resize} is smaller than the model's input {size[0]}×{size[1]}",
                "the shorter side must be at least the crop size",
            )
        if self.crop is not None and size is not None and (self.crop, self.crop) != tuple(size):
            raise BadFlagError(
                f"--crop {self.crop} differs from the model's input size {size[0]}×{size[1]}",
                "drop --crop: the model's own input size is used",
            )


def preset(name: str, layout: InputLayout) -> Preprocess:
    """``imagenet``: shorter side 256, centre crop 224 (scaled by 256/224 for other input
    sizes), RGB, /255, ImageNet mean and std. ``none``: /255, a direct resize, nothing else."""
    if name == "none":
        return Preprocess()
    if name == "imagenet":
        size = layout.image_size
        side = min(size) if size else 224
        return Preprocess(1 / 255, IMAGENET_MEAN, IMAGENET_STD, resize=round(side * 256 / 224),
                          crop=None if size else 224, preset="imagenet")
    raise BadFlagError(f"--preset {name!r}", f"choose one of {', '.join(PRESETS)}")


def with_overrides(base: Preprocess, **changes: Any) -> Preprocess:
    """The preset with the explicitly given flags on top (None: keep the preset's value)."""
    return replace(base, **{k: v for k, v in changes.items() if v is not None})


def _resample(name: str) -> int:
    from PIL import Image

    return {
        "bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
        "lanczos": Image.Resampling.LANCZOS, "nearest": Image.Resampling.NEAREST,
    }[name]


def _fit(img: Image.Image, pre: Preprocess, layout: InputLayout) -> Image.Image:
    """Step 2: resize (and centre-crop) one image or one channel plane to the model's input."""
    target = layout.image_size or (pre.crop, pre.crop)
    height, width = int(target[0] or img.height), int(target[1] or img.width)
    resample = _resample(pre.interpolation)
    if pre.resize is not None:
        w, h = img.size
        ratio = pre.resize / min(w, h)
        new = (max(width, round(w * ratio)), max(height, round(h * ratio)))
        if new[0] * new[1] > MAX_RESIZED_PIXELS:  # a panorama: its long side grows with --resize
            from sdaudit.data.decode import UnreadableImageError

            raise UnreadableImageError(f"{new[0]}×{new[1]} after --resize, past the "
                                       f"{MAX_RESIZED_PIXELS:,}-pixel limit")
        if new != img.size:
            img = img.resize(new, resample)
        left, top = (img.width - width) // 2, (img.height - height) // 2
        img = img.crop((left, top, left + width, top + height))
    elif img.size != (width, height):
        img = img.resize((width, height), resample)
    return img


def _normalize(arr: np.ndarray, pre: Preprocess, layout: InputLayout) -> np.ndarray:
    """Step 3 on [H, W, C] pixels on the 8-bit scale, then the model's layout."""
    if pre.bgr:
        arr = arr[:, :, ::-1]
    mean = np.asarray(pre.mean, dtype=np.float32)
    std = np.asarray(pre.std, dtype=np.float32)
    arr = (arr * np.float32(pre.scale) - mean) / std
    if not layout.channels_last:
        arr = arr.transpose(2, 0, 1)
    return np.ascontiguousarray(arr, dtype=np.float32)


def to_array(img: Image.Image, pre: Preprocess, layout: InputLayout) -> np.ndarray:
    """One decoded 8-bit image → one sample in the model's layout (float32)."""
    channels = layout.channels or 1
    arr = np.asarray(_fit(img.convert("L" if channels == 1 else "RGB"), pre, layout),
                     dtype=np.float32)
    return _normalize(arr[:, :, None] if arr.ndim == 2 else arr, pre, layout)


def pixels_to_array(pixels: Pixels, pre: Preprocess, layout: InputLayout) -> np.ndarray:
    """One image as :func:`sdaudit.data.decode.read_pixels` gives it → one sample: 8-bit images
    as :func:`to_array`; deeper ones plane by plane in float (no rounding to 8 bits)."""
    if pixels.image is not None:
        return to_array(pixels.image, pre, layout)
    arr = np.stack([np.asarray(_fit(p, pre, layout), dtype=np.float32) for p in pixels.planes],
                   axis=-1)
    return _normalize(arr, pre, layout)
