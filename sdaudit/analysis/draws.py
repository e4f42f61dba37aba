"""How many random permutations (draws) an ablation curve gets: fixed, or ``--draws auto``.

Draws are nested: draw k of a curve is the k-th permutation of that curve's own seeded stream,
the same whatever the number of draws, so stopping early or going on changes nothing about the
draws already made. ``auto`` runs a first batch, estimates how many draws in all would bring the
AUC's 95 % half-width to the target (:func:`sdaudit.analysis.intervals.draws_needed`), runs the
rest in another pass over the data, and checks again, up to ``max_draws``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sdaudit.analysis.intervals import Interval, converged, draws_needed

AUTO_FIRST = 5  # the first batch of --draws auto
AUTO_PASSES = 4  # batches at most (each a pass over the data)


@dataclass(frozen=True)
class DrawPlan:
    """``first``: draws of the first batch; ``most``: draws the curve can end with."""

    auto: bool
    first: int
    most: int
    target: float | None


def plan_draws(draws: int | str, max_draws: int, ci_target: float) -> DrawPlan:
    """The draw schedule of a configuration (the cost model's bounds: ``first`` … ``most``)."""
    if draws == "auto":
        return DrawPlan(True, min(AUTO_FIRST, max_draws), max_draws, ci_target)
    return DrawPlan(False, int(draws), int(draws), None)


def next_batch(plan: DrawPlan, iv: Interval, batches_done: int) -> int:
    """Draws to add after a batch (0: stop)."""
    if not plan.auto or plan.target is None or batches_done >= AUTO_PASSES:
        return 0
    if converged(iv, plan.target) or iv.draws >= plan.most:
        return 0
    total = draws_needed(iv, plan.target, plan.most)
    # 20 % more than the estimate: it comes from few draws and usually falls a little short
    total = min(plan.most, max(total, int(np.ceil(1.2 * total))))
    return max(total - iv.draws, 1 if iv.draws < plan.most else 0)


def stop_reason(plan: DrawPlan, iv: Interval) -> str:
    """Why the draws ended where they did (for the report)."""
    if not plan.auto:
        return "fixed"
    if plan.target is not None and iv.half_width is not None and iv.half_width <= plan.target:
        return "target"
    if iv.draw_se is not None and iv.draw_se**2 <= iv.image_se**2 / 4:
        return "images"
    if iv.draws >= plan.most:
        return "max_draws"
    return "passes"


def permutation_masks(seed: np.random.SeedSequence, units: np.ndarray, total: int,
                      fractions: tuple[float, ...], first: int,
                      count: int) -> tuple[np.ndarray, list[int]]:
    """[count·F, total] masks of draws ``first`` … ``first + count − 1`` of the stream ``seed``:
    along draw d's permutation, the first round(f·n) units off (nested within a draw: the
    paper's cumulative ablation). Draw d is the same whatever ``first`` and ``count``."""
    n = len(units)
    counts = [round(f * n) for f in fractions]
    rng = np.random.default_rng(seed)
    for _ in range(first):
        rng.permutation(n)
    rows = np.ones((count * len(fractions), total), dtype=np.float32)
    for d in range(count):
        perm = units[rng.permutation(n)]
        for j, c in enumerate(counts):
            rows[d * len(fractions) + j, perm[:c]] = 0.0
    return rows, counts
