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


@dataclass
class SkipLog:
    """Samples that could not be read: counted, and the first few named."""

    count: int = 0
    examples: list[str] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)  # why, with how many files each

    def add(self, what: str, reason: str = "unreadable") -> None:
        self.count += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
        if len(self.examples) < 5:
            self.examples.append(what)

    def summary(self) -> str:
        """': N files skipped (why, e.g. the first)', or '' when nothing was skipped."""
        if not self.count:
            return ""
        why = ", ".join(f"{n} {reason}" for reason, n in self.reasons.items())
        first = f", e.g. {self.examples[0]!r}" if self.examples else ""
        return f": {self.count} files skipped ({why}{first})"


@dataclass(frozen=True)
class Sampling:
    """A seeded choice of samples: at most ``max_samples``, at most ``per_class`` of each class."""

    max_samples: int | None = None
    per_class: int | None = None
    seed: int = 0

    @property
    def active(self) -> bool:
        return self.max_samples is not None or self.per_class is not None

    def choose(self, labels: np.ndarray | None, n: int) -> np.ndarray:
        """Sorted indices of the chosen samples (stratified by class where labels are known)."""
        from sdaudit.errors import BadFlagError

        rng = np.random.default_rng(self.seed)
        chosen = np.arange(n)
        if self.per_class is not None:
            if labels is None:
                raise BadFlagError("--samples-per-class needs labelled data",
                                   "use --max-samples for unlabelled data")
            picks = []
            for c in np.unique(labels):
                members = np.flatnonzero(labels == c)
                take = min(self.per_class, len(members))
                picks.append(np.sort(rng.choice(members, size=take, replace=False)))
            chosen = np.sort(np.concatenate(picks)) if picks else chosen[:0]
        if self.max_samples is not None and len(chosen) > self.max_samples:
            if labels is None:
                chosen = np.sort(rng.choice(chosen, size=self.max_samples, replace=False))
            else:
                # Stratified: each class keeps its share, rounded, then trimmed at random.
                sub = labels[chosen]
                keep = []
                for c in np.unique(sub):
                    members = chosen[sub == c]
                    share = max(1, round(self.max_samples * len(members) / len(chosen)))
                    keep.append(rng.choice(members, size=min(share, len(members)), replace=False))
                picked = np.concatenate(keep)
                if len(picked) > self.max_samples:
                    picked = rng.choice(picked, size=self.max_samples, replace=False)
                chosen = np.sort(picked)
        return chosen

    def to_dict(self) -> dict[str, object]:
        return {"max_samples": self.max_samples, "samples_per_class": self.per_class,
                "seed": self.seed}


class Dataset(Protocol):
    """A finite, re-iterable, deterministic stream of (x, y) chunks; y = -1 where unlabelled."""

    path: str
    kind: str
    num_samples: int  # as announced before reading (files found, rows in the array)
    class_names: tuple[str, ...] | None
    labelled: bool
    skipped: SkipLog

    def chunks(self, size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (x, y) with x in the model's layout and dtype, y int64 class indices."""
        ...

    def describe(self) -> dict[str, object]:
        ...
