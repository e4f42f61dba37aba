"""A seeded, stratified sample of any data source, chosen while streaming.

Within each class, samples are taken systematically at the rate ``size / N`` from a random
start drawn per class from the seed: sample *j* of class *c* (in stream order) is kept when
``⌊(j + 1)·r + u_c⌋ > ⌊j·r + u_c⌋``. Each class keeps its share of the sample (to within one
sample), nothing needs the labels in advance, and the same seed gives the same sample.
Unlabelled data are one stratum.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from sdaudit.data.base import Dataset, SkipLog


class StratifiedSample:
    """About ``size`` of ``data``'s samples (see the module). Pre: 0 < size < data.num_samples."""

    def __init__(self, data: Dataset, size: int, seed: int) -> None:
        if not 0 < size < data.num_samples:
            from sdaudit.errors import InternalError

            raise InternalError(f"a sample of {size} from {data.num_samples} samples")
        self.inner = data
        self.rate = size / data.num_samples
        self.seed = seed
        self.path = data.path
        self.kind = data.kind
        self.num_samples = size  # announced; the classes' rounding moves it by at most one each
        self.class_names = data.class_names
        self.labelled = data.labelled
        self.skipped: SkipLog = data.skipped

    def _start(self, label: int) -> float:
        return float(np.random.default_rng([self.seed, label + 1]).random())

    def chunks(self, size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        seen: dict[int, int] = {}
        starts: dict[int, float] = {}
        xs: list[np.ndarray] = []
        ys: list[np.ndarray] = []
        held = 0
        for x, y in self.inner.chunks(size):
            keep = np.zeros(len(y), dtype=bool)
            for i, label in enumerate(y.tolist()):
                j = seen.get(label, 0)
                u = starts.setdefault(label, self._start(label))
                keep[i] = math.floor((j + 1) * self.rate + u) > math.floor(j * self.rate + u)
                seen[label] = j + 1
            if keep.any():
                xs.append(x[keep])
                ys.append(y[keep])
                held += int(keep.sum())
            while held >= size:
                x_all, y_all = np.concatenate(xs), np.concatenate(ys)
                yield x_all[:size], y_all[:size]
                xs, ys = [x_all[size:]], [y_all[size:]]
                held -= size
        if held:
            yield np.concatenate(xs), np.concatenate(ys)

    def describe(self) -> dict[str, object]:
        return self.inner.describe()


class FirstChunks:
    """The first ``samples`` samples of ``data`` (``--dry-run`` calibrates on them)."""

    def __init__(self, data: Dataset, samples: int) -> None:
        self.inner = data
        self.path = data.path
        self.kind = data.kind
        self.num_samples = min(samples, data.num_samples)
        self.class_names = data.class_names
        self.labelled = data.labelled
        self.skipped: SkipLog = data.skipped

    def chunks(self, size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        left = self.num_samples
        for x, y in self.inner.chunks(size):
            if left <= 0:
                return
            yield x[:left], y[:left]
            left -= len(y)

    def describe(self) -> dict[str, object]:
        return self.inner.describe()
