"""Intervals that account for both sources of variance of an ablation curve.

A curve's value at a point (or its area) averages an outcome ``v[i, d]`` over images ``i`` and
draws ``d`` (random unit permutations). The draws are crossed with the images: every image sees
every draw. Two things are random: which units a draw ablates, and which images stand for the
data the model was trained on. A t-interval over the draws sees only the first. Here the variance
of the mean is split the way a two-way analysis of variance without replication splits it:

    v[i, d] = μ + α_i + β_d + γ_id
    Var(mean) = σ_α²/n + (σ_β² + σ_γ²/n)/D

The second term is what the spread of the per-draw means estimates (``draw_var``); the first is
the image term, estimated from the per-image row means minus the interaction mean square
(``image_var``), so nothing is counted twice. Everything comes from sums that add over images
(:class:`ImageMoments`), so it streams in chunks and merges across machines like the counts.

The ablation AUC is a ratio (the curve normalized by the unablated accuracy of the same images);
its image term uses the delta method on ``z_i = ā_i − AUC · c0_i`` (c0: the unablated model's
outcome on image i).

Draws that come in batches (``--draws auto`` adds them in later passes over the data) keep one
:class:`ImageMoments` per batch: row means only exist within a batch, so the image term pools the
batches' estimates, each of which is unbiased.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sdaudit.analysis.curves import t975

Z975 = 1.959964  # the normal quantile the t-quantile tends to


@dataclass(frozen=True)
class ImageMoments:
    """Sums over images of S statistics over one batch of D draws (add by :meth:`merge`).

    ``col_sums[s, d] = Σ_i v[s, i, d]``, ``row_sq[s] = Σ_i (Σ_d v[s, i, d])²``,
    ``cell_sq[s] = Σ_i Σ_d v[s, i, d]²``, ``base_cross[s] = Σ_i c0_i Σ_d v[s, i, d]``,
    ``base_sum = Σ_i c0_i``, ``base_sq = Σ_i c0_i²``, ``n`` images.
    """

    n: int
    col_sums: np.ndarray  # [S, D]
    row_sq: np.ndarray  # [S]
    cell_sq: np.ndarray  # [S]
    base_cross: np.ndarray  # [S]
    base_sum: float
    base_sq: float

    @property
    def draws(self) -> int:
        return int(self.col_sums.shape[1])

    @classmethod
    def zeros(cls, statistics: int, draws: int) -> ImageMoments:
        return cls(0, np.zeros((statistics, draws)), np.zeros(statistics), np.zeros(statistics),
                   np.zeros(statistics), 0.0, 0.0)

    @classmethod
    def of(cls, values: np.ndarray, base: np.ndarray) -> ImageMoments:
        """The moments of ``values`` [S, D, n] (n images) with unablated outcomes ``base`` [n]."""
        v = np.asarray(values, dtype=np.float64)
        c0 = np.asarray(base, dtype=np.float64)
        if v.ndim != 3 or v.shape[2] != len(c0):
            raise ValueError(f"values {v.shape} do not match {len(c0)} images")
        rows = v.sum(axis=1)  # [S, n]
        return cls(len(c0), v.sum(axis=2), (rows**2).sum(axis=1), (v**2).sum(axis=(1, 2)),
                   rows @ c0, float(c0.sum()), float((c0**2).sum()))

    def merge(self, other: ImageMoments) -> ImageMoments:
        return ImageMoments(self.n + other.n, self.col_sums + other.col_sums,
                            self.row_sq + other.row_sq, self.cell_sq + other.cell_sq,
                            self.base_cross + other.base_cross, self.base_sum + other.base_sum,
                            self.base_sq + other.base_sq)

    def take(self, statistics: np.ndarray | slice) -> ImageMoments:
        return ImageMoments(self.n, self.col_sums[statistics], self.row_sq[statistics],
                            self.cell_sq[statistics], self.base_cross[statistics], self.base_sum,
                            self.base_sq)


@dataclass(frozen=True)
class Interval:
    """A mean with the two parts of its variance and its 95 % interval.

    ``low``/``high`` are None where the interval cannot be estimated (one draw: nothing tells
    how much another draw would differ); ``reason`` then says why.
    """

    mean: float
    draw_se: float | None  # s.e. from which units the draws ablate (None: one draw)
    image_se: float  # s.e. from which images were used
    dof: float
    low: float | None
    high: float | None
    draws: int
    reason: str = ""

    @property
    def se(self) -> float | None:
        return None if self.draw_se is None else math.hypot(self.draw_se, self.image_se)

    @property
    def half_width(self) -> float | None:
        if self.low is None or self.high is None:
            return None
        return (self.high - self.low) / 2.0


def t_quantile(dof: float) -> float:
    """Two-sided 95 % quantile of Student's t for real ``dof`` (interpolated in 1/dof)."""
    if not dof >= 1:
        return math.nan
    if math.isinf(dof):
        return Z975
    lo = math.floor(dof)
    if lo >= 30:
        # 1/dof interpolation between t(30) and the normal quantile: exact to ~1e-3
        return Z975 + (t975(30) - Z975) * 30.0 / dof
    hi = lo + 1
    w = (1 / lo - 1 / dof) / (1 / lo - 1 / hi) if dof > lo else 0.0
    return (1 - w) * t975(lo) + w * (t975(hi) if hi <= 30 else Z975 + (t975(30) - Z975) * 30 / hi)


ONE_DRAW = ("one draw: how much another draw would differ cannot be estimated, so there is no "
            "interval; use --draws 2 or more, or --draws auto")


def _image_row_var(batches: list[ImageMoments], s: int, ratio: float | None) -> float:
    """σ² of the per-image effect of statistic s (of z = v − ratio·c0 where ratio is given)."""
    num = 0.0
    weight = 0.0
    for b in batches:
        n, d = b.n, b.draws
        if n < 2 or d < 1:
            continue
        total = b.col_sums[s].sum()
        m = total / (n * d)  # the batch's grand mean
        ss_rows = b.row_sq[s] / d - n * d * m**2
        ss_cols = float(((b.col_sums[s] / n - m) ** 2).sum()) * n
        ss_total = b.cell_sq[s] - n * d * m**2
        ms_rows = ss_rows / (n - 1)
        if d > 1:
            ms_int = max(ss_total - ss_rows - ss_cols, 0.0) / ((n - 1) * (d - 1))
            var_alpha = (ms_rows - ms_int) / d
        else:  # cannot split the image effect from the interaction: keep both (wider)
            var_alpha = ms_rows / d
        var = var_alpha
        if ratio is not None:
            c_mean = b.base_sum / n
            cov = (b.base_cross[s] / d - n * c_mean * m) / (n - 1)
            var_c = (b.base_sq - n * c_mean**2) / (n - 1)
            var = var_alpha - 2 * ratio * cov + ratio**2 * var_c
        num += d * max(var, 0.0)
        weight += d
    return num / weight if weight else 0.0


def interval(batches: list[ImageMoments], s: int = 0, *, normalize: bool = False,
             bounds: tuple[float, float] = (-math.inf, math.inf),
             random_draws: bool = True) -> Interval:
    """The mean of statistic ``s`` over every draw of ``batches`` and its 95 % interval.

    ``normalize``: divide by the mean unablated outcome (the normalized AUC). ``random_draws``
    False: the draws are not random (selectivity-ordered ablation), only images vary. The interval is a
    t-interval with Welch–Satterthwaite degrees of freedom from the draw part (D − 1) and the image
    part (n − 1), clipped to ``bounds`` (scaled like the mean).

    Pre: batches share their images (same n, same base sums). Post: low ≤ mean ≤ high.
    """
    if not batches:
        raise ValueError("no draws")
    n = batches[0].n
    if any(b.n != n for b in batches):
        raise ValueError("batches of draws over different images")
    per_draw = np.concatenate([b.col_sums[s] for b in batches]) / max(n, 1)
    d = len(per_draw)
    scale = 1.0
    if normalize:
        base = batches[0].base_sum / n if n else math.nan
        scale = 1.0 / base if base > 0 else math.nan
    mean = float(per_draw.mean() * scale)
    ratio = mean if normalize else None
    v_img = _image_row_var(batches, s, ratio) * scale**2 / max(n, 1)
    lo_b, hi_b = bounds
    if not random_draws and math.isfinite(mean):
        half = t_quantile(max(n - 1, 1)) * math.sqrt(v_img)
        return Interval(mean, 0.0, math.sqrt(v_img), float(max(n - 1, 1)),
                        min(max(mean - half, lo_b), mean), max(min(mean + half, hi_b), mean), d)
    if d < 2 or not math.isfinite(mean):
        return Interval(mean, None, math.sqrt(v_img), math.nan, None, None, d,
                        ONE_DRAW if d < 2 else "undefined")
    v_draw = float(per_draw.var(ddof=1)) * scale**2 / d
    den = v_draw**2 / (d - 1) + (v_img**2 / (n - 1) if n > 1 else 0.0)
    dof = (v_draw + v_img) ** 2 / den if den > 0 else math.inf
    dof = max(dof, float(d - 1))  # at least the draws' own degrees of freedom
    half = t_quantile(dof) * math.sqrt(v_draw + v_img) if v_draw + v_img > 0 else 0.0
    lo = min(max(mean - half, lo_b), mean)
    hi = max(min(mean + half, hi_b), mean)
    return Interval(mean, math.sqrt(v_draw), math.sqrt(v_img), dof, lo, hi, d)


def draws_needed(iv: Interval, target: float, limit: int) -> int:
    """How many draws in all would bring ``iv``'s half-width to ``target``, at most ``limit``.

    The image part does not shrink with draws. Where it alone is wider than the target, more
    draws help only until the draw part is a quarter of the image part's variance (the interval
    then lies within 12 % of the width infinitely many draws would give).
    """
    if iv.draw_se is None:
        return min(limit, max(iv.draws + 1, 2))
    z = Z975
    v_draw_one = iv.draw_se**2 * iv.draws  # the variance one draw adds, per draw
    v_img = iv.image_se**2
    room = (target / z) ** 2 - v_img
    goal = room if room > v_img / 4 else v_img / 4
    if goal <= 0:
        return min(limit, iv.draws)
    return int(min(limit, max(iv.draws, math.ceil(v_draw_one / goal))))


def converged(iv: Interval, target: float) -> bool:
    """Whether more draws should stop: the half-width is at most ``target``, or the draw part
    is at most a quarter of the image part's variance (more images, not draws, would help)."""
    if iv.draw_se is None or iv.half_width is None:
        return False
    return iv.half_width <= target or iv.draw_se**2 <= iv.image_se**2 / 4


@dataclass(frozen=True)
class Difference:
    """``a − b`` with its 95 % interval, and what it would take to tell the two apart."""

    estimate: float
    low: float | None
    high: float | None
    paired: bool
    draw_se: float | None
    image_se: float
    separable: bool  # the interval excludes 0
    draws_to_separate: int | None  # draws each (paired: shared) would need; None: draws cannot
    images_to_separate: int | None  # images each would need at unlimited draws; None: not finite


def difference(a: Interval, b: Interval, images_a: int, images_b: int,
               paired_draws: np.ndarray | None = None) -> Difference:
    """Compare two AUCs. ``paired_draws``: per-draw differences where the two share their draws
    (the same images and unit permutations), which cancels the draw variance they share.

    The image parts are taken as independent (added): for two models on the same images their
    covariance is usually positive, so this errs wide.
    """
    est = a.mean - b.mean
    v_img = a.image_se**2 + b.image_se**2
    draws = min(a.draws, b.draws)
    if paired_draws is not None and len(paired_draws) >= 2:
        dd = np.asarray(paired_draws, dtype=np.float64)
        v_draw: float | None = float(dd.var(ddof=1)) / len(dd)
        dof_d = len(dd) - 1
        draws = len(dd)
    elif a.draw_se is not None and b.draw_se is not None:
        v_draw = a.draw_se**2 + b.draw_se**2
        dof_d = max(draws - 1, 1)
    else:
        v_draw = None
        dof_d = 0
    if v_draw is None:
        return Difference(est, None, None, paired_draws is not None, None, math.sqrt(v_img),
                          False, None, None)
    n_min = max(min(images_a, images_b) - 1, 1)
    den = v_draw**2 / dof_d + v_img**2 / n_min
    dof = max((v_draw + v_img) ** 2 / den if den > 0 else math.inf, float(dof_d))
    half = t_quantile(dof) * math.sqrt(v_draw + v_img)
    lo, hi = est - half, est + half
    separable = lo > 0 or hi < 0
    need_d: int | None = None
    need_n: int | None = None
    if not separable:
        room = (abs(est) / Z975) ** 2 - v_img
        if room > 0 and v_draw > 0:
            need_d = math.ceil(v_draw * draws / room)
        if v_img > 0 and abs(est) > 0:
            # images scale the image part; the draw part of the paired/unpaired mean stays
            room_n = (abs(est) / Z975) ** 2 - v_draw
            if room_n > 0:
                need_n = math.ceil(v_img * max(images_a, images_b) / room_n)
    return Difference(est, lo, hi, paired_draws is not None, math.sqrt(v_draw), math.sqrt(v_img),
                      separable, need_d, need_n)


def trapezoid_weights(x: np.ndarray | list[float] | tuple[float, ...]) -> np.ndarray:
    """Weights w with Σ_f w_f y_f = normalized_auc's area over ``x`` (before dividing by the
    reference): trapezoids over the span; one point weighs 1."""
    xs = np.asarray(x, dtype=np.float64)
    if len(xs) == 1:
        return np.ones(1)
    dx = np.diff(xs) / (xs[-1] - xs[0])
    w = np.zeros(len(xs))
    w[:-1] += dx / 2
    w[1:] += dx / 2
    return w
