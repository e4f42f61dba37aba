"""The sweep's plain values: statistics and per-configuration counts that merge by addition.

A chunk × a set of configurations produces a :class:`PassResult`; two of them over different
chunks add up (``SweepCounts.merge``), so the unit of work can run anywhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sdaudit.analysis.intervals import ImageMoments

if TYPE_CHECKING:
    from sdaudit.analysis.configs import MomentSpec


@dataclass
class UnitStats:
    """Additive statistics of the unablated model over a data set (float64 sums)."""

    n: int
    correct: float
    loss: float
    class_counts: np.ndarray  # [K]
    class_correct: np.ndarray  # [K]
    unit_sum: np.ndarray  # [U] sums of spatial means
    unit_sumsq: np.ndarray  # [U] sums of squared spatial means
    unit_elem_sq: np.ndarray  # [U] sums of spatial means of squares
    unit_min: np.ndarray  # [U]
    unit_max: np.ndarray  # [U]
    class_sums: np.ndarray  # [K, U]
    nonfinite: int = 0

    @classmethod
    def zeros(cls, classes: int, units: int) -> UnitStats:
        k, u = classes, units
        return cls(0, 0.0, 0.0, np.zeros(k), np.zeros(k), np.zeros(u), np.zeros(u),
                   np.zeros(u), np.full(u, np.inf), np.full(u, -np.inf), np.zeros((k, u)))

    def add(self, out: np.ndarray, pred: np.ndarray, logp: np.ndarray, y: np.ndarray,
            means: np.ndarray, sqmeans: np.ndarray) -> None:
        """Add one chunk: outputs, predictions, log-probabilities, labels, unit means."""
        finite = np.isfinite(out).all(axis=1)
        self.nonfinite += int((~finite).sum())
        loss = -logp[np.arange(len(y)), y]
        self.n += len(y)
        self.correct += float((pred == y).sum())
        self.loss += float(np.nansum(loss))
        np.add.at(self.class_counts, y, 1)
        np.add.at(self.class_correct, y, (pred == y).astype(np.float64))
        self.unit_sum += means.sum(axis=0)
        self.unit_sumsq += (means**2).sum(axis=0)
        self.unit_elem_sq += sqmeans.sum(axis=0)
        self.unit_min = np.minimum(self.unit_min, means.min(axis=0))
        self.unit_max = np.maximum(self.unit_max, means.max(axis=0))
        np.add.at(self.class_sums, y, means)

    def merge(self, other: UnitStats) -> UnitStats:
        """The statistics of both parts' samples (sums add; minima and maxima combine)."""
        return UnitStats(self.n + other.n, self.correct + other.correct, self.loss + other.loss,
                         self.class_counts + other.class_counts,
                         self.class_correct + other.class_correct, self.unit_sum + other.unit_sum,
                         self.unit_sumsq + other.unit_sumsq,
                         self.unit_elem_sq + other.unit_elem_sq,
                         np.minimum(self.unit_min, other.unit_min),
                         np.maximum(self.unit_max, other.unit_max),
                         self.class_sums + other.class_sums, self.nonfinite + other.nonfinite)

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else math.nan

    @property
    def mean(self) -> np.ndarray:
        return self.unit_sum / max(self.n, 1)

    @property
    def sd(self) -> np.ndarray:
        """s.d. over samples of each unit's spatial mean."""
        return np.sqrt(np.maximum(self.unit_sumsq / max(self.n, 1) - self.mean**2, 0.0))

    @property
    def elem_sd(self) -> np.ndarray:
        """s.d. over samples and positions of each unit's activation (scales the noise)."""
        return np.sqrt(np.maximum(self.unit_elem_sq / max(self.n, 1) - self.mean**2, 0.0))


@dataclass
class SweepCounts:
    """Per-configuration counts; ``merge`` adds two of them (chunks, machines)."""

    n: int
    correct: np.ndarray  # [M]
    loss: np.ndarray  # [M]
    agree: np.ndarray  # [M] predictions equal to the unperturbed model's
    kl: np.ndarray  # [M] KL(unperturbed output ‖ perturbed output), summed over samples (nats)
    class_correct: np.ndarray  # [M, K]
    class_counts: np.ndarray  # [K]
    # [M] Σ over samples of (perturbed − unperturbed)² of the loss and of correctness: the
    # spread of per-sample changes (standard errors of importance on a sample of the data)
    dloss_sq: np.ndarray = field(default_factory=lambda: np.zeros(0))
    dcorrect_sq: np.ndarray = field(default_factory=lambda: np.zeros(0))
    # [M] samples whose perturbed output held a NaN or an infinity (an ablated unit divided
    # by, say): they count as wrong and unlike the unperturbed model, and a note says so
    nonfinite: np.ndarray = field(default_factory=lambda: np.zeros(0))
    # Scratch of the chunk being counted, not a count: its per-image hits [M, n], set by the
    # engine while a sweep keeps image moments (runtime.moments), filled in by ``accumulate``.
    hits: np.ndarray | None = field(default=None, repr=False, compare=False)

    @classmethod
    def zeros(cls, configs: int, classes: int) -> SweepCounts:
        return cls(0, np.zeros(configs), np.zeros(configs), np.zeros(configs), np.zeros(configs),
                   np.zeros((configs, classes)), np.zeros(classes), np.zeros(configs),
                   np.zeros(configs), np.zeros(configs))

    def merge(self, other: SweepCounts) -> SweepCounts:
        return SweepCounts(self.n + other.n, self.correct + other.correct, self.loss + other.loss,
                           self.agree + other.agree, self.kl + other.kl,
                           self.class_correct + other.class_correct,
                           self.class_counts + other.class_counts,
                           self.dloss_sq + other.dloss_sq, self.dcorrect_sq + other.dcorrect_sq,
                           self.nonfinite + other.nonfinite)

    def take(self, rows: np.ndarray) -> SweepCounts:
        """The counts of configurations ``rows`` (repeats allowed)."""
        return SweepCounts(self.n, self.correct[rows], self.loss[rows], self.agree[rows],
                           self.kl[rows], self.class_correct[rows], self.class_counts,
                           self.dloss_sq[rows], self.dcorrect_sq[rows], self.nonfinite[rows])

    def to_dict(self) -> dict[str, Any]:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in vars(self).items()
                if k != "hits"}


@dataclass(frozen=True)
class Configs:
    """Configurations of one sweep: rows over the pooled units of the selected layers.

    ``masks`` [M, U] for the mask-only suffix (row 0 must be all ones: the unperturbed model,
    whose predictions define agreement); ``noise_sd`` [Q, U] for the noise suffix.
    """

    masks: np.ndarray
    noise_sd: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    # [Q] the draw of each noise row: rows of one draw share one standard-normal draw per chunk
    # (common random numbers across noise levels). None: every row its own draw.
    noise_draw: np.ndarray | None = None


@dataclass(frozen=True)
class HistSpec:
    """Equal-width bins of each unit's spatial mean between ``lo`` and ``hi`` (per unit)."""

    lo: np.ndarray
    hi: np.ndarray
    bins: int


@dataclass
class PassResult:
    """What one pass over the data produced (each part only where it was asked for)."""

    stats: UnitStats | None = None
    hist: np.ndarray | None = None  # [U, bins, K] counts
    mask_counts: SweepCounts | None = None
    noise_counts: SweepCounts | None = None
    # per curve of the moment specs given: image moments of its area and points (intervals)
    mask_moments: dict[str, ImageMoments] = field(default_factory=dict)
    noise_moments: dict[str, ImageMoments] = field(default_factory=dict)

    def merge(self, other: PassResult) -> PassResult:
        """Both parts together (``self`` first: float sums are added in the order merged)."""
        def both(a: Any, b: Any, add: Callable[[Any, Any], Any]) -> Any:
            return b if a is None else a if b is None else add(a, b)

        def moments(a: dict[str, ImageMoments],
                    b: dict[str, ImageMoments]) -> dict[str, ImageMoments]:
            return {**a, **{k: a[k].merge(v) if k in a else v for k, v in b.items()}}

        return PassResult(both(self.stats, other.stats, UnitStats.merge),
                          both(self.hist, other.hist, np.add),
                          both(self.mask_counts, other.mask_counts, SweepCounts.merge),
                          both(self.noise_counts, other.noise_counts, SweepCounts.merge),
                          moments(self.mask_moments, other.mask_moments),
                          moments(self.noise_moments, other.noise_moments))

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Every number, by name (``part.field``): what a checkpoint stores (no pickles)."""
        out: dict[str, np.ndarray] = {}
        for part in ("stats", "mask_counts", "noise_counts"):
            value = getattr(self, part)
            if value is not None:
                for name, v in vars(value).items():
                    if name != "hits":  # a chunk's scratch, not a count
                        out[f"{part}.{name}"] = np.asarray(v)
        for part in ("mask_moments", "noise_moments"):
            for curve, m in getattr(self, part).items():
                for name, v in vars(m).items():
                    out[f"{part}|{curve}|{name}"] = np.asarray(v)
        if self.hist is not None:
            out["hist"] = self.hist
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> PassResult:
        """The inverse of :meth:`to_arrays` (scalars come back as Python numbers)."""
        def part(name: str, kind: type[Any]) -> Any:
            fields = {k.split(".", 1)[1]: v for k, v in arrays.items()
                      if k.startswith(name + ".")}
            if not fields:
                return None
            return kind(**{k: (v.item() if v.ndim == 0 else v) for k, v in fields.items()})

        def moments(name: str) -> dict[str, ImageMoments]:
            curves: dict[str, dict[str, Any]] = {}
            for k, v in arrays.items():
                if k.startswith(name + "|"):
                    _, curve, field_name = k.split("|")
                    curves.setdefault(curve, {})[field_name] = v.item() if v.ndim == 0 else v
            return {curve: ImageMoments(**fields) for curve, fields in curves.items()}

        return cls(part("stats", UnitStats), arrays.get("hist"),
                   part("mask_counts", SweepCounts), part("noise_counts", SweepCounts),
                   moments("mask_moments"), moments("noise_moments"))


@dataclass(frozen=True)
class Work:
    """The configuration set of one pass: what every unit of work of the pass does to its chunk.

    ``configs`` holds distinct mask rows (row 0 all ones); ``pass_id`` numbers the passes of
    one audit, ``samples`` is the pass's data size (pruning weighs its saving against it)."""

    pass_id: int
    samples: int
    stats: bool = False
    hist: HistSpec | None = None
    configs: Configs | None = None
    unit_mean: np.ndarray | None = None
    # curves whose per-image moments to keep (over the distinct rows: runtime.moments.remap)
    moments: MomentSpec | None = None
    noise_moments: MomentSpec | None = None
    observe: bool = False  # return the unperturbed outputs, unit means, labels, log-probabilities

    @property
    def rows_per_sample(self) -> int:
        """Runs per sample: the unperturbed one and one per configuration."""
        c = self.configs
        return 1 + (0 if c is None else len(c.masks) + len(c.noise_sd))


@dataclass(frozen=True)
class UnitResult:
    """The counts of one unit of work (one chunk under one pass's configuration set)."""

    index: int  # the chunk's place in the data: results merge in this order
    counts: PassResult
    samples: int
    rates: dict[str, Any]  # seconds per sample: prefix, statistics run, per configuration;
    # per distinct mask row and noise row on this chunk (row_s, noise_row_s)
    probabilities: bool  # the model's output read as probabilities (else logits)
    num_classes: int
    resumed: bool = False  # read back from a checkpoint, not run
    # with ``Work.observe``: (outputs, unit means [n, U], labels or predictions, log-probabilities)
    observed: tuple[np.ndarray, ...] | None = None
    positions: int = 1  # items per sample of the metric (per-position outputs: T, H·W, anchors)


def unique_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows in order of first appearance, and for each row the index of its twin."""
    if len(rows) == 0:
        return rows, np.zeros(0, dtype=np.int64)
    _, first, inverse = np.unique(rows, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first)  # unique rows as they first appear: row 0 stays first
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rows[first[order]], rank[inverse.reshape(-1)]
