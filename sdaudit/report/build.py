"""Building the report's figures from the counts: curves, per-layer and summary figures."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from sdaudit.report.model import (
    AblationResult,
    Curve,
    LayerReport,
    Summary,
    UnitArrays,
)

if TYPE_CHECKING:
    from sdaudit.analysis.configs import ConfigTable
    from sdaudit.analysis.intervals import ImageMoments, Interval
    from sdaudit.config import AuditConfig
    from sdaudit.runtime.passes import Measurements


def curve(x: tuple[float, ...], counts: list[int], arrays: dict[str, np.ndarray],
           class_counts: np.ndarray, n: int, base_acc: float, base_class_acc: np.ndarray,
           moments: list[ImageMoments], auc_x: np.ndarray | None = None,
           random_draws: bool = True) -> tuple[Curve, Interval]:
    """Assemble a curve from count arrays shaped [draws, points] (class counts [draws, points, K])
    and the image moments of its batches of draws; areas over ``auc_x`` (default ``x``).
    ``random_draws`` False: the curve's one "draw" is an order, not a random permutation."""
    from sdaudit.analysis.curves import normalized_auc
    from sdaudit.analysis.intervals import interval

    ax = np.asarray(x, dtype=np.float64) if auc_x is None else auc_x
    acc = arrays["correct"] / n
    draws = acc.shape[0]
    mean = acc.mean(axis=0)
    sd = acc.std(axis=0, ddof=1) if draws > 1 else np.zeros_like(mean)
    # Accuracy lies in [0, 1]: so does its interval.
    points = [interval(moments, 1 + j, bounds=(0.0, 1.0), random_draws=random_draws)
              for j in range(len(x))]
    per_draw_auc = [normalized_auc(ax, a, base_acc) for a in acc]
    # Normalized accuracy lies in [0, 1 / unablated accuracy]: so does its AUC and its interval.
    iv = interval(moments, 0, normalize=True, random_draws=random_draws,
                  bounds=(0.0, 1.0 / base_acc if base_acc > 0 else math.inf))
    with np.errstate(invalid="ignore", divide="ignore"):
        cls_acc = (arrays["class_correct"].mean(axis=0)
                   / np.where(class_counts > 0, class_counts, np.nan))
    class_auc = [
        normalized_auc(ax, cls_acc[:, c], float(base_class_acc[c]))
        if class_counts[c] > 0 and base_class_acc[c] > 0 else math.nan
        for c in range(cls_acc.shape[1])
    ]
    what = ("draws and images" if random_draws and draws > 1 else
            "images (the order is fixed)" if not random_draws else iv.reason)
    return Curve(
        x=tuple(x), units_ablated=tuple(counts), accuracy_mean=tuple(mean.tolist()),
        accuracy_std=tuple(sd.tolist()), accuracy_ci_low=tuple(p.low for p in points),
        accuracy_ci_high=tuple(p.high for p in points),
        normalized_mean=tuple((mean / base_acc if base_acc > 0 else mean * math.nan).tolist()),
        loss_mean=tuple((arrays["loss"] / n).mean(axis=0).tolist()),
        agreement_mean=tuple((arrays["agree"] / n).mean(axis=0).tolist()),
        kl_mean=tuple((arrays["kl"] / n).mean(axis=0).tolist()), draws=draws,
        auc=normalized_auc(ax, mean, base_acc), auc_ci_low=iv.low, auc_ci_high=iv.high,
        class_auc=tuple(class_auc), auc_draws=tuple(per_draw_auc), auc_draw_se=iv.draw_se,
        auc_image_se=iv.image_se, interval=what,
    ), iv


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)



@dataclass(frozen=True)
class Figures:
    """The report's measured parts, built from the counts."""

    ablation: AblationResult | None
    noise: Curve | None
    layers: tuple[LayerReport, ...]
    importance: dict[str, Any] | None
    summary: Summary
    baseline: dict[str, Any]  # the unablated model's accuracy, loss, per-class accuracy
    joint_interval: Interval | None = None  # the joint AUC's (for the baseline's difference)


def figures(table: ConfigTable, meas: Measurements, config: AuditConfig) -> Figures:
    """Curves (joint, per layer, ordered, noise), per-layer figures and the summary.

    Pre-condition: ``meas.counts`` has one row per row of ``table`` (row 0 unperturbed)."""
    from sdaudit.analysis.curves import spearman

    counts, noise_counts, base = meas.counts, meas.noise_counts, meas.base
    si, pref, mi = meas.selectivity, meas.preferred, meas.mutual_information
    layers, u, fr = table.layers, table.units, config.fractions
    n = counts.n
    base_acc = float(counts.correct[0] / n)
    with np.errstate(invalid="ignore", divide="ignore"):
        base_class_acc = counts.class_correct[0] / np.where(counts.class_counts > 0,
                                                            counts.class_counts, np.nan)

    fields = ("correct", "loss", "agree", "kl", "class_correct")

    # the batches of draws: the sweep's table and counts, then --draws auto's later passes
    batches: list[tuple[ConfigTable, Any, dict[str, ImageMoments]]] = [
        (table, counts, meas.moments), *((b.table, b.counts, b.moments) for b in meas.more)]

    def block_curve(name: str, x: tuple[float, ...],
                    random_draws: bool = True) -> tuple[Curve, Interval]:
        parts = [(c, t.blocks[name], m[name]) for t, c, m in batches if name in t]
        k = counts.class_correct.shape[1]
        arrays = {f: np.concatenate([getattr(c, f)[a:b].reshape(-1, len(x), k)
                                     if f == "class_correct" else
                                     getattr(c, f)[a:b].reshape(-1, len(x))
                                     for c, (a, b), _ in parts]) for f in fields}
        return curve(x, table.units_off[name], arrays, counts.class_counts, n, base_acc,
                     base_class_acc, [m for _, _, m in parts], random_draws=random_draws)

    ablation: AblationResult | None = None
    joint: Curve | None = None
    joint_iv: Interval | None = None
    per_layer_auc: dict[str, float] = {}
    if config.wants("ablation"):
        joint, joint_iv = block_curve("joint", fr)
        per_layer = {layer.name: block_curve(f"layer:{layer.name}", fr)[0]
                     for layer in layers if f"layer:{layer.name}" in table}
        per_layer_auc = {name: c.auc for name, c in per_layer.items()}
        ablation = AblationResult(joint, per_layer, {})
    if "ordered:high_to_low" in table:
        ordered = {
            key: block_curve(f"ordered:{key}", fr, random_draws=False)[0]
            for key in ("high_to_low", "low_to_high")
        }
        ablation = AblationResult(ablation.joint if ablation else None,
                                  ablation.per_layer if ablation else {}, ordered)
    noise_curve: Curve | None = None
    if noise_counts is not None:
        from sdaudit.analysis.configs import noise_draws

        levels = tuple(float(a) for a in config.noise_levels)
        shape = (len(levels), noise_draws(config))

        def by_level(arr: np.ndarray) -> np.ndarray:
            return arr.reshape(*shape, *arr.shape[1:]).swapaxes(0, 1)

        noise_curve = curve(levels, [u] * len(levels),
                             {f: by_level(getattr(noise_counts, f)) for f in fields},
                            noise_counts.class_counts, n, base_acc, base_class_acc,
                            [meas.noise_moments["noise"]],
                            # Over log α: each decade of noise weighs the same.
                            auc_x=np.log10(np.asarray(levels)))[0]

    importance_acc = importance_loss = None
    imp_est = None
    imp_info: dict[str, Any] = {}
    if meas.importance is not None:
        imp_est, imp_info = meas.importance
        importance_acc, importance_loss = imp_est.accuracy_drop, imp_est.loss_rise

    layer_reports = []
    correlations: list[dict[str, Any]] = []
    elem_sd = base.elem_sd
    for i, layer in enumerate(layers):
        sl = table.layer_slice(i)
        dead = int(np.sum(base.unit_max[sl] <= 0) if layer.op_type == "Relu"
                   else np.sum(base.unit_max[sl] - base.unit_min[sl] == 0))
        rho = None
        if importance_loss is not None and si is not None:
            rho = _finite(spearman(si[sl], importance_loss[sl]))
            correlations.append({"layer": layer.name, "spearman": rho})
        layer_reports.append(LayerReport(
            name=layer.name, op_type=layer.op_type, kind=layer.kind, shape=layer.shape,
            channel_axis=layer.channel_axis, channels=layer.channels, depth=layer.depth,
            dead_units=dead,
            selectivity_mean=None if si is None else float(np.mean(si[sl])),
            selectivity_median=None if si is None else float(np.median(si[sl])),
            selectivity_max=None if si is None else float(np.max(si[sl])),
            mutual_information_mean=None if mi is None else float(np.mean(mi[sl])),
            importance_selectivity_spearman=rho,
            units=UnitArrays(
                mean=tuple(base.mean[sl].tolist()), sd=tuple(base.sd[sl].tolist()),
                noise_sd=tuple(elem_sd[sl].tolist()),
                selectivity=None if si is None else tuple(si[sl].tolist()),
                preferred_class=None if pref is None else tuple(int(c) for c in pref[sl]),
                mutual_information=None if mi is None else tuple(mi[sl].tolist()),
                importance=None if importance_acc is None else tuple(importance_acc[sl].tolist()),
                importance_loss=None if importance_loss is None else
                tuple(importance_loss[sl].tolist()),
                importance_se=None if imp_est is None else
                tuple(imp_est.accuracy_drop_se[sl].tolist()),
                importance_loss_se=None if imp_est is None else
                tuple(imp_est.loss_rise_se[sl].tolist()),
                importance_loss_ci_low=None if imp_est is None else
                tuple(imp_est.loss_rise_ci_low[sl].tolist()),
                importance_loss_ci_high=None if imp_est is None else
                tuple(imp_est.loss_rise_ci_high[sl].tolist()),
            ),
        ))
    importance: dict[str, Any] | None = None
    if importance_acc is not None and importance_loss is not None:
        rho_all = spearman(si, importance_loss) if si is not None else math.nan
        # The correlation uses the loss rise: on robust nets one unit rarely flips a prediction,
        # so accuracy drops are mostly 0 and their rank correlation is undefined.
        importance = {"metric": "loss rise when the unit alone is ablated (importance_loss); "
                      "the accuracy drop is in importance",
                      "per_layer": correlations, "spearman_all": _finite(rho_all), **imp_info}

    auc = joint.auc if joint is not None else None
    risk = config.risk.grade(auc) if auc is not None and math.isfinite(auc) else None
    summary = Summary(
        ablation_auc=_finite(auc) if auc is not None else None,
        ablation_auc_ci=(None if joint is None or joint.auc_ci_low is None
                         or joint.auc_ci_high is None else (joint.auc_ci_low, joint.auc_ci_high)),
        noise_auc=_finite(noise_curve.auc) if noise_curve is not None else None,
        risk=risk, risk_thresholds={"low": config.risk.low, "medium": config.risk.medium},
        per_layer_auc=per_layer_auc, notes=meas.notes, draws=meas.draws,
    )
    baseline = {"accuracy": base_acc, "loss": float(counts.loss[0] / n),
                "per_class_accuracy": [_finite(v) for v in base_class_acc.tolist()]}
    return Figures(ablation, noise_curve, tuple(layer_reports), importance, summary, baseline,
                   joint_iv)
