"""Summaries of sweep results: means with intervals, areas under curves, rank correlation."""

from __future__ import annotations

import math

import numpy as np

# Two-sided 95 % quantiles of Student's t for 1..30 degrees of freedom.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t975(dof: int) -> float:
    if dof < 1:
        return math.nan
    return _T975[dof - 1] if dof <= len(_T975) else 1.96


def mean_sd_ci(samples: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                            np.ndarray]:
    """Mean, sample s.d. and the 95 % t-interval of the mean along ``axis`` (draws)."""
    k = samples.shape[axis]
    mean = samples.mean(axis=axis)
    sd = samples.std(axis=axis, ddof=1) if k > 1 else np.zeros_like(mean)
    half = t975(k - 1) * sd / math.sqrt(k) if k > 1 else np.zeros_like(mean)
    return mean, sd, mean - half, mean + half


def normalized_auc(x: np.ndarray | list[float], y: np.ndarray | list[float],
                   reference: float) -> float:
    """Area under y/reference over x, divided by the span of x (trapezoids): 1.0 = no effect.

    With one point it is that point's normalized value. A reference of 0 gives NaN.
    """
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    if reference <= 0 or not np.isfinite(reference):
        return math.nan
    norm = ys / reference
    if len(xs) == 1:
        return float(norm[0])
    span = xs[-1] - xs[0]
    return float(np.sum((norm[1:] + norm[:-1]) * np.diff(xs) / 2.0) / span)


def _ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=np.float64)
    sorted_vals = values[order]
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and sorted_vals[j + 1] == sorted_vals[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def spearman(a: np.ndarray | list[float], b: np.ndarray | list[float]) -> float:
    """Spearman's ρ with average ranks for ties; NaN when either side is constant."""
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3:
        return math.nan
    rx, ry = _ranks(x), _ranks(y)
    if np.all(rx == rx[0]) or np.all(ry == ry[0]):
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])
