"""Intervals over draws and images (analysis.intervals, analysis.draws): against hand-computed
analyses of variance, and coverage over many seeds on a tiny numpy net."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sdaudit.analysis.curves import normalized_auc
from sdaudit.analysis.draws import DrawPlan, next_batch, permutation_masks, plan_draws
from sdaudit.analysis.intervals import (
    ONE_DRAW,
    ImageMoments,
    Interval,
    difference,
    draws_needed,
    interval,
    t_quantile,
    trapezoid_weights,
)


def _crossed(rng: np.random.Generator, n: int, d: int, s_img: float, s_draw: float,
             s_int: float, mu: float = 0.6) -> np.ndarray:
    """v[i, d] = μ + α_i + β_d + γ_id (images × draws)."""
    return (mu + rng.normal(0, s_img, n)[:, None] + rng.normal(0, s_draw, d)[None, :]
            + rng.normal(0, s_int, (n, d)))


def test_moments_give_the_two_way_anova_by_hand():
    rng = np.random.default_rng(0)
    v = _crossed(rng, 40, 6, 0.3, 0.05, 0.2)
    iv = interval([ImageMoments.of(v.T[None], np.ones(40))])
    n, d = v.shape
    m = v.mean()
    ms_rows = d * ((v.mean(axis=1) - m) ** 2).sum() / (n - 1)
    resid = v - v.mean(axis=1, keepdims=True) - v.mean(axis=0, keepdims=True) + m
    ms_int = (resid**2).sum() / ((n - 1) * (d - 1))
    assert iv.mean == pytest.approx(m, rel=1e-12)
    assert iv.image_se == pytest.approx(math.sqrt((ms_rows - ms_int) / d / n), rel=1e-9)
    assert iv.draw_se == pytest.approx(v.mean(axis=0).std(ddof=1) / math.sqrt(d), rel=1e-9)


def test_chunks_and_batches_add_up():
    rng = np.random.default_rng(1)
    v = _crossed(rng, 30, 8, 0.3, 0.05, 0.2)
    c0 = (rng.random(30) < 0.9).astype(float)
    whole = ImageMoments.of(v.T[None], c0)
    halves = ImageMoments.of(v[:12].T[None], c0[:12]).merge(ImageMoments.of(v[12:].T[None],
                                                                            c0[12:]))
    for field in ("col_sums", "row_sq", "cell_sq", "base_cross"):
        np.testing.assert_allclose(getattr(whole, field), getattr(halves, field), rtol=1e-12)
    # the same draws in two batches (two passes of --draws auto): the same mean and draw s.e.
    a = interval([whole], normalize=True)
    b = interval([ImageMoments.of(v[:, :3].T[None], c0), ImageMoments.of(v[:, 3:].T[None], c0)],
                 normalize=True)
    assert b.mean == pytest.approx(a.mean, rel=1e-12)
    assert b.draw_se == pytest.approx(a.draw_se, rel=1e-12)
    assert b.image_se == pytest.approx(a.image_se, rel=0.5)  # pooled estimate of the same σ²


def test_normalized_mean_is_normalized_auc():
    rng = np.random.default_rng(2)
    x = (0.0, 0.1, 0.3, 0.6, 0.9)
    hits = (rng.random((4, 5, 50)) < np.linspace(0.95, 0.3, 5)[None, :, None]).astype(float)
    c0 = (rng.random(50) < 0.95).astype(float)
    area = np.tensordot(trapezoid_weights(x), hits, axes=([0], [1]))
    iv = interval([ImageMoments.of(area[None], c0)], normalize=True)
    assert iv.mean == pytest.approx(normalized_auc(x, hits.mean(axis=(0, 2)), c0.mean()),
                                    rel=1e-12)


def test_synthetic_coverage_needs_the_image_term():
    """Population mean μ: the draw-only t-interval misses it far too often when images vary."""
    hits = draw_only = 0
    seeds = 400
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        v = _crossed(rng, 100, 5, 0.3, 0.02, 0.2)
        iv = interval([ImageMoments.of(v.T[None], np.ones(100))])
        hits += iv.low <= 0.6 <= iv.high
        per = v.mean(axis=0)
        draw_only += abs(per.mean() - 0.6) <= t_quantile(4) * per.std(ddof=1) / math.sqrt(5)
    # 400 Bernoulli(0.95): s.d. 1.1 points, so [0.91, 0.99] is ±3.6 s.d.
    assert 0.91 <= hits / seeds <= 0.99
    assert draw_only / seeds < 0.85


def _tiny_net():
    rng = np.random.default_rng(7)
    w0 = rng.standard_normal((5, 64))
    w1 = rng.standard_normal((64, 3))
    x = rng.standard_normal((3000, 5))
    h = np.maximum(x @ w0, 0)
    y = np.argmax(h @ w1 + rng.standard_normal((3000, 3)), axis=1)  # noisy labels
    return h, w1, y


def _hits(h, w1, y, perms, fractions):
    out = np.empty((len(perms), len(fractions), len(y)))
    for d, p in enumerate(perms):
        for j, f in enumerate(fractions):
            m = np.ones(h.shape[1])
            m[p[:round(f * len(p))]] = 0
            out[d, j] = np.argmax((h * m) @ w1, axis=1) == y
    return out


def test_coverage_over_seeds_on_a_tiny_net():
    """Each seed draws 80 images of a pool and 5 permutations; the reference is the AUC of 300
    permutations on the whole pool. The 95 % interval covers it at about its nominal rate."""
    h, w1, y = _tiny_net()
    fractions = (0.0, 0.25, 0.5, 0.75)
    w = trapezoid_weights(fractions)
    c0 = (np.argmax(h @ w1, axis=1) == y).astype(float)
    ref_perms = [np.random.default_rng(10**6 + k).permutation(64) for k in range(300)]
    ref = normalized_auc(fractions, _hits(h, w1, y, ref_perms, fractions).mean(axis=(0, 2)),
                         c0.mean())
    covered = 0
    seeds = 120
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        idx = rng.choice(len(y), 80, replace=False)
        perms = [rng.permutation(64) for _ in range(5)]
        area = np.tensordot(w, _hits(h[idx], w1, y[idx], perms, fractions), axes=([0], [1]))
        iv = interval([ImageMoments.of(area[None], c0[idx])], normalize=True)
        covered += iv.low <= ref <= iv.high
    # 120 Bernoulli(0.95): s.d. 2 points; [0.87, 1.0] allows 4 s.d. below nominal
    assert 0.87 <= covered / seeds < 1.0


def test_one_draw_has_no_interval_and_says_why():
    v = np.random.default_rng(3).random((20, 1))
    iv = interval([ImageMoments.of(v.T[None], np.ones(20))])
    assert iv.low is None
    assert iv.high is None
    assert iv.draw_se is None
    assert iv.reason == ONE_DRAW
    assert iv.image_se > 0
    # a fixed order (selectivity-ordered ablation) is not random: the images alone vary
    fixed = interval([ImageMoments.of(v.T[None], np.ones(20))], random_draws=False)
    assert fixed.draw_se == 0.0
    assert fixed.half_width == pytest.approx(t_quantile(19) * fixed.image_se)


def test_draws_needed_reaches_the_target():
    iv = Interval(0.7, draw_se=0.02, image_se=0.001, dof=4, low=0.6, high=0.8, draws=5)
    total = draws_needed(iv, 0.01, 1000)
    # draw variance shrinks as 1/D: at `total` draws the half-width is just under the target
    hw = 1.96 * math.sqrt(0.02**2 * 5 / total + 0.001**2)
    hw_one_less = 1.96 * math.sqrt(0.02**2 * 5 / (total - 1) + 0.001**2)
    assert hw <= 0.01 < hw_one_less
    assert draws_needed(iv, 0.01, 50) == 50
    # the images alone are wider than the target: stop once draws add a quarter of their part
    limited = Interval(0.7, draw_se=0.01, image_se=0.01, dof=4, low=0.6, high=0.8, draws=5)
    assert draws_needed(limited, 0.01, 1000) == 20


def test_auto_schedule_and_nested_draws():
    plan = plan_draws("auto", 50, 0.01)
    assert plan == DrawPlan(True, 5, 50, 0.01)
    assert plan_draws(7, 50, 0.01) == DrawPlan(False, 7, 7, None)
    wide = Interval(0.7, 0.02, 0.001, 4, 0.6, 0.8, 5)
    assert 5 < 5 + next_batch(plan, wide, 1) <= 50
    narrow = Interval(0.7, 0.001, 0.001, 4, 0.695, 0.705, 5)
    assert next_batch(plan, narrow, 1) == 0
    assert next_batch(plan_draws(5, 50, 0.01), wide, 1) == 0
    seed = np.random.SeedSequence(4)
    units = np.arange(3, 15)
    whole, counts = permutation_masks(seed, units, 20, (0.0, 0.5, 1.0), 0, 9)
    head, _ = permutation_masks(seed, units, 20, (0.0, 0.5, 1.0), 0, 4)
    tail, _ = permutation_masks(seed, units, 20, (0.0, 0.5, 1.0), 4, 5)
    np.testing.assert_array_equal(whole, np.concatenate([head, tail]))
    assert counts == [0, 6, 12]
    assert whole[:, :3].min() == 1
    assert whole[:, 15:].min() == 1


def test_paired_difference_cancels_shared_draw_variance():
    rng = np.random.default_rng(5)
    shared = rng.normal(0, 0.03, 10)
    a_draws = 0.70 + shared + rng.normal(0, 0.002, 10)
    b_draws = 0.69 + shared + rng.normal(0, 0.002, 10)

    def iv(draws: np.ndarray) -> Interval:
        se = draws.std(ddof=1) / math.sqrt(10)
        return Interval(float(draws.mean()), se, 0.001, 9, None, None, 10)

    unpaired = difference(iv(a_draws), iv(b_draws), 500, 500)
    paired = difference(iv(a_draws), iv(b_draws), 500, 500, paired_draws=a_draws - b_draws)
    assert not unpaired.separable
    assert paired.separable
    assert paired.high - paired.low < (unpaired.high - unpaired.low) / 3
    # what unpaired would need: the draw part then fits in (|δ|/1.96)² less the image part
    room = (abs(unpaired.estimate) / 1.96) ** 2 - 2 * 0.001**2
    assert unpaired.draws_to_separate == math.ceil(unpaired.draw_se**2 * 10 / room)
