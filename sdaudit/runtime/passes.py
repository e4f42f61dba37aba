"""The passes of an audit over its data, and what they measure.

One pass where random ablation and single-unit importance are all that is asked (they need
nothing from the unablated statistics); otherwise an unablated pass (unit statistics, then
selectivity), the selectivity data's own pass where there is one, and the sweep pass (every
mask and noise configuration, and the histogram of mutual information).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sdaudit.errors import DataError, InternalError

# Below this many samples the report says its verdict speaks for those samples only: the
# image part of each interval is a variance estimated from a handful of images.
FEW_SAMPLES = 100

if TYPE_CHECKING:
    from sdaudit.analysis.configs import ConfigTable
    from sdaudit.analysis.importance import ImportanceEstimate
    from sdaudit.analysis.intervals import ImageMoments
    from sdaudit.config import AuditConfig
    from sdaudit.data.base import Dataset
    from sdaudit.runtime.counts import SweepCounts, UnitStats
    from sdaudit.runtime.estimate import Calibrator
    from sdaudit.runtime.executors import Executor
    from sdaudit.runtime.importance import ImportancePlan


@dataclass(frozen=True)
class Measurements:
    """Everything the passes measured, for report.build."""

    base: UnitStats  # the unablated model on the data
    counts: SweepCounts  # one row per row of the configuration table
    noise_counts: SweepCounts | None  # one row per noise configuration (level-major)
    selectivity: np.ndarray | None  # [U] class selectivity index (None: fewer than 2 classes)
    preferred: np.ndarray | None  # [U] each unit's preferred class
    mutual_information: np.ndarray | None  # [U] bits
    classes: int  # the model's output classes
    notes: tuple[str, ...]
    # per-unit importance over every unit and how it was measured (None: not asked)
    importance: tuple[ImportanceEstimate, dict[str, Any]] | None = None
    # image moments of the curves of ``table.moments`` and of the noise curve
    moments: dict[str, ImageMoments] = field(default_factory=dict)
    noise_moments: dict[str, ImageMoments] = field(default_factory=dict)
    # --draws auto: the random curves' later batches of draws, each its own table and pass
    more: tuple[DrawBatch, ...] = ()
    draws: dict[str, Any] = field(default_factory=dict)  # the report's summary.draws


@dataclass(frozen=True)
class DrawBatch:
    """A later batch of draws of the random curves: its table, counts and image moments."""

    table: ConfigTable
    counts: SweepCounts
    moments: dict[str, ImageMoments]


def execute(engine: Executor, table: ConfigTable, config: AuditConfig, data: Dataset,
            sel_data: Dataset, *, separate_selectivity: bool, fused: bool,
            progress: Any, calibrator: Calibrator,
            importance: ImportancePlan | None = None) -> Measurements:
    """Run the passes of an audit through ``engine`` (an executor); ordered, importance and
    noise configurations join ``table`` once the unablated statistics are known.

    Pre-condition: ``table`` holds the random-ablation blocks (and, when ``fused``, every
    block). Post-condition: ``counts`` has one row per row of ``table``."""
    from sdaudit.analysis.configs import noise_moments, noise_rows
    from sdaudit.analysis.selectivity import class_means, mutual_information, selectivity_index
    from sdaudit.runtime.counts import Configs, HistSpec

    want_noise = config.wants("noise")
    need_selectivity = config.wants("selectivity") or config.wants("ordered") or \
        config.wants("importance")
    separate_hist = config.wants("selectivity") and separate_selectivity
    imp = importance
    # masked single-unit runs: every unit but those done in closed form (on the sample, in
    # their own pass, when there is one)
    imp_units = imp.masked_units() if imp is not None else np.zeros(0, np.int64)
    observe = imp.observe if imp is not None and imp.heads else None
    sampled = None
    if imp is not None and imp.sampled and len(imp_units) and fused:
        sampled = _sample_pass(engine, imp, imp_units, data, None, progress, calibrator)
    calibrated = calibrator.for_pass("sweeps")
    if fused:
        first = engine.run_pass(data, stats=True, configs=Configs(table.masks),
                                progress=progress, phase="sweeps", calibrated=calibrated,
                                observe=observe, moments=table.moments)
    else:
        first = engine.run_pass(data, stats=True, progress=progress, phase="unablated pass",
                                observe=observe)
        if imp is not None and imp.heads and first.stats is not None:
            calibrator.closed_form_s = imp.seconds / max(first.stats.n, 1)
    base = first.stats
    if base is None:  # pragma: no cover - run_pass raises on empty data
        raise InternalError("the unablated pass produced no statistics")
    k = int(engine.num_classes or 0)
    notes: list[str] = []
    metric = engine.metric
    if metric.kind != "classification":
        what = {"per-position": "the share of positions whose argmax class is unchanged",
                "relative": "1 - the output's normalized L2 change",
                "cosine": "the cosine similarity with the unablated output"}[metric.kind]
        notes.append(f"the output has no [N, K] class scores: accuracy is {what} (metric "
                     f"{metric.kind}); selectivity needs a classifier's class labels and is "
                     "skipped")
    elif not data.labelled:
        notes.append("the data has no labels: the unablated model's predictions stand in, so "
                     "accuracy is agreement with the unablated model (see also kl_mean)")
    if data.skipped.count:
        why = "; ".join(f"{n}: {reason}" for reason, n in data.skipped.reasons.items())
        notes.append(f"{data.skipped.count} unreadable images skipped "
                     f"(first: {', '.join(data.skipped.examples)}; {why})")
    held = int((base.class_counts > 0).sum())
    if data.labelled and 0 < held < k:
        notes.append(f"the data holds {held} of the model's {k} classes: per-class figures and "
                     "class selectivity cover those only")
    if base.n < FEW_SAMPLES:
        notes.append(f"only {base.n} sample{'s' if base.n != 1 else ''}: "
                     + ("the interval cannot include the variance over images (one image), "
                        if base.n < 2 else "the variance over images rests on few of them, ")
                     + "so the verdict speaks for these samples, not for the data they stand "
                     f"for (give {FEW_SAMPLES} or more)")
    for kind, count in dict(getattr(data, "converted", {}) or {}).items():
        notes.append(f"{count} images converted {kind} (the model takes "
                     + ("one channel; ITU-R 601 luma, as PIL's convert('L'))"
                        if kind.endswith("grey") else "three channels; the grey one repeated)"))
    transparent = int(getattr(data, "transparent", 0))
    if transparent:
        notes.append(f"{transparent} images have transparent pixels: their alpha was "
                     "dropped (colour channels as stored, as PIL's convert('RGB') and "
                     "torchvision's loader read them)")
    if base.correct == 0 and data.labelled:
        raise DataError(
            "the unablated model gets no sample right on this data: nothing to measure",
            "check that labels follow the model's class order and the preprocessing is right",
        )
    sel = base
    if separate_selectivity:
        sel_stats = engine.run_pass(sel_data, stats=True, progress=progress,
                                    phase="selectivity data").stats
        if sel_stats is None:  # pragma: no cover - run_pass raises on empty data
            raise InternalError("the selectivity-data pass produced no statistics")
        sel = sel_stats
    present = int((sel.class_counts > 0).sum())
    si: np.ndarray | None = None
    pref: np.ndarray | None = None
    mi: np.ndarray | None = None
    hist_spec = None
    if need_selectivity and metric.kind == "classification":
        if present < 2:
            notes.append("selectivity undefined: the data holds one class only; selectivity, "
                         "ordered ablation and the selectivity–importance correlation skipped")
        else:
            means = class_means(sel.class_sums, sel.class_counts)
            shift = np.where(sel.unit_min < 0, sel.unit_min, 0.0)
            si = selectivity_index(means, config.selectivity_eps, shift)
            classes_present = np.flatnonzero(sel.class_counts > 0)
            pref = classes_present[np.argmax(means, axis=0)]
            if config.wants("selectivity"):
                hist_spec = HistSpec(sel.unit_min, sel.unit_max, config.mi_bins)
    if fused:
        counts, noise_counts = first.mask_counts, first.noise_counts
        sweep = first
    else:
        if config.wants("ordered") and si is not None:
            table.add_ordered(si, config.fractions)
        if imp is not None and not imp.sampled:
            table.add_importance(imp_units)
        noise_sd = np.zeros((0, table.units), dtype=np.float32)
        noise_draw = np.zeros(0, dtype=np.int64)
        if want_noise:
            noise_sd, noise_draw = noise_rows(base.elem_sd, config)
        unit_mean = base.mean.astype(np.float32) if config.ablation_value == "mean" else None
        if imp is not None and imp.sampled and len(imp_units):
            # before the sweep, so that the estimate announced from the sweep's calibration
            # chunk holds what the sample took
            sampled = _sample_pass(engine, imp, imp_units, data, unit_mean, progress,
                                   calibrator)
        # The estimate comes from the sweep pass itself: the statistics run costs something
        # else per sample than a configuration does.
        sweep = engine.run_pass(data, configs=Configs(table.masks, noise_sd, noise_draw),
                                unit_mean=unit_mean, progress=progress, phase="sweeps",
                                hist=None if separate_hist else hist_spec, calibrated=calibrated,
                                moments=table.moments,
                                noise_moments=noise_moments(config) if want_noise else None)
        counts, noise_counts = sweep.mask_counts, sweep.noise_counts
        hist = sweep.hist
        if separate_hist and hist_spec is not None:
            hist = engine.run_pass(sel_data, hist=hist_spec, progress=progress,
                                   phase="selectivity data").hist
        if hist is not None:
            mi = mutual_information(hist)
    if counts is None:  # pragma: no cover - the sweep always runs the unperturbed row
        raise InternalError("the sweep produced no counts")
    found = None
    if imp is not None:
        found = _importance(engine, imp, table, counts, imp_units, data, base, progress,
                            sampled, unit_mean if not fused else None)
        notes.extend(imp.notes)
    more: list[DrawBatch] = []
    draws: dict[str, Any] = {}
    if config.wants("ablation"):
        unit_mean = base.mean.astype(np.float32) if config.ablation_value == "mean" else None
        more, draws = _more_draws(engine, table, config, data, sweep.mask_moments, unit_mean,
                                  progress, notes)
    notes.extend(engine.info.notes)
    notes.extend(_nonfinite_notes(counts, noise_counts))
    return Measurements(base, counts, noise_counts, si, pref, mi, k, tuple(notes), found,
                        sweep.mask_moments, sweep.noise_moments, tuple(more), draws)


def _sample_pass(engine: Executor, imp: ImportancePlan, units: np.ndarray, data: Dataset,
                 unit_mean: np.ndarray | None, progress: Any,
                 calibrator: Calibrator | None) -> SweepCounts:
    """Single-unit ablation of ``units`` on the importance sample (row 0: unperturbed)."""
    from sdaudit.runtime.counts import Configs

    u = int(imp.offsets[-1])
    counts = engine.run_pass(
        imp.sample_data(data), configs=Configs(np.concatenate(
            [np.ones((1, u), np.float32), imp.rows(units, u)])), unit_mean=unit_mean,
        progress=progress, phase="importance",
        calibrated=None if calibrator is None else calibrator.for_pass("importance")).mask_counts
    if counts is None:  # pragma: no cover - the sweep always runs the unperturbed row
        raise InternalError("the importance pass produced no counts")
    return counts


def _importance(engine: Executor, imp: ImportancePlan, table: ConfigTable, counts: SweepCounts,
                imp_units: np.ndarray, data: Dataset, base: UnitStats, progress: Any,
                sampled: SweepCounts | None,
                unit_mean: np.ndarray | None) -> tuple[ImportanceEstimate, dict[str, Any]]:
    """The masked units' counts (from the sample's pass or the sweep), those of a head that
    failed its check run now, then every unit's estimate."""
    todo = np.setdiff1d(imp.masked_units(), imp_units)
    imp_counts = sampled
    if "importance" in table:
        a, b = table.blocks["importance"]
        imp_counts = counts.take(np.concatenate([[0], np.arange(a, b)]))
    if len(todo):
        extra = _sample_pass(engine, imp, todo, data, unit_mean, progress, None)
        if imp_counts is None:
            imp_counts, imp_units = extra, todo
        else:  # the same samples (the sample, or all the data): one table
            imp_units = np.concatenate([imp_units, todo])
            for f in ("correct", "loss", "agree", "kl", "class_correct", "dloss_sq",
                      "dcorrect_sq"):
                setattr(imp_counts, f, np.concatenate([getattr(imp_counts, f),
                                                       getattr(extra, f)[1:]]))
    return imp.results(imp_counts, imp_units, (float(base.correct), float(base.loss),
                                               int(base.n)), [la.name for la in table.layers])


def _more_draws(engine: Executor, table: ConfigTable, config: AuditConfig, data: Dataset,
                moments: dict[str, ImageMoments], unit_mean: np.ndarray | None, progress: Any,
                notes: list[str]) -> tuple[list[DrawBatch], dict[str, Any]]:
    """--draws auto: passes of more draws of the random curves until the joint AUC's interval
    is narrow enough (analysis.draws); the batches and the report's summary.draws."""
    from sdaudit.analysis.configs import ConfigTable
    from sdaudit.analysis.draws import next_batch, plan_draws, stop_reason
    from sdaudit.analysis.intervals import interval
    from sdaudit.runtime.counts import Configs

    dplan = plan_draws(config.draws, config.max_draws, config.ci_target)
    joint = [moments["joint"]]

    def joint_interval() -> Any:
        return interval(joint, 0, normalize=True)

    iv = joint_interval()
    used = dplan.first
    batches: list[DrawBatch] = []
    seeds = np.random.SeedSequence(config.seed).spawn(3)
    while (add := next_batch(dplan, iv, 1 + len(batches))) > 0:
        more = ConfigTable(table.layers)
        more.add_random(config, seeds, first=used, count=add)
        result = engine.run_pass(data, configs=Configs(more.masks), unit_mean=unit_mean,
                                 progress=progress, phase=f"draws {used + 1}–{used + add}",
                                 moments=more.moments)
        if result.mask_counts is None:  # pragma: no cover - run_pass always counts
            raise InternalError("a pass of more draws produced no counts")
        batches.append(DrawBatch(more, result.mask_counts, result.mask_moments))
        joint.append(result.mask_moments["joint"])
        used += add
        iv = joint_interval()
    stopped = stop_reason(dplan, iv)
    half = iv.half_width
    if iv.reason:
        notes.append(f"ablation AUC: {iv.reason}")
    elif stopped == "images" and half is not None:
        notes.append(f"--draws auto stopped at {used} draws with a 95% half-width of {half:.3f}: "
                     f"the images, not the draws, set it (image s.e. {iv.image_se:.4f}); more "
                     "data would narrow it")
    elif stopped in ("max_draws", "passes") and half is not None:
        notes.append(f"--draws auto stopped at {used} draws (the most it may) with a 95% "
                     f"half-width of {half:.3f} > --ci-target {config.ci_target:g}")
    info = {"mode": "auto" if dplan.auto else "fixed", "used": used, "first": dplan.first,
            "max": dplan.most, "target": dplan.target,
            "half_width": None if half is None or not math.isfinite(half) else float(half),
            "passes": 1 + len(batches), "stopped": stopped}
    return batches, info


def _nonfinite_notes(*parts: SweepCounts | None) -> list[str]:
    """A note where perturbed outputs held NaN or infinity (scored as wrong, never dropped)."""
    notes = []
    for what, counts in zip(("ablation", "noise"), parts, strict=True):
        if counts is None or not len(counts.nonfinite) or not counts.nonfinite.any():
            continue
        hit = int((counts.nonfinite > 0).sum())
        notes.append(f"{hit} of {len(counts.nonfinite)} {what} configurations gave NaN or "
                     f"infinite outputs on some samples (up to {int(counts.nonfinite.max())}; "
                     "an ablated unit divided by?): those samples count as wrong, unlike the "
                     "unperturbed model")
    return notes
