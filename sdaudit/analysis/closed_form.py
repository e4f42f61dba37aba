"""Single-unit importance in closed form, where the suffix is linear in the layer.

With ``logits = pooled @ M + b`` (see :mod:`sdaudit.model.linear_head`), ablating unit *i* alone
(its activation clamped to ``fill_i``: 0, or its mean) gives, for every sample,

    logits⁽ⁱ⁾ = logits − (pooled_i − fill_i) · M[i]

exactly: no suffix run per unit. The counts are those the engine keeps for a masked run
(correct, loss, agreement, KL, per-class correct) plus the per-sample squared changes of loss
and correctness, so the two add up the same way and give the same report.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Units per block: a block holds [samples, units, classes] float64 values, about 32 MB.
BLOCK_BYTES = 32 << 20
# The head read from the graph must reproduce the model's output on the statistics run within
# this (relative to the output's magnitude where it exceeds 1): float32 sums of a few thousand
# terms stay far below it, a wrongly read head (a transposed matrix, a missed scale) does not.
CHECK_TOL = 1e-3


@dataclass
class UnitCounts:
    """Additive per-unit counts of single-unit ablation over samples (float64 sums)."""

    n: int
    correct: np.ndarray  # [C]
    loss: np.ndarray  # [C]
    agree: np.ndarray  # [C]
    kl: np.ndarray  # [C]
    class_correct: np.ndarray  # [C, K]
    dloss_sq: np.ndarray  # [C] Σ (loss with the unit ablated − unablated loss)²
    dcorrect_sq: np.ndarray  # [C] Σ (correct with it ablated − correct unablated)²

    @classmethod
    def zeros(cls, units: int, classes: int) -> UnitCounts:
        z = np.zeros(units)
        return cls(0, z.copy(), z.copy(), z.copy(), z.copy(), np.zeros((units, classes)),
                   z.copy(), z.copy())


def _log_softmax(z: np.ndarray) -> np.ndarray:
    top = z.max(axis=-1, keepdims=True)
    return z - (top + np.log(np.exp(z - top).sum(axis=-1, keepdims=True)))


def head_logits(pooled: np.ndarray, matrix: np.ndarray, bias: np.ndarray) -> np.ndarray:
    return pooled.astype(np.float64) @ matrix + bias


def check_head(logits: np.ndarray, model_out: np.ndarray, softmax: bool) -> float:
    """The largest difference between the head's output and the model's, in units of the
    output's magnitude (≥ 1); the caller compares it with CHECK_TOL."""
    ref = model_out.astype(np.float64)
    mine = np.exp(_log_softmax(logits)) if softmax else logits
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    return float(np.abs(mine - ref).max(initial=0.0)) / scale


def accumulate(counts: UnitCounts, logits: np.ndarray, pooled: np.ndarray, matrix: np.ndarray,
               y: np.ndarray, base_logp: np.ndarray, fill: np.ndarray | None = None,
               probabilities: bool = False) -> None:
    """Add one chunk to ``counts``.

    ``logits`` [n, K]: the unablated logits (the model's output, or the head's own where the
    output is a softmax); ``pooled`` [n, C]: the layer's per-channel spatial means; ``y`` [n]:
    labels (or the unablated predictions); ``base_logp`` [n, K]: the unablated model's
    log-probabilities as the engine computed them (agreement and KL are against those);
    ``probabilities``: the model outputs probabilities, whose logs the engine clips at 1e-12.
    """
    n, k = logits.shape
    units = pooled.shape[1]
    z = logits.astype(np.float64)
    shift = pooled.astype(np.float64) - (0.0 if fill is None else fill.astype(np.float64))
    rows = np.arange(n)
    base_pred = np.argmax(base_logp, axis=1)
    base_p = np.exp(base_logp)
    base_loss = -base_logp[rows, y]
    base_hit = (base_pred == y).astype(np.float64)
    onehot = np.zeros((n, k))
    onehot[rows, y] = 1.0
    step = max(1, int(BLOCK_BYTES // max(n * k * 8, 1)))
    for lo in range(0, units, step):
        hi = min(units, lo + step)
        # [n, b, K]: every sample's logits with each unit of the block ablated alone
        zi = z[:, None, :] - shift[:, lo:hi, None] * matrix[None, lo:hi, :]
        logp = _log_softmax(zi)
        if probabilities:
            logp = np.log(np.clip(np.exp(logp), 1e-12, None))
        pred = np.argmax(zi, axis=2)  # [n, b]
        hit = pred == y[:, None]
        loss = -logp[rows, :, y]  # [n, b]
        counts.correct[lo:hi] += hit.sum(axis=0)
        counts.loss[lo:hi] += np.nansum(loss, axis=0)
        counts.agree[lo:hi] += (pred == base_pred[:, None]).sum(axis=0)
        counts.kl[lo:hi] += np.nansum(base_p[:, None, :] * (base_logp[:, None, :] - logp),
                                      axis=(0, 2))
        counts.dloss_sq[lo:hi] += np.nansum((loss - base_loss[:, None]) ** 2, axis=0)
        counts.dcorrect_sq[lo:hi] += ((hit - base_hit[:, None]) ** 2).sum(axis=0)
        counts.class_correct[lo:hi] += hit.T.astype(np.float64) @ onehot
    counts.n += n
