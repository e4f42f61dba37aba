"""Class selectivity (Morcos et al. 2018, eq. 1) and mutual information with the class."""

from __future__ import annotations

import numpy as np


def class_means(class_sums: np.ndarray, class_counts: np.ndarray) -> np.ndarray:
    """[K, U] class-conditional means of each unit over the classes that have samples."""
    present = class_counts > 0
    return class_sums[present] / class_counts[present, None]


def selectivity_index(means: np.ndarray, eps: float = 1e-7,
                      shift: np.ndarray | None = None) -> np.ndarray:
    """SI = (μmax − μ−max) / (μmax + μ−max + ε) per unit.

    ``means`` is [K, U] (class-conditional means, K ≥ 2). μ−max is the mean of the other K−1
    class means. Post-ReLU units give SI in [0, 1]; dead units give 0 (the ε). ``shift`` (per unit)
    is subtracted first: for units that take negative values the index is computed on the
    activation minus its minimum, so that it stays in [0, 1].
    """
    if means.ndim != 2 or means.shape[0] < 2:
        raise ValueError("selectivity needs class means of at least two classes")
    m = means.astype(np.float64)
    if shift is not None:
        m = m - shift[None, :]
    k = m.shape[0]
    top = m.max(axis=0)
    rest = (m.sum(axis=0) - top) / (k - 1)
    return (top - rest) / (top + rest + eps)


def mutual_information(hist: np.ndarray) -> np.ndarray:
    """I(activation bin; class) in bits, per unit, from joint counts ``hist`` [U, B, K]."""
    h = hist.astype(np.float64)
    n = h.sum(axis=(1, 2), keepdims=True)
    n[n == 0] = 1.0
    p = h / n
    pb = p.sum(axis=2, keepdims=True)
    pk = p.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log2(p / (pb * pk)), 0.0)
    return np.maximum(terms.sum(axis=(1, 2)), 0.0)


def bin_index(values: np.ndarray, lo: np.ndarray, hi: np.ndarray, bins: int) -> np.ndarray:
    """Equal-width bins between each unit's min and max over the data; [n, U] → ints in [0, B)."""
    width = np.where(hi > lo, hi - lo, 1.0)
    idx = np.floor((values - lo) / width * bins).astype(np.int64)
    return np.clip(idx, 0, bins - 1)
