"""Per-image outcomes of a sweep, reduced to the sums its intervals need (image variance).

The counts of a sweep add outcomes over images, which loses how much the images differ. For
each curve that wants an interval (``MomentSpec``), a chunk's per-image hits of its configuration
rows are reduced at once to :class:`~sdaudit.analysis.intervals.ImageMoments` (sums over the
chunk's images, so memory stays flat in the number of images and chunks merge by addition).
"""

from __future__ import annotations

import numpy as np

from sdaudit.analysis.configs import CurveRows, MomentSpec
from sdaudit.analysis.intervals import ImageMoments


def remap(spec: MomentSpec, expand: np.ndarray) -> MomentSpec:
    """The spec over deduplicated configurations (``expand[row]``: the twin that runs)."""
    return {name: CurveRows(expand[c.rows], c.weights) for name, c in spec.items()}


def chunk_moments(spec: MomentSpec, hits: np.ndarray, base: np.ndarray) -> dict[str, ImageMoments]:
    """The moments of every curve in ``spec`` from one chunk's hits [configurations, n] and the
    unperturbed model's hits ``base`` [n]."""
    out = {}
    h = hits.astype(np.float64)
    for name, c in spec.items():
        v = h[c.rows]  # [D, F, n]
        area = np.tensordot(c.weights, v, axes=([0], [1]))  # [D, n]
        values = np.concatenate([area[None], v.transpose(1, 0, 2)])  # [1 + F, D, n]
        out[name] = ImageMoments.of(values, base)
    return out


def merge_into(total: dict[str, ImageMoments], part: dict[str, ImageMoments]) -> None:
    for name, m in part.items():
        total[name] = total[name].merge(m) if name in total else m
