"""``--time-budget``: the most images, then draws, whose estimated time fits a budget.

From a calibration (the per-measure estimate of the full audit at N images and d draws), the
time of the same audit on N′ images with d′ draws is

    T(N′, d′) = start-up + (statistics + ordered) · N′/N + (ablation + noise) · N′/N · d′/d
                + importance · min(S, N′) / min(S, N)

(the random-ablation and noise configurations are draws × points; ordered ablation and
importance have none; importance runs on its sample S). The choice: the most images at the
given draws (at least ``min_images``); with every image in, the most draws up to 4 × the given
ones; if even ``min_images`` do not fit, fewer draws, down to 2. No measure is ever dropped: a
budget too small for the minimum is reported as exceeded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sdaudit.errors import BadFlagError

DRAWS_FLOOR = 2  # an interval over draws needs two
DRAWS_CEILING = 4  # × the given draws, once every image fits


@dataclass(frozen=True)
class Choice:
    images: int
    draws: int
    predicted_s: float
    fits: bool  # False: even the minimum exceeds the budget (it runs anyway)


def parse_duration(text: str) -> float:
    """Seconds in ``90``, ``90s``, ``10m``, ``2h``, ``1h30m``; BadFlagError otherwise."""
    value = text.strip().lower()
    parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?", value)
    if not value or parts is None or not any(parts.groups()):
        raise BadFlagError(f"--time-budget {text!r} is not a duration",
                           "e.g. 90s, 10m, 2h or 1h30m")
    h, m, s = (float(g) if g else 0.0 for g in parts.groups())
    seconds = 3600 * h + 60 * m + s
    if seconds <= 0:
        raise BadFlagError(f"--time-budget {text!r} is not a positive duration", "e.g. 10m")
    return seconds


def predict(by_measure: dict[str, float], setup_s: float, samples: int, draws: int,
            sample: int, images: int, new_draws: int) -> float:
    """T(images, new_draws) from an estimate at (samples, draws); ``sample``: importance's."""
    scale = images / samples
    per_draw = new_draws / draws
    t = setup_s + scale * (by_measure.get("statistics", 0.0) + by_measure.get("ordered", 0.0))
    t += scale * per_draw * (by_measure.get("ablation", 0.0) + by_measure.get("noise", 0.0))
    s0 = min(sample, samples) if sample else samples
    s1 = min(sample, images) if sample else images
    return t + by_measure.get("importance", 0.0) * s1 / max(s0, 1)


def choose(by_measure: dict[str, float], setup_s: float, samples: int, draws: int,
           sample: int, budget_s: float, min_images: int) -> Choice:
    """The most images (then draws) fitting ``budget_s``; see the module."""
    def t(images: int, d: int) -> float:
        return predict(by_measure, setup_s, samples, draws, sample, images, d)

    low = min(min_images, samples)
    for d in range(draws, DRAWS_FLOOR - 1, -1):
        if t(low, d) <= budget_s:
            break
    else:
        d = min(draws, DRAWS_FLOOR)
        return Choice(low, d, t(low, d), False)
    lo, hi = low, samples  # the largest image count that fits, by bisection (t grows with it)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if t(mid, d) <= budget_s else (lo, mid - 1)
    images = lo
    if images == samples and d == draws:
        while d < DRAWS_CEILING * draws and t(images, d + 1) <= budget_s:
            d += 1
    return Choice(images, d, t(images, d), True)
