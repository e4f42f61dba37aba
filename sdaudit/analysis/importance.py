"""Single-unit importance from additive counts, with its uncertainty where it rests on a sample.

For unit *i* and sample *s*, ``d_is`` = (loss with *i* ablated − unablated loss) on *s*; the
importance is the mean of ``d_is`` over the data (and likewise the accuracy drop, from the
per-sample change of correctness). Measured on a sample of ``n`` of the ``N`` samples, its
standard error is that of a mean drawn without replacement:

    se_i = s_i / √n · √(1 − n / N),   s_i² = Σ_s (d_is − d̄_i)² / (n − 1)

(the finite-population correction makes it 0 when the sample is all the data). The sample is
stratified by class (proportional allocation), which makes this formula a slight overestimate:
it ignores the variance stratification removes. The interval is d̄ ± t₀.₉₇₅(n − 1) · se.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sdaudit.analysis.curves import t975


@dataclass(frozen=True)
class ImportanceEstimate:
    """Per-unit importance over one set of units (arrays [U]) and the samples it rests on."""

    accuracy_drop: np.ndarray
    loss_rise: np.ndarray
    accuracy_drop_se: np.ndarray
    loss_rise_se: np.ndarray
    loss_rise_ci_low: np.ndarray
    loss_rise_ci_high: np.ndarray
    samples: int  # n: samples the numbers rest on
    population: int  # N: samples of the data


def estimate(correct: np.ndarray, loss: np.ndarray, dloss_sq: np.ndarray,
             dcorrect_sq: np.ndarray, base_correct: float, base_loss: float, n: int,
             population: int) -> ImportanceEstimate:
    """From sums over ``n`` samples (each unit's, and the unablated model's on the same ones).

    Pre: 0 < n ≤ population. Post: every standard error is ≥ 0 and 0 where n = population."""
    if not 0 < n <= population:
        from sdaudit.errors import InternalError

        raise InternalError(f"importance on {n} of {population} samples")
    loss_rise = loss / n - base_loss / n
    acc_drop = base_correct / n - correct / n
    fpc = 1.0 - n / population

    def se(sq_sum: np.ndarray, mean: np.ndarray) -> np.ndarray:
        if n < 2 or fpc <= 0:
            return np.zeros_like(mean)
        var = np.maximum(sq_sum / n - mean**2, 0.0) * n / (n - 1)
        return np.sqrt(var / n * fpc)

    loss_se = se(dloss_sq, loss_rise)
    half = (t975(n - 1) if n > 1 else math.nan) * loss_se
    half = np.where(loss_se > 0, half, 0.0)
    return ImportanceEstimate(acc_drop, loss_rise, se(dcorrect_sq, -acc_drop), loss_se,
                              loss_rise - half, loss_rise + half, n, population)
