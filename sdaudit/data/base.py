"""The interface every data source implements."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class InputLayout:
    """What the model's (single) input expects."""

    name: str
    shape: tuple[int, ...]  # per-sample shape (batch dimension dropped)
    dtype: str  # numpy dtype name
    channels_last: bool = False

    @property
    def image_size(self) -> tuple[int, int] | None:
        """(height, width) for image inputs, None for anything else."""
        if len(self.shape) != 3:
            return None
        return (self.shape[0], self.shape[1]) if self.channels_last else self.shape[1:3]

    @property
    def channels(self) -> int | None:
        if len(self.shape) != 3:
            return None
        return self.shape[2] if self.channels_last else self.shape[0]


@dataclass(frozen=True)
class Preprocess:
    """How images become model input: x = (pixel · scale − mean) / std, per channel."""

    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    def to_dict(self) -> dict[str, object]:
        return {"scale": self.scale, "mean": list(self.mean), "std": list(self.std)}


@dataclass
class SkipLog:
    """Samples that could not be read: counted, and the first few named."""

    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, what: str) -> None:
        self.count += 1
        if len(self.examples) < 5:
            self.examples.append(what)


class Dataset(Protocol):
    """A finite, re-iterable, deterministic stream of (x, y) chunks."""

    path: str
    kind: str
    num_samples: int  # as announced before reading (files found, rows in the array)
    class_names: tuple[str, ...] | None
    skipped: SkipLog

    def chunks(self, size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (x, y) with x in the model's layout and dtype, y int64 class indices."""
        ...

    def describe(self) -> dict[str, object]:
        ...
