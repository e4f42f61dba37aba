"""What "accuracy" means for an output: one small interface, one implementation per kind.

The paper measures how an ablation changes the network's output agreement with the labels. A
metric turns the unablated and perturbed outputs of a chunk (plus labels where there are any)
into additive counts (runtime.counts.SweepCounts), so the engine never branches on the output's
shape:

* ``classification`` — [N, K] class scores: accuracy against the labels (the unablated
  model's predictions where there are none), loss, agreement, KL. The default for [N, K].
* ``per-position`` — a class axis and positions besides it ([N, T, V] sequences, [N, K, H, W]
  maps, a detector's [N, 4 + C, A] anchors): argmax agreement per position, each position an
  item (accuracy = the share of positions whose class is unchanged); a detector's class scores
  alone where the graph concatenates boxes and Sigmoid scores. The default for rank ≥ 3 outputs
  with a class axis of 2 or more.
* ``relative`` — anything else (embeddings, regressors, one-channel maps): per sample
  1 − min(1, ‖o − o₀‖ / ‖o₀‖), the normalized L2 change against the unablated output o₀
  (1 unchanged, 0 changed by its own size or more); ``cosine``: max(0, cos(o, o₀)).

Counts per metric (what the report's curve fields hold): ``correct`` the score summed over
items; ``loss`` the cross-entropy (classification, per-position) or the squared relative
change ‖o − o₀‖² / ‖o₀‖² (relative, cosine), ``dloss_sq`` and ``dcorrect_sq`` the sums of
squared per-item changes of loss and score against the unablated run; ``agree`` agreement
with the unablated argmax (the score itself for relative, cosine); ``kl`` KL(unablated ‖
perturbed) per item, or 1 − cos for relative and cosine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from sdaudit.errors import BadFlagError, DataError, ModelError

if TYPE_CHECKING:
    from sdaudit.runtime.counts import SweepCounts

METRICS = ("auto", "classification", "per-position", "relative", "cosine")
_TINY = 1e-12


@dataclass(frozen=True)
class Reference:
    """The unablated output of one chunk, as a metric compares against it."""

    pred: np.ndarray  # [items] argmax classes (zeros for relative / cosine)
    logp: np.ndarray  # [items, K] log-probabilities ([items, 1] zeros for relative / cosine)
    flat: np.ndarray | None = None  # [n, D] float64 outputs (relative / cosine)


def _log_probs(out: np.ndarray, probabilities: bool) -> np.ndarray:
    if probabilities:
        return np.log(np.clip(out.astype(np.float64), _TINY, None))
    z = out.astype(np.float64)
    top = z.max(axis=-1, keepdims=True)
    return z - (top + np.log(np.exp(z - top).sum(axis=-1, keepdims=True)))


class Metric:
    """Interface: ``setup`` on the first chunk, then per chunk ``reference`` of the unablated
    output, ``targets`` (one class per item) and ``accumulate`` of perturbed outputs."""

    kind = "metric"
    probabilities = False
    classes = 0  # K of the counts' per-class arrays
    positions = 1  # items per sample

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind}

    def setup(self, out: np.ndarray, labels: np.ndarray) -> None:  # pragma: no cover
        raise NotImplementedError

    def items(self, out: np.ndarray) -> np.ndarray:
        """[n · positions, K] class scores, one row per item (classification, per-position)."""
        raise NotImplementedError  # pragma: no cover

    def reference(self, out: np.ndarray) -> Reference:
        scores = self.items(out)
        return Reference(np.argmax(scores, axis=1), _log_probs(scores, self.probabilities))

    def targets(self, labels: np.ndarray, ref: Reference) -> np.ndarray:
        """The class each item is scored against: the labels, else the unablated argmax."""
        if len(labels) and labels[0] >= 0 and self.positions == 1:
            return labels
        return ref.pred

    def per_sample(self, ref: Reference, targets: np.ndarray, n: int) -> tuple[np.ndarray,
                                                                              np.ndarray]:
        """Each sample's score and loss of the unablated run (for the unit statistics)."""
        hit = (ref.pred == targets).astype(np.float64).reshape(n, -1).mean(axis=1)
        loss = -ref.logp[np.arange(len(targets)), targets].reshape(n, -1).mean(axis=1)
        return hit, loss

    def accumulate(self, counts: SweepCounts, rows: np.ndarray, out: np.ndarray, g: int,
                   targets: np.ndarray, ref: Reference) -> None:
        """Add ``g`` configurations' outputs (``out`` [g · n, ...]) to ``counts`` rows ``rows``."""
        scores = self.items(out)
        m = len(targets)
        bad = _count_nonfinite(counts, rows, out, g)
        with np.errstate(invalid="ignore", over="ignore"):
            logp = _log_probs(scores, self.probabilities).reshape(g, m, -1)
        pred = np.argmax(scores, axis=1).reshape(g, m)
        if bad is not None:  # a non-finite output predicts nothing: wrong and unlike the reference
            pred[np.repeat(bad, m // bad.shape[1], axis=1)] = -1
        hit = pred == targets[None, :]
        if counts.hits is not None:  # per-item outcomes, for the intervals (runtime.moments)
            counts.hits[rows] = hit
        counts.correct[rows] += hit.sum(axis=1)
        loss = -logp[:, np.arange(m), targets]
        counts.loss[rows] += np.nansum(loss, axis=1)
        # the spread of per-item changes (standard errors of importance on a sample)
        counts.dloss_sq[rows] += np.nansum(
            (loss + ref.logp[np.arange(m), targets][None]) ** 2, axis=1)
        counts.dcorrect_sq[rows] += (hit != (ref.pred == targets)[None]).sum(axis=1)
        counts.agree[rows] += (pred == ref.pred[None, :]).sum(axis=1)
        base_p = np.exp(ref.logp)
        counts.kl[rows] += np.nansum(base_p[None] * (ref.logp[None] - logp), axis=(1, 2))
        k = counts.class_correct.shape[1]
        for i, row in enumerate(rows):
            counts.class_correct[row] += np.bincount(targets[hit[i]], minlength=k)[:k]


def _count_nonfinite(counts: SweepCounts, rows: np.ndarray, out: np.ndarray,
                     g: int) -> np.ndarray | None:
    """[g, n] samples whose output holds a NaN or an infinity, counted in ``counts.nonfinite``
    (None when there are none, the usual case)."""
    finite = np.isfinite(out.reshape(g, len(out) // g, -1))
    if finite.all():
        return None
    bad = ~finite.all(axis=2)
    if len(counts.nonfinite):
        counts.nonfinite[rows] += bad.sum(axis=1)
    return bad


def _is_probabilities(scores: np.ndarray) -> bool:
    finite = scores[np.isfinite(scores).all(axis=1)]
    return bool(len(finite) and finite.min() >= 0 and finite.max() <= 1
                and np.allclose(finite.sum(axis=1), 1.0, atol=1e-3))


class Classification(Metric):
    """[N, K] class scores."""

    kind = "classification"

    def __init__(self, output: str) -> None:
        self.output = output

    def setup(self, out: np.ndarray, labels: np.ndarray) -> None:
        if out.ndim != 2:
            raise ModelError(f"output {self.output!r} has shape {list(out.shape)}; the "
                             "classification metric needs class scores [batch, classes]",
                             "leave --metric at auto, or choose --metric per-position/relative")
        if out.shape[1] < 2:
            raise ModelError(f"output {self.output!r} has one column: not a classifier",
                             "use --metric relative")
        self.classes = out.shape[1]
        if len(labels) and labels.max() >= out.shape[1]:
            raise DataError(
                f"labels go up to {int(labels.max())} but the model has {out.shape[1]} classes",
                "labels must be class indices in the model's output order")
        self.probabilities = _is_probabilities(out)

    def items(self, out: np.ndarray) -> np.ndarray:
        return out


class PerPosition(Metric):
    """Argmax agreement at every position of an output with a class axis."""

    kind = "per-position"

    def __init__(self, output: str, axis: int, scores: slice | None = None) -> None:
        self.output, self.axis, self.scores = output, axis, scores

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "class_axis": self.axis,
                             "positions": self.positions}
        if self.scores is not None:
            d["class_channels"] = [self.scores.start, self.scores.stop]
        return d

    def setup(self, out: np.ndarray, labels: np.ndarray) -> None:  # noqa: ARG002
        if out.ndim < 2 or not 0 < self.axis < out.ndim:
            raise BadFlagError(f"--class-axis {self.axis} is not an axis of output "
                               f"{self.output!r} {list(out.shape)} (batch is axis 0)",
                               f"choose 1 to {out.ndim - 1}")
        k = len(range(out.shape[self.axis])[self.scores or slice(None)])
        if k < 2:
            raise ModelError(f"output {self.output!r} has {k} class along axis {self.axis}",
                             "choose --class-axis, or --metric relative")
        self.classes = k
        self.positions = int(np.prod(out.shape[1:])) // out.shape[self.axis]
        self.probabilities = _is_probabilities(self.items(out[:4]))

    def items(self, out: np.ndarray) -> np.ndarray:
        moved = np.moveaxis(out, self.axis, -1)
        if self.scores is not None:
            moved = moved[..., self.scores]
        return moved.reshape(-1, moved.shape[-1])


class RelativeChange(Metric):
    """Normalized L2 change (``relative``) or cosine similarity (``cosine``) per sample."""

    kind = "relative"

    def __init__(self, output: str, cosine: bool = False) -> None:
        self.output = output
        self.kind = "cosine" if cosine else "relative"
        self.classes = 1

    def setup(self, out: np.ndarray, labels: np.ndarray) -> None:  # noqa: ARG002
        if out.ndim < 1 or not np.issubdtype(out.dtype, np.floating):
            raise ModelError(f"output {self.output!r} is not a float tensor",
                             "choose a float output with --output")

    def reference(self, out: np.ndarray) -> Reference:
        n = len(out)
        return Reference(np.zeros(n, np.int64), np.zeros((n, 1)),
                         out.reshape(n, -1).astype(np.float64))

    def targets(self, labels: np.ndarray, ref: Reference) -> np.ndarray:  # noqa: ARG002
        return ref.pred  # one class: the measure needs no labels

    def _scores(self, flat: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, ...]:
        diff = np.sum((flat - ref[None]) ** 2, axis=2)
        size = np.sum(ref**2, axis=1)[None]
        rel2 = diff / np.maximum(size, _TINY)
        cos = np.sum(flat * ref[None], axis=2) / np.maximum(
            np.sqrt(np.sum(flat**2, axis=2) * size), _TINY)
        score = np.maximum(cos, 0.0) if self.kind == "cosine" else \
            1.0 - np.minimum(1.0, np.sqrt(rel2))
        return score, rel2, 1.0 - cos

    def per_sample(self, ref: Reference, targets: np.ndarray,  # noqa: ARG002
                   n: int) -> tuple[np.ndarray, np.ndarray]:  # noqa: ARG002
        if ref.flat is None:  # pragma: no cover - reference always sets it
            raise ValueError("no reference output")
        score, rel2, _ = self._scores(ref.flat[None], ref.flat)
        return score[0], rel2[0]

    def accumulate(self, counts: SweepCounts, rows: np.ndarray, out: np.ndarray, g: int,
                   targets: np.ndarray, ref: Reference) -> None:  # noqa: ARG002
        if ref.flat is None:  # pragma: no cover - reference always sets it
            raise ValueError("no reference output")
        n = len(ref.flat)
        bad = _count_nonfinite(counts, rows, out, g)
        flat = out.reshape(g, n, -1).astype(np.float64)
        if bad is not None:  # changed by more than its own size: score 0, relative change 1
            flat[bad] = 0.0
        with np.errstate(invalid="ignore", over="ignore"):
            score, rel2, one_minus_cos = self._scores(flat, ref.flat)
        if counts.hits is not None:  # per-item outcomes, for the intervals (runtime.moments)
            counts.hits[rows] = score
        counts.correct[rows] += score.sum(axis=1)
        counts.agree[rows] += score.sum(axis=1)
        counts.loss[rows] += rel2.sum(axis=1)
        counts.dloss_sq[rows] += (rel2**2).sum(axis=1)  # the unablated change is 0
        counts.dcorrect_sq[rows] += ((1.0 - score) ** 2).sum(axis=1)
        counts.kl[rows] += one_minus_cos.sum(axis=1)
        counts.class_correct[rows, 0] += score.sum(axis=1)


def choose_metric(requested: str, output: str, shape: tuple[Any, ...] | None,
                  class_axis: int | None, class_channels: slice | None) -> Metric:
    """The metric for an output of ``shape`` (None: unknown): ``requested`` unless "auto".

    Auto: rank 2 with K > 1 → classification; rank ≥ 3 with a class axis (``class_axis``, from
    the graph or the flag) of two or more classes → per-position; anything else → relative.
    """
    if requested not in METRICS:
        raise BadFlagError(f"--metric {requested!r}", f"choose one of {', '.join(METRICS)}")
    rank = len(shape) if shape is not None else None
    if requested == "classification":
        return Classification(output)
    if requested in ("relative", "cosine"):
        return RelativeChange(output, cosine=requested == "cosine")
    if requested == "per-position":
        if rank is not None and rank < 3 and class_axis is None:
            raise BadFlagError(f"--metric per-position needs positions: output {output!r} has "
                               f"rank {rank}", "use --metric classification")
        return PerPosition(output, class_axis if class_axis is not None else
                           (rank - 1 if rank == 3 else 1), class_channels)
    if rank == 2 and class_axis in (None, 1):
        k = shape[1] if shape is not None else None
        return Classification(output) if not isinstance(k, int) or k > 1 else \
            RelativeChange(output)
    if rank is not None and rank >= 3 and class_axis is not None:
        k = shape[class_axis] if shape is not None and 0 < class_axis < rank else None
        width = (len(range(k)[class_channels]) if isinstance(k, int) and class_channels
                 else k)
        if not isinstance(width, int) or width > 1:
            return PerPosition(output, class_axis, class_channels)
    return RelativeChange(output)
